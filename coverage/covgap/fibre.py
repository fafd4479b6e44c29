"""Fibre indicators: households passed, distance and spur to the nearest route, commune reach."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from covgap.validate import check_geodataframe


def route_lines(fibre: gpd.GeoDataFrame, status: str = "existing") -> np.ndarray:
    """The routes of a status (existing by default) as an array of single lines (no union: measuring to them
    is measuring to the network)."""
    lines = fibre.loc[fibre["status"] == status, "geometry"].to_numpy()
    lines = shapely.get_parts(lines[~(shapely.is_missing(lines) | shapely.is_empty(lines))]) if len(lines) else lines
    return np.asarray(lines, dtype=object)


def distance_to(geoms: np.ndarray, lines) -> np.ndarray:
    """``shapely.distance(geoms, lines)``: the distance from each geometry to the nearest of ``lines`` (an array
    of lines, or one multi-line), found with a spatial index instead of measuring to every line (NaN for an
    empty geometry, or when there is no line)."""
    geoms = np.asarray(geoms, dtype=object)
    out = np.full(len(geoms), np.nan)
    parts = shapely.get_parts(lines)
    if not len(parts) or not len(geoms):
        return out
    (which, _), dist = shapely.STRtree(parts).query_nearest(geoms, return_distance=True, all_matches=True)
    out[:] = np.inf
    np.minimum.at(out, which, dist)
    out[np.isinf(out)] = np.nan
    return out


#: Side (m) of the blocks :func:`passed_areas` works in.
_BLOCK_M = 1600.0


def passed_areas(geoms: np.ndarray, areas: np.ndarray, lines: np.ndarray, drop_distance_m: float) -> np.ndarray:
    """``area(geom ∩ drop zone)`` of each geometry: its area within ``drop_distance_m`` of any of ``lines``.

    The drop zone is never built whole (on a province that is one polygon of thousands of
    routes, slow to build and slow to test against). The geometries are grouped in blocks
    of about 1.6 km; each block gets its own drop zone: the routes that come within the
    drop distance of the block (a spatial index finds them), cut to the block's box grown
    by twice the drop distance, each buffered (16 segments a quarter circle) and merged.
    Inside the block's box that is exactly the buffer of the whole network: a point there
    within the drop distance of a route is within it of a part of the route inside the
    grown box, and the round ends at the cuts lie more than the drop distance outside the
    box. A geometry wholly inside its zone counts its whole ``areas`` value; one crossing
    the zone's edge the area of its intersection; others zero.
    """
    out = np.zeros(len(geoms))
    if not len(geoms) or not len(lines):
        return out
    tree = shapely.STRtree(lines)
    bounds = shapely.bounds(geoms)
    block = _blocks(bounds)
    order = np.argsort(block, kind="stable")
    margin = 2.0 * drop_distance_m + 1.0
    for sel in np.split(order, np.flatnonzero(np.diff(block[order])) + 1):  # the geometries of each block
        minx, miny = bounds[sel, 0].min(), bounds[sel, 1].min()
        maxx, maxy = bounds[sel, 2].max(), bounds[sel, 3].max()
        near = tree.query(shapely.box(minx, miny, maxx, maxy), predicate="dwithin", distance=drop_distance_m)
        if not len(near):
            continue
        cut = shapely.clip_by_rect(lines[near], minx - margin, miny - margin, maxx + margin, maxy + margin)
        cut = shapely.get_parts(cut[~shapely.is_empty(cut)])
        zone = shapely.union_all(shapely.buffer(cut, drop_distance_m, quad_segs=16))
        shapely.prepare(zone)
        g = geoms[sel]
        inside = shapely.contains_properly(zone, g)
        touched = shapely.intersects(zone, g) & ~inside
        out[sel[inside]] = areas[sel[inside]]
        if touched.any():
            out[sel[touched]] = shapely.area(shapely.intersection(g[touched], zone))
    return out


def _blocks(bounds: np.ndarray) -> np.ndarray:
    """The block (numbered 0, 1, …) of each geometry, from its bounds: the ~1.6 km square of its lower-left corner."""
    key = np.floor(bounds[:, :2] / _BLOCK_M).astype(np.int64)
    return np.unique(key, axis=0, return_inverse=True)[1].ravel()


#: Village pieces from which :func:`passed_areas_two_processes` splits the work (below: one process, no fork).
TWO_PROCESS_PIECES = 50_000


def passed_areas_two_processes(geoms: np.ndarray, areas: np.ndarray, lines: np.ndarray,
                               drop_distance_m: float) -> np.ndarray:
    """:func:`passed_areas` with every other block worked out by a forked child (:mod:`covgap.forked`).

    A block's geometries all go to the same process and each block is worked out alone, so
    the result is the same, value for value, as in one process.
    """
    from covgap.forked import Forked

    if not len(geoms) or not len(lines):
        return passed_areas(geoms, areas, lines, drop_distance_m)
    theirs = _blocks(shapely.bounds(geoms)) % 2 == 1
    out = np.zeros(len(geoms))
    with Forked(passed_areas, geoms[theirs], areas[theirs], lines, drop_distance_m) as child:
        out[~theirs] = passed_areas(geoms[~theirs], areas[~theirs], lines, drop_distance_m)
        out[theirs] = child.result()
    return out


def compute_fibre_indicators(villages: gpd.GeoDataFrame, pieces: gpd.GeoDataFrame, fibre: gpd.GeoDataFrame, *,
                             drop_distance_m: float, goal_share: float,
                             passed_area: np.ndarray | None = None) -> pd.DataFrame:
    """Per village: households passed, passed share against the goal, distance and spur to fibre.

    Returns one row per village with ``households_passed``, ``fibre_share`` (0–1),
    ``meets_fibre_goal``, ``dist_to_fibre_m``, ``spur_length_m``,
    ``dist_to_planned_fibre_m`` and, when the villages carry ``fibre_subscribed``,
    ``subscribed_share``.

    Notes
    -----
    * A piece (village ∩ cell) is passed in proportion to its area within
      ``drop_distance_m`` of an existing route (:func:`passed_areas`): ``households_passed = households ×
      Σ weight_share × area(piece ∩ buffer) / area(piece)``.
    * ``meets_fibre_goal``: ``fibre_share > goal_share`` (the target says *more
      than* 80%).
    * ``dist_to_fibre_m``: shortest distance from the village polygon to an
      existing route (0 when a route crosses it).
    * ``spur_length_m``: the new cable needed to bring the village's representative
      point within the drop distance: ``max(0, d(point, route) − drop_distance_m)``.

    ``passed_area``: the pieces' :func:`passed_areas`, when the caller has worked them out already
    (:func:`passed_areas_two_processes`).
    """
    check_geodataframe(villages, "villages", columns=["households"])
    check_geodataframe(fibre, "fibre", crs=villages.crs, columns=["status"])
    n = len(villages)
    hh = villages["households"].to_numpy(dtype=float)
    lines = route_lines(fibre)
    planned = route_lines(fibre, "planned")
    out = pd.DataFrame(index=range(n))
    if not len(lines):
        out["households_passed"] = 0.0
        out["dist_to_fibre_m"] = np.nan
        out["spur_length_m"] = np.nan
    else:
        area = pieces["area_m2"].to_numpy(dtype=float)
        if passed_area is None:
            passed_area = passed_areas(pieces.geometry.to_numpy(), area, lines, drop_distance_m)
        frac = passed_area / np.maximum(area, 1e-12)
        share = np.bincount(pieces["village"].to_numpy(), weights=pieces["weight_share"].to_numpy() * frac, minlength=n)
        out["households_passed"] = np.round(np.minimum(share, 1.0) * hh, 1)
        out["dist_to_fibre_m"] = np.round(distance_to(villages.geometry.to_numpy(), lines), 1)
        rep = shapely.point_on_surface(villages.geometry.to_numpy())
        out["spur_length_m"] = np.round(np.maximum(0.0, distance_to(rep, lines) - drop_distance_m), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["fibre_share"] = np.where(hh > 0, out["households_passed"] / np.maximum(hh, 1e-12), np.nan)
    out["meets_fibre_goal"] = out["fibre_share"] > goal_share + 1e-12
    out["dist_to_planned_fibre_m"] = (np.round(distance_to(villages.geometry.to_numpy(), planned), 1)
                                      if len(planned) else np.nan)
    if "fibre_subscribed" in villages:
        sub = pd.to_numeric(villages["fibre_subscribed"], errors="coerce").to_numpy(dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["subscribed_share"] = np.where(hh > 0, sub / np.maximum(hh, 1e-12), np.nan)
    return out


def commune_centre_reach(communes: gpd.GeoDataFrame, fibre: gpd.GeoDataFrame, *, reach_m: float) -> pd.DataFrame:
    """Per commune: distance from its centre to the nearest existing route and whether it is reached."""
    check_geodataframe(communes, "communes", columns=["centre"])
    check_geodataframe(fibre, "fibre", crs=communes.crs, columns=["status"])
    lines = route_lines(fibre)
    centres = gpd.GeoSeries(communes["centre"], crs=communes.crs).to_numpy()
    dist = np.round(distance_to(centres, lines), 1) if len(lines) else np.full(len(communes), np.nan)
    return pd.DataFrame({"centre_dist_to_fibre_m": dist, "centre_reached": np.nan_to_num(dist, nan=np.inf) <= reach_m})
