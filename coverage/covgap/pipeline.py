"""The end-to-end pipeline: layers × measurements × fibre → indicators and scorecards.

``run_pipeline`` = :func:`load_layers` → :func:`ingest_measurements` →
:func:`analyse`. Each stage logs one INFO line with its counts. ``analyse`` is
pure (no file I/O), so the refresh command reuses it on merged cell statistics.
The data types (:class:`Layers`, :class:`ReadReport`, :class:`Results`) live in
:mod:`covgap.model`; they are importable from here too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import rasterio.features
import rasterio.warp
import shapely

from covgap import cellstats, deadzones, fibre as fibre_mod, ingest, layers as layers_mod, measurements as meas, scorecard
from covgap import names, plans as plans_mod, roads as roads_mod, villages as villages_mod
from covgap.model import Layers, OperatorView, ReadReport, Results
from covgap.store import FileRecord, report_frame
from covgap.cellstats import CellClass
from covgap.config import Config
from covgap.errors import InputError
from covgap.grid import Grid, make_grid

log = logging.getLogger(__name__)

__all__ = ["Layers", "OperatorView", "ReadReport", "Results", "analyse", "ingest_measurements", "load_layers",
           "run_pipeline"]


def load_layers(config: Config, *, villages: gpd.GeoDataFrame | None = None, communes: gpd.GeoDataFrame | None = None,
                fibre: gpd.GeoDataFrame | None = None) -> Layers:
    """Read villages, communes (report level) and fibre; choose the CRS; make the grid.

    Parameters
    ----------
    config
        The run's configuration; its ``[inputs]`` name the files.
    villages, communes, fibre
        In-memory layers to use instead of the configured files (``communes``: the report
        level's, ``[report] level``). They go through the same column mapping
        (``[inputs.village_columns]``…) and checks as files; errors name them
        ``villages (GeoDataFrame)``… instead of a path.
    """
    inputs = config.inputs
    level = config.report.level
    levels = list(inputs.communes)
    communes_src = communes if communes is not None else inputs.communes[level]
    villages_src = villages if villages is not None else inputs.villages
    fibre_src = fibre if fibre is not None else inputs.fibre
    communes_path = layers_mod.source_label(communes_src, f"communes ({level})")
    villages_path = layers_mod.source_label(villages_src, "villages")
    # The working CRS is derived from the communes, read once in WGS84 terms.
    raw = layers_mod.read_vector(communes_src, f"communes ({level})")
    crs = layers_mod.working_crs(raw, config.study.crs)
    commune_columns = {k: v for k, v in inputs.commune_columns.items() if isinstance(v, str)}
    commune_columns.update(inputs.commune_columns.get(level, {}) if isinstance(inputs.commune_columns.get(level), dict) else {})
    communes = layers_mod.read_communes(communes_src, crs=crs, level=level, columns=commune_columns)
    table = (layers_mod.read_persons_per_household_table(inputs.persons_per_household_table, levels)
             if inputs.persons_per_household_table else None)
    villages = layers_mod.read_villages(villages_src, levels=levels, crs=crs, point_radius_m=inputs.village_point_radius_m,
                                        columns=inputs.village_columns, persons_per_household=inputs.persons_per_household,
                                        unit_persons_per_household=table)
    villages = layers_mod.reconcile_unit_names(villages, level, list(communes["name"]), villages_path=villages_path,
                                               communes_path=communes_path)
    study_area = shapely.union_all(communes.geometry.to_numpy())
    layers_mod.check_villages_in_study_area(villages, study_area, villages_path=villages_path, communes_path=communes_path)
    fibre = layers_mod.read_fibre(fibre_src, crs=crs, columns=inputs.fibre_columns, status_values=inputs.fibre_status)
    fibre_display = layers_mod.clip_fibre_for_display(fibre, study_area, margin_m=config.fibre.display_margin_m)
    grid = make_grid(tuple(study_area.bounds), size=config.grid.cell_size_m, crs=crs)
    inside = rasterio.features.rasterize([(study_area, 1)], out_shape=(grid.nrows, grid.ncols), transform=grid.transform,
                                         fill=0, dtype="uint8", all_touched=True).astype(bool)
    density = _density_on_grid(inputs.population, grid) if inputs.population else None
    log.info("layers: %d villages, %d communes (%s), %d fibre routes; CRS %s; grid %d×%d cells of %g m",
             len(villages), len(communes), level, len(fibre), crs.to_string(), grid.nrows, grid.ncols, grid.size)
    # The input files (hashed in run.json and the partner READMEs); an in-memory layer is not a file.
    files = (*((Path(inputs.villages),) if villages is None else ()),
             *(Path(p) for lv, p in inputs.communes.items() if communes is None or lv != level),
             *((Path(inputs.fibre),) if fibre is None else ()))
    if inputs.population:
        files += (Path(inputs.population),)
    if inputs.persons_per_household_table:
        files += (Path(inputs.persons_per_household_table),)
    roads = None
    if inputs.roads:
        roads = layers_mod.read_roads(inputs.roads, crs=crs)
        files += (Path(inputs.roads),)
    context: dict[str, gpd.GeoDataFrame] = {}
    for entry in inputs.context:  # drawn on the maps only
        layer = layers_mod.read_context(entry.path, kind=entry.kind, label=entry.label, crs=crs, study_area=study_area)
        context[entry.kind] = (gpd.GeoDataFrame(pd.concat([context[entry.kind], layer], ignore_index=True), crs=crs)
                               if entry.kind in context else layer)
        files += (Path(entry.path),)
    return Layers(crs=crs, grid=grid, villages=villages, communes=communes, fibre=fibre, study_area=study_area,
                  inside=inside, density=density, input_files=files, fibre_display=fibre_display, roads=roads,
                  context=context)


def _density_on_grid(path: Path, grid: Grid) -> np.ndarray:
    """Population density resampled onto the grid (bilinear), as a flat array ≥ 0."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, ["population raster not found (check [inputs] population in covgap.toml)"])
    try:
        with rasterio.open(path) as src:
            dest = np.zeros((grid.nrows, grid.ncols), dtype=np.float64)
            rasterio.warp.reproject(
                source=rasterio.band(src, 1), destination=dest, dst_transform=grid.transform, dst_crs=grid.crs,
                dst_nodata=0.0, resampling=rasterio.warp.Resampling.bilinear,
            )
    except rasterio.errors.RasterioIOError as err:
        raise InputError(path, [f"cannot read the population raster: {err}"]) from err
    return np.clip(np.nan_to_num(dest, nan=0.0), 0, None).ravel()


def ingest_measurements(files: list[Path], layers: Layers, config: Config, *,
                        now_s: float | None = None, workers: int | None = None) -> tuple[pd.DataFrame, ReadReport]:
    """Read every measurement file into merged cell statistics and a report of every row.

    The same reading as ``covgap run`` and ``covgap refresh`` (:class:`covgap.ingest.Batch`, with the
    engine of ``config.engine``; ``workers``: processes for large files, default ``[engine] workers``),
    with the rejected rows kept in memory (``report.rejected``) instead of a store.
    A file that cannot be used is refused (listed in ``report.files`` with status
    ``refused`` and its reason) and the others are read; an unexpected error in one
    file refuses that file with reason ``internal_error`` (traceback in ``report.errors``).

    Raises
    ------
    InputError
        No file could be used; every file is named with its reason.
    """
    ctx = ingest.read_context(layers, config, now_s=now_s)
    records: list[FileRecord] = []
    rejected: list[pd.DataFrame] = []
    used_paths: list[Path] = []
    refused: list[tuple[Path, str]] = []
    errors: list[str] = []
    with ingest.Batch(layers, ctx, on_rejected=rejected.append, workers=workers, engine=config.engine) as batch:
        for path, got in batch.add_files((Path(p), None) for p in files):  # small files on the workers too
            if isinstance(got, InputError):
                refused.append((path, str(got)))
                log.warning("refused %s", got)
            elif isinstance(got, Exception):  # a bug on this file: refuse it, keep the traceback, read the others
                message, trace = ingest.internal_error_reason(path, got)
                refused.append((path, message))
                errors.append(trace)
                log.warning("refused %s", message)
                log.debug("%s", trace)
            else:
                used_paths.append(path)
        records = batch.finish()
        parts = [batch.stats_of(t) for t in batch.taken]
    if not records:
        where = Path(files[0]).parent if len(files) > 1 else Path(files[0]) if files else Path(".")
        raise InputError(where, ["no measurement file could be used: " + "; ".join(m for _, m in refused)]
                         if refused else ["no measurement file given"])
    report = ReadReport(paths=used_paths, files=report_frame(records, [(p.name, m) for p, m in refused]),
                        errors=errors, sha256={r.path: r.sha256 for r in records})
    if rejected:  # in file order, then line order (duplicates are found after the other rejected rows)
        order = {p.name: i for i, p in reversed(list(enumerate(used_paths)))}
        every = pd.concat(rejected, ignore_index=True)
        every = every.assign(_f=every["source_file"].map(order)).sort_values(["_f", "source_row"], kind="mergesort")
        report.rejected = every.drop(columns="_f").reset_index(drop=True)
    stats = cellstats.merge_stats(*parts)
    log.info("measurements: %d files (%d refused), %d rows read, %d used, %d rejected; %d cell statistics",
             len(files), len(refused), report.rows_read, report.rows_used, report.rows_rejected, len(stats))
    return stats, report


@dataclass
class LayerSide:
    """What the analysis works out from the layers and the configuration alone: it never depends on
    the measurements (:func:`layer_side`)."""

    pieces: gpd.GeoDataFrame | None  # village ∩ cell pieces (villages.village_pieces); None: not sent back
    road_graph: Any  # roads.RoadGraph, or None without a road layer
    fibre_ind: pd.DataFrame  # the fibre figures of each village (fibre.compute_fibre_indicators)
    reach: pd.DataFrame  # the fibre reach of each commune centre
    fibre_plan: Any  # plans.FibrePlan


def layer_side(layers: Layers, config: Config) -> LayerSide:
    """The pieces of the villages cut by the grid, the road graph, the fibre figures of villages and commune
    centres and the fibre plan: everything of the analysis that needs no measurement."""
    pieces = villages_mod.village_pieces(layers.villages, layers.grid, layers.density)
    road_graph = roads_mod.build_road_graph(layers.roads.geometry.to_numpy()) if layers.roads is not None else None
    passed = None
    if not one_process(config) and len(pieces) >= fibre_mod.TWO_PROCESS_PIECES:  # a province: the longest part
        passed = fibre_mod.passed_areas_two_processes(pieces.geometry.to_numpy(), pieces["area_m2"].to_numpy(dtype=float),
                                                      fibre_mod.route_lines(layers.fibre), config.fibre.drop_distance_m)
    fibre_ind, reach, fibre_plan = _fibre_side(layers, pieces, road_graph, config, passed)
    return LayerSide(pieces=pieces, road_graph=road_graph, fibre_ind=fibre_ind, reach=reach, fibre_plan=fibre_plan)


#: The early layer side sends its village pieces back when the villages' boxes hold at most this many cells (an
#: upper bound of the pieces: the sample's 25,722 pieces take 0.05 s to send); beyond, the main process cuts its
#: own while the child works (a province's 191,766 took a second to send, and two to cut beside the child's).
SHIPPED_PIECES_CELLS = 100_000


def _ships_pieces(layers: Layers) -> bool:
    """Whether a forked :func:`layer_side` sends its pieces back (see :data:`SHIPPED_PIECES_CELLS`)."""
    boxes = shapely.bounds(layers.villages.geometry.to_numpy())
    return int(layers.grid.count_cells_in_bounds(boxes).sum()) <= SHIPPED_PIECES_CELLS


def _layer_side_in_child(layers: Layers, config: Config, parent: int, niceness: int = 0) -> LayerSide:
    """:func:`layer_side` as a forked child works it out for the process ``parent``: at a lower priority
    (``niceness``), its pieces sent back only when they are few (:func:`_ships_pieces`; else the main process
    cuts its own meanwhile). Run in ``parent`` itself (one core: nothing forked), it is :func:`layer_side`."""
    if os.getpid() == parent:
        return layer_side(layers, config)
    if niceness:
        os.nice(niceness)
    side = layer_side(layers, config)
    if not _ships_pieces(layers):
        side.pieces = None
    return side


def start_layer_side(layers: Layers, config: Config):
    """:func:`layer_side` started now, in a forked child (:class:`covgap.forked.Forked`), for :func:`analyse`.

    ``covgap run`` and ``refresh`` start it as soon as the layers are loaded: while the
    measurements are read it takes the time a core is left idle (it runs at a lower
    priority than the reading processes), and by the analysis it is done (a refresh of one
    file reads it in one process: the other core works out this side meanwhile). Use it
    as a context manager around the reading and the analysis, so an error or Ctrl-C there
    stops it. With one core it is worked out in :func:`analyse` instead.
    """
    from covgap.forked import Forked

    return Forked(_layer_side_in_child, layers, config, os.getpid(), LAYER_SIDE_NICENESS, inline=one_process(config),
                  with_children=True)


class ReadyLayerSide:
    """A layer side worked out beforehand, in the form :func:`start_layer_side` gives one (for ``early`` of
    :func:`analyse`): ``covgap watch`` works it out once for every refresh that follows (covgap.watch)."""

    forked = False

    def __init__(self, side: LayerSide):
        if side.pieces is None:
            raise ValueError("a layer side worked out beforehand must hold its village pieces")
        self._side = side

    def __enter__(self) -> ReadyLayerSide:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def result(self) -> LayerSide:
        return self._side


#: How much lower the priority of the early :func:`layer_side` is than the reading processes' (``nice``).
LAYER_SIDE_NICENESS = 10


def analyse(layers: Layers, stats: pd.DataFrame, config: Config, report: ReadReport | None = None, *,
            early=None) -> Results:
    """Classes, dead zones, village indicators and scorecards from cell statistics (no I/O).

    The work runs on both cores (:mod:`covgap.forked`; all in this process when only one
    core may be used). What needs no measurement (:func:`layer_side`) is worked out by a
    forked child: ``early``, started by :func:`start_layer_side` while the measurements
    were read, or else one started here, beside the classes of the cells. Then a second
    child works out each operator's own gap zones and village figures and the village areas
    that need measuring, while this process delineates and describes the gap zones of any
    operator, the village signal figures and the measurement plan.
    """
    from covgap.forked import Forked

    grid = layers.grid
    sig = config.signal
    one_core = one_process(config)
    with early if early is not None else Forked(_layer_side_in_child, layers, config, os.getpid(), inline=one_core,
                                                with_children=True) as first:
        op_view, op_hist = cellstats.operator_view(stats, covered_dbm=sig.covered_dbm, dead_dbm=sig.dead_dbm,
                                                   usable_3g_dbm=sig.usable_3g_dbm, usable_2g_dbm=sig.usable_2g_dbm,
                                                   min_samples=sig.min_samples, min_time_spread_hours=sig.min_time_spread_hours)
        any_view = cellstats.best_operator_view(op_view)
        classes = cellstats.class_raster(any_view, grid, layers.inside)
        best_flat = np.full(grid.ncells, np.nan)
        if not any_view.empty:
            best_flat[any_view["cell"].to_numpy()] = any_view["rsrp_dbm_p50"].to_numpy(dtype=float)
        best = np.where(layers.inside.ravel(), best_flat, np.nan).reshape(grid.nrows, grid.ncols)
        operators = sorted(op_view["operator"].unique().tolist()) if not op_view.empty else []
        partner_operators = _partner_operators(operators, layers.fibre)
        side: LayerSide | None = None
        if first.forked and not _ships_pieces(layers):  # many pieces: cut here while the child works (it keeps its own)
            pieces = villages_mod.village_pieces(layers.villages, grid, layers.density)
        else:
            side = first.result()
            pieces = side.pieces
        assert pieces is not None
        # The operators' own views are shared out: every other one to a second child (each takes about as long);
        # all of them when this process also works out the measurement plan (roads: the longest part, 0.4 s of
        # the sample's). An error or Ctrl-C in this process's part: the children's work is abandoned with it
        # (Forked stops them).
        planning = layers.roads is not None and len(layers.roads) > 0
        theirs, ours = (partner_operators, []) if planning else (partner_operators[0::2], partner_operators[1::2])
        with Forked(_operator_views_and_needs, op_view, op_hist, any_view, pieces, layers, theirs, classes,
                    config, inline=one_core) as other_side:
            described, zone_labels = _gap_zones(classes, layers, pieces, any_view, op_view, op_hist, config)
            (zones, zone_ops), (no4g_zones, no4g_ops) = described["no_service"], described["no_4g"]
            labels = zone_labels["no_service"]

            vc = config.villages
            signal_ind = villages_mod.compute_signal_indicators(layers.villages, pieces, classes, any_view, labels, grid,
                                                                min_evidence_share=config.evidence.village_min_share,
                                                                min_covered_share=vc.min_covered_share)
            our_views = _operator_views(op_view, op_hist, any_view, pieces, layers, ours, config)
            if side is None:
                side = first.result()
            road_graph = side.road_graph
            measurement_plan = None
            if road_graph is not None and len(road_graph.xy):
                signal_villages = gpd.GeoDataFrame(pd.concat([layers.villages.reset_index(drop=True), signal_ind], axis=1),
                                                   geometry="geometry", crs=layers.crs)
                ev = config.evidence
                measurement_plan = plans_mod.plan_measurements(
                    signal_villages, pieces, classes, grid, road_graph, start_xy=_plan_start(config, layers.communes),
                    level=config.report.level, km_per_day=config.plans.drive_km_per_day,
                    village_min_share=ev.village_min_share, area_min_share=ev.area_min_share)
            their_views, needs = other_side.result()
    fibre_ind, reach, fibre_plan = side.fibre_ind, side.reach, side.fibre_plan
    per_operator, operator_zones = _joined_views(partner_operators, their_views, our_views)
    villages = pd.concat([layers.villages.reset_index(drop=True), signal_ind, fibre_ind], axis=1)
    villages = gpd.GeoDataFrame(villages, geometry="geometry", crs=layers.crs)
    communes = pd.concat([layers.communes.reset_index(drop=True), reach], axis=1)
    per_commune, district = scorecard.compute_scorecards(villages, zones, communes, level=config.report.level,
                                                         goal_share=config.fibre.goal_share,
                                                         min_evidence_share=config.evidence.area_min_share,
                                                         study_name=config.study.name)
    per_commune = _with_plan_figures(per_commune, fibre_plan.units, "name", level=config.report.level)
    district = _with_plan_figures(district, fibre_plan.units.iloc[:1], None, level="district")
    communes = gpd.GeoDataFrame(
        communes[["commune_id", "name", "centre", "centre_source", "geometry"]].merge(
            per_commune, on=["commune_id", "name"], how="left"),
        geometry="geometry", crs=layers.crs)
    long = scorecard.scorecard_long(district, goal_share=config.fibre.goal_share, lang=config.output.lang)
    t = stats["t_first_s"].dropna() if not stats.empty else pd.Series(dtype=float)
    t2 = stats["t_last_s"].dropna() if not stats.empty else pd.Series(dtype=float)
    period = (float(t.min()) if len(t) else np.nan, float(t2.max()) if len(t2) else np.nan)
    log.info("analysis: %d measured cells (%s), %d dead zones (%.2f km²), %d no-4G zones (%.2f km²), "
             "villages 4G %d meet / %d fail / %d insufficient",
             len(any_view), ", ".join(f"{CellClass(k).label} {n}" for k, n in
                                      enumerate(np.bincount(any_view["cell_class"].to_numpy(dtype=np.int64))) if k and n)
             or "none",
             len(zones), float(zones["area_km2"].sum()) if len(zones) else 0.0,
             len(no4g_zones), float(no4g_zones["area_km2"].sum()) if len(no4g_zones) else 0.0,
             int(district["villages_meeting_4g"].iloc[0]), int(district["villages_failing_4g"].iloc[0]),
             int(district["villages_insufficient_4g"].iloc[0]))
    return Results(config=config, layers=layers, stats=stats, op_view=op_view, op_hist=op_hist, any_view=any_view,
                   classes=classes,
                   best_p50=best, villages=villages, communes=communes, zones=zones, zone_operators=zone_ops,
                   no4g_zones=no4g_zones, no4g_zone_operators=no4g_ops, operator_zones=operator_zones, pieces=pieces, per_operator=per_operator,
                   needs_measurement=needs, district=district, scorecard_long=long,
                   report=report or ReadReport(), operators=operators, partner_operators=partner_operators,
                   data_period=period, fibre_plan=fibre_plan, measurement_plan=measurement_plan)


def _fibre_side(layers: Layers, pieces: gpd.GeoDataFrame, road_graph, config: Config, passed_area: np.ndarray | None = None):
    """The fibre figures of villages and commune centres and the fibre plan: (village figures, commune reach, plan).
    ``passed_area``: the pieces' areas within the drop distance, when worked out already."""
    fib = config.fibre
    fibre_ind = fibre_mod.compute_fibre_indicators(layers.villages, pieces, layers.fibre,
                                                   drop_distance_m=fib.drop_distance_m, goal_share=fib.goal_share,
                                                   passed_area=passed_area)
    reach = fibre_mod.commune_centre_reach(layers.communes, layers.fibre, reach_m=fib.centre_reach_m)
    villages = gpd.GeoDataFrame(pd.concat([layers.villages.reset_index(drop=True), fibre_ind], axis=1),
                                geometry="geometry", crs=layers.crs)
    fibre_plan = plans_mod.plan_fibre(villages, layers.fibre, level=config.report.level, study_name=config.study.name,
                                      goal_share=fib.goal_share, drop_distance_m=fib.drop_distance_m,
                                      cost_per_m=fib.spur_cost_vnd_per_m, roads=road_graph,
                                      road_snap_m=config.plans.road_snap_m)
    return fibre_ind, reach, fibre_plan


def _operator_views_and_needs(op_view: pd.DataFrame, op_hist: np.ndarray, any_view: pd.DataFrame,
                              pieces: gpd.GeoDataFrame, layers: Layers, operators: list[str], classes: np.ndarray,
                              config: Config):
    """The part of the analysis the second forked child does: the own views of some operators
    (:func:`_operator_views`) and the village areas that need measuring."""
    views = _operator_views(op_view, op_hist, any_view, pieces, layers, operators, config)
    needs = deadzones.needs_measurement_areas(classes, layers.grid, layers.villages, config.report.level)
    return views, needs


def one_process(config: Config) -> bool:
    """Whether the run must stay in one process: ``[engine] workers = 1``, or one core available."""
    workers = config.engine.workers or ingest.default_workers()
    return workers <= 1


def _plan_start(config: Config, communes: gpd.GeoDataFrame) -> tuple[float, float]:
    """Where every measurement day starts (working CRS): ``[plans] start`` or the first commune centre."""
    if config.plans.start:
        lon, lat = (float(p) for p in config.plans.start.split(","))
        point = gpd.GeoSeries([shapely.Point(lon, lat)], crs="EPSG:4326").to_crs(communes.crs).iloc[0]
    else:
        point = gpd.GeoSeries(communes["centre"], crs=communes.crs).iloc[0]
    return float(point.x), float(point.y)


#: Scorecard columns of the fibre plan (communes and district) ← columns of ``FibrePlan.units``.
PLAN_FIGURES = {"fibre_plan_spurs": "spurs", "fibre_plan_m": "spur_m", "fibre_plan_cost_vnd": "cost_vnd",
                "fibre_plan_share_after": "share_after", "fibre_plan_reaches_goal": "reaches_goal"}


def _with_plan_figures(frame: pd.DataFrame, units: pd.DataFrame, key: str | None, *, level: str) -> pd.DataFrame:
    """The scorecard rows with the fibre plan's figures of their unit (``key`` names the unit column; None: one row)."""
    units = units[units["level"] == level]
    frame = frame.copy()
    for col, src in PLAN_FIGURES.items():
        if key is None:
            frame[col] = units[src].iloc[0]
        else:
            frame[col] = frame[key].astype(str).map(dict(zip(units["unit"].astype(str), units[src]))).to_numpy()
    return frame


ZONE_KINDS = (("no_service", CellClass.NO_SERVICE, "DZ"), ("no_4g", CellClass.NO_4G, "N4G"))


def _gap_zones(classes: np.ndarray, layers: Layers, pieces: gpd.GeoDataFrame, any_view: pd.DataFrame,
               op_view: pd.DataFrame, op_hist: np.ndarray, config: Config, *,
               id_prefix: str = "") -> tuple[dict[str, tuple[gpd.GeoDataFrame, pd.DataFrame]], dict[str, np.ndarray]]:
    """Both kinds of gap zone of a class raster (any operator, or one operator's), delineated and described:
    kind (``no_service``, ``no_4g``) → (zones with villages, households and evidence; per-operator figures);
    and kind → the zone of each cell (:func:`covgap.deadzones.label_cells`, rasterised once)."""
    dz = config.dead_zones
    out, labels = {}, {}
    for kind, klass, tag in ZONE_KINDS:
        found = deadzones.delineate_dead_zones(classes, layers.grid, min_area_km2=dz.min_area_km2,
                                               connectivity=dz.connectivity, dead_value=int(klass), prefix=id_prefix + tag)
        labels[kind] = deadzones.label_cells(found, layers.grid)
        out[kind] = deadzones.describe_dead_zones(found, layers.grid, pieces=pieces, villages=layers.villages,
                                                  any_view=any_view, op_view=op_view, op_hist=op_hist,
                                                  labels=labels[kind])
    return out, labels


def _partner_operators(operators: list[str], fibre: gpd.GeoDataFrame) -> list[str]:
    """The measured operators and the owners of fibre routes (names as the measurement reader writes
    them, so "VNPT" in a fibre layer is VNPT-VinaPhone): an owner not yet measured still needs its
    fibre gaps."""
    owners = fibre["operator"].fillna("").astype(str).str.strip() if "operator" in fibre else pd.Series([], dtype=object)
    owners = sorted(set(owners[owners != ""]))
    named = meas.normalise_operator(pd.Series(owners, dtype=object), "") if owners else pd.Series([], dtype=object)
    return sorted(set(operators) | {str(n) for n in named if str(n)})


def _operator_views(op_view: pd.DataFrame, op_hist: np.ndarray, any_view: pd.DataFrame, pieces: gpd.GeoDataFrame,
                    layers: Layers, operators: list[str], config: Config) -> tuple[dict[str, OperatorView], gpd.GeoDataFrame]:
    """Each operator alone: its class raster, its own gap zones of both kinds (measured with enough
    samples) with their figures, and its village indicators; and all the zones as one layer
    (columns ``operator``, ``kind``)."""
    grid = layers.grid
    views, frames = {}, []
    for op in operators:
        mask = (op_view["operator"] == op).to_numpy()
        sub, hist = op_view.loc[mask], op_hist[mask]
        classes = cellstats.class_raster(sub, grid, layers.inside)
        zones, zone_labels = _gap_zones(classes, layers, pieces, any_view, sub, hist, config, id_prefix=f"{_slug(op)}-")
        for kind, (described, _) in zones.items():
            if len(described):
                frames.append(described[["zone_id", "area_km2", "n_cells", "geometry"]].assign(operator=op, kind=kind))
        villages = villages_mod.compute_signal_indicators(layers.villages, pieces, classes, sub, zone_labels["no_service"], grid,
                                                          min_evidence_share=config.evidence.village_min_share,
                                                          min_covered_share=config.villages.min_covered_share)
        views[op] = OperatorView(classes=classes, zones=zones, villages=villages)
    if not frames:
        flat = gpd.GeoDataFrame({"zone_id": [], "area_km2": [], "n_cells": [], "operator": [], "kind": []},
                                geometry=[], crs=grid.crs)
    else:
        flat = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=grid.crs)
    return views, flat


