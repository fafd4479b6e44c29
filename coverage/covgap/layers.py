"""Readers for the vector layers: villages, communes, fibre routes.

Each reader checks the whole layer and raises one :class:`InputError` listing
every problem (file, column or row, what was found, what was expected), then
returns a GeoDataFrame in the working CRS with canonical column names.
"""

from __future__ import annotations

import difflib
import json
import logging
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from covgap.errors import InputError, ProblemCollector

log = logging.getLogger(__name__)

VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".zip", ".fgb")

VILLAGE_ALIASES = {
    "village_id": ("village_id", "id", "ma_thon", "code"),
    "name": ("name", "village", "ten_thon", "ten", "village_name"),
    "households": ("households", "hh", "so_ho", "n_households"),
    "population": ("population", "pop", "dan_so"),
    "fibre_subscribed": ("fibre_subscribed", "fiber_subscribed", "ftth_subscribed"),
}
COMMUNE_ALIASES = {
    "commune_id": ("commune_id", "id", "ma_xa", "code"),
    "name": ("name", "commune", "ten_xa", "ten"),
    "centre_lon": ("centre_lon", "center_lon"),
    "centre_lat": ("centre_lat", "center_lat"),
}


#: What a layer reader takes: a file (GeoPackage, GeoJSON, Shapefile) or an in-memory GeoDataFrame,
#: which goes through the same column mapping and checks as the file would.
VectorSource: TypeAlias = "str | Path | gpd.GeoDataFrame"


def source_label(source: VectorSource | pd.DataFrame, what: str) -> Path:
    """The name errors and logs give a layer: its path, or ``<what> (GeoDataFrame)`` for a frame."""
    return Path(f"{what} (GeoDataFrame)") if isinstance(source, pd.DataFrame) else Path(source)


def _frame_source(source: pd.DataFrame, what: str) -> gpd.GeoDataFrame:
    """A copy of an in-memory layer, checked as a file would be: a GeoDataFrame with a CRS, geometry named ``geometry``."""
    label = source_label(source, what)
    if not isinstance(source, gpd.GeoDataFrame) or source._geometry_column_name not in source.columns:
        raise InputError(label, [f"the {what} layer is a pandas DataFrame without geometry; give a GeoDataFrame, e.g. "
                                 "geopandas.GeoDataFrame(df, geometry=geopandas.points_from_xy(df['lon'], df['lat']), "
                                 "crs='EPSG:4326'), or the path of a file"])
    if source.crs is None:
        raise InputError(label, [f"the {what} GeoDataFrame has no CRS; declare the one its coordinates are in, "
                                 "e.g. frame.set_crs('EPSG:4326')"])
    frame = source.copy()
    if frame.geometry.name != "geometry":
        frame = frame.drop(columns=["geometry"], errors="ignore").rename_geometry("geometry")
    return frame.reset_index(drop=True)


def read_vector(source: VectorSource, what: str) -> gpd.GeoDataFrame:
    """Read a GeoPackage, GeoJSON or Shapefile, or take an in-memory GeoDataFrame (copied); a clear
    error if it cannot be used.

    A GeoJSON without a CRS is WGS84 (RFC 7946); a GeoDataFrame must carry its CRS. A layer in
    degrees whose coordinates are not longitude/latitude (a projected layer saved without its
    CRS) is refused, since reprojecting it would put it anywhere.
    """
    if isinstance(source, pd.DataFrame):
        return _check_degrees(_frame_source(source, what), source_label(source, what), what, geojson=False)
    path = Path(source)
    if not path.exists():
        raise InputError(path, [f"{what} layer not found (check [inputs] in covgap.toml)"])
    if path.suffix.lower() not in VECTOR_SUFFIXES:
        raise InputError(path, [f"{what} layer has suffix '{path.suffix}'; expected GeoPackage (.gpkg), GeoJSON (.geojson) or Shapefile (.shp)"])
    try:
        frame = gpd.read_file(path, engine="pyogrio")
    except Exception as err:  # pyogrio raises DataSourceError/DataLayerError and GDAL errors
        raise InputError(path, [f"cannot read the {what} layer: {err}"]) from err
    geojson = path.suffix.lower() in (".geojson", ".json")
    if frame.crs is None:
        if geojson:
            frame = frame.set_crs("EPSG:4326")  # RFC 7946: GeoJSON is WGS84
        else:
            raise InputError(path, [f"{what} layer has no CRS (a Shapefile without .prj?); add one, e.g. with ogr2ogr -a_srs EPSG:4326"])
    return _check_degrees(frame, path, what, geojson=geojson)


def _check_degrees(frame: gpd.GeoDataFrame, path: Path, what: str, *, geojson: bool) -> gpd.GeoDataFrame:
    """Refuse a layer in degrees whose coordinates are not degrees; column names as text."""
    if frame.crs.is_geographic and not frame.empty:
        bounds = frame.geometry.bounds
        outside = ((bounds["minx"] < -180) | (bounds["maxx"] > 180) | (bounds["miny"] < -90) | (bounds["maxy"] > 90)).to_numpy()
        if outside.any():
            first = int(np.flatnonzero(outside)[0])
            raise InputError(path, [
                f"{int(outside.sum())} of the {len(frame)} features of the {what} layer have coordinates that are not degrees "
                f"(first: row {first + 1}, x {bounds['minx'].iloc[first]:.6g} to {bounds['maxx'].iloc[first]:.6g}, "
                f"y {bounds['miny'].iloc[first]:.6g} to {bounds['maxy'].iloc[first]:.6g}) although the layer's CRS is "
                f"{frame.crs.to_string()}{' (GeoJSON is WGS84 longitude/latitude, RFC 7946)' if geojson else ''}; "
                "the layer was probably saved without its projected CRS: "
                f"reproject it to EPSG:4326 or declare its CRS (ogr2ogr -a_srs EPSG:XXXX)"])
    frame.columns = [c if c == "geometry" else str(c) for c in frame.columns]
    return frame


