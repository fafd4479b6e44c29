"""Village indicators: coverage shares and 4G verdict, from village pieces.

A *piece* is the part of a village inside one grid cell. Shares of a village's
area, households in dead zones and households passed by fibre are all sums over
its pieces, so every figure adds up exactly to the village total.
"""

from __future__ import annotations

import enum

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from covgap.cellstats import CellClass
from covgap.grid import Grid
from covgap.validate import check_columns, check_geodataframe


class Verdict(str, enum.Enum):
    """4G verdict of a village."""

    MEETS = "meets"
    FAILS = "fails"
    INSUFFICIENT = "insufficient evidence"


def village_pieces(villages: gpd.GeoDataFrame, grid: Grid, density: np.ndarray | None = None) -> gpd.GeoDataFrame:
    """Split each village by the grid: one row per (village, cell) with its area and weight.

    Parameters
    ----------
    villages
        Village polygons in the grid's CRS (row order = village index).
    grid
        The analysis grid.
    density
        Optional flat array (one value per cell) of population density used to
        spread households within a village; ``None`` spreads them by area.

    Returns
    -------
    GeoDataFrame with ``village`` (row index), ``cell``, ``area_m2``, ``weight_share``
    (the piece's share of the village's households; sums to 1 per village) and the
    piece geometry.

    Notes
    -----
    ``weight = area_m2 × density(cell)``; a village whose weights are all zero (no
    people in the raster) falls back to area, so its households are not lost.
    """
    check_geodataframe(villages, "villages", crs=grid.crs)
    rows_v, rows_c, geoms = [], [], []
    for i, geom in enumerate(villages.geometry.to_numpy()):
        cells = grid.cells_in_bounds(geom.bounds)
        if len(cells) == 0:
            continue
        shapely.prepare(geom)
        boxes = grid.cell_boxes(cells)
        hit = shapely.intersects(geom, boxes)
        cells, boxes = cells[hit], boxes[hit]
        inside = shapely.contains_properly(geom, boxes)
        parts = boxes.copy()
        if (~inside).any():
            parts[~inside] = _clip_to_boxes(geom, boxes[~inside])
        rows_v.append(np.full(len(cells), i, dtype=np.int64))
        rows_c.append(cells)
        geoms.append(parts)
    if not rows_v:
        return gpd.GeoDataFrame({"village": [], "cell": [], "area_m2": [], "weight_share": []}, geometry=[], crs=grid.crs)
    village = np.concatenate(rows_v)
    cell = np.concatenate(rows_c)
    geom = np.concatenate(geoms)
    area = shapely.area(geom)
    keep = area > grid.size * grid.size * 1e-6  # drop slivers of reprojection round-off
    village, cell, geom, area = village[keep], cell[keep], geom[keep], area[keep]
    weight = area * (density[cell] if density is not None else 1.0)
    total = np.bincount(village, weights=weight, minlength=len(villages))
    area_total = np.bincount(village, weights=area, minlength=len(villages))
    fallback = total[village] <= 0
    share = np.where(fallback, area / np.maximum(area_total[village], 1e-12), weight / np.maximum(total[village], 1e-12))
    return gpd.GeoDataFrame({"village": village, "cell": cell, "area_m2": area, "weight_share": share},
                            geometry=geom, crs=grid.crs)


def _clip_to_boxes(geom: shapely.Geometry, boxes: np.ndarray) -> np.ndarray:
    """``geom ∩ box`` for each box: GEOS's rectangle clipping (about 2.5 times faster than a general
    intersection), with the general intersection wherever the clipped result is not a valid geometry
    (rectangle clipping does not promise one)."""
    bounds = shapely.bounds(boxes)
    out = np.array([shapely.clip_by_rect(geom, *b) for b in bounds], dtype=object)
    bad = ~shapely.is_valid(out)
    if bad.any():
        out[bad] = shapely.intersection(boxes[bad], geom)
    return out