def _joined_views(operators: list[str], *parts: tuple[dict[str, OperatorView], gpd.GeoDataFrame]
                  ) -> tuple[dict[str, OperatorView], gpd.GeoDataFrame]:
    """The :func:`_operator_views` of some operators each, as one call on ``operators`` gives them (same order)."""
    views = {op: part[0][op] for op in operators for part in parts if op in part[0]}
    frames = [part[1] for part in parts if len(part[1])]
    if not frames:
        return views, parts[0][1]
    flat = pd.concat(frames, ignore_index=True)
    rank = {op: i for i, op in enumerate(operators)}
    order = np.argsort(flat["operator"].map(rank).to_numpy(), kind="stable")
    return views, gpd.GeoDataFrame(flat.iloc[order].reset_index(drop=True), geometry="geometry", crs=parts[0][1].crs)


def _slug(text: str) -> str:
    """The operator part of a per-operator zone id: ``VIETTEL-DZ001``, ``VNPTVINA-N4G002``."""
    return names.slugify(text, sep="", max_len=8, default="OP").upper()


#: The name a measurement DataFrame goes by in the reports (``measurement_files.csv``, ``rejected_rows.csv``).
MEASUREMENT_FRAME_NAME = "measurements-dataframe.csv"


def ingest_measurement_frame(frame: pd.DataFrame, layers: Layers, config: Config, *,
                             now_s: float | None = None) -> tuple[pd.DataFrame, ReadReport]:
    """Measurements from an in-memory table, read exactly as a CSV file of the same columns would be.

    The frame is written as a CSV (UTF-8, no index) into a temporary folder, read by
    :func:`ingest_measurements` (format recognition, ``[inputs.columns]``, every row used or rejected
    with its reason) and the folder removed. The reports name it :data:`MEASUREMENT_FRAME_NAME`;
    ``source_row`` in the rejected rows is the frame's row position + 2 (the CSV line, after the header).
    """
    import tempfile

    if not isinstance(frame, pd.DataFrame):
        raise InputError(Path(MEASUREMENT_FRAME_NAME), [f"measurements must be a pandas DataFrame (columns such as lat, "
                                                        f"lon, rsrp, operator, timestamp), got {type(frame).__name__}"])
    table = pd.DataFrame(frame.drop(columns=frame.geometry.name) if isinstance(frame, gpd.GeoDataFrame) else frame)
    with tempfile.TemporaryDirectory(prefix="covgap-measurements-") as tmp:
        path = Path(tmp) / MEASUREMENT_FRAME_NAME
        table.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
        stats, report = ingest_measurements([path], layers, config, now_s=now_s)
    report.paths = []  # not a file of the user's: nothing to hash in run.json or the partner READMEs
    return stats, report