def working_crs(study_area_wgs84: gpd.GeoDataFrame, crs: str) -> CRS:
    """The metric CRS of the analysis: the study area's UTM zone for 'auto', else the given one."""
    if crs == "auto":
        return CRS.from_user_input(study_area_wgs84.to_crs("EPSG:4326").estimate_utm_crs())
    return CRS.from_user_input(crs)


def _rename(frame: gpd.GeoDataFrame, aliases: dict[str, tuple[str, ...]], explicit: Mapping[str, str] | None = None, *,
            path: Path | None = None, setting: str = "") -> gpd.GeoDataFrame:
    """Canonical column names: first the ones named in the configuration (``explicit``, canonical →
    column of the file, matched exactly, else ignoring case), then the usual names (``aliases``).

    A column named in the configuration that the file lacks is an error naming the setting.
    """
    lower = {c.lower(): c for c in frame.columns}
    mapping: dict[str, str] = {}
    missing = []
    for canon, column in (explicit or {}).items():
        if not column:
            continue
        found = column if column in frame.columns else lower.get(column.lower())
        if found is None:
            close = difflib.get_close_matches(column, [c for c in frame.columns if c != "geometry"], n=1)
            missing.append(f"{setting} {canon} = '{column}': the layer has no column '{column}'"
                           f"{f' (did you mean {close[0]!r}?)' if close else ''}")
        elif found != canon:
            mapping[found] = canon
    if missing:
        raise InputError(path or Path("."), [*missing[:-1], missing[-1] + "; columns found: "
                                             + ", ".join(c for c in frame.columns if c != "geometry")])
    if mapping:
        # a column of the file already called like a canonical name that is mapped from elsewhere steps aside
        clash = {canon: f"{canon}_original" for canon in mapping.values() if canon in frame.columns and canon not in mapping}
        frame = frame.rename(columns=clash)
        lower = {c.lower(): c for c in frame.columns}
    for canon, names in aliases.items():
        if canon in frame.columns or canon in mapping.values():
            continue
        for n in names:
            if n in lower and lower[n] not in mapping and lower[n] not in mapping.values():
                mapping[lower[n]] = canon
                break
    return frame.rename(columns=mapping)


def _nfc(s: pd.Series) -> pd.Series:
    return s.map(lambda v: unicodedata.normalize("NFC", str(v)).strip() if pd.notna(v) else v)


def _as_text(s: pd.Series) -> pd.Series:
    """Identifiers and names as stripped NFC text; missing or blank becomes None.

    Whole floats lose their ``.0``: a numeric id column with one null is read as
    floats, and village 12 must stay ``"12"``.
    """
    def one(v):
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            return None
        if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
            v = int(v)
        text = unicodedata.normalize("NFC", str(v)).strip()
        return text or None

    return s.map(one).astype(object)


# --- names of units that look alike -------------------------------------------------------------

#: Letters that are drawn like a Vietnamese letter but are another code point: Ð (U+00D0, Icelandic
#: eth) and Ɖ (U+0189, African D) for Đ (U+0110), as legacy TCVN3/VNI conversions and some keyboards
#: produce; ð for đ; Cyrillic letters that share their glyph with Latin ones; spaces that are not
#: U+0020.
LOOKALIKE_LETTERS = str.maketrans({
    "\u00d0": "\u0110", "\u0189": "\u0110", "\u00f0": "\u0111",
    "\u0410": "A", "\u0412": "B", "\u0415": "E", "\u041a": "K", "\u041c": "M", "\u041d": "H", "\u041e": "O",
    "\u0420": "P", "\u0421": "C", "\u0422": "T", "\u0425": "X", "\u0430": "a", "\u0435": "e", "\u043e": "o",
    "\u0440": "p", "\u0441": "c", "\u0443": "y", "\u0445": "x", "\u00a0": " ", "\u2007": " ", "\u202f": " ",
})
#: The five Vietnamese tone marks (combining): grave, acute, tilde, hook above, dot below.
TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")


def lookalike_key(name: str) -> str:
    """A name as it is read: look-alike letters replaced, spaces collapsed, tone marks placed alike.

    Two names with the same key are drawn alike and read alike: "Mộ Ðức" (U+00D0) and "Mộ Đức"
    (U+0110), "Nghĩa Hoà" (old tone placement) and "Nghĩa Hòa" (new), a name in NFD and in NFC.

    Notes
    -----
    Each word is decomposed (NFD); its tone mark (Vietnamese writes at most one per syllable) is
    taken off the vowel that carries it and put at the word's end, so the key does not depend on
    which vowel of "oa", "oe", "uy" carries it. Letters with their other marks (â, ă, ê, ô, ơ, ư)
    and the tone itself are kept: "Nghĩa Kỳ" and "Nghĩa Kỷ" stay different.
    """
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFC", str(name)).translate(LOOKALIKE_LETTERS))
    words = []
    for word in text.split():
        tones = "".join(sorted(ch for ch in word if ch in TONE_MARKS))
        base = "".join(ch for ch in word if ch not in TONE_MARKS)
        words.append(unicodedata.normalize("NFC", base) + tones)
    return " ".join(words)


def plain_key(name: str) -> str:
    """A name without any accent or case: "Nghĩa Kỳ" → "nghia ky" (đ/Đ → d)."""
    text = unicodedata.normalize("NFD", lookalike_key(name))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(text.replace("\u0111", "d").replace("\u0110", "D").casefold().split())


