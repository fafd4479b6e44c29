"""Planner maps: self-contained, bilingual HTML pages of the district and of each commune.

Two steps, so that ``covgap map`` can redraw without re-running the analysis:

1. :func:`map_layers` turns the :class:`~covgap.pipeline.Results` into plain,
   language-neutral display data (simplified WGS84 GeoJSON, the cell classes as
   small PNG images, the scorecard figures). ``outputs.write_outputs`` saves it
   as ``map_layers.json.gz`` beside the GeoPackage.
2. :func:`render_page` draws one page from that data in one language, with
   folium for the page and map skeleton and ``templates/map.js`` for the layers,
   legend, popups, scorecard panel and village search.

A page is self-contained (Leaflet, vendored from npm under ``vendor/``, and its
images inlined) or, when many pages are written (``[output] map_assets``), loads
Leaflet, covgap's script and style and the data all pages share from the maps
folder's ``assets/`` (:func:`write_maps_from_layers`); folium's CDN links are
removed; the writer refuses a page that would load anything from outside the maps
folder. Strings from the input data reach the page only inside JSON whose ``<``,
``>`` and ``&`` are escaped, and the page script puts them in the DOM as text,
never as HTML.
"""

from __future__ import annotations

import base64
import functools
import gzip
import json
import logging
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.errors
import rasterio.features
import rasterio.io
import rasterio.warp
import shapely
from pyproj import Transformer

from covgap import i18n, mappage, names, outputs
from covgap.cellstats import CellClass
from covgap.config import CONTEXT_KINDS
from covgap.errors import OutputError

log = logging.getLogger(__name__)

MAP_LAYERS_NAME = "map_layers.json.gz"
MAP_LAYERS_VERSION = 3
INDEX_NAME = "index.html"
GENERATOR = mappage.GENERATOR
#: Written into the maps folder after the pages: which saved map layers (SHA-256) and language they show.
MAPS_RECORD = ".covgap-maps.json"
#: How pages get Leaflet, covgap's script and style and the data they share (``[output] map_assets``).
MAP_ASSETS = ("auto", "inline", "shared")
#: "auto" writes self-contained pages up to this many pages, shared assets above it.
SHARED_ABOVE_PAGES = 12
ASSETS_DIR = mappage.ASSETS_DIR
#: covgap's mark in its assets folder: the files it wrote there (the only ones it ever replaces or removes).
ASSETS_RECORD = ".covgap-assets.json"

#: Display simplification in the working CRS (m) and coordinate rounding (decimal degrees).
SIMPLIFY_M = 5.0
DECIMALS = 5
#: Screen pixels per grid cell in the cell images (nearest-neighbour, then drawn pixelated).
PIXELS_PER_CELL = 3
#: Largest side of a cell image in pixels: larger areas get fewer pixels per cell (at least one).
MAX_IMAGE_PIXELS = 4096

#: Colours of the cell classes (RGBA); 0 = outside the page's area (transparent).
CELL_COLOURS = {
    0: (0, 0, 0, 0),
    int(CellClass.COVERED): (26, 150, 65, 200),
    int(CellClass.WEAK): (253, 174, 97, 210),
    int(CellClass.NO_4G): (197, 27, 125, 210),
    int(CellClass.NO_SERVICE): (215, 25, 28, 220),
    int(CellClass.INSUFFICIENT): (150, 150, 150, 90),
}

#: Every label of the page (the one bilingual catalogue, covgap.i18n).
STRINGS = i18n.STRINGS

#: Figures of a unit (commune or district) that the scorecard panel shows.
UNIT_FIGURES = (
    "n_villages", "villages_meeting_4g", "villages_failing_4g", "villages_insufficient_4g", "share_villages_4g",
    "dead_zones", "dead_zone_area_km2", "households_in_dead_zones", "households", "households_passed", "fibre_share",
    "communes", "communes_reached", "share_communes_reached", "share_area_measured", "evidence_share", "status_villages_4g",
    "status_no_dead_zones", "status_fibre_households", "status_fibre_communes", "centre_dist_to_fibre_m",
    "fibre_plan_spurs", "fibre_plan_m", "fibre_plan_cost_vnd", "fibre_plan_share_after", "fibre_plan_reaches_goal",
    "subscribed_share",
)

VILLAGE_FIELDS = (
    "village_id", "name", "households", "share_covered", "share_weak", "share_no_4g", "share_dead", "share_unmeasured",
    "evidence_share", "verdict_4g", "households_in_dead_zones", "n_samples", "households_passed", "fibre_share",
    "dist_to_fibre_m", "spur_length_m", "dist_to_planned_fibre_m", "subscribed_share",
)
#: Decimals of a share (0–1) on the maps: the pages show one decimal of a percent.
SHARE_DECIMALS = 4


# --------------------------------------------------------------------------- names
def slugify(name: str) -> str:
    """A safe file stem for a commune name: ASCII letters, digits and dashes only.

    ``"Xã Nghĩa Điền"`` → ``"xa-nghia-dien"``. Never empty, never contains a path
    separator or ``..``.
    """
    return names.slugify(name, lower=True, max_len=60, default="commune")


def page_files(names: list[str]) -> dict[str, str]:
    """A distinct, safe HTML file name per commune name (``index.html`` is the district's)."""
    files: dict[str, str] = {}
    used = {INDEX_NAME}
    for name in names:
        stem = slugify(name)
        candidate, k = f"{stem}.html", 2
        while candidate in used:
            candidate, k = f"{stem}-{k}.html", k + 1
        used.add(candidate)
        files[name] = candidate
    return files


# --------------------------------------------------------------------------- display data
def _plain(value):
    """A JSON-safe Python value: numpy scalars unwrapped, NaN and NaT become None."""
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    if value is None or value is pd.NA:
        return None
    return value


def _plain_column(values) -> list:
    """A column (Series or array) as a list of JSON-safe Python values (see :func:`_plain`)."""
    return [_plain(x) for x in (values.tolist() if hasattr(values, "tolist") else values)]


def _records(columns: dict[str, list]) -> list[dict]:
    """Column lists of equal length → one dict per row (the properties of a layer's features)."""
    keys = list(columns)
    return [dict(zip(keys, row)) for row in zip(*columns.values())]


def _local_dates(seconds, timezone: str) -> list[str | None]:
    """Each time (Unix seconds, NaN for none) as its local date ``YYYY-MM-DD``, or None."""
    values = pd.to_numeric(pd.Series(np.asarray(seconds, dtype=float)), errors="coerce")
    values = values.where(np.isfinite(values))
    dates = pd.to_datetime(values, unit="s", utc=True).dt.tz_convert(timezone).dt.strftime("%Y-%m-%d")
    return [None if not isinstance(d, str) else d for d in dates.tolist()]


