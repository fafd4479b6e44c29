"""Gap zones: contiguous cells of one class (no service = dead zones, or no 4G) polygonised, kept above a minimum area."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
from affine import Affine
import shapely

from covgap.cellstats import NBINS, CellClass, hist_percentile
from covgap.grid import Grid
from covgap.validate import check_geodataframe

ZONE_COLUMNS = ["zone_id", "area_km2", "n_cells", "geometry"]


def delineate_dead_zones(classes: np.ndarray, grid: Grid, *, min_area_km2: float, connectivity: int = 8,
                         dead_value: int = int(CellClass.NO_SERVICE), prefix: str = "DZ") -> gpd.GeoDataFrame:
    """Polygons of contiguous cells whose class is ``dead_value``, at least ``min_area_km2``.

    Parameters
    ----------
    classes
        (nrows, ncols) array of :class:`CellClass` values on ``grid``.
    grid
        The analysis grid (gives the transform and CRS).
    min_area_km2
        Zones smaller than this are dropped (DESIGN.md §3.4, default 0.05 km²).
    connectivity
        4: cells touching by an edge form one zone; 8: corners too.

    Returns
    -------
    GeoDataFrame with ``zone_id`` (``DZ001``… by decreasing area), ``area_km2``,
    ``n_cells`` and the polygon, in the grid's CRS.
    """
    mask = classes == dead_value
    if not mask.any():
        return gpd.GeoDataFrame({c: [] for c in ZONE_COLUMNS[:-1]}, geometry=[], crs=grid.crs)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    window = mask[r0:r1, c0:c1]  # only the box of those cells is traced (a province is mostly something else)
    shapes = rasterio.features.shapes(window.astype(np.uint8), mask=window,
                                      transform=grid.transform * Affine.translation(int(c0), int(r0)),
                                      connectivity=connectivity)
    polys = [shapely.geometry.shape(geom) for geom, value in shapes if value == 1]
    areas = np.array([p.area for p in polys]) / 1e6
    keep = areas >= min_area_km2 - 1e-9
    polys = [p for p, k in zip(polys, keep) if k]
    areas = areas[keep]
    if not polys:
        return gpd.GeoDataFrame({c: [] for c in ZONE_COLUMNS[:-1]}, geometry=[], crs=grid.crs)
    bounds = np.array([p.bounds for p in polys])
    order = np.lexsort((bounds[:, 1], bounds[:, 0], -np.round(areas, 9)))
    polys = [polys[i] for i in order]
    areas = areas[order]
    return gpd.GeoDataFrame(
        {
            "zone_id": [f"{prefix}{i + 1:03d}" for i in range(len(polys))],
            "area_km2": np.round(areas, 6),
            "n_cells": np.rint(areas / grid.cell_area_km2).astype(np.int64),
        },
        geometry=polys,
        crs=grid.crs,
    )


def label_cells(zones: gpd.GeoDataFrame, grid: Grid) -> np.ndarray:
    """Flat array: for each cell the 1-based row of the zone it lies in, 0 if none."""
    if zones.empty:
        return np.zeros(grid.ncells, dtype=np.int32)
    labels = rasterio.features.rasterize(
        ((g, i + 1) for i, g in enumerate(zones.geometry)),
        out_shape=(grid.nrows, grid.ncols), transform=grid.transform, fill=0, dtype="int32", all_touched=False,
    )
    return labels.ravel()


ZONE_OPERATOR_COLUMNS = ["zone_id", "operator", "n_cells", "n_samples", "n_4g", "share_4g", "rsrp_dbm_p10",
                         "rsrp_dbm_p50", "rscp_dbm_p50", "rxlev_dbm_p50"]


def describe_dead_zones(zones: gpd.GeoDataFrame, grid: Grid, *, pieces: pd.DataFrame, villages: gpd.GeoDataFrame,
                        any_view: pd.DataFrame, op_view: pd.DataFrame,
                        op_hist: np.ndarray, labels: np.ndarray | None = None) -> tuple[gpd.GeoDataFrame, pd.DataFrame]:
    """Add to each zone (dead or no-4G) the villages and households it touches and its evidence.

    Returns the zones with ``villages`` (names, ``; ``-separated), ``n_villages``,
    ``households`` (households living in the zone, from each village's share of
    weight there), ``n_samples``, ``t_first_s``, ``t_last_s``; and a table of
    per-operator figures (:data:`ZONE_OPERATOR_COLUMNS`). ``labels``: :func:`label_cells` of
    ``zones`` when the caller has it already.

    Notes
    -----
    The per-operator figures use only the cells where that operator has enough
    samples (its class is not insufficient evidence), so they describe the same
    evidence the zone's class was decided on: ``n_cells`` such cells,
    ``rsrp_dbm_p10``/``rsrp_dbm_p50`` from the pooled 4G histogram, ``share_4g`` =
    4G samples / samples, and ``rscp_dbm_p50``/``rxlev_dbm_p50`` as the median of the
    cells' 3G/2G medians (cells without 3G/2G samples left out).
    """
    check_geodataframe(zones, "zones", crs=grid.crs)
    check_geodataframe(villages, "villages", crs=grid.crs, columns=["households", "name"])
    zones = zones.copy()
    if zones.empty:
        for c, dtype in (("villages", object), ("n_villages", np.int64), ("households", float), ("n_samples", np.int64),
                         ("t_first_s", float), ("t_last_s", float)):
            zones[c] = pd.Series(dtype=dtype)
        return zones, pd.DataFrame(columns=ZONE_OPERATOR_COLUMNS)
    labels = label_cells(zones, grid) if labels is None else labels
    ids = range(1, len(zones) + 1)
    # Villages and households in each zone, from the village pieces (village ∩ cell).
    pz = labels[pieces["cell"].to_numpy()]
    in_zone = pieces.loc[pz > 0].assign(zone=pz[pz > 0])
    hh = villages["households"].to_numpy(dtype=float)
    in_zone = in_zone.assign(hh=hh[in_zone["village"].to_numpy()] * in_zone["weight_share"].to_numpy())
    names = villages["name"].astype(str).to_numpy()
    per_zone = in_zone.groupby("zone")
    zones["households"] = np.round(per_zone["hh"].sum().reindex(ids, fill_value=0.0).to_numpy(), 1)
    vlists = per_zone["village"].apply(lambda v: "; ".join(names[np.unique(v.to_numpy())]))
    zones["villages"] = vlists.reindex(ids, fill_value="").to_numpy()
    zones["n_villages"] = per_zone["village"].nunique().reindex(ids, fill_value=0).to_numpy()
    # Evidence in each zone.
    av = any_view.assign(zone=labels[any_view["cell"].to_numpy()])
    av = av[av["zone"] > 0].groupby("zone").agg(n_samples=("n_samples", "sum"), t_first_s=("t_first_s", "min"),
                                                t_last_s=("t_last_s", "max"))
    av = av.reindex(ids)
    zones["n_samples"] = av["n_samples"].fillna(0).astype(np.int64).to_numpy()
    zones["t_first_s"] = av["t_first_s"].to_numpy()
    zones["t_last_s"] = av["t_last_s"].to_numpy()
    # Per operator, over the zone's cells where it has enough evidence.
    per_op = _zone_operator_figures(zones["zone_id"].to_numpy(), labels, op_view, op_hist)
    per_op = per_op.sort_values(["zone_id", "operator"]).reset_index(drop=True)
    cols = ["zone_id", "area_km2", "n_cells", "n_villages", "villages", "households", "n_samples", "t_first_s", "t_last_s", "geometry"]
    return zones[cols], per_op


def _zone_operator_figures(zone_ids: np.ndarray, labels: np.ndarray, op_view: pd.DataFrame,
                           op_hist: np.ndarray) -> pd.DataFrame:
    """:data:`ZONE_OPERATOR_COLUMNS` of every (zone, operator) with cells of enough evidence, in one pass.

    Rows are sorted by zone and operator and cut into groups: the pooled histograms are
    ``np.add.reduceat`` sums, the counts likewise, and ``rscp_dbm_p50``/``rxlev_dbm_p50`` the
    lower median of each group's finite cell medians (as the histogram percentiles).
    """
    if not len(op_view):
        return pd.DataFrame(columns=ZONE_OPERATOR_COLUMNS)
    zone_of = labels[op_view["cell"].to_numpy()]
    sel = (zone_of > 0) & (op_view["cell_class"].to_numpy() != int(CellClass.INSUFFICIENT))
    if not sel.any():
        return pd.DataFrame(columns=ZONE_OPERATOR_COLUMNS)
    zone = zone_of[sel].astype(np.int64)
    op_code, op_names = pd.factorize(op_view["operator"].to_numpy()[sel].astype(str), sort=True)
    order = np.lexsort((op_code, zone))
    key = zone[order] * len(op_names) + op_code[order]
    starts = np.r_[0, np.flatnonzero(np.diff(key)) + 1]
    sub = op_view.loc[sel]
    n = np.add.reduceat(sub["n_samples"].to_numpy(dtype=np.int64)[order], starts)
    n4 = np.add.reduceat(sub["n_4g"].to_numpy(dtype=np.int64)[order], starts)
    pooled = np.add.reduceat(op_hist[sel][order], starts, axis=0).reshape(len(starts), NBINS)
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(order)]))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n > 0, n4 / np.maximum(n, 1), np.nan)
    return pd.DataFrame({
        "zone_id": zone_ids[zone[order][starts] - 1], "operator": np.asarray(op_names)[op_code[order][starts]],
        "n_cells": np.diff(np.r_[starts, len(order)]), "n_samples": n, "n_4g": n4, "share_4g": share,
        "rsrp_dbm_p10": hist_percentile(pooled, 0.10), "rsrp_dbm_p50": hist_percentile(pooled, 0.50),
        "rscp_dbm_p50": _group_lower_median(sub["rscp_dbm_p50"].to_numpy(dtype=float)[order], group, len(starts)),
        "rxlev_dbm_p50": _group_lower_median(sub["rxlev_dbm_p50"].to_numpy(dtype=float)[order], group, len(starts)),
    }, columns=ZONE_OPERATOR_COLUMNS)


def _group_lower_median(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group (0..n_groups-1): the lower median of its finite values, NaN when it has none."""
    ok = np.isfinite(values)
    v, g = values[ok], group[ok]
    order = np.lexsort((v, g))
    v = v[order]
    count = np.bincount(g, minlength=n_groups)
    first = np.r_[0, np.cumsum(count)[:-1]]
    out = np.full(n_groups, np.nan)
    has = count > 0
    out[has] = v[first[has] + (count[has] - 1) // 2]
    return out


def needs_measurement_areas(classes: np.ndarray, grid: Grid, villages: gpd.GeoDataFrame, level: str) -> gpd.GeoDataFrame:
    """Village areas whose cells lack enough evidence, one (multi)polygon per village.

    Only the insufficient-evidence cells under villages are polygonised, and each
    village is intersected with the few polygons under it (a spatial index finds them),
    so the cost follows the villages, not the study area (a province is mostly
    unmeasured land between villages).
    """
    mask = classes == int(CellClass.INSUFFICIENT)
    cols = ["village_id", "name", level, "households", "area_km2", "geometry"]
    if not mask.any():
        return gpd.GeoDataFrame({c: [] for c in cols[:-1]}, geometry=[], crs=grid.crs)
    vgeoms = villages.geometry.to_numpy()
    drawn = [(g, 1) for g in vgeoms if g is not None and not g.is_empty]
    if drawn:
        mask &= rasterio.features.rasterize(drawn, out_shape=mask.shape, transform=grid.transform, fill=0,
                                            dtype="uint8", all_touched=True).astype(bool)
    polys = np.array([shapely.geometry.shape(g) for g, v in rasterio.features.shapes(
        mask.astype(np.uint8), mask=mask, transform=grid.transform, connectivity=4) if v == 1], dtype=object)
    geoms = np.array([shapely.Polygon()] * len(vgeoms), dtype=object)
    if len(polys):
        which, hit = shapely.STRtree(polys).query(vgeoms, predicate="intersects")
        for i, ps in zip(*_groups(which, hit)):
            geom = vgeoms[i]
            area = polys[ps[0]] if len(ps) == 1 else shapely.union_all(polys[ps])
            part = geom if shapely.covers(area, geom) else shapely.intersection(geom, area)
            geoms[i] = shapely.union_all([p for p in shapely.get_parts(part) if p.geom_type == "Polygon"])
    out = gpd.GeoDataFrame(villages[["village_id", "name", level, "households"]].copy(), geometry=geoms, crs=grid.crs)
    out["area_km2"] = np.round(shapely.area(geoms) / 1e6, 6)
    out = out[out["area_km2"] > 0]
    return out[cols].reset_index(drop=True)


def _groups(keys: np.ndarray, values: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    """The distinct ``keys`` and, for each, its ``values`` (keys sorted, as ``STRtree.query`` gives them)."""
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    cuts = np.flatnonzero(np.diff(keys)) + 1
    return [int(k) for k in keys[np.r_[0, cuts]]] if len(keys) else [], np.split(values, cuts) if len(keys) else []