def match_unit_names(names: pd.Series, known: Sequence[str]) -> tuple[pd.Series, dict[str, str], dict[str, str]]:
    """The unit names of a village column matched to the names of a commune layer.

    Returns
    -------
    matched, lookalikes, unknown
        ``matched``: the names, those that differ from a known one only by look-alike
        letters or tone placement (:func:`lookalike_key`) replaced by it; ``lookalikes``:
        name → known name so replaced; ``unknown``: name → hint for the names still not
        known (the known name that differs only in accents or case, else the closest).

    Notes
    -----
    A look-alike-only difference is accepted (with a warning by the caller): the two names
    are drawn alike, so no reader could tell them apart and no other unit can be meant.
    A difference in accents or case is refused with the hint: in Vietnamese a tone or
    vowel mark makes another name (Nghĩa Kỳ, Nghĩa Kỷ), so covgap does not guess.
    """
    known = [str(k) for k in known]
    known_set = set(known)
    by_key: dict[str, list[str]] = {}
    by_plain: dict[str, list[str]] = {}
    for k in known:
        by_key.setdefault(lookalike_key(k), []).append(k)
        by_plain.setdefault(plain_key(k), []).append(k)
    lookalikes: dict[str, str] = {}
    unknown: dict[str, str] = {}
    for name in sorted({str(v) for v in names.dropna()} - known_set):
        same = by_key.get(lookalike_key(name), [])
        if len(same) == 1:
            lookalikes[name] = same[0]
            continue
        plain = by_plain.get(plain_key(name), [])
        if plain:
            unknown[name] = (f"did you mean '{plain[0]}'? (the names differ only in accents or case; in Vietnamese "
                             f"a mark makes another name, so covgap does not guess)")
        else:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            unknown[name] = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(known)}"
    matched = names.map(lambda v: lookalikes.get(str(v), v) if v is not None and not (isinstance(v, float) and np.isnan(v)) else v)
    return matched, lookalikes, unknown


def _codepoints(a: str, b: str) -> str:
    """Where two look-alike names differ, by code point: ``'Ð' U+00D0 for 'Đ' U+0110``."""
    diff = [(x, y) for x, y in zip(unicodedata.normalize("NFC", a), unicodedata.normalize("NFC", b)) if x != y]
    if not diff or len(a) != len(b):
        return "tone mark placed on another vowel or spacing"
    return ", ".join(f"'{x}' U+{ord(x):04X} for '{y}' U+{ord(y):04X}" for x, y in dict.fromkeys(diff))


def reconcile_unit_names(villages: gpd.GeoDataFrame, level: str, known: Sequence[str], *,
                         villages_path: str | Path, communes_path: str | Path) -> gpd.GeoDataFrame:
    """The villages with their ``level`` names matched to the commune layer's (see :func:`match_unit_names`).

    Look-alike spellings are replaced by the commune layer's name and logged (WARNING);
    names still unknown are refused, each with its hint, counted.

    Raises
    ------
    InputError
        Some village names a unit the commune layer does not have.
    """
    matched, lookalikes, unknown = match_unit_names(villages[level], known)
    if unknown:
        problems = ProblemCollector(villages_path, per_kind=6, shown=6)
        for name, hint in unknown.items():
            n = int((villages[level] == name).sum())
            problems.add(f"{level} not in {Path(communes_path).name}",
                         f"column '{level}' names '{name}' ({n} village{'s' if n != 1 else ''}), which is not in "
                         f"{Path(communes_path).name}: {hint}")
        problems.raise_if_any()
    if lookalikes:
        log.warning("%s: column '%s' spells %s like the names of %s but with other characters (%s); taken as those names",
                    Path(villages_path).name, level, ", ".join(f"'{a}' ({int((villages[level] == a).sum())} villages)" for a in lookalikes),
                    Path(communes_path).name, "; ".join(f"'{a}' → '{b}': {_codepoints(a, b)}" for a, b in lookalikes.items()))
        villages = villages.copy()
        villages[level] = matched
    return villages


#: Largest number of households one village may have. A Vietnamese thôn has a
#: few hundred; a million is far beyond any settlement counted as one village and
#: keeps district sums exact in 64-bit integers (a value like 1e20 overflowed).
MAX_HOUSEHOLDS = 1_000_000
#: Largest population of one village (ten people per household at the maximum).
MAX_POPULATION = 10_000_000
#: A village or commune polygon smaller than this (m², in the working CRS) has in
#: effect no area: its shares would be 0/0. It is refused, not guessed at.
MIN_POLYGON_AREA_M2 = 1.0


def _row(frame: pd.DataFrame, i: int | np.integer, id_col: str | None) -> str:
    """``row 3 (village_id=V3)``: how a problem names its feature (1-based, as in QGIS's attribute table)."""
    i = int(i)
    if id_col and id_col in frame and frame[id_col].iloc[i] is not None:
        return f"row {i + 1} ({id_col}={frame[id_col].iloc[i]})"
    return f"row {i + 1}"


def _shown(v) -> str:
    """A cell value as the user wrote it: ``'many'``, ``-3``, ``inf``."""
    if isinstance(v, np.generic):
        v = v.item()
    return repr(v)


def _check_count(frame: pd.DataFrame, col: str, problems: ProblemCollector, *, id_col: str, maximum: int,
                 required: bool) -> pd.Series:
    """A column of whole numbers from 0 to ``maximum``; every other value is a problem. Returns it as floats."""
    raw = frame[col]
    is_bool = raw.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy()
    num = pd.to_numeric(raw.where(~is_bool), errors="coerce").astype(float)
    missing = raw.isna().to_numpy()
    expected = f"expected a whole number from 0 to {maximum:,}"
    for i in range(len(frame)):
        v = num.iloc[i]
        if missing[i]:
            if required:
                problems.add(f"{col} missing", f"{_row(frame, i, id_col)}: {col} is empty; {expected}")
            continue
        if np.isnan(v):
            kind = "not a number"
        elif v < 0:
            kind = "negative"
        elif v > maximum:  # also inf
            kind = f"above {maximum:,}"
        elif v != np.floor(v):
            kind = "not a whole number"
        else:
            continue
        problems.add(f"{col} {kind}", f"{_row(frame, i, id_col)}: {col} = {_shown(raw.iloc[i])}, {expected}")
    return num


def _check_ids(frame: pd.DataFrame, col: str, problems: ProblemCollector, *, what: str, required: bool = True) -> None:
    """Identifiers: none empty (when ``required``), none repeated."""
    ids = frame[col]
    if required:
        for i in np.flatnonzero(ids.isna().to_numpy()):
            problems.add(f"{col} empty", f"row {i + 1}: {col} is empty; give every {what} a unique {col}")
    counts = ids.dropna().value_counts()
    for value in counts[counts > 1].index:
        rows = np.flatnonzero((ids == value).to_numpy()) + 1
        problems.add(f"duplicate {col}", f"{col} '{value}' is used by rows {', '.join(map(str, rows[:5]))}"
                                         f"{' …' if len(rows) > 5 else ''}; give every {what} a unique {col}")


