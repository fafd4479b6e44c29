"""Readers for the vector layers: villages, communes, fibre routes.

Each reader checks the whole layer and raises one :class:`InputError` listing
every problem (file, column or row, what was found, what was expected), then
returns a GeoDataFrame in the working CRS with canonical column names.
"""

from __future__ import annotations

import logging
import unicodedata
from pathlib import Path

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


def read_vector(path: str | Path, what: str) -> gpd.GeoDataFrame:
    """Read a GeoPackage, GeoJSON or Shapefile; a clear error if it cannot be read.

    A GeoJSON without a CRS is WGS84 (RFC 7946); a layer in degrees whose
    coordinates are not longitude/latitude (a projected layer saved without its
    CRS) is refused, since reprojecting it would put it anywhere.
    """
    path = Path(path)
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
    if frame.crs.is_geographic and not frame.empty:
        bounds = frame.geometry.bounds
        outside = ((bounds["minx"] < -180) | (bounds["maxx"] > 180) | (bounds["miny"] < -90) | (bounds["maxy"] > 90)).to_numpy()
        if outside.any():
            first = int(np.flatnonzero(outside)[0])
            raise InputError(path, [
                f"{int(outside.sum())} of the {len(frame)} features of the {what} layer have coordinates that are not degrees "
                f"(first: row {first + 1}, x {bounds['minx'].iloc[first]:.6g} to {bounds['maxx'].iloc[first]:.6g}, "
                f"y {bounds['miny'].iloc[first]:.6g} to {bounds['maxy'].iloc[first]:.6g}) although the layer's CRS is "
                f"{frame.crs.to_string()}{' (GeoJSON is WGS84 longitude/latitude, RFC 7946)' if geojson else ''}; the layer was probably saved without its projected CRS: "
                f"reproject it to EPSG:4326 or declare its CRS (ogr2ogr -a_srs EPSG:XXXX)"])
    frame.columns = [c if c == "geometry" else str(c) for c in frame.columns]
    return frame


def working_crs(study_area_wgs84: gpd.GeoDataFrame, crs: str) -> CRS:
    """The metric CRS of the analysis: the study area's UTM zone for 'auto', else the given one."""
    if crs == "auto":
        return CRS.from_user_input(study_area_wgs84.to_crs("EPSG:4326").estimate_utm_crs())
    return CRS.from_user_input(crs)


def _rename(frame: gpd.GeoDataFrame, aliases: dict[str, tuple[str, ...]]) -> gpd.GeoDataFrame:
    lower = {c.lower(): c for c in frame.columns}
    mapping = {}
    for canon, names in aliases.items():
        if canon in frame.columns:
            continue
        for n in names:
            if n in lower and lower[n] not in mapping:
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


#: Largest number of households one village may have. A Vietnamese thôn has a
#: few hundred; a million is far beyond any settlement counted as one village and
#: keeps district sums exact in 64-bit integers (a value like 1e20 overflowed).
MAX_HOUSEHOLDS = 1_000_000
#: Largest population of one village (ten people per household at the maximum).
MAX_POPULATION = 10_000_000
#: A village or commune polygon smaller than this (m², in the working CRS) has in
#: effect no area: its shares would be 0/0. It is refused, not guessed at.
MIN_POLYGON_AREA_M2 = 1.0


def _row(frame: pd.DataFrame, i: int, id_col: str | None) -> str:
    """``row 3 (village_id=V3)``: how a problem names its feature (1-based, as in QGIS's attribute table)."""
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


def read_villages(path: str | Path, *, levels: list[str], crs: CRS, point_radius_m: float = 300.0) -> gpd.GeoDataFrame:
    """Villages with ``village_id``, ``name``, ``households``, one column per level, in ``crs``.

    Points are accepted and become discs of ``point_radius_m``. Invalid polygons
    are repaired with ``make_valid`` (and counted in the log).

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
    path = Path(path)
    frame = _rename(read_vector(path, "villages"), VILLAGE_ALIASES)
    required = ["village_id", "name", "households", *levels]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(path, [f"missing column(s) {', '.join(missing)}; columns found: {', '.join(c for c in frame.columns if c != 'geometry')}; "
                                f"a village needs village_id, name, households and its unit at each level ({', '.join(levels)})"])
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
    hh = _check_count(frame, "households", problems, id_col="village_id", maximum=MAX_HOUSEHOLDS, required=True)
    for opt, maximum in (("population", MAX_POPULATION), ("fibre_subscribed", MAX_HOUSEHOLDS)):
        if opt in frame:
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
    keep = ["village_id", "name", *levels, "households", *[c for c in ("population", "fibre_subscribed") if c in frame], "geometry"]
    return frame[keep].reset_index(drop=True)


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


def read_communes(path: str | Path, *, crs: CRS, level: str) -> gpd.GeoDataFrame:
    """Communes of one reporting level with ``commune_id``, ``name``, ``centre`` (point) in ``crs``.

    The centre is the People's Committee location from ``centre_lon``/``centre_lat``
    where given, else the polygon's representative point (``centre_source`` says which).

    Raises
    ------
    InputError
        Missing name column or no features; then, counted together: empty or
        duplicate names and ids, centres that are not WGS84 degrees (or only one
        of the two given), empty or wrong geometries, polygons of zero area.
    """
    path = Path(path)
    frame = _rename(read_vector(path, f"communes ({level})"), COMMUNE_ALIASES)
    if "name" not in frame.columns:
        raise InputError(path, [f"missing column 'name'; columns found: {', '.join(c for c in frame.columns if c != 'geometry')}"])
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


def read_fibre(path: str | Path, *, crs: CRS) -> gpd.GeoDataFrame:
    """Fibre routes with ``route_id``, ``operator``, ``status`` (existing/planned), ``year`` in ``crs``.

    A missing status means existing; any other status than existing/planned is an
    error. A route without ``route_id`` gets ``R`` and its row number; a repeated
    ``route_id`` is an error (partner packages name routes by it).
    """
    path = Path(path)
    frame = read_vector(path, "fibre routes")
    problems = ProblemCollector(path)
    lower = {c.lower(): c for c in frame.columns}
    frame = frame.rename(columns={lower[k]: k for k in ("route_id", "operator", "status", "year") if k in lower and lower[k] != k})
    numbered = pd.Series([f"R{i + 1:03d}" for i in range(len(frame))], index=frame.index, dtype=object)
    frame["route_id"] = _as_text(frame["route_id"]).fillna(numbered) if "route_id" in frame else numbered
    _check_ids(frame, "route_id", problems, what="fibre route", required=False)
    _check_geometry(frame, ("LineString", "MultiLineString"), "route_id", "fibre route", problems)
    if "operator" not in frame:
        frame["operator"] = ""
    if "status" not in frame:
        frame["status"] = "existing"
    status = frame["status"].fillna("existing").astype(str).str.strip().str.lower()
    status = status.replace({"": "existing", "built": "existing", "active": "existing", "plan": "planned", "proposed": "planned"})
    bad = ~status.isin(["existing", "planned"])
    for i in np.flatnonzero(bad.to_numpy()):
        problems.add("status not existing or planned",
                     f"{_row(frame, i, 'route_id')}: status = {_shown(frame['status'].iloc[i])}, expected 'existing' or 'planned'")
    problems.raise_if_any()
    frame["status"] = status
    frame["operator"] = _nfc(frame["operator"].fillna("").astype(str))
    if "year" not in frame:
        frame["year"] = pd.NA
    frame = frame.to_crs(crs)
    return frame[["route_id", "operator", "status", "year", "geometry"]].reset_index(drop=True)


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