def run_pipeline(config: Config, *, now_s: float | None = None, villages: gpd.GeoDataFrame | None = None,
                 communes: gpd.GeoDataFrame | None = None, fibre: gpd.GeoDataFrame | None = None,
                 measurements: pd.DataFrame | None = None) -> Results:
    """Run every stage on the inputs named in ``config``, or on in-memory layers given instead.

    ``villages``, ``communes`` (the report level's) and ``fibre`` may be GeoDataFrames in place
    of the configured files: same column mapping, same checks, same results
    (:func:`load_layers`). ``measurements`` may be a pandas DataFrame (lat, lon, signal and the
    other columns a measurement CSV has) in place of the configured files: read as that CSV
    would be (:func:`ingest_measurement_frame`).
    """
    layers = load_layers(config, villages=villages, communes=communes, fibre=fibre)
    if measurements is not None:
        stats, report = ingest_measurement_frame(measurements, layers, config, now_s=now_s)
        return analyse(layers, stats, config, report)
    files = meas.list_measurement_files(config.inputs.measurements)
    if not files:  # DESIGN.md §3.7: fibre targets need no measurement; signal targets get 'insufficient evidence'
        log.warning("no measurement files found%s: the signal targets have no evidence yet",
                    "" if config.inputs.measurements else " ([inputs] measurements = [] names none)")
        return analyse(layers, cellstats.empty_stats(), config, ReadReport())
    with start_layer_side(layers, config) as early:  # worked out while the measurements are read
        stats, report = ingest_measurements(files, layers, config, now_s=now_s)
        return analyse(layers, stats, config, report, early=early)