def _check_geometry(frame: gpd.GeoDataFrame, allowed: tuple[str, ...], id_col: str | None, what: str,
                    problems: ProblemCollector) -> np.ndarray:
    """Empty and wrong geometries are problems; returns the mask of usable ones."""
    geom = frame.geometry
    empty = (geom.isna() | geom.is_empty).to_numpy()
    for i in np.flatnonzero(empty):
        problems.add("empty geometry", f"{_row(frame, i, id_col)}: empty geometry; every {what} needs a geometry")
    kinds = geom.geom_type.fillna("")
    wrong = ~kinds.isin(allowed).to_numpy() & ~empty
    for i in np.flatnonzero(wrong):
        problems.add(f"geometry not {' or '.join(allowed)}",
                     f"{_row(frame, i, id_col)}: geometry is {kinds.iloc[i]}, expected {' or '.join(allowed)}")
    return ~empty & ~wrong


def _check_area(frame: gpd.GeoDataFrame, usable: np.ndarray, id_col: str | None, what: str,
                problems: ProblemCollector, fix: str) -> None:
    """Polygons of (next to) no area in the working CRS are problems: a share of their area is 0/0."""
    area = frame.geometry.area.to_numpy()  # points are discs by now; a polygon repaired to nothing has none
    for i in np.flatnonzero(usable & ~(area >= MIN_POLYGON_AREA_M2)):  # NaN (unprojectable) counts too
        problems.add("polygon of zero area",
                     f"{_row(frame, i, id_col)}: the {what} polygon has an area of {area[i]:.3g} m² (its corners lie on "
                     f"one line or it folds onto itself); {fix}")


def read_villages(source: VectorSource, *, levels: list[str], crs: CRS, point_radius_m: float = 300.0,
                  columns: Mapping[str, str] | None = None, persons_per_household: float = 3.4,
                  unit_persons_per_household: tuple[str, Mapping[str, float]] | None = None) -> gpd.GeoDataFrame:
    """Villages with ``village_id``, ``name``, ``households``, ``source_of_households``, one column per level, in ``crs``.

    ``source`` is a file or an in-memory GeoDataFrame (:data:`VectorSource`); both go through the
    same column mapping and checks, and errors name the file or ``villages (GeoDataFrame)``.

    Points are accepted and become discs of ``point_radius_m``. Invalid polygons
    are repaired with ``make_valid`` (and counted in the log). ``columns`` names the
    layer's columns (canonical → column, ``[inputs.village_columns]``); the others are
    recognised by their usual names.

    A layer with population but no households gets households = population ÷ persons
    per household, rounded (at least 1 where anyone lives): the unit's figure from
    ``unit_persons_per_household`` (level, unit → persons) where it has one, else
    ``persons_per_household``. ``source_of_households`` says which, per village.

    Raises
    ------
    InputError
        Missing columns; then, counted together: empty or duplicate ids, empty names
        or units, households missing or not a whole number from 0 to
        :data:`MAX_HOUSEHOLDS`, population or fibre_subscribed out of range, empty
        or wrong geometries, polygons of zero area.

    Notes
    -----
    A polygon of zero area (below :data:`MIN_POLYGON_AREA_M2`) is refused rather
    than turned into a point: every village figure is a share of its area, and a
    guessed footprint would be reported as measured fact. A village meant as a
    point should be given as a Point.
    """
    path = source_label(source, "villages")
    frame = _rename(read_vector(source, "villages"), {**VILLAGE_ALIASES, **{lv: (lv,) for lv in levels}}, columns,
                    path=path, setting="[inputs.village_columns]")
    derive = "households" not in frame.columns and "population" in frame.columns
    required = ["village_id", "name", *([] if derive else ["households"]), *levels]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(path, [f"missing column(s) {', '.join(missing)}; columns found: {', '.join(c for c in frame.columns if c != 'geometry')}; "
                                f"a village needs village_id, name, households (or population) and its unit at each level "
                                f"({', '.join(levels)}); name your columns in [inputs.village_columns], e.g. households = 'SO_HO'"])
    if frame.empty:
        raise InputError(path, ["the villages layer has no features"])
    problems = ProblemCollector(path)
    frame["village_id"] = _as_text(frame["village_id"])
    _check_ids(frame, "village_id", problems, what="village")
    for col in ("name", *levels):
        frame[col] = _as_text(frame[col])
        for i in np.flatnonzero(frame[col].isna().to_numpy()):
            need = "a name" if col == "name" else f"the name of its {col} (as in the {col} layer)"
            problems.add(f"{col} empty", f"{_row(frame, i, 'village_id')}: column '{col}' is empty; every village needs {need}")
    if derive:
        pop = _check_count(frame, "population", problems, id_col="village_id", maximum=MAX_POPULATION, required=True)
        hh, source = _households_from_population(frame, pop, persons_per_household, unit_persons_per_household, path)
        frame["households"] = hh
    else:
        hh = _check_count(frame, "households", problems, id_col="village_id", maximum=MAX_HOUSEHOLDS, required=True)
        source = pd.Series("given", index=frame.index, dtype=object)
    for opt, maximum in (("population", MAX_POPULATION), ("fibre_subscribed", MAX_HOUSEHOLDS)):
        if opt in frame and not (derive and opt == "population"):
            _check_count(frame, opt, problems, id_col="village_id", maximum=maximum, required=False)
    if "fibre_subscribed" in frame:
        over = (pd.to_numeric(frame["fibre_subscribed"], errors="coerce") > hh).fillna(False).to_numpy()
        for i in np.flatnonzero(over):
            problems.add("fibre_subscribed above households",
                         f"{_row(frame, i, 'village_id')}: fibre_subscribed = {_shown(frame['fibre_subscribed'].iloc[i])} "
                         f"exceeds households = {_shown(frame['households'].iloc[i])}")
    usable = _check_geometry(frame, ("Polygon", "MultiPolygon", "Point"), "village_id", "village", problems)
    frame = frame.to_crs(crs)
    points = (frame.geom_type == "Point").to_numpy() & usable
    if points.any():
        log.info("%s: %d villages given as points become discs of %.0f m", path.name, int(points.sum()), point_radius_m)
        frame.loc[points, "geometry"] = frame.loc[points].buffer(point_radius_m)
    frame = _repair(frame, path, usable)
    _check_area(frame, usable, "village_id", "village", problems,
                "draw the village's outline, or give it as a Point (it becomes a disc of [inputs] village_point_radius_m)")
    problems.raise_if_any()
    frame["households"] = hh.astype(np.int64)
    # Not "households_source": columns named households_* hold counts (outputs round them as numbers).
    frame["source_of_households"] = source.to_numpy()
    keep = ["village_id", "name", *levels, "households", "source_of_households",
            *[c for c in ("population", "fibre_subscribed") if c in frame], "geometry"]
    return frame[keep].reset_index(drop=True)


