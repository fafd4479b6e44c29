"""The one configuration object, loaded from ``covgap.toml``.

Every field below carries its default, what it means and where the default comes
from (``doc`` and ``source`` in the field metadata); ``docs/configuration.md`` is
generated from them by :func:`describe_config`. The object is immutable and is
passed explicitly: nothing is read from the environment.

Paths in the file are relative to the folder that holds the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covgap.errors import ConfigError

VN2000_CRS = ("EPSG:5898", "EPSG:3405", "EPSG:3406")


def _f(default: Any, doc: str, source: str, *, ge: float | None = None, gt: float | None = None,
       le: float | None = None, lt: float | None = None, choices: tuple | None = None,
       check: Callable[[Any], str | None] | None = None, valid: str = "", **kwargs: Any) -> Any:
    """A dataclass field with its documentation and its valid values attached.

    ``ge``/``gt``/``le``/``lt`` bound a number (every number must also be finite),
    ``choices`` lists the allowed values, and ``check`` is a function returning
    what is wrong with a value (or None), described for the reference by ``valid``.
    :func:`load_config` checks every value given against them and
    :func:`describe_config` writes them into the reference.
    """
    meta: dict[str, Any] = {"doc": doc, "source": source}
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if bounds:
        meta["bounds"] = bounds
    if choices is not None:
        meta["choices"] = tuple(choices)
    if check is not None:
        if not valid:
            raise ValueError("a field with a check needs the 'valid' text for the reference")
        meta["check"] = check
    if valid:
        meta["valid"] = valid
    if "table" in kwargs:
        meta["table"] = kwargs.pop("table")
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kwargs)
    return field(default=default, metadata=meta, **kwargs)


def _check_timezone(value: str) -> str | None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(value)
        return None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(value, sorted(zoneinfo.available_timezones()), n=1)
        return "not an IANA time zone" + (f" (did you mean '{close[0]}'?)" if close else "")


def _check_crs(value: str) -> str | None:
    if value == "auto":
        return None
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        parsed = CRS.from_user_input(value)
    except CRSError as err:
        return f"not a CRS pyproj knows ({err})"
    return None if parsed.is_projected else "not a projected (metric) CRS"


def _check_lonlat(value: str) -> str | None:
    if value == "":
        return None
    parts = value.split(",")
    try:
        lon, lat = (float(p) for p in parts)
    except ValueError:
        return "not two numbers separated by a comma"
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        return "not a longitude from -180 to 180 and a latitude from -90 to 90"
    return None


def _check_separator(value: str) -> str | None:
    if value in ("", "tab", "\\t") or len(value) == 1:
        return None
    return f"{len(value)} characters long"


@dataclass(frozen=True)
class StudyConfig:
    name: str = _f("study area", "Name shown in maps, scorecards and partner packages.", "user")
    crs: str = _f(
        "auto",
        "Metric working CRS: 'auto' (UTM zone of the study area, geopandas estimate_utm_crs) "
        "or an EPSG code such as EPSG:5898 (VN-2000, 108° meridian), EPSG:3405/3406 (VN-2000 UTM 48N/49N).",
        "DESIGN.md §3.1: never measure in degrees",
        check=_check_crs, valid="'auto' or a projected (metric) CRS pyproj knows, e.g. EPSG:5898",
    )
    timezone: str = _f(
        "Asia/Ho_Chi_Minh",
        "Time zone of measurement timestamps that carry no UTC offset (G-NetTrack logs local time).",
        "Vietnam uses UTC+07:00 all year",
        check=_check_timezone, valid="an IANA time zone (zoneinfo), e.g. Asia/Ho_Chi_Minh",
    )


@dataclass(frozen=True)
class ColumnMapping:
    """Explicit column names for a measurement CSV of a format covgap does not know."""

    lat: str = _f("", "Column holding latitude in WGS84 degrees.", "user")
    lon: str = _f("", "Column holding longitude in WGS84 degrees.", "user")
    signal_dbm: str = _f("", "Column holding the signal level in dBm (RSRP on 4G/5G, RSCP on 3G, RSSI/RxLev on 2G).", "user")
    operator: str = _f("", "Column holding the operator name or MCC-MNC code (optional).", "user")
    technology: str = _f("", "Column holding the radio technology (optional).", "user")
    timestamp: str = _f("", "Column holding the measurement time (optional).", "user")
    separator: str = _f("", "Field separator; empty means detect (comma, semicolon or tab).", "user",
                       check=_check_separator, valid="empty, one character (e.g. ';') or 'tab'")

    @property
    def is_set(self) -> bool:
        return bool(self.lat and self.lon and self.signal_dbm)


#: Canonical village fields a ``[inputs.village_columns]`` table may map (besides the reporting levels).
VILLAGE_FIELDS = ("village_id", "name", "households", "population", "fibre_subscribed")
#: Kinds of context layer ([inputs] context), each drawn in its own style.
CONTEXT_KINDS = ("roads", "rivers", "places")


@dataclass(frozen=True)
class ContextLayer:
    """One context layer of ``[inputs] context``: a file, its kind and the column of its labels."""

    path: Path
    kind: str
    label: str | None = None
#: Canonical commune fields a ``[inputs.commune_columns]`` table may map.
COMMUNE_FIELDS = ("commune_id", "name", "centre_lon", "centre_lat")
#: What a fibre status may be mapped to in ``[inputs.fibre_status]``.
FIBRE_STATUSES = ("existing", "planned", "dropped")


@dataclass(frozen=True)
class FibreColumns:
    """Explicit column names of the fibre layer ([inputs.fibre_columns]); empty means recognised by name."""

    route_id: str = _f("", "Column holding the route identifier (else 'route_id', or 'id' in an OFDS spans file; else R001, R002...).", "user")
    operator: str = _f("", "Column holding the route's operator (else 'operator'; in OFDS the first networkProviders name, then transmissionMediumOwner, then network publisher).", "user")
    status: str = _f("", "Column holding the route's status (else 'status'); values are read through [inputs.fibre_status].", "user")
    year: str = _f("", "Column holding the year the route was built or is planned (else 'year'; in OFDS the year of readyForServiceDate).", "user")


def _check_names_table(value: dict) -> str | None:
    bad = [k for k, v in value.items() if not (isinstance(v, str) and v.strip())]
    return f"not valid ({', '.join(bad)} not given as a column name)" if bad else None


def _check_commune_columns(value: dict) -> str | None:
    for k, v in value.items():
        if isinstance(v, dict):
            wrong = _check_names_table(v)
            if wrong:
                return f"{wrong[:-1]} in [inputs.commune_columns.{k}])"
            unknown = sorted(set(v) - set(COMMUNE_FIELDS))
            if unknown:
                return f"not valid (unknown key(s) {', '.join(unknown)} in [inputs.commune_columns.{k}]; known: {', '.join(COMMUNE_FIELDS)})"
        elif k not in COMMUNE_FIELDS:
            return f"not valid (unknown key '{k}'; known: {', '.join(COMMUNE_FIELDS)}, or a level key holding a table of them)"
        elif not (isinstance(v, str) and v.strip()):
            return f"not valid ({k} not given as a column name)"
    return None


def _check_fibre_status(value: dict) -> str | None:
    bad = {k: v for k, v in value.items() if v not in FIBRE_STATUSES}
    if bad:
        k, v = next(iter(bad.items()))
        return f"not valid ('{k}' → {v!r}, not one of {', '.join(FIBRE_STATUSES)})"
    return None


@dataclass(frozen=True)
class InputsConfig:
    villages: Path = _f(Path("villages.geojson"), "Village polygons (GeoPackage, GeoJSON or Shapefile) with village_id, name, households and one column per reporting level.", "DESIGN.md §2")
    communes: dict = _f(
        {},
        "Commune layers by reporting level, e.g. {commune = 'communes_2019.geojson', commune_2025 = 'communes_2025.geojson'}. "
        "Each key is also the village column naming the unit a village belongs to.",
        "DESIGN.md §3.6: the roll-up levels are data, not code",
    )
    fibre: Path = _f(Path("fibre_routes.geojson"), "Fibre routes (LineString) with optional operator, status (existing/planned), year.", "DESIGN.md §2")
    measurements: list = _f(["measurements"], "Measurement CSV files or folders of them (*.csv, *.txt, *.tsv, *.csv.gz).", "DESIGN.md §2")
    roads: Path | None = _f(None, "Optional road centre lines (any line layer, e.g. an OpenStreetMap export) for the plans: fibre spurs follow them and the measurement drive runs on them; unset means spurs are straight and no drive is planned.", "issue 13: plans")
    population: Path | None = _f(None, "Optional population raster (GeoTIFF) used to weight households within a village; unset means households are spread evenly over the village area.", "DESIGN.md §3.5")
    village_point_radius_m: float = _f(300.0, "Radius of the disc that stands for a village given as a point.", "about the extent of a Quảng Ngãi lowland hamlet", gt=0)
    columns: ColumnMapping = _f(ColumnMapping(), "Column mapping for measurement files of an unknown format ([inputs.columns]).", "DESIGN.md §2")
    default_technology: str = _f("4G", "Technology assumed for rows of files that do not say (a generic lat,lon,rsrp file holds RSRP, hence 4G).", "RSRP is an LTE/NR quantity",
                                 choices=("2G", "3G", "4G", "5G"))
    default_operator: str = _f("unknown", "Operator assumed for rows of files that do not say.", "user")
    village_columns: dict = _f(
        {},
        "Column names of the village layer ([inputs.village_columns]), canonical = 'column in your file': "
        "village_id, name, households, population, fibre_subscribed and one key per reporting level (a key of [inputs] communes). "
        "Fields not named are recognised by their usual names (e.g. ma_thon, ten_thon, so_ho, dan_so).",
        "issue 10: real layers without editing files",
        check=_check_names_table, valid="a table of field = 'column name' (fields: village_id, name, households, population, fibre_subscribed, a level key)",
        table="names")
    commune_columns: dict = _f(
        {},
        "Column names of the commune layers ([inputs.commune_columns]): commune_id, name, centre_lon, centre_lat = 'column'. "
        "Applies to every commune layer; a sub-table named after a level ([inputs.commune_columns.commune_2025]) applies to that layer only.",
        "issue 10: real layers without editing files",
        check=_check_commune_columns, valid="a table of field = 'column name', or level = { field = 'column name' }",
        table="names")
    fibre_columns: FibreColumns = _f(FibreColumns(), "Column names of the fibre layer ([inputs.fibre_columns]).", "issue 10")
    fibre_status: dict = _f(
        {},
        "Fibre status values of your file and what they mean ([inputs.fibre_status]), e.g. \"đang khai thác\" = \"existing\". "
        "Matched without regard to case, accents kept. Built in: existing/built/active/operational → existing; "
        "planned/plan/proposed/underConstruction → planned; decommissioned/inactive/abandoned → dropped "
        "(left out of the analysis and counted in the log); empty → existing.",
        "Open Fibre Data Standard spanStatus codelist (0.x)",
        check=_check_fibre_status, valid="a table of 'value' = 'existing', 'planned' or 'dropped'",
        table="names")
    persons_per_household: float = _f(
        3.4,
        "Persons per household used to derive households from population when the village layer has population but no households.",
        "2019 census, Tư Nghĩa district: 128,661 persons / 37,892 households = 3.40 (../shared/data/tu-nghia/households_2019.csv, all 15 units)",
        gt=0, le=20)
    persons_per_household_table: Path | None = _f(
        None,
        "Optional CSV of persons per household per unit: a column named after a reporting level (e.g. commune) and either "
        "persons_per_household or households and population columns (e.g. households_2019, population_2019, as in the census table). "
        "Villages whose unit is not in the table use persons_per_household.",
        "issue 10: census tables per commune")
    context: list = _f(
        [],
        "Optional context layers drawn under the results on the maps, offline: an array of tables "
        "{ path = 'roads.geojson', kind = 'roads', label = 'name' }. kind is roads or rivers (lines; rivers may be areas) "
        "or places (points); label names the column whose text is shown (road name on hover, place name beside its dot). "
        "Clipped to the study area and simplified; not used by the analysis.",
        "issue 10: results in the tools people already use",
        valid="an array of { path = 'file', kind = 'roads', 'rivers' or 'places', label = 'column' (optional) }",
        table="context")


@dataclass(frozen=True)
class GridConfig:
    cell_size_m: float = _f(100.0, "Side of the square analysis cells in metres.", "DESIGN.md §3.2 (Ofcom uses 50 m; 100 m keeps about 5 drive-test samples per cell at 20–30 m spacing)", ge=5, le=5000)


@dataclass(frozen=True)
class SignalConfig:
    covered_dbm: float = _f(-105.0, "A cell is 'covered' when its median 4G RSRP is at or above this level.", "Ofcom's 4G outdoor threshold (DESIGN.md §3.3)", ge=-140, le=-44)
    dead_dbm: float = _f(-115.0, "4G is usable when its median RSRP is at or above this level: between it and covered_dbm a cell is 'weak 4G'; below it the cell is 'no 4G' (when 2G/3G is usable) or 'no service'.", "operator field classes (DESIGN.md §3.3)", ge=-140, le=-44)
    usable_3g_dbm: float = _f(-100.0, "3G is usable when the median RSCP of a cell's 3G samples is at or above this level (then a cell without usable 4G is 'no 4G', not 'no service').", "Ofcom's 3G outdoor threshold (DESIGN.md §3.3)", ge=-120, le=-25)
    usable_2g_dbm: float = _f(-100.0, "2G is usable when the median RxLev/RSSI of a cell's 2G samples is at or above this level.", "a common drive-test floor for GSM voice (DESIGN.md §3.3)", ge=-115, le=-40)
    min_samples: int = _f(5, "Fewer samples than this in a cell (per operator) is 'insufficient evidence'.", "FCC mobile challenge evidence rules (DESIGN.md §3.3)", ge=1)
    min_time_spread_hours: float = _f(0.0, "If above 0, a cell also needs its first and last sample at least this many hours apart (FCC uses 4 h).", "FCC mobile challenge; off by default", ge=0)
    availability_share: float = _f(0.95, "Share of samples at or above covered_dbm that counts as available (reported per village and zone).", "QCVN 81:2019/BTTTT, availability ≥ 95%", gt=0, le=1)


@dataclass(frozen=True)
class DeadZoneConfig:
    min_area_km2: float = _f(0.05, "Dead zones smaller than this are dropped.", "DESIGN.md §3.4 (the FCC's 1 km² is too coarse for a village)", ge=0)
    connectivity: int = _f(8, "Cells joined into one zone by shared edges (4) or also by corners (8).", "covgap: drive-test evidence comes as strips along roads, and a diagonal road's cells touch only at corners; with 4 one dead stretch falls apart into pieces below min_area_km2", choices=(4, 8))


@dataclass(frozen=True)
class VillageConfig:
    min_covered_share: float = _f(0.95, "A village with enough evidence 'meets' the 4G target when at least this share of its households in measured cells live in covered cells.", "QCVN 81:2019/BTTTT availability ≥ 95%", ge=0, le=1)


@dataclass(frozen=True)
class EvidenceConfig:
    village_min_share: float = _f(0.5, "A village gets a 4G verdict only when at least this share of its households live in measured cells (cells with enough samples); else 'insufficient evidence'. Above 0: with 0 a village without any measurement would get a verdict.", "DESIGN.md §3.7: half the people the verdict is about", gt=0, le=1)
    area_min_share: float = _f(0.8, "'No dead zones' is met for a commune or the district only when at least this share of its households live in measured cells and no dead zone is found; else 'insufficient evidence'.", "DESIGN.md §3.7: absence of evidence is not evidence of absence", gt=0, le=1)


@dataclass(frozen=True)
class FibreConfig:
    drop_distance_m: float = _f(200.0, "A household is passed by fibre when within this distance of an existing route.", "typical FTTH drop cable length (DESIGN.md §3.5)", gt=0)
    goal_share: float = _f(0.80, "Households passed / households must exceed this share.", "district target: fibre to more than 80% of households", ge=0, le=1)
    centre_reach_m: float = _f(200.0, "A commune centre is reached when within this distance of an existing route.", "same as the drop distance", ge=0)
    display_margin_m: float = _f(2000.0, "Fibre routes are clipped to the study area grown by this margin for the maps and the GeoPackage; "
                                 "distances to fibre, spur lengths and centre reach still use the whole network.",
                                 "a national backbone would otherwise fill the maps; 2 km keeps the routes a spur from the district edge would use in view", ge=0)
    spur_cost_vnd_per_m: float = _f(50000.0, "Cost of one metre of new spur cable (VND), used by the fibre plan.",
                                    "an assumption, not a published price: about USD 2 per metre for aerial single-mode cable "
                                    "strung on existing poles, cable and labour; put your operator's price here", gt=0)


@dataclass(frozen=True)
class PlansConfig:
    road_snap_m: float = _f(100.0, "A fibre spur along roads may join the road network only at road points within this distance of an existing route (the cable from the route to the road is counted).", "covgap: routes run along roads; half a 200 m drop", gt=0)
    drive_km_per_day: float = _f(120.0, "Driving budget of one measurement day (km); the drive is split into days of at most this length.", "an assumption: about 6 h of driving at 20 km/h on village roads", gt=0)
    start: str = _f("", "Start (and end) of every measurement day as 'lon,lat' in WGS84; empty means the first commune centre of the report level.", "issue 13: default the first commune centre",
                    check=_check_lonlat, valid="empty, or 'lon,lat' in WGS84 degrees, e.g. '108.78,15.09'")


@dataclass(frozen=True)
class ReportConfig:
    level: str = _f("commune", "Reporting level for the scorecards and commune maps: a key of [inputs.communes].", "DESIGN.md §3.6")


@dataclass(frozen=True)
class OutputConfig:
    dir: Path = _f(Path("out"), "Folder for the GeoPackage, CSV scorecards, GeoTIFFs and partner packages.", "user")
    maps_dir: Path = _f(Path("maps"), "Folder for the HTML maps.", "user")
    lang: str = _f("vi", "Language of the maps: 'vi' (Vietnamese) or 'en' (English).", "planners read Vietnamese first", choices=("vi", "en"))
    map_assets: str = _f("auto", "How map pages get Leaflet, covgap's script and style and the data all pages share: 'inline' (each page self-contained), 'shared' (loaded from the maps folder's assets/, relative to the page: works offline; copy the folder whole), or 'auto' (inline up to 12 pages, shared above).",
                         "issue 11: a province's 97 self-contained pages would carry Leaflet and the commune outlines 97 times", choices=("auto", "inline", "shared"))
    export_crs: str = _f("EPSG:4326", "CRS of the partner packages: EPSG:4326 (WGS84) or VN-2000 (EPSG:5898, EPSG:3405, EPSG:3406).", "QGIS and ArcGIS open WGS84 everywhere",
                          choices=("EPSG:4326", *VN2000_CRS))


def _check_scheduler(value: str) -> str | None:
    if value == "" or "://" in value:
        return None
    return "not a scheduler address"


@dataclass(frozen=True)
class EngineConfig:
    """How measurement files are read: on this machine (worker processes) or on a Dask cluster (docs/scale.md)."""

    name: str = _f("local", "Reading engine: 'local' (this machine's cores, in worker processes for large files) or 'dask' (blocks read as tasks on Dask workers, one machine or a cluster; needs pip install 'covgap[dask]'). The command-line option --engine overrides it.", "issue 11: the local engine needs nothing more and starts in no time",
                   choices=("local", "dask"))
    scheduler: str = _f("", "Address of a running Dask scheduler, e.g. 'tcp://10.0.0.5:8786' (dask-jobqueue, Kubernetes or `dask scheduler`); empty means start a LocalCluster on this machine. The measurement files must be readable by the workers at the same paths.", "issue 11",
                        check=_check_scheduler, valid="empty, or an address such as 'tcp://host:8786'")
    workers: int = _f(0, "Worker processes on this machine: of the local engine, or of the LocalCluster of the dask engine (one thread each); 0 means the cores available (at most 8). Ignored with a scheduler address. With 1, the whole run stays in one process: the analysis and the partner packages are not forked to a second core either.", "one process per core: reading is CPU-bound",
                      ge=0, le=1024)
    connect_timeout_s: float = _f(10.0, "Seconds to wait for the Dask scheduler (or for the LocalCluster to start) before giving up with an error.", "distributed's default connect timeout", gt=0, le=3600)


@dataclass(frozen=True)
class Config:
    """The whole configuration. Build it with :func:`load_config`."""

    study: StudyConfig = field(default_factory=StudyConfig)
    inputs: InputsConfig = field(default_factory=InputsConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    signal: SignalConfig = field(default_factory=SignalConfig)
    dead_zones: DeadZoneConfig = field(default_factory=DeadZoneConfig)
    villages: VillageConfig = field(default_factory=VillageConfig)
    evidence: EvidenceConfig = field(default_factory=EvidenceConfig)
    fibre: FibreConfig = field(default_factory=FibreConfig)
    plans: PlansConfig = field(default_factory=PlansConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    source: Path | None = None

    def replace_output(self, *, dir: Path | None = None, maps_dir: Path | None = None, lang: str | None = None) -> Config:
        """A copy with other output folders or language (the CLI's --out, --maps, --lang)."""
        out = self.output
        out = dataclasses.replace(
            out,
            dir=Path(dir) if dir is not None else out.dir,
            maps_dir=Path(maps_dir) if maps_dir is not None else out.maps_dir,
            lang=lang or out.lang,
        )
        problems: list[str] = []
        _check_output(out, problems)
        if problems:
            raise ConfigError("; ".join(problems))
        return dataclasses.replace(self, output=out)

    def replace_engine(self, name: str | None = None) -> Config:
        """A copy with another reading engine (the CLI's --engine)."""
        if name is None:
            return self
        engine = dataclasses.replace(self.engine, name=name)
        problems: list[str] = []
        for f in dataclasses.fields(EngineConfig):
            _check_field("engine", f, getattr(engine, f.name), problems)
        if problems:
            raise ConfigError("; ".join(problems))
        return dataclasses.replace(self, engine=engine)


_SECTIONS = {
    "study": StudyConfig,
    "inputs": InputsConfig,
    "grid": GridConfig,
    "signal": SignalConfig,
    "dead_zones": DeadZoneConfig,
    "villages": VillageConfig,
    "evidence": EvidenceConfig,
    "fibre": FibreConfig,
    "plans": PlansConfig,
    "report": ReportConfig,
    "output": OutputConfig,
    "engine": EngineConfig,
}


_SUBSECTIONS = {"inputs.columns": ColumnMapping, "inputs.fibre_columns": FibreColumns}


def load_config(path: str | Path) -> Config:
    """Read ``covgap.toml`` into an immutable :class:`Config`.

    Raises
    ------
    ConfigError
        The file is missing or not TOML, or holds unknown keys or bad values;
        every problem is listed in one message.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found (give --config PATH to a covgap.toml)")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    return config_from_dict(raw, path)


def config_from_dict(raw: dict, path: Path) -> Config:
    """Build a :class:`Config` from parsed TOML; relative paths are taken from ``path``'s folder."""
    base = path.resolve().parent
    problems: list[str] = []
    unknown = sorted(set(raw) - set(_SECTIONS))
    for key in unknown:
        problems.append(f"unknown section [{key}]{_did_you_mean(key, None)} (known: {', '.join(_SECTIONS)})")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        values = raw.get(name, {})
        if not isinstance(values, dict):
            keys = ", ".join(f.name for f in dataclasses.fields(cls))
            problems.append(f"{name} = {values!r}: expected a table [{name}] (with keys {keys}), found {_toml_kind(values)}; "
                            f"write [{name}] on a line of its own and its keys below it")
            sections[name] = cls()
            continue
        sections[name] = _build_section(name, cls, values, base, problems)
    _check_values(sections, problems, path)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return Config(**sections, source=path.resolve())


def _toml_kind(value: Any) -> str:
    """What a TOML value is, in the words of the TOML spec."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date or time"


def _did_you_mean(key: str, section: str | None) -> str:
    """`` (did you mean 'x'?)`` for a misspelt key, or `` (did you mean [fibre] x?)`` for one in the wrong section."""
    if section is None:
        close = difflib.get_close_matches(key, list(_SECTIONS), n=1)
        return f" (did you mean [{close[0]}]?)" if close else ""
    if key in _SECTIONS:
        return f" ([{key}] is a section: write [{key}] on a line of its own, before or after [{section}], and its keys below it)"
    cls = _SUBSECTIONS.get(section) or _SECTIONS[section]
    close = difflib.get_close_matches(key, [f.name for f in dataclasses.fields(cls)], n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    for other, other_cls in _SECTIONS.items():
        if key in {f.name for f in dataclasses.fields(other_cls)}:
            return f" (did you mean [{other}] {key}?)"
    return ""


def _build_section(name: str, cls: type, values: dict, base: Path, problems: list[str]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            problems.append(f"unknown key '{key}' in [{name}]{_did_you_mean(key, name)} (known: {', '.join(fields)})")
            continue
        f = fields[key]
        default = _default(f)
        try:
            if f.metadata.get("table") == "names":
                kwargs[key] = _coerce_names(value, name, key)
            elif f.metadata.get("table") == "context":
                kwargs[key] = _coerce_context(value, base, f"[{name}] {key}", problems)
                continue
            else:
                kwargs[key] = _coerce(value, default, str(f.type), base, name, key, problems)
        except (TypeError, ValueError) as err:
            problems.append(f"[{name}] {key} = {value!r}: {err}, found {_toml_kind(value)}")
            continue
        _check_field(name, f, kwargs[key], problems)
    try:
        return cls(**kwargs)
    except TypeError as err:  # pragma: no cover - guarded by the key check above
        problems.append(f"[{name}]: {err}")
        return cls()


_TYPE_WORDS = {
    "str": "a string",
    "Path": "a path",
    "Path | None": "a path, or unset",
    "list": "a path or an array of paths",
    "dict": "a table of level = 'path'",
    "ColumnMapping": "a table of column names",
    "FibreColumns": "a table of column names",
}


def valid_values(f: dataclasses.Field) -> str:
    """The valid values of a field in words (``a number from 0 to 1``, ``4 or 8``), or ``""`` if any value goes."""
    meta = f.metadata
    if "choices" in meta:
        *first, last = [repr(c) if isinstance(c, str) else str(c) for c in meta["choices"]]
        return f"{', '.join(first)} or {last}" if first else last
    if "valid" in meta:
        return meta["valid"]
    if "bounds" not in meta:
        return _TYPE_WORDS.get(str(f.type), "")
    b = meta["bounds"]
    kind = "a whole number" if "int" in str(f.type) else "a finite number"
    low = f"≥ {b['ge']:g}" if "ge" in b else f"> {b['gt']:g}" if "gt" in b else ""
    high = f"≤ {b['le']:g}" if "le" in b else f"< {b['lt']:g}" if "lt" in b else ""
    if "ge" in b and "le" in b:
        return f"{kind} from {b['ge']:g} to {b['le']:g}"
    return f"{kind} {' and '.join(x for x in (low, high) if x)}"


def _check_field(section: str, f: dataclasses.Field, value: Any, problems: list[str]) -> None:
    """Check one value against its field's bounds, choices or check; a problem names key, value and valid range."""
    meta = f.metadata
    wrong: str | None = None
    if isinstance(value, float) and not math.isfinite(value):
        wrong = "not a finite number"
    elif "bounds" in meta:
        b = meta["bounds"]
        if not (value >= b.get("ge", -math.inf) and value > b.get("gt", -math.inf)
                and value <= b.get("le", math.inf) and value < b.get("lt", math.inf)):
            wrong = "out of range"
    if "choices" in meta and value not in meta["choices"]:
        wrong = "not a valid choice"
    if wrong is None and "check" in meta:
        wrong = meta["check"](value)
    if wrong is not None:
        shown = repr(value) if not isinstance(value, float) else f"{value:g}"
        expected = valid_values(f)
        problems.append(f"[{section}] {f.name} = {shown} is {wrong}: expected {expected}")


def _default(f: dataclasses.Field) -> Any:
    """A field's default value, from ``default`` or ``default_factory``."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"configuration field {f.name} has no default")  # every field has one (a test checks)


def _coerce_names(value: Any, section: str, key: str) -> dict:
    """A table of names (columns or values), kept as given: no paths are made of them."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a table [{section}.{key}]")
    return dict(value)