def _disc_villages(geoms: np.ndarray, radius_m: float) -> np.ndarray:
    """Which villages are discs of ``radius_m`` (given as points: ``layers.read_villages`` buffers them).

    A disc is a polygon without holes whose every vertex, at least 33 of them (GEOS buffers with
    64), lies ``radius_m`` from its centroid (to a millimetre): the page draws it as a circle of that
    radius around the centre, the same shape, from a point instead of a polygon.
    """
    geoms = np.asarray(geoms, dtype=object)
    out = np.zeros(len(geoms), dtype=bool)
    candidates = np.flatnonzero((shapely.get_type_id(geoms) == 3) & (shapely.get_num_interior_rings(geoms) == 0))
    if not len(candidates):
        return out
    polys = geoms[candidates]
    coords, index = shapely.get_coordinates(shapely.get_exterior_ring(polys), return_index=True)
    centres = shapely.get_coordinates(shapely.centroid(polys))
    off = np.abs(np.hypot(*(coords - centres[index]).T) - radius_m) > 1e-3
    n_off = np.bincount(index, weights=off, minlength=len(polys))
    n_vertices = np.bincount(index, minlength=len(polys))
    out[candidates] = (n_off == 0) & (n_vertices >= 33)
    return out


def _display_geoms(geoms: np.ndarray, *, simplify_m: float) -> np.ndarray:
    """Geometries simplified by ``simplify_m`` in the working CRS (topology kept)."""
    return np.asarray(shapely.simplify(np.asarray(geoms, dtype=object), simplify_m, preserve_topology=True), dtype=object)


def _feature_collection(frame: gpd.GeoDataFrame, props: list[dict], *, simplify_m: float = SIMPLIFY_M,
                        without_geometry: np.ndarray | None = None) -> dict:
    """A GeoJSON feature collection (WGS84, simplified, rounded); the features where ``without_geometry``
    is true are sent with a null geometry (the page script fills it in: see ``whole_village``)."""
    geoms = _display_geoms(frame.geometry.to_numpy(), simplify_m=simplify_m)
    wgs = gpd.GeoSeries(geoms, crs=frame.crs).to_crs(4326).to_numpy()
    wgs = shapely.transform(wgs, lambda c: np.round(c, DECIMALS))
    sent = np.zeros(len(wgs), dtype=bool) if without_geometry is None else np.asarray(without_geometry, dtype=bool)
    drawn = ~sent & ~shapely.is_missing(wgs) & ~shapely.is_empty(wgs)
    geojson = iter(json.loads("[" + ",".join(shapely.to_geojson(wgs[drawn]).tolist()) + "]"))  # one parse for all
    features = []
    for p, without, draw in zip(props, sent.tolist(), drawn.tolist()):
        if without:
            features.append({"type": "Feature", "properties": p, "geometry": None})
        elif draw:
            features.append({"type": "Feature", "properties": p, "geometry": next(geojson)})
    return {"type": "FeatureCollection", "features": features}


def _whole_villages(needs: gpd.GeoDataFrame, villages: gpd.GeoDataFrame) -> np.ndarray:
    """For each needs-measurement area: is it its whole village (same area as the one village of its id)?"""
    ids = villages["village_id"].astype(str)
    unique = ~ids.duplicated(keep=False).to_numpy() & ~shapely.is_empty(villages.geometry.to_numpy())
    outline = dict(zip(ids[unique], villages.geometry.to_numpy()[unique]))
    own = np.array([outline.get(str(i)) for i in needs["village_id"]], dtype=object)
    found = np.array([g is not None for g in own], dtype=bool)
    whole = np.zeros(len(needs), dtype=bool)
    if found.any():
        whole[found] = shapely.equals(needs.geometry.to_numpy()[found], own[found])
    return whole


def _local_date(seconds, timezone: str) -> str | None:
    if seconds is None or not np.isfinite(seconds):
        return None
    return pd.Timestamp(float(seconds), unit="s", tz="UTC").tz_convert(timezone).strftime("%Y-%m-%d")


def _unit_figures(row: pd.Series) -> dict:
    return {k: _plain(row[k]) for k in UNIT_FIGURES if k in row.index}


def _encode_png(index: np.ndarray, palette: dict[int, tuple[int, int, int, int]]) -> bytes:
    """A palette PNG (8-bit indices, alpha in tRNS) of a 2-D uint8 array, written by GDAL's PNG driver."""
    height, width = index.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a picture, not a map layer
        with rasterio.io.MemoryFile() as mem:
            with mem.open(driver="PNG", width=width, height=height, count=1, dtype="uint8") as dst:
                dst.write(index.astype(np.uint8), 1)
                dst.write_colormap(1, palette)
            return mem.read()


def _area_window(grid, area: shapely.Geometry) -> tuple[int, int, np.ndarray] | None:
    """The window of the grid under ``area``: its top row, left column and which of its cells have their
    centre in ``area``; None when the area is off the grid."""
    minx, miny, maxx, maxy = area.bounds
    c0 = max(0, int(np.floor((minx - grid.x0) / grid.size)))
    r0 = max(0, int(np.floor((grid.y0 - maxy) / grid.size)))
    c1 = min(grid.ncols, int(np.floor((maxx - grid.x0) / grid.size)) + 1)
    r1 = min(grid.nrows, int(np.floor((grid.y0 - miny) / grid.size)) + 1)
    if c1 <= c0 or r1 <= r0:
        return None
    inside = rasterio.features.rasterize([(area, 1)], out_shape=(r1 - r0, c1 - c0),
                                         transform=grid.transform @ rasterio.Affine.translation(c0, r0),
                                         fill=0, dtype="uint8", all_touched=False).astype(bool)
    return r0, c0, inside


def _crop(classes: np.ndarray, window: tuple[int, int, np.ndarray] | None) -> tuple[np.ndarray, int, int] | None:
    """The classes of the cells under the page's area (``window``: :func:`_area_window`; None: the whole
    grid), trimmed to the rows and columns that hold any: the array, its top row and left column."""
    classes = np.asarray(classes, dtype=np.uint8)
    w_r0 = w_c0 = 0
    if window is not None:  # only the window of the grid under the area: a commune of a province is small
        w_r0, w_c0, inside = window
        part = classes[w_r0:w_r0 + inside.shape[0], w_c0:w_c0 + inside.shape[1]]
        classes = np.where(inside, part, 0).astype(np.uint8)
    rows = np.flatnonzero(classes.any(axis=1))
    cols = np.flatnonzero(classes.any(axis=0))
    if not len(rows):
        return None
    return classes[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], int(w_r0 + rows[0]), int(w_c0 + cols[0])


@functools.lru_cache(maxsize=1)
def _mercator_to_wgs84() -> Transformer:
    return Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)