def _households_from_population(frame: pd.DataFrame, population: pd.Series, persons_per_household: float,
                                unit_table: tuple[str, Mapping[str, float]] | None, path: Path) -> tuple[pd.Series, pd.Series]:
    """Households = round(population ÷ persons per household), at least 1 where population > 0; and its source.

    Notes
    -----
    The unit's own figure (``unit_table``: level, unit name → persons per household;
    names matched as :func:`lookalike_key` reads them) where it has one, else
    ``persons_per_household``. A population that is missing or bad stays NaN (its
    problem is counted by the caller).
    """
    pph = pd.Series(float(persons_per_household), index=frame.index)
    source = pd.Series(f"population ÷ {persons_per_household:g} ([inputs] persons_per_household)", index=frame.index, dtype=object)
    n_table = 0
    if unit_table is not None:
        level, table = unit_table
        by_key = {lookalike_key(k): float(v) for k, v in table.items()}
        unit_pph = frame[level].map(lambda u: by_key.get(lookalike_key(u)) if u is not None else None)
        found = unit_pph.notna().to_numpy()
        n_table = int(found.sum())
        pph[found] = unit_pph[found].astype(float)
        source[found] = np.array([f"population ÷ {v:.3g} (table, {level} {u})"
                                  for v, u in zip(unit_pph[found], frame.loc[found, level])], dtype=object)
    valid = population.notna() & (population >= 0) & np.isfinite(population)
    hh = np.rint(population / pph)
    hh = hh.where(~(valid & (population > 0) & (hh < 1)), 1.0)
    log.info("%s: no households column: households derived from population for %d villages (%d with the %s table's "
             "persons per household, %d with persons_per_household = %g); source_of_households says which",
             path.name, len(frame), n_table, unit_table[0] if unit_table else "unit", len(frame) - n_table, persons_per_household)
    return hh.where(valid), source