def _coerce_context(value: Any, base: Path, where: str, problems: list[str]) -> list[ContextLayer]:
    """``[inputs] context``: an array of { path, kind, label } tables; every problem listed, with the entry's number."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        problems.append(f"{where} = {value!r}: expected an array of tables like {{ path = 'roads.geojson', kind = 'roads', "
                        f"label = 'name' }}, found {_toml_kind(value)}")
        return []
    out = []
    for i, entry in enumerate(value, start=1):
        at = f"{where} entry {i}"
        if not isinstance(entry, dict):
            problems.append(f"{at} = {entry!r}: expected a table {{ path = '...', kind = 'roads' }}, found {_toml_kind(entry)}")
            continue
        unknown = sorted(set(entry) - {"path", "kind", "label"})
        wrong = [f"unknown key '{k}' (known: path, kind, label)" for k in unknown]
        path, kind, label = entry.get("path"), entry.get("kind"), entry.get("label")
        if not isinstance(path, str) or not path:
            wrong.append("path must be a path string, e.g. path = 'roads.geojson'")
        if kind not in CONTEXT_KINDS:
            wrong.append(f"kind = {kind!r} is not one of {', '.join(CONTEXT_KINDS)}")
        if label is not None and (not isinstance(label, str) or not label):
            wrong.append(f"label = {label!r} must be a column name (a non-empty string)")
        if wrong:
            problems.append(f"{at}: " + "; ".join(wrong))
            continue
        out.append(ContextLayer(path=base / str(path), kind=str(kind), label=label))
    return out


def _coerce(value: Any, default: Any, type_name: str, base: Path, section: str, key: str, problems: list[str]) -> Any:
    if dataclasses.is_dataclass(default):
        if not isinstance(value, dict):
            raise TypeError(f"expected a table [{section}.{key}] of column names")
        return _build_section(f"{section}.{key}", type(default), value, base, problems)
    if "Path" in str(type_name):
        if not isinstance(value, str):
            raise TypeError("must be a path string")
        return (base / value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TypeError("must be true or false")
        return value
    if isinstance(default, int) and not isinstance(default, bool) and "float" not in str(type_name):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("must be a whole number")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("must be a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise TypeError("must be a string")
        return value
    if isinstance(default, list):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError("must be a list of path strings")
        return [base / v for v in value]
    if isinstance(default, dict):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise TypeError("must be a table of level = 'path'")
        return {k: base / v for k, v in value.items()}
    return value  # pragma: no cover


def _check_values(s: dict[str, Any], problems: list[str], path: Path) -> None:
    """What one field's range cannot say: how fields relate to each other."""
    sig: SignalConfig = s["signal"]
    if sig.dead_dbm > sig.covered_dbm:
        problems.append(
            f"[signal] dead_dbm = {sig.dead_dbm:g} is above covered_dbm = {sig.covered_dbm:g}: expected dead_dbm ≤ covered_dbm "
            f"(a dead cell is weaker than a covered one)"
        )
    inputs: InputsConfig = s["inputs"]
    cols = inputs.columns
    named = [k for k in ("lat", "lon", "signal_dbm") if getattr(cols, k)]
    if named and len(named) < 3:
        missing = [k for k in ("lat", "lon", "signal_dbm") if k not in named]
        problems.append(f"[inputs.columns] sets {', '.join(named)} but not {', '.join(missing)}: "
                        f"a column mapping needs lat, lon and signal_dbm")
    known = (*VILLAGE_FIELDS, *inputs.communes)
    for key in inputs.village_columns:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            problems.append(f"[inputs.village_columns] has unknown key '{key}'{f' (did you mean {close[0]!r}?)' if close else ''}: "
                            f"expected {', '.join(VILLAGE_FIELDS)} or a level key of [inputs] communes ({', '.join(inputs.communes)})")
    for key, value in inputs.commune_columns.items():
        if isinstance(value, dict) and key not in inputs.communes:
            problems.append(f"[inputs.commune_columns.{key}] names a level that is not a key of [inputs] communes "
                            f"({', '.join(inputs.communes)})")
    if not inputs.communes:
        problems.append("[inputs] communes must name at least one commune layer, e.g. communes = { commune = 'communes.geojson' }")
    elif s["report"].level not in inputs.communes:
        problems.append(
            f"[report] level = '{s['report'].level}' is not a key of [inputs] communes "
            f"(choose one of: {', '.join(inputs.communes)})"
        )


