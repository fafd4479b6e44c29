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

from covgap.errors import InputError, plain

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
    """Read a GeoPackage, GeoJSON or Shapefile; a clear error if it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, [f"{what} layer not found (check [inputs] in covgap.toml)"])
    if path.suffix.lower() not in VECTOR_SUFFIXES:
        raise InputError(path, [f"{what} layer has suffix '{path.suffix}'; expected GeoPackage (.gpkg), GeoJSON (.geojson) or Shapefile (.shp)"])
    try:
        frame = gpd.read_file(path, engine="pyogrio")
    except Exception as err:  # pyogrio raises DataSourceError/DataLayerError and GDAL errors
        raise InputError(path, [f"cannot read the {what} layer: {err}"]) from err
    if frame.crs is None:
        if path.suffix.lower() in (".geojson", ".json"):
            frame = frame.set_crs("EPSG:4326")  # RFC 7946: GeoJSON is WGS84
        else:
            raise InputError(path, [f"{what} layer has no CRS (a Shapefile without .prj?); add one, e.g. with ogr2ogr -a_srs EPSG:4326"])
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


def _geometry_problems(frame: gpd.GeoDataFrame, allowed: tuple[str, ...], id_col: str | None, what: str) -> list[str]:
    problems = []
    geom = frame.geometry
    label = (lambda i: f"row {i + 1}" + (f" ({id_col}={frame[id_col].iloc[i]})" if id_col and id_col in frame else ""))
    empty = geom.isna() | geom.is_empty
    for i in np.flatnonzero(empty.to_numpy())[:10]:
        problems.append(f"{label(i)}: empty geometry; every {what} needs a geometry")
    kinds = geom.geom_type.fillna("")
    wrong = ~kinds.isin(allowed) & ~empty
    for i in np.flatnonzero(wrong.to_numpy())[:10]:
        problems.append(f"{label(i)}: geometry is {kinds.iloc[i]}, expected {' or '.join(allowed)}")
    return problems


def read_villages(path: str | Path, *, levels: list[str], crs: CRS, point_radius_m: float = 300.0) -> gpd.GeoDataFrame:
    """Villages with ``village_id``, ``name``, ``households``, one column per level, in ``crs``.

    Points are accepted and become discs of ``point_radius_m``. Invalid polygons
    are repaired with ``make_valid`` (and counted in the log).

    Raises
    ------
    InputError
        Missing columns, duplicate ids, households missing or negative, empty or
        wrong geometries; all listed together.
    """
    path = Path(path)
    frame = _rename(read_vector(path, "villages"), VILLAGE_ALIASES)
    problems: list[str] = []
    required = ["village_id", "name", "households", *levels]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(path, [f"missing column(s) {', '.join(missing)}; columns found: {', '.join(c for c in frame.columns if c != 'geometry')}; "
                                f"a village needs village_id, name, households and its unit at each level ({', '.join(levels)})"])
    if frame.empty:
        raise InputError(path, ["the villages layer has no features"])
    frame["village_id"] = frame["village_id"].astype(str).str.strip()
    frame["name"] = _nfc(frame["name"])
    for lvl in levels:
        frame[lvl] = _nfc(frame[lvl])
        blank = frame[lvl].isna() | (frame[lvl].astype(str) == "")
        for i in np.flatnonzero(blank.to_numpy())[:10]:
            problems.append(f"row {i + 1} (village_id={frame['village_id'].iloc[i]}): column '{lvl}' is empty; every village needs its unit")
    dup = frame["village_id"].duplicated(keep=False)
    if dup.any():
        problems.append(f"column village_id has duplicate values: {', '.join(sorted(set(frame.loc[dup, 'village_id'])))[:300]}")
    hh = pd.to_numeric(frame["households"], errors="coerce")
    bad = hh.isna() | (hh < 0) | (hh != np.floor(hh))
    for i in np.flatnonzero(bad.to_numpy())[:10]:
        problems.append(f"row {i + 1} (village_id={frame['village_id'].iloc[i]}): households = {plain(frame['households'].iloc[i])}, expected a whole number ≥ 0")
    for opt in ("population", "fibre_subscribed"):
        if opt in frame:
            v = pd.to_numeric(frame[opt], errors="coerce")
            badv = frame[opt].notna() & (v.isna() | (v < 0))
            for i in np.flatnonzero(badv.to_numpy())[:10]:
                problems.append(f"row {i + 1} (village_id={frame['village_id'].iloc[i]}): {opt} = {plain(frame[opt].iloc[i])}, expected a number ≥ 0")
    if "fibre_subscribed" in frame:
        over = pd.to_numeric(frame["fibre_subscribed"], errors="coerce") > hh
        for i in np.flatnonzero(over.fillna(False).to_numpy())[:10]:
            problems.append(f"row {i + 1} (village_id={frame['village_id'].iloc[i]}): fibre_subscribed exceeds households")
    problems += _geometry_problems(frame, ("Polygon", "MultiPolygon", "Point"), "village_id", "village")
    if problems:
        raise InputError(path, problems)
    frame["households"] = hh.astype(np.int64)
    frame = frame.to_crs(crs)
    points = frame.geom_type == "Point"
    if points.any():
        log.info("%s: %d villages given as points become discs of %.0f m", path.name, int(points.sum()), point_radius_m)
        frame.loc[points, "geometry"] = frame.loc[points].buffer(point_radius_m)
    frame = _repair(frame, path)
    keep = ["village_id", "name", *levels, "households", *[c for c in ("population", "fibre_subscribed") if c in frame], "geometry"]
    return frame[keep].reset_index(drop=True)


def _repair(frame: gpd.GeoDataFrame, path: Path) -> gpd.GeoDataFrame:
    invalid = ~frame.is_valid
    if invalid.any():
        log.warning("%s: repaired %d invalid geometries with make_valid", path.name, int(invalid.sum()))
        fixed = shapely.make_valid(frame.loc[invalid, "geometry"].to_numpy())
        polys = [shapely.union_all([g for g in shapely.get_parts(f) if g.geom_type in ("Polygon", "MultiPolygon")]) for f in fixed]
        frame.loc[invalid, "geometry"] = polys
    return frame


def read_communes(path: str | Path, *, crs: CRS, level: str) -> gpd.GeoDataFrame:
    """Communes of one reporting level with ``commune_id``, ``name``, ``centre`` (point) in ``crs``.

    The centre is the People's Committee location from ``centre_lon``/``centre_lat``
    where given, else the polygon's representative point (``centre_source`` says which).
    """
    path = Path(path)
    frame = _rename(read_vector(path, f"communes ({level})"), COMMUNE_ALIASES)
    problems: list[str] = []
    if "name" not in frame.columns:
        raise InputError(path, [f"missing column 'name'; columns found: {', '.join(c for c in frame.columns if c != 'geometry')}"])
    if frame.empty:
        raise InputError(path, ["the communes layer has no features"])
    frame["name"] = _nfc(frame["name"])
    if "commune_id" not in frame.columns:
        frame["commune_id"] = [f"C{i + 1:02d}" for i in range(len(frame))]
    frame["commune_id"] = frame["commune_id"].astype(str)
    dup = frame["name"].duplicated(keep=False)
    if dup.any():
        problems.append(f"column name has duplicate values: {', '.join(sorted(set(frame.loc[dup, 'name'])))}")
    problems += _geometry_problems(frame, ("Polygon", "MultiPolygon"), "commune_id", "commune")
    has_centre = {"centre_lon", "centre_lat"} <= set(frame.columns)
    if has_centre:
        lon = pd.to_numeric(frame["centre_lon"], errors="coerce")
        lat = pd.to_numeric(frame["centre_lat"], errors="coerce")
        bad = frame["centre_lon"].notna() & (lon.isna() | lat.isna() | (lon.abs() > 180) | (lat.abs() > 90))
        for i in np.flatnonzero(bad.to_numpy())[:10]:
            problems.append(f"row {i + 1} ({frame['name'].iloc[i]}): centre_lon/centre_lat = {plain(frame['centre_lon'].iloc[i])}/{plain(frame['centre_lat'].iloc[i])}, expected WGS84 degrees")
    if problems:
        raise InputError(path, problems)
    frame = _repair(frame.to_crs(crs), path)
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

    A missing status means existing; any other status than existing/planned is an error.
    """
    path = Path(path)
    frame = read_vector(path, "fibre routes")
    problems = _geometry_problems(frame, ("LineString", "MultiLineString"), None, "fibre route")
    lower = {c.lower(): c for c in frame.columns}
    frame = frame.rename(columns={lower[k]: k for k in ("route_id", "operator", "status", "year") if k in lower and lower[k] != k})
    if "route_id" not in frame:
        frame["route_id"] = [f"R{i + 1:03d}" for i in range(len(frame))]
    if "operator" not in frame:
        frame["operator"] = ""
    if "status" not in frame:
        frame["status"] = "existing"
    status = frame["status"].fillna("existing").astype(str).str.strip().str.lower()
    status = status.replace({"": "existing", "built": "existing", "active": "existing", "plan": "planned", "proposed": "planned"})
    bad = ~status.isin(["existing", "planned"])
    for i in np.flatnonzero(bad.to_numpy())[:10]:
        problems.append(f"row {i + 1} (route_id={frame['route_id'].iloc[i]}): status = {plain(frame['status'].iloc[i])}, expected 'existing' or 'planned'")
    if problems:
        raise InputError(path, problems)
    frame["status"] = status
    frame["operator"] = _nfc(frame["operator"].fillna("").astype(str))
    frame["route_id"] = frame["route_id"].astype(str)
    if "year" not in frame:
        frame["year"] = pd.NA
    frame = frame.to_crs(crs)
    return frame[["route_id", "operator", "status", "year", "geometry"]].reset_index(drop=True)