def read_persons_per_household_table(path: str | Path, levels: Sequence[str]) -> tuple[str, dict[str, float]]:
    """The ``[inputs] persons_per_household_table`` CSV: (level, unit name → persons per household).

    The unit column is the first column named like a reporting level; the figure is
    ``persons_per_household``, else ``population*`` ÷ ``households*`` (e.g. the
    census table's population_2019 / households_2019).

    Raises
    ------
    InputError
        Unreadable file, no level column, no figure columns, or figures that are not
        positive numbers (every bad row counted).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, ["persons-per-household table not found (check [inputs] persons_per_household_table)"])
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(path, [f"cannot read the persons-per-household table as UTF-8 CSV: {err}"]) from err
    lower = {c.strip().lower(): c for c in table.columns}
    level = next((lv for lv in levels if lv.lower() in lower), None)
    if level is None:
        raise InputError(path, [f"no column named after a reporting level ({', '.join(levels)}); columns found: "
                                f"{', '.join(table.columns)}"])
    unit_col = lower[level.lower()]
    def pick(prefix: str) -> str | None:
        return next((lower[c] for c in lower if c == prefix or c.startswith(prefix + "_")), None)

    problems = ProblemCollector(path)
    units = table[unit_col].map(lambda u: unicodedata.normalize("NFC", u).strip())
    if "persons_per_household" in lower:
        persons = pd.to_numeric(table[lower["persons_per_household"]], errors="coerce")
        households = pd.Series(1.0, index=table.index)
    elif pick("population") and pick("households"):
        persons = pd.to_numeric(table[pick("population")], errors="coerce")
        households = pd.to_numeric(table[pick("households")], errors="coerce")
    else:
        raise InputError(path, [f"no persons_per_household column, nor population and households columns; columns found: "
                                f"{', '.join(table.columns)}"])
    figure = persons / households
    good = np.isfinite(figure) & (figure > 0) & (figure <= 20) & (households > 0)
    for i in np.flatnonzero(~good.to_numpy() & (units != "").to_numpy()):
        problems.add("persons per household not a number from 0 to 20",
                     f"row {i + 2} ({unit_col}={units.iloc[i]}): persons per household {figure.iloc[i]:.4g}, "
                     f"expected a number > 0 and ≤ 20")
    problems.raise_if_any()
    keep = good & (units != "")  # a unit without a name at this level (merged away) is left out
    # Several rows of one unit (a table of smaller units): their persons over their households.
    sums = pd.DataFrame({"unit": units[keep], "persons": persons[keep], "households": households[keep]}).groupby("unit").sum()
    if "persons_per_household" in lower:
        repeated = units[keep].value_counts()
        for unit in repeated[repeated > 1].index:
            problems.add("unit listed twice", f"{unit_col} '{unit}' is listed {repeated[unit]} times; give each unit one row")
        problems.raise_if_any()
    return level, {str(u): float(r["persons"] / r["households"]) for u, r in sums.iterrows()}


def _repair(frame: gpd.GeoDataFrame, path: Path, usable: np.ndarray | None = None) -> gpd.GeoDataFrame:
    """Invalid polygons made valid (their polygonal parts kept; the rest is logged)."""
    invalid = ~frame.is_valid.to_numpy()
    if usable is not None:
        invalid &= usable
    if invalid.any():
        log.warning("%s: repaired %d invalid geometries with make_valid", path.name, int(invalid.sum()))
        fixed = shapely.make_valid(frame.loc[invalid, "geometry"].to_numpy())
        polys = [shapely.union_all([g for g in shapely.get_parts(f) if g.geom_type in ("Polygon", "MultiPolygon")]) for f in fixed]
        frame.loc[invalid, "geometry"] = polys
    return frame


def check_villages_in_study_area(villages: gpd.GeoDataFrame, study_area: shapely.Geometry, *,
                                 villages_path: str | Path, communes_path: str | Path) -> None:
    """Every village must overlap the study area (the communes); none inside means a wrong layer or CRS.

    Raises
    ------
    InputError
        Naming both files: no village overlaps the communes, or which villages lie
        wholly outside every commune.
    """
    villages_path, communes_path = Path(villages_path), Path(communes_path)
    outside = ~villages.geometry.intersects(study_area).to_numpy()
    if not outside.any():
        return
    if outside.all():
        vb, cb = villages.total_bounds, study_area.bounds
        raise InputError(villages_path, [
            f"none of the {len(villages)} villages lies in the study area, the communes of {communes_path} "
            f"(villages span x {vb[0]:.0f}–{vb[2]:.0f}, y {vb[1]:.0f}–{vb[3]:.0f}; communes x {cb[0]:.0f}–{cb[2]:.0f}, "
            f"y {cb[1]:.0f}–{cb[3]:.0f} m in the working CRS); check that both layers are of the same district and "
            f"carry their true CRS"])
    problems = ProblemCollector(villages_path)
    for i in np.flatnonzero(outside):
        problems.add(f"village outside every commune of {communes_path.name}",
                     f"{_row(villages, i, 'village_id')}: lies wholly outside the communes of {communes_path}; "
                     f"fix its geometry or remove it")
    problems.raise_if_any()


def read_communes(source: VectorSource, *, crs: CRS, level: str, columns: Mapping[str, str] | None = None) -> gpd.GeoDataFrame:
    """Communes of one reporting level with ``commune_id``, ``name``, ``centre`` (point) in ``crs``,
    from a file or a GeoDataFrame (:data:`VectorSource`).

    The centre is the People's Committee location from ``centre_lon``/``centre_lat``
    where given, else the polygon's representative point (``centre_source`` says which).
    ``columns`` names the layer's columns (canonical → column, ``[inputs.commune_columns]``).

    Raises
    ------
    InputError
        Missing name column or no features; then, counted together: empty or
        duplicate names and ids, centres that are not WGS84 degrees (or only one
        of the two given), empty or wrong geometries, polygons of zero area.
    """
    path = source_label(source, f"communes ({level})")
    frame = _rename(read_vector(source, f"communes ({level})"), COMMUNE_ALIASES, columns, path=path,
                    setting="[inputs.commune_columns]")
    if "name" not in frame.columns:
        raise InputError(path, [f"missing column 'name'; columns found: {', '.join(c for c in frame.columns if c != 'geometry')}; "
                                f"name it in [inputs.commune_columns], e.g. name = 'ten_xa'"])
    if frame.empty:
        raise InputError(path, ["the communes layer has no features"])
    problems = ProblemCollector(path)
    frame["name"] = _as_text(frame["name"])
    if "commune_id" not in frame.columns:
        frame["commune_id"] = [f"C{i + 1:02d}" for i in range(len(frame))]
    frame["commune_id"] = _as_text(frame["commune_id"])
    _check_ids(frame, "name", problems, what="commune")
    _check_ids(frame, "commune_id", problems, what="commune")
    usable = _check_geometry(frame, ("Polygon", "MultiPolygon"), "commune_id", "commune", problems)
    has_centre = {"centre_lon", "centre_lat"} <= set(frame.columns)
    if has_centre:
        lon = pd.to_numeric(frame["centre_lon"], errors="coerce")
        lat = pd.to_numeric(frame["centre_lat"], errors="coerce")
        given = frame["centre_lon"].notna() | frame["centre_lat"].notna()
        bad = given & (lon.isna() | lat.isna() | ~(lon.abs() <= 180) | ~(lat.abs() <= 90))
        for i in np.flatnonzero(bad.to_numpy()):
            problems.add("centre not WGS84 degrees",
                         f"{_row(frame, i, 'name')}: centre_lon/centre_lat = {_shown(frame['centre_lon'].iloc[i])}/"
                         f"{_shown(frame['centre_lat'].iloc[i])}, expected both as WGS84 degrees (or both empty)")
    frame = _repair(frame.to_crs(crs), path, usable)
    _check_area(frame, usable, "name", "commune", problems, "fix the commune's outline")
    problems.raise_if_any()
    rep = frame.geometry.representative_point()
    if has_centre:
        pts = gpd.GeoSeries(gpd.points_from_xy(lon, lat), crs="EPSG:4326").to_crs(crs)
        given = lon.notna().to_numpy() & lat.notna().to_numpy()
        frame["centre"] = gpd.GeoSeries(np.where(given, pts.to_numpy(), rep.to_numpy()), crs=crs)
        frame["centre_source"] = np.where(given, "given", "representative point")
    else:
        frame["centre"] = rep
        frame["centre_source"] = "representative point"
    frame["centre"] = gpd.GeoSeries(frame["centre"], crs=crs)
    return frame[["commune_id", "name", "centre", "centre_source", "geometry"]].reset_index(drop=True)


#: Fibre status values known without configuration (lower case) and what they mean. The Open Fibre
#: Data Standard's spanStatus codelist (closed): operational; proposed, planned, underConstruction;
#: inactive (built but not live), decommissioned.
FIBRE_STATUS_VALUES = {
    "": "existing", "existing": "existing", "built": "existing", "active": "existing", "operational": "existing",
    "planned": "planned", "plan": "planned", "proposed": "planned", "underconstruction": "planned",
    "under construction": "planned", "under_construction": "planned",
    "decommissioned": "dropped", "inactive": "dropped", "abandoned": "dropped",
}
#: Properties that mark a GeoJSON of Open Fibre Data Standard spans.
OFDS_MARKERS = ("featureType", "transmissionMediumOwner", "networkProviders", "readyForServiceDate", "physicalInfrastructureProvider")


def _nested(value, *keys):
    """``value[keys[0]][keys[1]]...`` of a nested OFDS property (a dict, a list of dicts or its JSON text)."""
    for key in keys:
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except ValueError:
                return None
        if isinstance(value, list):
            value = value[0] if value else None
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value if isinstance(value, str) and value.strip() else None


def _ofds_columns(frame: gpd.GeoDataFrame, explicit: Mapping[str, str]) -> gpd.GeoDataFrame:
    """An OFDS spans layer in covgap's terms: ``id`` → route_id, the operator from the nested
    organisations (first network provider, else the transmission medium owner, else the physical
    infrastructure provider, else the network's publisher, else the network's name), the year of
    ``readyForServiceDate``. Columns named in ``[inputs.fibre_columns]`` win."""
    frame = frame.copy()
    if "route_id" not in explicit and "route_id" not in frame and "id" in frame:
        frame = frame.rename(columns={"id": "route_id"})
    if "operator" not in explicit and "operator" not in frame:
        paths = [("networkProviders", "name"), ("transmissionMediumOwner", "name"), ("physicalInfrastructureProvider", "name"),
                 ("network", "publisher", "name"), ("network", "name")]
        def operator(row):
            for col, *keys in paths:
                if col in row.index:
                    found = _nested(row[col], *keys)
                    if found:
                        return found
            return None
        frame["operator"] = frame.apply(operator, axis=1) if len(frame) else pd.Series(dtype=object)
    if "year" not in explicit and "year" not in frame and "readyForServiceDate" in frame:
        frame["year"] = pd.to_datetime(frame["readyForServiceDate"], errors="coerce").dt.year.astype("Int64")
    return frame


def read_fibre(source: VectorSource, *, crs: CRS, columns: Mapping[str, str] | object | None = None,
               status_values: Mapping[str, str] | None = None) -> gpd.GeoDataFrame:
    """Fibre routes with ``route_id``, ``operator``, ``status`` (existing/planned), ``year`` in ``crs``,
    from a file or a GeoDataFrame (:data:`VectorSource`).

    ``columns`` names the layer's columns (``[inputs.fibre_columns]``: route_id, operator,
    status, year); ``status_values`` maps the layer's status values to existing, planned or
    dropped (``[inputs.fibre_status]``), on top of :data:`FIBRE_STATUS_VALUES`. An Open
    Fibre Data Standard spans file is read as it is (see :func:`_ofds_columns`).
    A missing status means existing. Dropped routes (decommissioned, inactive) are left
    out and counted in the log. Any other status is a problem, as is a year that is not a
    whole number from 1900 to 2100. A route without ``route_id`` gets ``R`` and its row
    number; a repeated ``route_id`` is an error (partner packages name routes by it).

    Raises
    ------
    InputError
        A column named in ``columns`` is missing; then, counted together: duplicate
        route ids, empty or non-line geometries, unknown statuses, bad years.
    """
    path = source_label(source, "fibre routes")
    frame = read_vector(source, "fibre routes")
    if columns is not None and not isinstance(columns, Mapping):
        columns = {k: getattr(columns, k) for k in ("route_id", "operator", "status", "year")}
    explicit = {k: v for k, v in (columns or {}).items() if v}
    ofds = any(m in frame.columns for m in OFDS_MARKERS)
    frame = _rename(frame, {k: (k,) for k in ("route_id", "operator", "status", "year")}, explicit, path=path,
                    setting="[inputs.fibre_columns]")
    if ofds:
        frame = _ofds_columns(frame, explicit)
    problems = ProblemCollector(path)
    numbered = pd.Series([f"R{i + 1:03d}" for i in range(len(frame))], index=frame.index, dtype=object)
    frame["route_id"] = _as_text(frame["route_id"]).fillna(numbered) if "route_id" in frame else numbered
    _check_ids(frame, "route_id", problems, what="fibre route", required=False)
    _check_geometry(frame, ("LineString", "MultiLineString"), "route_id", "fibre route", problems)
    if "operator" not in frame:
        frame["operator"] = ""
    if "status" not in frame:
        frame["status"] = "existing"
    values = dict(FIBRE_STATUS_VALUES)
    values.update({_status_key(k): v for k, v in (status_values or {}).items()})
    raw = frame["status"].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    status = raw.map(lambda v: values.get(_status_key(v)))
    for i in np.flatnonzero(status.isna().to_numpy()):
        problems.add("status not existing or planned",
                     f"{_row(frame, i, 'route_id')}: status = {_shown(frame['status'].iloc[i])}, expected existing or planned "
                     f"(or an OFDS status); say what it means in [inputs.fibre_status], e.g. "
                     f"{json.dumps(str(frame['status'].iloc[i]), ensure_ascii=False)} = \"existing\"")
    if "year" not in frame:
        frame["year"] = pd.NA
    year = pd.to_numeric(frame["year"], errors="coerce")
    bad_year = (frame["year"].notna() & ~(year.between(1900, 2100) & (year == np.floor(year)))).to_numpy()
    for i in np.flatnonzero(bad_year):
        problems.add("year not a year", f"{_row(frame, i, 'route_id')}: year = {_shown(frame['year'].iloc[i])}, "
                                        f"expected a whole number from 1900 to 2100 (or empty)")
    problems.raise_if_any()
    frame["status"] = status
    frame["operator"] = _nfc(frame["operator"].fillna("").astype(str))
    dropped = (status == "dropped").to_numpy()
    if dropped.any():
        counts = raw[dropped].value_counts()
        log.info("%s: %d of %d fibre routes left out as not in service (%s)", path.name, int(dropped.sum()), len(frame),
                 ", ".join(f"{n} {v}" for v, n in counts.items()))
    frame = frame.loc[~dropped].to_crs(crs)
    if ofds:
        log.info("%s: read as Open Fibre Data Standard spans: %d routes (%s)", path.name, len(frame),
                 ", ".join(f"{n} {v}" for v, n in frame["status"].value_counts().items()) or "none")
    return frame[["route_id", "operator", "status", "year", "geometry"]].reset_index(drop=True)


def _status_key(value: str) -> str:
    """A status value as matched: NFC, stripped, lower case, inner spaces collapsed."""
    return " ".join(unicodedata.normalize("NFC", str(value)).strip().lower().split())


def clip_fibre_for_display(fibre: gpd.GeoDataFrame, study_area: shapely.Geometry, *, margin_m: float) -> gpd.GeoDataFrame:
    """The fibre routes within ``margin_m`` of the study area, cut at that edge (for maps and the GeoPackage).

    Distances are not measured on this layer: a route beyond the margin can still be the
    nearest one to a village. Routes wholly outside are dropped; the count is logged.
    """
    if fibre.empty:
        return fibre.copy()
    window = study_area.buffer(margin_m) if margin_m > 0 else study_area
    geoms = fibre.geometry.to_numpy().copy()
    shapely.prepare(window)
    # Only the routes that cross the edge are cut (a route inside is its own intersection with the window,
    # and intersecting thousands of routes with a province's outline took most of the time).
    crossing = ~shapely.contains_properly(window, geoms)
    geoms[crossing] = shapely.intersection(geoms[crossing], window)
    lines = np.array([shapely.line_merge(shapely.union_all([p for p in shapely.get_parts(g)
                                                            if p.geom_type in ("LineString", "MultiLineString")]))
                      if not g.is_empty else g for g in geoms], dtype=object)
    keep = ~shapely.is_empty(lines) & (shapely.length(lines) > 0)
    cut = int((keep & ~shapely.equals(lines, fibre.geometry.to_numpy())).sum())
    out = fibre.loc[keep].copy()
    out["geometry"] = gpd.GeoSeries(lines[keep], index=out.index, crs=fibre.crs)
    if cut or (~keep).any():
        log.info("fibre shown within %g m of the study area: %d routes outside left off the maps, %d cut at that edge "
                 "(distances use the whole network)", margin_m, int((~keep).sum()), cut)
    return out.reset_index(drop=True)


def read_roads(path: str | Path, *, crs: CRS) -> gpd.GeoDataFrame:
    """Road centre lines (any line layer, e.g. an OpenStreetMap export) in ``crs``, for the plans.

    Only the geometry is used; ``name`` and ``kind`` are kept when present. Empty and
    non-line geometries are errors (a point or polygon layer given by mistake).
    """
    path = Path(path)
    frame = read_vector(path, "roads")
    problems = ProblemCollector(path)
    _check_geometry(frame, ("LineString", "MultiLineString"), None, "road", problems)
    problems.raise_if_any()
    keep = [c for c in ("name", "kind") if c in frame]
    frame = frame.to_crs(crs)
    return frame[[*keep, "geometry"]].reset_index(drop=True)


#: Geometry types each kind of context layer takes ([inputs] context).
CONTEXT_GEOMETRIES = {"roads": ("LineString", "MultiLineString"),
                      "rivers": ("LineString", "MultiLineString", "Polygon", "MultiPolygon"),
                      "places": ("Point", "MultiPoint")}
#: Simplification of context lines and areas (m, working CRS): below what a map page at district scale shows.
CONTEXT_SIMPLIFY_M = 10.0


def read_context(path: str | Path, *, kind: str, label: str | None, crs: CRS, study_area: shapely.Geometry) -> gpd.GeoDataFrame:
    """A context layer for the maps (roads, rivers or places): ``label`` (text or None) and geometry, in ``crs``,
    clipped to the study area and simplified by :data:`CONTEXT_SIMPLIFY_M` (places: points inside the area).

    Not used by the analysis. Features with an empty geometry or one of another type (a point in a roads
    layer) are left out and counted in a warning; a layer with none left is an error.

    Raises
    ------
    InputError
        The file cannot be read, ``label`` is not one of its columns, or no feature has a geometry of its kind.
    """
    path = Path(path)
    what = f"context ({kind})"
    frame = read_vector(path, what)
    if label is not None and label not in frame.columns:
        raise InputError(path, [f"no column '{label}' for the labels of this {kind} layer; columns found: "
                                f"{', '.join(c for c in frame.columns if c != 'geometry') or 'none'}; set label in its "
                                "[inputs] context entry to one of them, or leave label out"])
    allowed = CONTEXT_GEOMETRIES[kind]
    geom = frame.geometry
    usable = (geom.notna() & ~geom.is_empty & geom.geom_type.isin(allowed)).to_numpy()
    if not usable.any():
        raise InputError(path, [f"no feature of this {kind} layer has a {' or '.join(allowed)} geometry "
                                f"(found: {', '.join(sorted(set(geom.geom_type.dropna()))) or 'none'}); check the kind "
                                "in its [inputs] context entry"])
    if not usable.all():
        log.warning("%s: %d of %d features left out of the %s context layer: empty or not %s", path.name,
                    int((~usable).sum()), len(frame), kind, " or ".join(allowed))
    labels = (frame[label].astype(object).where(frame[label].notna(), None).map(lambda v: None if v is None else str(v))
              if label is not None else pd.Series([None] * len(frame), index=frame.index, dtype=object))
    out = gpd.GeoDataFrame({"label": labels[usable].to_numpy()}, geometry=geom[usable].to_numpy(), crs=frame.crs).to_crs(crs)
    if kind == "places":
        out = out[shapely.intersects(out.geometry.to_numpy(), study_area)]
    else:
        out = out.clip(study_area, keep_geom_type=True)
        out = out[out.geometry.notna() & ~out.geometry.is_empty & out.geometry.geom_type.isin(allowed)]
        out = out.set_geometry(shapely.simplify(out.geometry.to_numpy(), CONTEXT_SIMPLIFY_M, preserve_topology=True))
    log.info("%s: %d %s features in the study area (of %d)", path.name, len(out), kind, len(frame))
    return out.reset_index(drop=True)
