"""``covgap init FOLDER``: recognise the layers and measurement files of a folder and write a covgap.toml.

:func:`inspect_folder` looks at every file and decides its role (villages, commune layers, fibre,
population raster, measurements) with the reason for each decision; :func:`render_config` writes
the commented covgap.toml; :func:`write_config` does both and never replaces an existing file.

How roles are decided (also in docs/configuration.md, "covgap init"):

- **villages**: the polygon or point layer with a households-like or population-like column
  (``households``, ``so_ho``, ``population``, ``dan_so``...) and at least one column whose values
  are the names of another polygon layer; among several, the one with the most features.
- **communes**: each polygon layer whose names a column of the villages holds (90 % of its
  values or more); that column's name is the level key (``commune``, ``commune_2025``).
- **report level**: the newest level, by the year in its key or file name (``communes_2025``
  over ``communes_2019``: communes merged on 1 July 2025 are the ones in force); without years,
  the level with the most units.
- **fibre**: the line layer that reads as fibre: an Open Fibre Data Standard spans file, or a
  name with fibre / fiber / cap / cable / ofds / span / ftth, or a status or operator column;
  layers named like roads, rivers or streets are not fibre.
- **population**: a GeoTIFF; among several, the one with the finest pixels (it places people
  within a village best).
- **persons per household** (villages with population only): a CSV in the folder that
  :func:`covgap.layers.read_persons_per_household_table` reads (a level column and persons per
  household, or households and population per unit); else the default 3.4.
- **measurements**: the CSV/TXT/TSV files (also compressed) whose header the measurement reader
  recognises (:func:`covgap.measurements.detect_format`); a folder is named when every file in it
  is recognised, else the files one by one.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np

from covgap import layers as layers_mod
from covgap.errors import CovgapError, InputError

log = logging.getLogger(__name__)

CONFIG_NAME = "covgap.toml"
RASTER_SUFFIXES = (".tif", ".tiff")
HOUSEHOLD_WORDS = ("households", "household", "hh", "so_ho", "n_households", "soho")
POPULATION_WORDS = ("population", "pop", "dan_so", "danso")
FIBRE_WORDS = ("fibre", "fiber", "cap_quang", "capquang", "cap", "cable", "ofds", "span", "ftth", "backbone")
NOT_FIBRE_WORDS = ("road", "duong", "street", "river", "song", "rail", "track")
SKIPPED_FOLDERS = ("out", "maps", "__pycache__")
#: Share of a village column's names that must be a commune layer's names for the column to be its level.
LINK_SHARE = 0.9


class InitError(CovgapError):
    """``covgap init`` could not decide the roles of the files, or would replace a file."""


@dataclass
class Layer:
    path: Path
    frame: gpd.GeoDataFrame
    kind: str  # polygons / points / lines / other

    @property
    def columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != "geometry"]


@dataclass
class InitPlan:
    """What :func:`inspect_folder` decided, each with its reason."""

    folder: Path
    villages: Path | None = None
    households_from: str = "households"  # or "population": households derived with persons_per_household
    village_columns: dict[str, str] = field(default_factory=dict)
    communes: dict[str, Path] = field(default_factory=dict)
    commune_columns: dict[str, dict[str, str]] = field(default_factory=dict)
    report_level: str | None = None
    fibre: Path | None = None
    roads: Path | None = None  # the road line layer the plans drive and lay spurs along (optional)
    population: Path | None = None
    persons_per_household_table: Path | None = None
    measurements: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why each role went to its file
    skipped: list[str] = field(default_factory=list)  # files used for nothing, and why
    undecided: list[str] = field(default_factory=list)  # roles not decided, and why

    @property
    def complete(self) -> bool:
        return not self.undecided


def _words(text: str) -> str:
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(ch for ch in text if not unicodedata.combining(ch)).replace("đ", "d")


def _has_word(text: str, words: tuple[str, ...]) -> bool:
    """Does a file or column name hold one of ``words`` (as a word or the start of one: "roads", "pop_2020")?"""
    parts = [p for p in re.split(r"[^a-z0-9]+", _words(text)) if p]
    joined = "_".join(parts)
    return any(p.startswith(w) for w in words for p in parts) or any("_" in w and w in joined for w in words)


def _kind(frame: gpd.GeoDataFrame) -> str:
    types = set(frame.geom_type.dropna())
    if types and types <= {"Polygon", "MultiPolygon"}:
        return "polygons"
    if types and types <= {"Point", "MultiPoint", "Polygon", "MultiPolygon"}:
        return "points"
    if types and types <= {"LineString", "MultiLineString"}:
        return "lines"
    return "other"


def _rel(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def _text_values(frame: gpd.GeoDataFrame, col: str) -> set[str]:
    values = frame[col].dropna()
    values = values[values.map(lambda v: isinstance(v, str))]
    return {layers_mod.lookalike_key(v.strip()) for v in values if v.strip()}


def _find_column(columns: list[str], canon: str, aliases: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in columns}
    for name in (canon, *aliases):
        if name in lower:
            return lower[name]
    return None


def _household_column(layer: Layer) -> tuple[str, str] | None:
    """('households' or 'population', column) of a layer, households first."""
    for canon, words in (("households", HOUSEHOLD_WORDS), ("population", POPULATION_WORDS)):
        exact = _find_column(layer.columns, canon, layers_mod.VILLAGE_ALIASES[canon])
        if exact:
            return canon, exact
        numeric = [c for c in layer.columns if _has_word(c, words)
                   and np.issubdtype(layer.frame[c].dtype, np.number)]
        if numeric:
            return canon, numeric[0]
    return None


def _year(text: str) -> int | None:
    years = [int(y) for y in re.findall(r"(?<!\d)((?:19|20)\d\d)(?!\d)", text)]
    return max(years) if years else None


def inspect_folder(folder: str | Path) -> InitPlan:
    """Decide the role of every layer and measurement file in ``folder`` (see the module docstring).

    Layers are looked for in the folder itself; measurement files in it and its subfolders
    (not in ``out``, ``maps`` or hidden folders).
    """
    from covgap import measurements as meas

    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise InitError(f"{folder}: not a folder; give the folder that holds your layers and measurement files")
    plan = InitPlan(folder=folder)
    vectors: list[Layer] = []
    rasters: list[Path] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        suffix = path.suffix.lower()
        if suffix in layers_mod.VECTOR_SUFFIXES:
            try:
                frame = layers_mod.read_vector(path, path.stem)
            except InputError as err:
                plan.skipped.append(f"{path.name}: not readable as a layer ({'; '.join(err.problems)})")
                continue
            vectors.append(Layer(path, frame, _kind(frame)))
        elif suffix in RASTER_SUFFIXES:
            rasters.append(path)
    _decide_villages_and_communes(plan, vectors)
    _decide_fibre(plan, [v for v in vectors if v.kind == "lines"])
    _decide_roads(plan, [v for v in vectors if v.kind == "lines" and v.path != plan.fibre])
    _decide_population(plan, rasters)
    _decide_measurements(plan, meas)
    _decide_persons_per_household(plan)
    used = {plan.villages, plan.fibre, plan.roads, plan.population, *plan.communes.values()}
    for layer in vectors:
        if layer.path not in used and not any(layer.path.name in s for s in plan.skipped):
            plan.skipped.append(f"{layer.path.name}: {len(layer.frame)} {layer.kind}, not villages, communes or fibre "
                                f"({'named like roads or rivers' if _has_word(layer.path.stem, NOT_FIBRE_WORDS) else 'no role found'})")
    for path in rasters:
        if path != plan.population:
            plan.skipped.append(f"{path.name}: another raster (the population raster is {plan.population.name if plan.population else 'none'})")
    return plan


def _decide_villages_and_communes(plan: InitPlan, vectors: list[Layer]) -> None:
    areal = [v for v in vectors if v.kind in ("polygons", "points")]
    polygons = [v for v in areal if v.kind == "polygons"]
    names = {}
    for layer in polygons:
        col = _find_column(layer.columns, "name", layers_mod.COMMUNE_ALIASES["name"]) or next(
            (c for c in layer.columns if _has_word(c, ("name", "ten")) and layer.frame[c].map(lambda v: isinstance(v, str)).all()
             and layer.frame[c].is_unique), None)
        if col:
            names[layer.path] = (col, _text_values(layer.frame, col))
    candidates = []
    for layer in areal:
        hh = _household_column(layer)
        if hh is None:
            continue
        links = {}
        for other in polygons:
            if other is layer or other.path not in names or len(other.frame) >= len(layer.frame):
                continue
            known = names[other.path][1]
            for col in layer.columns:
                values = layer.frame[col].dropna()
                texts = [layers_mod.lookalike_key(str(v).strip()) for v in values if isinstance(v, str) and str(v).strip()]
                if texts and known and sum(t in known for t in texts) >= LINK_SHARE * len(texts) and col not in links:
                    links[col] = other
                    break
        if links:
            candidates.append((len(layer.frame), layer, hh, links))
    if not candidates:
        plan.undecided.append("villages and communes: no polygon or point layer has a households or population column "
                              "and a column holding the names of another (commune) polygon layer; name them in "
                              "[inputs] villages and communes by hand")
        return
    candidates.sort(key=lambda c: -c[0])
    n, villages, (canon, hh_col), links = candidates[0]
    plan.villages = villages.path
    plan.households_from = canon
    plan.reasons.append(f"villages = {villages.path.name}: {n} {villages.kind} with {canon} in '{hh_col}' and the "
                        f"names of {', '.join(sorted(o.path.name for o in links.values()))}"
                        + (f" (also considered: {', '.join(c[1].path.name for c in candidates[1:])}, fewer features)"
                           if len(candidates) > 1 else ""))
    if hh_col != canon:
        plan.village_columns[canon] = hh_col
    for canon_col in ("village_id", "name"):
        if not _find_column(villages.columns, canon_col, layers_mod.VILLAGE_ALIASES[canon_col]):
            plan.undecided.append(f"villages: no {canon_col} column recognised in {villages.path.name} (columns: "
                                  f"{', '.join(villages.columns)}); set [inputs.village_columns] {canon_col} = 'COLUMN'")
    n_units: dict[str, int] = {}
    for col, other in links.items():
        level = re.sub(r"[^0-9A-Za-z_]+", "_", _words(col)).strip("_") or "commune"
        if level != col:
            plan.village_columns[level] = col
        plan.communes[level] = other.path
        n_units[level] = len(other.frame)
        name_col = names[other.path][0]
        if name_col.lower() != "name" and name_col.lower() not in layers_mod.COMMUNE_ALIASES["name"]:
            plan.commune_columns.setdefault(level, {})["name"] = name_col
        plan.reasons.append(f"communes.{level} = {other.path.name}: {len(other.frame)} polygons whose '{name_col}' "
                            f"holds the names in the villages' column '{col}'")
    dated = {lv: _year(lv) or _year(p.stem) for lv, p in plan.communes.items()}
    if any(dated.values()):
        plan.report_level = max(plan.communes, key=lambda lv: (dated[lv] or 0, n_units[lv]))
        plan.reasons.append(f"report level = {plan.report_level}: the newest of the commune layers "
                            f"({', '.join(f'{lv} {y}' for lv, y in dated.items() if y)}), the units in force")
    else:
        plan.report_level = max(plan.communes, key=lambda lv: n_units[lv])
        plan.reasons.append(f"report level = {plan.report_level}: no year in the layers' names; the level with the "
                            f"most units ({n_units[plan.report_level]})")


ROAD_WORDS = ("road", "roads", "duong", "street", "streets")


def _decide_roads(plan: InitPlan, lines: list[Layer]) -> None:
    """The one line layer named like roads, for the plans (optional: none or several is no error)."""
    named = [v for v in lines if _has_word(v.path.stem, ROAD_WORDS)]
    if len(named) == 1:
        plan.roads = named[0].path
        plan.reasons.append(f"roads = {named[0].path.name}: {len(named[0].frame)} lines, named like roads "
                            "(the fibre plan lays spurs along them, the measurement plan drives them)")
    elif len(named) > 1:
        plan.reasons.append(f"roads: {', '.join(v.path.name for v in named)} are all named like roads; "
                            "name one in [inputs] roads for the plans")


def _decide_fibre(plan: InitPlan, lines: list[Layer]) -> None:
    scored = []
    for layer in lines:
        cols = {c.lower() for c in layer.columns}
        if _has_word(layer.path.stem, NOT_FIBRE_WORDS):
            continue
        score, why = 0, list[str]()
        if any(m.lower() in cols for m in layers_mod.OFDS_MARKERS):
            score, why = score + 3, why + ["Open Fibre Data Standard spans"]
        if _has_word(layer.path.stem, FIBRE_WORDS):
            score, why = score + 2, why + ["named like fibre"]
        if cols & {"status", "operator", "route_id"}:
            score, why = score + 1, why + [f"columns {', '.join(sorted(cols & {'status', 'operator', 'route_id'}))}"]
        if score:
            scored.append((score, layer, why))
    if not scored:
        plan.undecided.append("fibre: no line layer reads as fibre (" + (", ".join(v.path.name for v in lines) or "no line layer")
                              + "); name it in [inputs] fibre")
        return
    scored.sort(key=lambda s: -s[0])
    if len(scored) > 1 and scored[1][0] == scored[0][0]:
        plan.undecided.append(f"fibre: {scored[0][1].path.name} and {scored[1][1].path.name} both read as fibre; "
                              f"name one in [inputs] fibre")
        return
    score, layer, why = scored[0]
    plan.fibre = layer.path
    plan.reasons.append(f"fibre = {layer.path.name}: {len(layer.frame)} lines, {', '.join(why)}")


def _pixel_m(path: Path) -> float:
    import rasterio

    with rasterio.open(path) as src:
        size = abs(src.res[0])
        return size * 111_320 if src.crs is None or src.crs.is_geographic else size


def _decide_population(plan: InitPlan, rasters: list[Path]) -> None:
    sizes = {}
    for path in rasters:
        try:
            sizes[path] = _pixel_m(path)
        except Exception as err:  # rasterio raises RasterioIOError and others on a file it cannot open
            plan.skipped.append(f"{path.name}: not readable as a raster ({err})")
    if not sizes:
        plan.reasons.append("population: no GeoTIFF; households are spread evenly over each village")
        return
    best = min(sizes, key=lambda p: sizes[p])
    plan.population = best
    others = ", ".join(f"{p.name} ~{sizes[p]:.0f} m" for p in sizes if p != best)
    plan.reasons.append(f"population = {best.name}: pixels of ~{sizes[best]:.0f} m" + (f", the finest (not {others})" if others else ""))


def _decide_measurements(plan: InitPlan, meas) -> None:
    folder = plan.folder
    # The files the reader would take from the folder, less those in output or hidden folders.
    files = [path for path in meas.list_measurement_files([folder])
             if not any(p.startswith(".") or p in SKIPPED_FOLDERS for p in path.relative_to(folder).parts[:-1])]
    recognised, refused = [], {}
    for path in files:
        try:
            fmt = meas.detect_format(path)
            recognised.append((path, fmt.name))
        except InputError as err:
            refused[path] = "; ".join(err.problems)
    for path, why in refused.items():
        plan.skipped.append(f"{_rel(path, folder)}: not a measurement file the reader knows ({why})")
    if not recognised:
        plan.reasons.append("measurements: none recognised; the fibre targets are computed, the signal targets wait for "
                            "measurements (covgap refresh FILES)")
        return
    by_folder: dict[Path, list[Path]] = {}
    for path, _ in recognised:
        by_folder.setdefault(path.parent, []).append(path)
    entries = []
    for parent, paths in by_folder.items():
        whole = parent != folder and not any(p.is_relative_to(parent) for p in refused)
        entries += [_rel(parent, folder)] if whole else [_rel(p, folder) for p in paths]
    plan.measurements = entries
    kinds: dict[str, int] = {}
    for _, name in recognised:
        kinds[name] = kinds.get(name, 0) + 1
    plan.reasons.append(f"measurements = {', '.join(entries)}: {len(recognised)} files ("
                        + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")")


def _decide_persons_per_household(plan: InitPlan) -> None:
    """For villages with population only: a CSV in the folder with persons per household (or households and
    population) per unit of a reporting level, such as the census table; else the default figure."""
    if plan.households_from != "population" or not plan.communes:
        return
    for path in sorted(plan.folder.glob("*.csv")):
        try:
            level, figures = layers_mod.read_persons_per_household_table(path, list(plan.communes))
        except InputError:
            continue
        plan.persons_per_household_table = path
        plan.skipped = [s for s in plan.skipped if not s.startswith(path.name + ":")]
        plan.reasons.append(f"persons_per_household_table = {path.name}: persons per household of {len(figures)} "
                            f"units of {level} (the villages give population, not households)")
        return


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(plan: InitPlan, *, name: str | None = None) -> str:
    """The commented covgap.toml of a complete plan (paths relative to the plan's folder)."""
    if not plan.complete:
        raise InitError("; ".join(plan.undecided))
    def rel(p: Path | None) -> str:
        assert p is not None  # a complete plan names every role
        return _toml_str(_rel(p, plan.folder))

    lines = [
        f"# covgap configuration written by `covgap init` for {plan.folder.name}/.",
        "# Every key and its default: docs/configuration.md (or `covgap config-doc`). Paths are relative to this file.",
        "#",
        "# What covgap init decided, and why:",
        *[f"#   {r}" for r in plan.reasons],
    ]
    if plan.skipped:
        lines += ["# Not used:", *[f"#   {s}" for s in plan.skipped]]
    lines += [
        "",
        "[study]",
        f"name = {_toml_str(name or plan.folder.name)}",
        'crs = "auto"                      # the UTM zone of the study area; e.g. "EPSG:5898" for VN-2000',
        'timezone = "Asia/Ho_Chi_Minh"',
        "",
        "[inputs]",
        f"villages = {rel(plan.villages)}",
        "communes = { " + ", ".join(f"{lv} = {rel(p)}" for lv, p in plan.communes.items()) + " }",
        f"fibre = {rel(plan.fibre)}",
        *([f"roads = {rel(plan.roads)}   # road lines: spurs along them, measurement drives over them"] if plan.roads
          else ['# roads = "roads.geojson"   # optional: road lines for the fibre and measurement plans']),
        "measurements = [" + ", ".join(_toml_str(m) for m in plan.measurements) + "]",
    ]
    if plan.population:
        lines.append(f"population = {rel(plan.population)}   # people per pixel: spreads households within villages")
    else:
        lines.append("# population = \"population.tif\"   # optional: spreads households within villages")
    if plan.households_from == "population":
        lines += ["# The villages give population, not households: households = population ÷ persons per household",
                  "# (3.4: 2019 census of Tư Nghĩa; or a CSV of persons per household per commune: see docs/inputs.md).",
                  "persons_per_household = 3.4"]
        if plan.persons_per_household_table:
            lines.append(f"persons_per_household_table = {rel(plan.persons_per_household_table)}   # per unit; others use 3.4")
    if plan.village_columns:
        lines += ["", "[inputs.village_columns]            # canonical = \"column in your file\""]
        lines += [f"{k} = {_toml_str(v)}" for k, v in plan.village_columns.items()]
    for level, cols in plan.commune_columns.items():
        lines += ["", f"[inputs.commune_columns.{level}]"] + [f"{k} = {_toml_str(v)}" for k, v in cols.items()]
    lines += [
        "",
        "# [inputs.fibre_status]            # your fibre status values, if they are not existing / planned / OFDS",
        '# "đang khai thác" = "existing"',
        "",
        "[report]",
        f"level = {_toml_str(str(plan.report_level))}" + (f"            # or {', '.join(lv for lv in plan.communes if lv != plan.report_level)}"
                                                      if len(plan.communes) > 1 else ""),
        "",
        "[output]",
        'dir = "out"',
        'maps_dir = "maps"',
        'lang = "vi"',
        "",
    ]
    return "\n".join(lines)


def write_config(folder: str | Path, *, name: str | None = None) -> tuple[Path, InitPlan]:
    """Inspect ``folder`` and write its covgap.toml (or covgap.toml.new beside an existing one).

    Raises
    ------
    InitError
        Some role could not be decided (each listed with why; nothing is written), or both
        covgap.toml and covgap.toml.new exist.
    """
    plan = inspect_folder(folder)
    if not plan.complete:
        raise InitError(f"{plan.folder}: covgap init could not decide: " + "; ".join(plan.undecided)
                        + ("; decided: " + "; ".join(plan.reasons) if plan.reasons else ""))
    text = render_config(plan, name=name)
    target = plan.folder / CONFIG_NAME
    if target.exists():
        target = plan.folder / (CONFIG_NAME + ".new")
        if target.exists():
            raise InitError(f"{plan.folder}: both {CONFIG_NAME} and {CONFIG_NAME}.new exist; covgap init replaces neither "
                            f"(remove {CONFIG_NAME}.new to write a new proposal)")
    with open(target, "x", encoding="utf-8") as fh:  # "x": never replaces a file made meanwhile
        fh.write(text)
    return target, plan