def compute_signal_indicators(villages: gpd.GeoDataFrame, pieces: pd.DataFrame, classes: np.ndarray,
                              any_view: pd.DataFrame, zone_labels: np.ndarray, grid: Grid, *,
                              min_evidence_share: float, min_covered_share: float) -> pd.DataFrame:
    """Coverage shares, households in dead zones, evidence and the 4G verdict per village.

    Returns one row per village (same order) with ``area_km2``; ``share_covered``,
    ``share_weak``, ``share_no_4g``, ``share_dead`` (no service), ``share_unmeasured``
    (shares of the village area by cell class of the any-operator view; they sum to
    1); ``share_measured`` and ``measured_km2`` (area with enough evidence);
    ``evidence_share`` (share of the village's households living in measured cells);
    ``covered_of_measured`` (share of those households that live in covered cells);
    ``households_in_dead_zones``; ``n_samples`` (samples of the cells, apportioned by
    the share of each cell inside the village); ``t_last_s`` and ``verdict_4g``.

    Notes
    -----
    Households are spread over a village by its pieces' ``weight_share`` (population
    raster, else area). With ``e = Σ weight_share`` over pieces in measured cells and
    ``c = Σ weight_share`` over pieces in covered cells (DESIGN.md §3.7):
    ``verdict_4g`` is *insufficient evidence* when ``e < min_evidence_share``;
    otherwise *meets* when ``c / e ≥ min_covered_share`` (default 0.95, QCVN 81:2019
    availability), else *fails*.
    """
    check_geodataframe(villages, "villages", crs=grid.crs, columns=["households"])
    check_columns(pieces, "pieces", ["village", "cell", "area_m2", "weight_share"])
    n = len(villages)
    v = pieces["village"].to_numpy()
    c = pieces["cell"].to_numpy()
    area = pieces["area_m2"].to_numpy(dtype=float)
    weight = pieces["weight_share"].to_numpy(dtype=float)
    cls = classes.ravel()[c]
    total_area = np.bincount(v, weights=area, minlength=n)
    out = pd.DataFrame(index=range(n))
    out["area_km2"] = np.round(total_area / 1e6, 6)
    for name, klass in (("covered", CellClass.COVERED), ("weak", CellClass.WEAK), ("no_4g", CellClass.NO_4G),
                        ("dead", CellClass.NO_SERVICE), ("unmeasured", CellClass.INSUFFICIENT)):
        part = np.bincount(v, weights=np.where(cls == int(klass), area, 0.0), minlength=n)
        out[f"share_{name}"] = np.where(total_area > 0, part / np.maximum(total_area, 1e-12), np.nan)
    out["share_measured"] = 1.0 - out["share_unmeasured"]
    out["measured_km2"] = np.round(out["share_measured"].to_numpy() * total_area / 1e6, 6)
    measured = cls != int(CellClass.INSUFFICIENT)
    evidence = np.minimum(np.bincount(v, weights=np.where(measured, weight, 0.0), minlength=n), 1.0)
    covered = np.bincount(v, weights=np.where(cls == int(CellClass.COVERED), weight, 0.0), minlength=n)
    out["evidence_share"] = np.where(total_area > 0, evidence, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["covered_of_measured"] = np.where(evidence > 1e-12, covered / np.maximum(evidence, 1e-12), np.nan)
    hh = villages["households"].to_numpy(dtype=float)
    in_zone = zone_labels[c] > 0
    out["households_in_dead_zones"] = np.round(
        np.bincount(v, weights=np.where(in_zone, weight, 0.0), minlength=n) * hh, 1)
    cell_n = np.zeros(grid.ncells)
    cell_t = np.full(grid.ncells, np.nan)
    if not any_view.empty:
        cell_n[any_view["cell"].to_numpy()] = any_view["n_samples"].to_numpy(dtype=float)
        cell_t[any_view["cell"].to_numpy()] = any_view["t_last_s"].to_numpy(dtype=float)
    frac = area / (grid.size * grid.size)
    out["n_samples"] = np.rint(np.bincount(v, weights=cell_n[c] * frac, minlength=n)).astype(np.int64)
    out["t_last_s"] = pd.Series(cell_t[c]).groupby(v).max().reindex(range(n)).to_numpy()
    verdict = np.where(
        (total_area <= 0) | (evidence < min_evidence_share - 1e-9), Verdict.INSUFFICIENT.value,
        np.where(out["covered_of_measured"] >= min_covered_share - 1e-12, Verdict.MEETS.value, Verdict.FAILS.value),
    )
    out["verdict_4g"] = verdict
    return out