def _warp_plan(grid, r0: int, c0: int, shape: tuple[int, int]) -> tuple[np.ndarray, list[list[float]]]:
    """Where each pixel of a Web Mercator image of the cells ``shape`` from row ``r0``, column ``c0`` takes
    its class from: the flat index + 1 of its cell in the crop (0: none), and the image's lat/lon bounds.

    The cell indices are reprojected with nearest-neighbour resampling at :data:`PIXELS_PER_CELL` pixels
    per cell (fewer when the image would pass :data:`MAX_IMAGE_PIXELS` a side), so Leaflet's image overlay
    (linear in Web Mercator) puts every cell where it is. Made once and used for every operator view of
    the same crop: the same pixels as reprojecting each view's classes.
    """
    transform = grid.transform @ rasterio.Affine.translation(c0, r0)
    left, top = transform @ (0, 0)
    right, bottom = transform @ (shape[1], shape[0])
    dst_transform, width, height = rasterio.warp.calculate_default_transform(
        grid.crs, "EPSG:3857", shape[1], shape[0], left=left, bottom=bottom, right=right, top=top)
    # calculate_default_transform keeps about one pixel per cell; draw PIXELS_PER_CELL per cell, fewer
    # when the image would be wider or taller than MAX_IMAGE_PIXELS (a province: a cell is then far
    # less than a screen pixel when the whole image is in view).
    per_cell = max(1, min(PIXELS_PER_CELL, MAX_IMAGE_PIXELS // max(width, height)))
    dst_transform = dst_transform @ rasterio.Affine.scale(1 / per_cell)
    width, height = width * per_cell, height * per_cell
    index = np.arange(1, shape[0] * shape[1] + 1, dtype=np.uint32).reshape(shape)
    out = np.zeros((height, width), dtype=np.uint32)
    rasterio.warp.reproject(index, out, src_transform=transform, src_crs=grid.crs, dst_transform=dst_transform,
                            dst_crs="EPSG:3857", resampling=rasterio.warp.Resampling.nearest, src_nodata=0, dst_nodata=0)
    west, north = dst_transform @ (0, 0)
    east, south = dst_transform @ (width, height)
    (lon0, lon1), (lat0, lat1) = _mercator_to_wgs84().transform([west, east], [south, north])
    return out, [[round(lat0, 7), round(lon0, 7)], [round(lat1, 7), round(lon1, 7)]]


def _image_of(sub: np.ndarray, plan: tuple[np.ndarray, list[list[float]]]) -> dict:
    """The cell image of a crop (:func:`_crop`) through its :func:`_warp_plan`: PNG, bounds, class counts."""
    index, bounds = plan
    flat = np.concatenate([np.zeros(1, dtype=np.uint8), sub.ravel()])  # index 0: no cell, transparent
    counts = np.bincount(sub.ravel(), minlength=max(int(c) for c in CellClass) + 1)
    png = _encode_png(flat[index], CELL_COLOURS)
    return {
        "png": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
        "bounds": bounds,
        "counts": {c.label: int(counts[int(c)]) for c in CellClass},
    }


def _class_views(results) -> dict[str, np.ndarray]:
    """The class raster of each view: ``"*"`` (any operator), then each operator."""
    views = {"*": results.classes}
    for op in results.operators:  # measured operators only: a fibre owner not measured has no cells to show
        views[op] = results.per_operator[op].classes
    return views


def _cell_images(views: dict[str, np.ndarray], grid, area: shapely.Geometry | None) -> dict:
    """Per view the cell image of an area (the whole grid when ``area`` is None)."""
    images: dict[str, dict] = {}
    window = _area_window(grid, area) if area is not None else None  # the same for every view
    if area is not None and window is None:
        return images
    plans: dict[tuple[int, int, tuple[int, int]], tuple[np.ndarray, list[list[float]]]] = {}
    made: dict[tuple, dict] = {}
    for key, classes in views.items():
        crop = _crop(classes, window)
        if crop is None:
            continue
        sub, r0, c0 = crop
        where = (r0, c0, sub.shape)
        if where not in plans:  # the views of a page mostly cover the same cells: one reprojection for all
            plans[where] = _warp_plan(grid, r0, c0, sub.shape)
        same = (where, sub.tobytes())  # an operator view like another (a commune measured by no one): one PNG
        if same not in made:
            made[same] = _image_of(sub, plans[where])
        images[key] = made[same]
    return images


def _shared_views(cells: dict[str, dict]) -> dict[str, dict | str]:
    """The cell images of a page with each image sent once: a view whose image is the same as an earlier
    view's is sent as that view's key (``map.js`` takes the image from there)."""
    out: dict[str, dict | str] = {}
    first: dict[str, str] = {}
    for key, image in cells.items():
        earlier = first.setdefault(json.dumps(image, sort_keys=True), key)
        out[key] = image if earlier == key else earlier
    return out


def map_layers(results) -> dict:
    """Everything the maps draw, as plain language-neutral data (WGS84, JSON-serialisable).

    Parameters
    ----------
    results
        The :class:`~covgap.pipeline.Results` of a run.

    Returns
    -------
    dict
        ``study``, ``level``, ``goal_share``, thresholds, ``operators``,
        ``district`` and ``communes`` (figures, page file, cell images),
        ``layers`` (GeoJSON feature collections: ``communes``, ``villages``,
        ``dead_zones``, ``needs_measurement``, ``fibre``, ``centres``) and
        ``changes`` (list of rows, or None).

    Notes
    -----
    Display geometries are simplified by :data:`SIMPLIFY_M` metres in the working
    CRS and rounded to :data:`DECIMALS` decimals (about 1 m) in WGS84; the
    analysis figures are unchanged.
    """
    cfg = results.config
    level = cfg.report.level
    tz = cfg.study.timezone
    communes = results.communes
    files = page_files([str(n) for n in communes["name"]])

    # Villages: a village given as a point (a disc) is sent as its centre and radius (radius_m); the page
    # draws the circle (a polygon of the disc would be ~20 times the bytes).
    v = results.villages
    vgeoms = v.geometry.to_numpy()
    disc = _disc_villages(vgeoms, float(cfg.inputs.village_point_radius_m))
    label_points = shapely.point_on_surface(vgeoms)
    label_points[disc] = shapely.centroid(vgeoms[disc])
    vdisplay = vgeoms.copy()
    vdisplay[disc] = label_points[disc]
    v_shown = gpd.GeoDataFrame({"i": range(len(v))}, geometry=vdisplay, crs=v.crs)
    label_wgs = gpd.GeoSeries(label_points, crs=v.crs).to_crs(4326).to_numpy()
    columns: dict[str, list] = {}
    for k in VILLAGE_FIELDS:
        if k in v.columns:
            col = v[k]
            if "share" in k and pd.api.types.is_float_dtype(col):
                col = col.round(SHARE_DECIMALS)
            columns[k] = _plain_column(col)
    columns["name"] = [str(x) for x in v["name"].tolist()]
    columns["commune"] = [str(x) for x in v[level].tolist()]
    columns["last_measured"] = (_local_dates(v["t_last_s"], tz) if "t_last_s" in v.columns else [None] * len(v))
    columns["label"] = [[lat, lon] for lat, lon in zip(np.round(shapely.get_y(label_wgs), DECIMALS).tolist(),
                                                       np.round(shapely.get_x(label_wgs), DECIMALS).tolist())]
    vprops = _records(columns)
    radius = round(float(cfg.inputs.village_point_radius_m), 1)
    for i in np.flatnonzero(disc):
        vprops[i]["radius_m"] = radius

    # Communes (polygons and their centres)
    cgeoms = communes.geometry.to_numpy()
    cprops = []
    for _, row in communes.iterrows():
        cprops.append({"name": str(row["name"]), "commune_id": str(row["commune_id"]), "file": files[str(row["name"])],
                       **_unit_figures(row)})
    centres = gpd.GeoDataFrame({"i": range(len(communes))}, geometry=gpd.GeoSeries(communes["centre"]).to_numpy(),
                               crs=communes.crs)
    centre_props = [{"name": str(r["name"]), "reached": bool(r["communes_reached"]),
                     "centre_dist_to_fibre_m": _plain(r["centre_dist_to_fibre_m"]), "file": files[str(r["name"])]}
                    for _, r in communes.iterrows()]

    commune_names = np.array([str(n) for n in communes["name"].to_numpy()], dtype=object)
    commune_tree = shapely.STRtree(cgeoms)

    def communes_of(geoms: np.ndarray, margin_m: float = 0.0) -> list[list[str]]:
        """The communes (names, in the communes' order) each geometry lies in: within ``margin_m`` of it, or,
        without a margin, sharing some area with it (a shared edge is not a dead zone "in" the commune)."""
        geoms = np.asarray(geoms, dtype=object)
        if margin_m:
            i, j = commune_tree.query(geoms, predicate="dwithin", distance=margin_m)
        else:
            i, j = commune_tree.query(geoms, predicate="intersects")
            keep = shapely.area(shapely.intersection(cgeoms[j], geoms[i])) > 1e-3
            i, j = i[keep], j[keep]
        order = np.lexsort((j, i))
        out: list[list[str]] = [[] for _ in range(len(geoms))]
        for a, b in zip(i[order].tolist(), j[order].tolist()):
            out[a].append(commune_names[b])
        return out

    # Gap zones (dead = no service, and no 4G) with their per-operator figures
    def zone_props(z: gpd.GeoDataFrame, zo: pd.DataFrame) -> list[dict]:
        op_keys = ("operator", "n_cells", "n_samples", "share_4g", "rsrp_dbm_p50", "rscp_dbm_p50", "rxlev_dbm_p50")
        ops_of: dict[str, list[dict]] = {}
        if len(zo):
            op_rows = _records({"zone_id": [str(x) for x in zo["zone_id"].tolist()],
                                **{k: [str(x) for x in zo[k].tolist()] if k == "operator" else _plain_column(zo[k])
                                   for k in op_keys}})
            for row in op_rows:
                ops_of.setdefault(row.pop("zone_id"), []).append(row)
        ids = [str(x) for x in z["zone_id"].tolist()]
        return _records({
            "zone_id": ids, "area_km2": _plain_column(z["area_km2"]), "villages": [str(x) for x in z["villages"].tolist()],
            "households": _plain_column(z["households"]), "n_samples": _plain_column(z["n_samples"]),
            "first_measured": _local_dates(z["t_first_s"], tz), "last_measured": _local_dates(z["t_last_s"], tz),
            "operators": [ops_of.get(i, []) for i in ids], "communes": communes_of(z.geometry.to_numpy()),
        })

    z, n4 = results.zones, results.no4g_zones
    zprops, n4props = zone_props(z, results.zone_operators), zone_props(n4, results.no4g_zone_operators)

    nm = results.needs_measurement
    nprops = _records({"name": [str(x) for x in nm["name"].tolist()], "commune": [str(x) for x in nm[level].tolist()],
                       "households": _plain_column(nm["households"]), "area_km2": _plain_column(nm["area_km2"])})
    # A village without any measured cell needs measuring whole: its area is its outline, which the
    # villages layer already carries; the page script takes it from there (most of a province's villages).
    whole = _whole_villages(nm, v)
    for p, vid, w in zip(nprops, nm["village_id"].astype(str), whole):
        if w:
            p.update(village_id=vid, whole_village=True)

    fibre = results.layers.fibre_display  # clipped to the study area and a margin; distances used the whole network
    fcommunes = communes_of(fibre.geometry.to_numpy(), margin_m=500.0)
    fprops = _records({"status": [str(x) for x in fibre["status"].tolist()] if "status" in fibre.columns
                       else ["existing"] * len(fibre), "communes": fcommunes})
    for key in ("operator", "year", "route_id"):
        if key in fibre.columns:
            for p, value in zip(fprops, _plain_column(fibre[key])):
                if value is not None:
                    p[key] = value if key == "year" else str(value)

    fp = results.fibre_plan.spurs if results.fibre_plan is not None else gpd.GeoDataFrame(geometry=[])
    fp = fp[fp.geometry.notna()]
    fpprops = _records({"village_id": [str(x) for x in fp["village_id"].tolist()] if len(fp) else [],
                        "name": [str(x) for x in fp["name"].tolist()] if len(fp) else [],
                        "commune": [str(x) for x in fp["unit"].tolist()] if len(fp) else [],
                        **{k: _plain_column(fp[k]) if len(fp) else []
                           for k in ("households", "households_gained", "spur_length_m", "cost_vnd",
                                     "cost_vnd_per_household", "in_district_plan", "in_unit_plan")},
                        **{k: [str(x) for x in fp[k].tolist()] if len(fp) else []
                           for k in ("spur_along", "route_id", "route_operator")}})

    mp = results.measurement_plan
    if mp is not None:
        route_communes = communes_of(mp.days.geometry.to_numpy())
        days, wp = mp.days, mp.waypoints
        mprops = _records({"kind": ["route"] * len(days), "day": [int(x) for x in days["day"].tolist()],
                           "km": _plain_column(days["km"]), "waypoints": [int(x) for x in days["waypoints"].tolist()],
                           "communes": route_communes})
        mprops += _records({"kind": ["waypoint"] * len(wp), "day": [int(x) for x in wp["day"].tolist()],
                            "seq": [int(x) for x in wp["seq"].tolist()], "name": [str(x) for x in wp["name"].tolist()],
                            "village_id": [str(x) for x in wp["village_id"].tolist()],
                            "commune": [str(x) for x in wp["unit"].tolist()],
                            "households_in_cell": _plain_column(wp["households_in_cell"])})
        mframe = gpd.GeoDataFrame({"i": range(len(mprops))},
                                  geometry=[*mp.days.geometry.to_numpy(), *mp.waypoints.geometry.to_numpy()], crs=mp.days.crs)
        measurement_layer = _feature_collection(mframe, mprops, simplify_m=2.0)
        measurement_summary = {k: _plain(v) for k, v in mp.summary.items() if k != "start"}
    else:
        measurement_layer, measurement_summary = {"type": "FeatureCollection", "features": []}, None

    # Context layers ([inputs] context): drawn under the results; read clipped and simplified (layers.read_context).
    context = {}
    for kind in CONTEXT_KINDS:
        frame = results.layers.context.get(kind)
        if frame is None or frame.empty:
            context[f"context_{kind}"] = {"type": "FeatureCollection", "features": []}
            continue
        ccommunes = communes_of(frame.geometry.to_numpy(), margin_m=1.0)
        cprops_ = [{**({"label": str(lbl)} if lbl is not None else {}), "communes": ccommunes[i]}
                   for i, lbl in enumerate(frame["label"].to_numpy())]
        context[f"context_{kind}"] = _feature_collection(frame, cprops_, simplify_m=0.0)

    district = results.district.iloc[0]
    changes = None
    if isinstance(results.changes, pd.DataFrame):
        cols = ["kind", "id", "name", "change", "detail"]
        changes = [{c: ("" if _plain(r.get(c)) is None else str(r.get(c))) for c in cols}
                   for _, r in results.changes.iterrows()]
    first, last = results.data_period
    grid = results.layers.grid
    views = _class_views(results)
    data = {
        "version": MAP_LAYERS_VERSION,
        "study": str(cfg.study.name),
        "level": level,
        "goal_share": float(cfg.fibre.goal_share),
        "covered_dbm": float(cfg.signal.covered_dbm),
        "dead_dbm": float(cfg.signal.dead_dbm),
        "usable_3g_dbm": float(cfg.signal.usable_3g_dbm),
        "data_period": [_local_date(first, tz), _local_date(last, tz)],
        "operators": [str(o) for o in results.operators],
        "district": {"name": str(cfg.study.name), "file": INDEX_NAME, **_unit_figures(district),
                     "cells": _cell_images(views, grid, None)},
        "communes": [{"name": str(r["name"]), "file": files[str(r["name"])], **_unit_figures(r),
                      "cells": _cell_images(views, grid, r.geometry)} for _, r in communes.iterrows()],
        "layers": {
            "communes": _feature_collection(communes, cprops),
            "villages": _feature_collection(v_shown, vprops),
            "dead_zones": _feature_collection(z, zprops, simplify_m=1.0),
            "no4g_zones": _feature_collection(n4, n4props, simplify_m=1.0),
            "needs_measurement": _feature_collection(nm, nprops, simplify_m=1.0, without_geometry=whole),
            "fibre": _feature_collection(fibre, fprops),
            "centres": _feature_collection(centres, centre_props, simplify_m=0.0),
            "fibre_plan": _feature_collection(fp, fpprops, simplify_m=1.0),
            "measurement_plan": measurement_layer,
            **context,
        },
        "measurement_plan": measurement_summary,
        "changes": changes,
    }
    return data


def write_map_layers(results, folder: Path) -> Path:
    """Save :func:`map_layers` as ``map_layers.json.gz`` in ``folder`` (same data, same bytes)."""
    path = Path(folder) / MAP_LAYERS_NAME
    payload = json.dumps(map_layers(results), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    # Level 6, not gzip's default 9: a sample's 1 MB of JSON in 0.02 s instead of 0.07 s, 1.6 % larger.
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
        gz.write(payload)
    return path


def read_map_layers(folder: Path) -> dict:
    """The display data a previous run saved in ``folder`` (see :func:`write_map_layers`)."""
    path = Path(folder) / MAP_LAYERS_NAME
    if not path.is_file():
        raise OutputError(f"{path}: no saved map layers; run `covgap run` (or `covgap demo`) first to write the "
                          "results the maps are drawn from")
    try:
        with gzip.open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError) as err:
        raise OutputError(f"{path}: cannot read the saved map layers ({err}); run `covgap run` again") from err
    if data.get("version") != MAP_LAYERS_VERSION:
        raise OutputError(f"{path}: map layers of version {data.get('version')}, this covgap draws version "
                          f"{MAP_LAYERS_VERSION}; run `covgap run` again")
    return data


#: How a feature of a layer says which communes it is in: its ``commune`` or its list of ``communes``.
_COMMUNE_KEY = {"villages": "commune", "needs_measurement": "commune", "fibre_plan": "commune",
                "dead_zones": "communes", "no4g_zones": "communes", "fibre": "communes",
                **{f"context_{k}": "communes" for k in CONTEXT_KINDS}}


def features_by_commune(data: dict) -> dict[str, dict[str, list[dict]]]:
    """Per layer, the features of each commune (in the layer's order), for :func:`page_data` of many pages:
    one pass over each layer instead of one per page."""
    out: dict[str, dict[str, list[dict]]] = {}
    for name, key in _COMMUNE_KEY.items():
        groups: dict[str, list[dict]] = {}
        for f in data["layers"].get(name, {"features": []})["features"]:
            value = f["properties"].get(key)
            for commune in ([value] if key == "commune" else (value or ())):
                groups.setdefault(commune, []).append(f)
        out[name] = groups
    return out


def page_data(data: dict, *, scope: str | None, lang: str,
              by_commune: dict[str, dict[str, list[dict]]] | None = None) -> dict:
    """The part of the display data one page needs: the district (``scope=None``) or one commune.

    ``by_commune``: :func:`features_by_commune` of ``data``, when made once for every page.
    """
    if lang not in STRINGS:
        raise ValueError(f"lang must be one of {', '.join(STRINGS)}, got {lang!r}")
    layers = data["layers"]
    if scope is None:
        unit = data["district"]
        keep = lambda feature: True  # noqa: E731
        kind = "district"
    else:
        matches = [c for c in data["communes"] if c["name"] == scope]
        if not matches:
            raise ValueError(f"scope {scope!r} is not a commune of the results")
        unit = matches[0]
        keep = lambda feature: scope in feature["properties"].get("communes", ())  # noqa: E731
        kind = "commune"

    def subset(name: str, test, drop: tuple[str, ...] = ()) -> dict:
        """The features of a layer the page shows, without the properties ``drop`` (the page script does not use them)."""
        if by_commune is not None and scope is not None and name in by_commune:
            features = by_commune[name].get(scope, [])
        else:
            features = [f for f in layers[name]["features"] if test(f)]
        if drop:
            features = [{**f, "properties": {k: v for k, v in f["properties"].items() if k not in drop}} for f in features]
        return {"type": "FeatureCollection", "features": features}

    def needs_subset() -> dict:
        # A village that needs measuring whole takes its outline, name, commune and households from the
        # villages layer in the page script: only its id and area come along.
        features = (by_commune["needs_measurement"].get(scope, []) if by_commune is not None and scope is not None
                    else [f for f in layers["needs_measurement"]["features"] if in_commune(f)])
        features = [{**f, "properties": {k: v for k, v in f["properties"].items() if k in WHOLE_VILLAGE_KEEP}}
                    if f["properties"].get("whole_village") else f for f in features]
        return {"type": "FeatureCollection", "features": features}

    in_commune = (lambda f: True) if scope is None else (lambda f: f["properties"].get("commune") == scope)  # noqa: E731
    centre_test = (lambda f: True) if scope is None else (lambda f: f["properties"]["name"] == scope)  # noqa: E731
    page_layers = {
        "communes": layers["communes"],
        "villages": subset("villages", in_commune, drop=("meets_fibre_goal",)),
        "dead_zones": subset("dead_zones", keep, drop=("communes",)),
        "no4g_zones": subset("no4g_zones", keep, drop=("communes",)),
        "needs_measurement": needs_subset(),
        "fibre": subset("fibre", keep, drop=("communes", "route_id")),
        "centres": subset("centres", centre_test),
        "fibre_plan": subset("fibre_plan", in_commune),
        "measurement_plan": subset("measurement_plan", lambda f: scope is None or f["properties"].get("commune") == scope
                                   or scope in f["properties"].get("communes", ()), drop=("communes",)),
        # Saved by an earlier covgap without context layers: none.
        **{f"context_{k}": subset(f"context_{k}", keep, drop=("communes",)) if f"context_{k}" in layers else
           {"type": "FeatureCollection", "features": []} for k in CONTEXT_KINDS},
    }
    goal = f"{data['goal_share']:.0%}"
    strings = {k: v.replace("{goal}", goal).replace("{covered}", f"{data['covered_dbm']:g}")
               .replace("{dead}", f"{data['dead_dbm']:g}").replace("{usable_3g}", f"{data['usable_3g_dbm']:g}")
               for k, v in STRINGS[lang].items()}
    figures = {k: v for k, v in unit.items() if k not in ("cells",)}
    return {
        "generator": GENERATOR,
        "lang": lang,
        "strings": strings,
        "kind": kind,
        "name": unit["name"],
        "file": unit["file"],
        "study": data["study"],
        "district_file": INDEX_NAME,
        "pages": [{"name": c["name"], "file": c["file"]} for c in data["communes"]],
        "figures": figures,
        "goal_share": data["goal_share"],
        "data_period": data["data_period"],
        "operators": data["operators"],
        "cells": _shared_views(unit.get("cells", {})),
        "layers": page_layers,
        "measurement_plan": data.get("measurement_plan"),
        "changes": data["changes"] if scope is None else (
            [c for c in data["changes"] if c.get("name") in {scope} | {f["properties"]["name"] for f in
                                                                       page_layers["villages"]["features"]}
             or c.get("id") in {f["properties"]["zone_id"] for f in page_layers["dead_zones"]["features"]}]
            if data["changes"] is not None else None),
    }


#: What a page keeps of a needs-measurement area that is its whole village (the rest comes from the village).
WHOLE_VILLAGE_KEEP = ("village_id", "whole_village", "area_km2")
#: What the pages have in common, loaded once from ``assets/`` in shared mode (besides the commune outlines).
SHARED_KEYS = ("generator", "lang", "strings", "study", "district_file", "pages", "goal_share", "data_period", "operators")
#: Layers every page carries whole.
SHARED_LAYERS = ("communes",)


def shared_page_data(page: dict) -> dict:
    """The part of a page's data (:func:`page_data`) that is the same on every page of a run.

    ``map.js`` merges it (``window.covgapShared``, from ``assets/``) into the page's own data
    (:func:`own_page_data`): the words of the page, the list of pages and the commune outlines.
    """
    return {**{k: page[k] for k in SHARED_KEYS}, "layers": {k: page["layers"][k] for k in SHARED_LAYERS}}


def own_page_data(page: dict) -> dict:
    """A page's data without what :func:`shared_page_data` holds, marked ``shared`` for ``map.js``."""
    own = {k: v for k, v in page.items() if k not in SHARED_KEYS and k != "layers"}
    own["layers"] = {k: v for k, v in page["layers"].items() if k not in SHARED_LAYERS}
    own["shared"] = True
    return own


def render_page(data: dict, *, scope: str | None = None, lang: str = "vi") -> str:
    """One self-contained HTML page: the district (``scope=None``) or the commune named ``scope``."""
    return mappage.render_html(page_data(data, scope=scope, lang=lang))


def assets_mode(assets: str, n_pages: int) -> str:
    """``"inline"`` or ``"shared"``: the ``[output] map_assets`` choice for ``n_pages`` pages."""
    if assets not in MAP_ASSETS:
        raise ValueError(f"assets must be one of {', '.join(MAP_ASSETS)}, got {assets!r}")
    if assets == "auto":
        return "shared" if n_pages > SHARED_ABOVE_PAGES else "inline"
    return assets


# --------------------------------------------------------------------------- all pages
def write_maps(results, maps_dir: Path, *, lang: str = "vi", assets: str = "auto") -> list[Path]:
    """Write ``index.html`` (district) and one page per commune of the report level into ``maps_dir``.

    Parameters
    ----------
    results
        The :class:`~covgap.pipeline.Results` of a run.
    maps_dir
        Folder for the pages (created if missing).
    lang
        ``"vi"`` (default) or ``"en"``.
    assets
        ``"auto"`` (default), ``"inline"`` or ``"shared"``: see :func:`write_maps_from_layers`.

    Returns
    -------
    list of Path
        The pages written, district first.

    Raises
    ------
    OutputError
        If a page would refer to an external resource, or the folder cannot be written.
    """
    return write_maps_from_layers(map_layers(results), maps_dir, lang=lang, assets=assets)


@dataclass
class RenderedMaps:
    """Map pages rendered and checked, not yet written (:func:`render_maps`, :func:`write_rendered_maps`)."""

    pages: dict[str, str]  # file name → HTML, the district's page first
    files: dict[str, bytes]  # shared assets (name → bytes); empty for self-contained pages
    mode: str  # "inline" or "shared"
    lang: str


def render_maps(data: dict, *, lang: str = "vi", assets: str = "auto") -> RenderedMaps:
    """Every page of saved display data rendered in memory (see :func:`write_maps_from_layers`)."""
    for commune in data["communes"]:
        name = commune["file"]
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*\.html", name) or name == INDEX_NAME:
            raise OutputError(f"unsafe map file name {name!r} for commune {commune['name']!r}")
    scopes: dict[str, str | None] = {INDEX_NAME: None, **{c["file"]: c["name"] for c in data["communes"]}}
    mode = assets_mode(assets, len(scopes))
    pages: dict[str, str] = {}
    files: dict[str, bytes] = {}
    by_commune = features_by_commune(data)
    if mode == "shared":
        refs: dict[str, str] = {}
        for name, scope in scopes.items():
            page = page_data(data, scope=scope, lang=lang, by_commune=by_commune)
            if not refs:  # the district's page: what every page shares
                files, refs = mappage.shared_asset_files(shared_page_data(page))
            pages[name] = mappage.render_html(own_page_data(page), assets=refs, strings=page["strings"])
    else:
        pages = {name: mappage.render_html(page_data(data, scope=scope, lang=lang, by_commune=by_commune))
                 for name, scope in scopes.items()}
    return RenderedMaps(pages=pages, files=files, mode=mode, lang=lang)


def write_maps_from_layers(data: dict, maps_dir: Path, *, lang: str = "vi", source: Path | None = None,
                           overwrite: bool = False, assets: str = "auto") -> list[Path]:
    """Write every page from saved display data (see :func:`write_maps`); used by ``covgap map``.

    Every page is rendered and checked first (:func:`render_maps`), then written
    (:func:`write_rendered_maps`).
    """
    return write_rendered_maps(render_maps(data, lang=lang, assets=assets), maps_dir, source=source, overwrite=overwrite)


def write_rendered_maps(rendered: RenderedMaps, maps_dir: Path, *, source: Path | None = None,
                        overwrite: bool = False) -> list[Path]:
    """Write rendered pages into ``maps_dir``.

    Each page is written to a temporary file in ``maps_dir`` and moved into place with
    ``os.replace``; commune pages of an earlier run that no longer exist are removed. A
    page is only replaced if covgap wrote it (its generator tag), unless ``overwrite``.

    Shared pages (``[output] map_assets``: ``"inline"`` pages are self-contained;
    ``"shared"`` pages load Leaflet, covgap's script and style and the data every
    page shares (:func:`shared_page_data`) from ``maps_dir/assets/``, files named by a
    hash of their content; ``"auto"`` is inline up to :data:`SHARED_ABOVE_PAGES` pages,
    shared above). The assets folder is covgap's only when it holds covgap's mark
    (:data:`ASSETS_RECORD`, the files covgap wrote there): a folder without it is
    refused, never written into; only the files of the mark are ever replaced or
    removed (the files no page refers to any more, and all of them when the pages
    go back to inline).

    ``source``, the ``map_layers.json.gz`` the pages were rendered from, is recorded in
    :data:`MAPS_RECORD` once every page and asset is in place, so that
    :func:`maps_are_current` can tell maps drawn from other results (a run killed
    before its maps) and ``covgap run``/``refresh`` redraw them.
    """
    maps_dir = Path(maps_dir)
    pages, files, mode, lang = rendered.pages, rendered.files, rendered.mode, rendered.lang
    if not overwrite:
        foreign = sorted(n for n in pages if (maps_dir / n).exists() and not is_covgap_page(maps_dir / n))
        if foreign:
            raise OutputError(f"maps folder {maps_dir}: {', '.join(foreign[:3])}{' …' if len(foreign) > 3 else ''} "
                              "not written by covgap would be replaced; choose another folder (--maps, or [output] "
                              "maps_dir), or give --overwrite")
    if mode == "shared":
        check_assets_folder(maps_dir)
    record = maps_dir / MAPS_RECORD
    try:
        maps_dir.mkdir(parents=True, exist_ok=True)
        record.unlink(missing_ok=True)  # our own record: the pages are about to change
        _remove_leftovers(maps_dir)
        if files:
            _write_assets(maps_dir / ASSETS_DIR, files)
        written = []
        temps = []
        try:
            for name, html in pages.items():
                tmp = maps_dir / f".{name}.tmp-{os.getpid()}"
                temps.append(tmp)
                with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
                    fh.write(html)
                    fh.flush()
                    os.fsync(fh.fileno())
            for tmp, name in zip(temps, pages):
                os.replace(tmp, maps_dir / name)
                written.append(maps_dir / name)
        finally:
            for tmp in temps:  # the temporary files made above, if still there
                tmp.unlink(missing_ok=True)
        _remove_stale_pages(maps_dir, keep=set(pages))
        _remove_stale_assets(maps_dir / ASSETS_DIR, keep=set(files))
        if source is not None:
            record.write_text(json.dumps({"map_layers_sha256": outputs.sha256_file(Path(source)), "lang": lang,
                                          "assets": sorted(files)}, indent=2) + "\n", encoding="utf-8")
    except OSError as err:
        raise OutputError(f"{maps_dir}: cannot write the maps ({err}); check the folder is writable") from err
    sizes = ", ".join(f"{p.name} {p.stat().st_size / 1024:.0f} KB" for p in written[:3])
    log.info("maps: %d pages in %s (%s%s)%s", len(written), maps_dir, sizes, ", ..." if len(written) > 3 else "",
             f", {len(files)} shared files in {ASSETS_DIR}/ ({sum(map(len, files.values())) / 1024:.0f} KB)"
             if files else "")
    return written


def _read_assets_record(assets_dir: Path) -> list[str] | None:
    """The files covgap wrote in ``assets_dir`` (its :data:`ASSETS_RECORD`), or None when the mark is not there."""
    try:
        record = json.loads((assets_dir / ASSETS_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("generator") != GENERATOR or not isinstance(record.get("files"), list):
        return None
    return [f for f in record["files"] if isinstance(f, str) and mappage.ASSET_NAME.fullmatch(f)]


def _write_assets_record(assets_dir: Path, names: set[str]) -> None:
    tmp = assets_dir / f".{ASSETS_RECORD}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps({"generator": GENERATOR, "files": sorted(names)}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, assets_dir / ASSETS_RECORD)


def check_assets_folder(maps_dir: Path) -> None:
    """Refuse (one-line :class:`OutputError`) an ``assets`` in ``maps_dir`` that covgap did not make."""
    assets_dir = Path(maps_dir) / ASSETS_DIR
    if (assets_dir.exists() or assets_dir.is_symlink()) and (
            assets_dir.is_symlink() or not assets_dir.is_dir() or _read_assets_record(assets_dir) is None):
        raise OutputError(f"maps folder {maps_dir}: {assets_dir} was not made by covgap (no {ASSETS_RECORD}) and would "
                          "hold the pages' shared files; move it away, choose another folder (--maps, or [output] "
                          "maps_dir), or write self-contained pages ([output] map_assets = \"inline\")")


def _write_assets(assets_dir: Path, files: dict[str, bytes]) -> None:
    """Put ``files`` into covgap's assets folder: a new folder is made whole under a temporary name and
    renamed; into an existing one (covgap's: :func:`check_assets_folder`) its mark first lists the new
    files with the old, then each file is written to a temporary name and moved into place."""
    def put(folder: Path, name: str, content: bytes) -> None:
        tmp = folder / f".{name}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(content)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)

    if not assets_dir.exists():
        fresh = assets_dir.parent / f".{ASSETS_DIR}.tmp-{os.getpid()}"
        fresh.mkdir()
        try:
            _write_assets_record(fresh, set(files))
            for name, content in files.items():
                put(fresh, name, content)
            os.rename(fresh, assets_dir)
        except BaseException:
            shutil.rmtree(fresh, ignore_errors=True)  # the folder made just above
            raise
        return
    known = set(_read_assets_record(assets_dir) or ())
    _write_assets_record(assets_dir, known | set(files))
    for name, content in files.items():
        path = assets_dir / name
        if name in known and path.is_file() and path.read_bytes() == content:
            continue
        put(assets_dir, name, content)


def _remove_stale_assets(assets_dir: Path, *, keep: set[str]) -> None:
    """Remove the files covgap wrote in ``assets_dir`` that no page refers to any more (all of them when
    ``keep`` is empty: the pages are self-contained again), then, if nothing else is left in it, its mark
    and the folder. A folder without covgap's mark, and any file its mark does not list, is left alone."""
    known = _read_assets_record(assets_dir)
    if known is None:
        return
    for name in sorted(set(known) - keep):
        (assets_dir / name).unlink(missing_ok=True)
    if keep:
        _write_assets_record(assets_dir, keep)
        return
    if any(p.name != ASSETS_RECORD for p in assets_dir.iterdir()):  # something else is in it: left alone, marked
        _write_assets_record(assets_dir, set())                      # as covgap's (with no file of covgap's)
        return
    (assets_dir / ASSETS_RECORD).unlink()
    assets_dir.rmdir()
    log.info("maps: removed %s/ (the pages are self-contained)", ASSETS_DIR)


def maps_are_current(out_dir: Path, maps_dir: Path) -> bool:
    """Do the maps in ``maps_dir`` show the map layers saved in ``out_dir``?

    False when the maps were drawn from other results (their :data:`MAPS_RECORD`
    names another SHA-256: a run killed after its outputs were swapped in but before
    the maps were redrawn) or never drawn. True when ``out_dir`` holds no map layers
    (nothing to draw). False too when a shared file the pages load (``assets/``) is missing.
    The language is not compared: ``covgap map --lang en`` is not
    undone by the next refresh that takes in nothing new.
    """
    layers = Path(out_dir) / MAP_LAYERS_NAME
    if not layers.is_file():
        return True
    try:
        record = json.loads((Path(maps_dir) / MAPS_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or not isinstance(record.get("assets", []), list):
        return False
    shared = [Path(maps_dir) / ASSETS_DIR / str(name) for name in record.get("assets", [])]
    return ((Path(maps_dir) / INDEX_NAME).is_file() and all(p.is_file() for p in shared)
            and record.get("map_layers_sha256") == outputs.sha256_file(layers))


def is_covgap_page(path: Path) -> bool:
    """Did covgap write this HTML page? (its generator tag, in the first 4 KB)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR}"' in head


def check_maps_folder(maps_dir: Path, *, out_dir: Path, inputs, overwrite: bool = False, assets: str = "auto") -> None:
    """Refuse a maps folder covgap must not write into (one-line :class:`OutputError`).

    It must not be, contain or lie inside an input, nor be or lie inside the output
    folder (replaced whole at every run), and its ``index.html``, if any, must be
    covgap's unless ``overwrite``. With ``assets="shared"`` its ``assets`` folder, if
    any, must be covgap's (:func:`check_assets_folder`; with ``"auto"`` that is checked
    when the number of pages is known, before any page is written). Other files in it
    are left alone.
    """
    maps_dir = Path(maps_dir)
    outputs.check_clear_of_inputs(maps_dir, inputs, label="maps folder")
    rel = outputs.path_relation(maps_dir.resolve(), Path(out_dir).resolve())
    if rel in ("is", "lies inside"):
        raise OutputError(f"maps folder {maps_dir} {rel} the output folder {out_dir}, which covgap replaces whole at "
                          "every run; give the maps a folder of their own (--maps, or [output] maps_dir)")
    if maps_dir.exists() and not maps_dir.is_dir():
        raise OutputError(f"maps folder {maps_dir}: is a file, not a folder; give a folder (--maps, or [output] maps_dir)")
    index = maps_dir / INDEX_NAME
    if not overwrite and index.exists() and not is_covgap_page(index):
        raise OutputError(f"maps folder {maps_dir}: {INDEX_NAME} was not written by covgap and would be replaced; "
                          "choose another folder (--maps, or [output] maps_dir), or give --overwrite")
    if assets == "shared":
        check_assets_folder(maps_dir)


_LEFTOVER = re.compile(r"\.(?P<name>.+)\.tmp-(?P<pid>[0-9]+)")


def _dead_pid(name: str) -> str | None:
    """The name inside ``.<name>.tmp-<pid>``, if that is its shape and the process that made it has ended."""
    m = _LEFTOVER.fullmatch(name)
    if m is None or int(m["pid"]) == os.getpid():
        return None
    try:
        os.kill(int(m["pid"]), 0)
    except PermissionError:  # running, as another user
        return None
    except (OSError, OverflowError):  # ended, or no such process id at all
        return m["name"]
    return None  # still running: perhaps writing these maps now


def _remove_leftovers(maps_dir: Path) -> None:
    """Remove what a killed run left while writing the maps, when it was covgap's own: temporary pages
    (``.<page>.html.tmp-<pid>`` carrying covgap's generator tag) and a temporary assets folder
    (``.assets.tmp-<pid>`` with covgap's mark: the files its mark lists, their temporary files and the mark,
    then the folder if nothing else is in it), and the temporary files of the files listed in the mark of
    ``assets/``. Only those of a process that has ended; anything else is left where it is."""
    for path in maps_dir.glob(".*.tmp-*"):
        name = _dead_pid(path.name)
        if name is None:
            continue
        if name.endswith(".html") and path.is_file() and not path.is_symlink() and is_covgap_page(path):
            path.unlink()
        elif name == ASSETS_DIR and path.is_dir() and not path.is_symlink():
            listed = _read_assets_record(path)
            if listed is not None:
                _remove_dead_temps(path, listed)
                for listed_path in [path / n for n in listed] + [path / ASSETS_RECORD]:
                    if listed_path.is_file() and not listed_path.is_symlink():
                        listed_path.unlink()
                if not any(path.iterdir()):
                    path.rmdir()
    assets_dir = maps_dir / ASSETS_DIR
    if assets_dir.is_dir() and not assets_dir.is_symlink():
        listed = _read_assets_record(assets_dir)
        if listed is not None:
            _remove_dead_temps(assets_dir, listed)


def _remove_dead_temps(folder: Path, listed: list[str]) -> None:
    """In a folder carrying covgap's assets mark: the temporary files (``.<name>.tmp-<pid>``) of the files its
    mark lists, and of the mark itself, whose process has ended."""
    names = {*listed, ASSETS_RECORD}
    for path in folder.glob(".*.tmp-*"):
        if _dead_pid(path.name) in names and path.is_file() and not path.is_symlink():
            path.unlink()


def _remove_stale_pages(maps_dir: Path, *, keep: set[str]) -> None:
    """Remove pages this tool wrote earlier that are not part of this run (a commune renamed or merged)."""
    for path in maps_dir.glob("*.html"):
        if path.name not in keep and is_covgap_page(path):  # only pages carrying covgap's generator tag
            path.unlink()
            log.info("maps: removed %s (no longer a commune of the report level)", path.name)