def _check_output(out: OutputConfig, problems: list[str]) -> None:
    for f in dataclasses.fields(OutputConfig):
        _check_field("output", f, getattr(out, f.name), problems)


def describe_config() -> str:
    """Markdown reference of every configuration field: default, valid values, meaning, source."""
    lines = [
        "# covgap.toml reference",
        "",
        "Generated from `coverage/covgap/config.py` (`covgap config-doc`). Paths are relative to the file's folder.",
        "Every value is checked when the file is read: a number must be finite and within its valid values;",
        "covgap stops with one line naming the file, the key, the value found and what is expected.",
        "",
    ]
    header = ["| key | default | valid values | meaning | source of the default |", "|---|---|---|---|---|"]
    for name, cls in [*_SECTIONS.items(), *_SUBSECTIONS.items()]:
        lines += [f"## [{name}]", "", *header]
        for f in dataclasses.fields(cls):
            default = _default(f)
            if dataclasses.is_dataclass(default):
                default = f"(see [{name}.{f.name}])"
            lines.append(f"| `{f.name}` | `{default!s}` | {valid_values(f)} | {f.metadata['doc']} | {f.metadata['source']} |")
        lines.append("")
    lines.append("Across keys: `dead_dbm` ≤ `covered_dbm`; `[report] level` is a key of `[inputs] communes`; "
                 "`[inputs.columns]` sets `lat`, `lon` and `signal_dbm` together or none of them.")
    return "\n".join(lines) + "\n"
