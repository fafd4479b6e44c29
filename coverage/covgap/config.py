"""The one configuration object, loaded from ``covgap.toml``.

Every field below carries its default, what it means and where the default comes
from (``doc`` and ``source`` in the field metadata); ``docs/configuration.md`` is
generated from them by :func:`describe_config`. The object is immutable and is
passed explicitly: nothing is read from the environment.

Paths in the file are relative to the folder that holds the file.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covgap.errors import ConfigError

VN2000_CRS = ("EPSG:5898", "EPSG:3405", "EPSG:3406")


def _f(default: Any, doc: str, source: str, **kwargs: Any) -> Any:
    """A dataclass field with its documentation attached."""
    meta = {"doc": doc, "source": source}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kwargs)
    return field(default=default, metadata=meta, **kwargs)


@dataclass(frozen=True)
class StudyConfig:
    name: str = _f("study area", "Name shown in maps, scorecards and partner packages.", "user")
    crs: str = _f(
        "auto",
        "Metric working CRS: 'auto' (UTM zone of the study area, geopandas estimate_utm_crs) "
        "or an EPSG code such as EPSG:5898 (VN-2000, 108° meridian), EPSG:3405/3406 (VN-2000 UTM 48N/49N).",
        "DESIGN.md §3.1: never measure in degrees",
    )
    timezone: str = _f(
        "Asia/Ho_Chi_Minh",
        "Time zone of measurement timestamps that carry no UTC offset (G-NetTrack logs local time).",
        "Vietnam uses UTC+07:00 all year",
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
    separator: str = _f("", "Field separator; empty means detect (comma, semicolon or tab).", "user")

    @property
    def is_set(self) -> bool:
        return bool(self.lat and self.lon and self.signal_dbm)


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
    population: Path | None = _f(None, "Optional population raster (GeoTIFF) used to weight households within a village; unset means households are spread evenly over the village area.", "DESIGN.md §3.5")
    village_point_radius_m: float = _f(300.0, "Radius of the disc that stands for a village given as a point.", "about the extent of a Quảng Ngãi lowland hamlet")
    columns: ColumnMapping = _f(ColumnMapping(), "Column mapping for measurement files of an unknown format ([inputs.columns]).", "DESIGN.md §2")
    default_technology: str = _f("4G", "Technology assumed for rows of files that do not say (a generic lat,lon,rsrp file holds RSRP, hence 4G).", "RSRP is an LTE/NR quantity")
    default_operator: str = _f("unknown", "Operator assumed for rows of files that do not say.", "user")


@dataclass(frozen=True)
class GridConfig:
    cell_size_m: float = _f(100.0, "Side of the square analysis cells in metres.", "DESIGN.md §3.2 (Ofcom uses 50 m; 100 m keeps about 5 drive-test samples per cell at 20–30 m spacing)")


@dataclass(frozen=True)
class SignalConfig:
    covered_dbm: float = _f(-105.0, "A cell is 'covered' when its median 4G RSRP is at or above this level.", "Ofcom's 4G outdoor threshold (DESIGN.md §3.3)")
    dead_dbm: float = _f(-115.0, "4G is usable when its median RSRP is at or above this level: between it and covered_dbm a cell is 'weak 4G'; below it the cell is 'no 4G' (when 2G/3G is usable) or 'no service'.", "operator field classes (DESIGN.md §3.3)")
    usable_3g_dbm: float = _f(-100.0, "3G is usable when the median RSCP of a cell's 3G samples is at or above this level (then a cell without usable 4G is 'no 4G', not 'no service').", "Ofcom's 3G outdoor threshold (DESIGN.md §3.3)")
    usable_2g_dbm: float = _f(-100.0, "2G is usable when the median RxLev/RSSI of a cell's 2G samples is at or above this level.", "a common drive-test floor for GSM voice (DESIGN.md §3.3)")
    min_samples: int = _f(5, "Fewer samples than this in a cell (per operator) is 'insufficient evidence'.", "FCC mobile challenge evidence rules (DESIGN.md §3.3)")
    min_time_spread_hours: float = _f(0.0, "If above 0, a cell also needs its first and last sample at least this many hours apart (FCC uses 4 h).", "FCC mobile challenge; off by default")
    availability_share: float = _f(0.95, "Share of samples at or above covered_dbm that counts as available (reported per village and zone).", "QCVN 81:2019/BTTTT, availability ≥ 95%")


@dataclass(frozen=True)
class DeadZoneConfig:
    min_area_km2: float = _f(0.05, "Dead zones smaller than this are dropped.", "DESIGN.md §3.4 (the FCC's 1 km² is too coarse for a village)")
    connectivity: int = _f(8, "Cells joined into one zone by shared edges (4) or also by corners (8).", "covgap: drive-test evidence comes as strips along roads, and a diagonal road's cells touch only at corners; with 4 one dead stretch falls apart into pieces below min_area_km2")


@dataclass(frozen=True)
class VillageConfig:
    min_covered_share: float = _f(0.95, "A village with enough evidence 'meets' the 4G target when at least this share of its households in measured cells live in covered cells.", "QCVN 81:2019/BTTTT availability ≥ 95%")


@dataclass(frozen=True)
class EvidenceConfig:
    village_min_share: float = _f(0.5, "A village gets a 4G verdict only when at least this share of its households live in measured cells (cells with enough samples); else 'insufficient evidence'.", "DESIGN.md §3.7: half the people the verdict is about")
    area_min_share: float = _f(0.8, "'No dead zones' is met for a commune or the district only when at least this share of its households live in measured cells and no dead zone is found; else 'insufficient evidence'.", "DESIGN.md §3.7: absence of evidence is not evidence of absence")


@dataclass(frozen=True)
class FibreConfig:
    drop_distance_m: float = _f(200.0, "A household is passed by fibre when within this distance of an existing route.", "typical FTTH drop cable length (DESIGN.md §3.5)")
    goal_share: float = _f(0.80, "Households passed / households must exceed this share.", "district target: fibre to more than 80% of households")
    centre_reach_m: float = _f(200.0, "A commune centre is reached when within this distance of an existing route.", "same as the drop distance")


@dataclass(frozen=True)
class ReportConfig:
    level: str = _f("commune", "Reporting level for the scorecards and commune maps: a key of [inputs.communes].", "DESIGN.md §3.6")


@dataclass(frozen=True)
class OutputConfig:
    dir: Path = _f(Path("out"), "Folder for the GeoPackage, CSV scorecards, GeoTIFFs and partner packages.", "user")
    maps_dir: Path = _f(Path("maps"), "Folder for the HTML maps.", "user")
    lang: str = _f("vi", "Language of the maps: 'vi' (Vietnamese) or 'en' (English).", "planners read Vietnamese first")
    export_crs: str = _f("EPSG:4326", "CRS of the partner packages: EPSG:4326 (WGS84) or VN-2000 (EPSG:5898, EPSG:3405, EPSG:3406).", "QGIS and ArcGIS open WGS84 everywhere")


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
    report: ReportConfig = field(default_factory=ReportConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    source: Path | None = None

    def replace_output(self, *, dir: Path | None = None, maps_dir: Path | None = None, lang: str | None = None) -> "Config":
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


_SECTIONS = {
    "study": StudyConfig,
    "inputs": InputsConfig,
    "grid": GridConfig,
    "signal": SignalConfig,
    "dead_zones": DeadZoneConfig,
    "villages": VillageConfig,
    "evidence": EvidenceConfig,
    "fibre": FibreConfig,
    "report": ReportConfig,
    "output": OutputConfig,
}


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
        problems.append(f"unknown section [{key}] (known: {', '.join(_SECTIONS)})")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        values = raw.get(name, {})
        if not isinstance(values, dict):
            problems.append(f"[{name}] must be a table")
            continue
        sections[name] = _build_section(name, cls, values, base, problems)
    _check_values(sections, problems, path)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return Config(**sections, source=path.resolve())


def _build_section(name: str, cls: type, values: dict, base: Path, problems: list[str]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            problems.append(f"unknown key '{key}' in [{name}] (known: {', '.join(fields)})")
            continue
        f = fields[key]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        try:
            kwargs[key] = _coerce(value, default, f.type, base, name, key, problems)
        except (TypeError, ValueError) as err:
            problems.append(f"[{name}] {key} = {value!r}: {err}")
    try:
        return cls(**kwargs)
    except TypeError as err:  # pragma: no cover - guarded by the key check above
        problems.append(f"[{name}]: {err}")
        return cls()


def _coerce(value: Any, default: Any, type_name: str, base: Path, section: str, key: str, problems: list[str]) -> Any:
    if isinstance(default, ColumnMapping):
        if not isinstance(value, dict):
            raise TypeError("must be a table of column names")
        return _build_section(f"{section}.{key}", ColumnMapping, value, base, problems)
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
    sig: SignalConfig = s["signal"]
    if not -140 <= sig.dead_dbm <= sig.covered_dbm <= -44:
        problems.append(
            f"[signal] needs -140 <= dead_dbm <= covered_dbm <= -44, found dead_dbm={sig.dead_dbm}, covered_dbm={sig.covered_dbm}"
        )
    if sig.min_samples < 1:
        problems.append(f"[signal] min_samples must be at least 1, found {sig.min_samples}")
    if not 0 < sig.availability_share <= 1:
        problems.append(f"[signal] availability_share must be in (0, 1], found {sig.availability_share}")
    if not 5 <= s["grid"].cell_size_m <= 5000:
        problems.append(f"[grid] cell_size_m must be between 5 and 5000 metres, found {s['grid'].cell_size_m}")
    if s["dead_zones"].connectivity not in (4, 8):
        problems.append(f"[dead_zones] connectivity must be 4 or 8, found {s['dead_zones'].connectivity}")
    if s["dead_zones"].min_area_km2 < 0:
        problems.append("[dead_zones] min_area_km2 must not be negative")
    v: VillageConfig = s["villages"]
    if not 0 <= v.min_covered_share <= 1:
        problems.append(f"[villages] min_covered_share must be a share between 0 and 1, found {v.min_covered_share}")
    ev: EvidenceConfig = s["evidence"]
    for name in ("village_min_share", "area_min_share"):
        if not 0 < getattr(ev, name) <= 1:
            problems.append(f"[evidence] {name} must be a share in (0, 1], found {getattr(ev, name)}")
    for name in ("usable_3g_dbm", "usable_2g_dbm"):
        if not -140 <= getattr(sig, name) <= -25:
            problems.append(f"[signal] {name} must be between -140 and -25 dBm, found {getattr(sig, name)}")
    fib: FibreConfig = s["fibre"]
    if not 0 <= fib.goal_share <= 1:
        problems.append(f"[fibre] goal_share must be a share between 0 and 1, found {fib.goal_share}")
    if fib.drop_distance_m < 0 or fib.centre_reach_m < 0:
        problems.append("[fibre] distances must not be negative")
    inputs: InputsConfig = s["inputs"]
    if not inputs.communes:
        problems.append("[inputs] communes must name at least one commune layer, e.g. communes = { commune = 'communes.geojson' }")
    elif s["report"].level not in inputs.communes:
        problems.append(
            f"[report] level = '{s['report'].level}' is not a key of [inputs] communes "
            f"(choose one of: {', '.join(inputs.communes)})"
        )
    crs = s["study"].crs
    if crs != "auto":
        try:
            from pyproj import CRS

            parsed = CRS.from_user_input(crs)
            if not parsed.is_projected:
                problems.append(f"[study] crs = '{crs}' is not a projected (metric) CRS; use 'auto' or e.g. EPSG:5898")
        except Exception as err:  # pyproj raises CRSError, a plain Exception subclass
            problems.append(f"[study] crs = '{crs}' is not a CRS pyproj knows ({err})")
    _check_output(s["output"], problems)


def _check_output(out: OutputConfig, problems: list[str]) -> None:
    if out.lang not in ("vi", "en"):
        problems.append(f"[output] lang must be 'vi' or 'en', found '{out.lang}'")
    if out.export_crs not in ("EPSG:4326", *VN2000_CRS):
        problems.append(
            f"[output] export_crs must be EPSG:4326 or a VN-2000 CRS ({', '.join(VN2000_CRS)}), found '{out.export_crs}'"
        )


def describe_config() -> str:
    """Markdown reference of every configuration field: default, meaning, source."""
    lines = [
        "# covgap.toml reference",
        "",
        "Generated from `coverage/covgap/config.py` (`covgap config-doc`). Paths are relative to the file's folder.",
        "",
    ]
    for name, cls in _SECTIONS.items():
        lines += [f"## [{name}]", "", "| key | default | meaning | source of the default |", "|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if isinstance(default, ColumnMapping):
                default = "(see [inputs.columns])"
            lines.append(f"| `{f.name}` | `{default!s}` | {f.metadata['doc']} | {f.metadata['source']} |")
        lines.append("")
    lines += ["## [inputs.columns]", "", "| key | default | meaning | source of the default |", "|---|---|---|---|"]
    for f in dataclasses.fields(ColumnMapping):
        lines.append(f"| `{f.name}` | `{f.default!s}` | {f.metadata['doc']} | {f.metadata['source']} |")
    return "\n".join(lines) + "\n"
