"""covgap's data types: the layers read, the report of every measurement row, the results.

Every module imports these from here (the analysis makes them, the writers read them), so
the arrows between modules point one way: readers and the analysis → model ← writers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from covgap import measurements as meas, plans as plans_mod
from covgap.config import Config
from covgap.grid import Grid
from covgap.store import REPORT_COLUMNS


@dataclass(frozen=True)
class Layers:
    """The vector layers and the grid, all in the working CRS."""

    crs: CRS
    grid: Grid
    villages: gpd.GeoDataFrame
    communes: gpd.GeoDataFrame
    fibre: gpd.GeoDataFrame
    study_area: shapely.Geometry
    inside: np.ndarray  # (nrows, ncols) bool: cells touching the study area
    density: np.ndarray | None  # flat per-cell population density, or None
    input_files: tuple[Path, ...] = ()
    # The fibre shown on maps and in the GeoPackage: ``fibre`` clipped to the study area and a margin.
    # Every distance (dist_to_fibre_m, spur_length_m, centre reach) uses the whole ``fibre``.
    fibre_display: gpd.GeoDataFrame | None = None

    roads: gpd.GeoDataFrame | None = None  # road centre lines for the plans ([inputs] roads), or None
    # Context layers for the maps only ([inputs] context): kind (roads, rivers, places) → label and geometry.
    context: dict[str, gpd.GeoDataFrame] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fibre_display is None:
            object.__setattr__(self, "fibre_display", self.fibre)


@dataclass
class ReadReport:
    """What happened to every measurement row: per file, rows read, used and rejected by reason."""

    files: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REPORT_COLUMNS))  # taken and refused
    rejected: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["source_file", "source_row", "reason", "detail", "raw_fields"]))
    paths: list[Path] = field(default_factory=list)  # the measurement files used (partner READMEs name them)
    # SHA-256 of each file's bytes when it was taken in, by resolved path (FileRecord.path): the partner
    # READMEs give these rather than hashing the files again (gigabytes, and maybe changed or moved since).
    sha256: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # tracebacks of the files refused for an internal error
    # Writes rejected_rows.csv from files on disk instead of ``rejected`` (the refresh store streams them).
    write_rejected: Callable[[Path], int] | None = None

    @property
    def rows_read(self) -> int:
        return int(self.files["rows_read"].sum())

    @property
    def rows_used(self) -> int:
        return int(self.files["rows_used"].sum())

    @property
    def rows_rejected(self) -> int:
        return int(self.files["rows_rejected"].sum())

    def reason_counts(self) -> dict[str, int]:
        return {r: int(self.files[r].sum()) for r in meas.REJECT_REASONS if int(self.files[r].sum())}


@dataclass
class OperatorView:
    """One operator alone: what its partner package and its map view show (computed once, in the analysis)."""

    classes: np.ndarray  # (nrows, ncols) uint8 CellClass of this operator's cells, 0 outside
    zones: dict[str, tuple[gpd.GeoDataFrame, pd.DataFrame]]  # kind (no_service / no_4g) → described zones, figures
    villages: pd.DataFrame  # signal indicators of every village for this operator alone


@dataclass
class Results:
    """Everything the outputs, maps and partner packages are made from (working CRS)."""

    config: Config
    layers: Layers
    stats: pd.DataFrame  # mergeable cell statistics (cellstats.STAT_COLUMNS)
    op_view: pd.DataFrame  # per cell and operator: class and figures
    op_hist: np.ndarray  # (len(op_view), 97) 4G histogram of each op_view row
    any_view: pd.DataFrame  # per measured cell: best operator class and figures
    classes: np.ndarray  # (nrows, ncols) uint8 CellClass, 0 outside
    best_p50: np.ndarray  # (nrows, ncols) float, best operator median RSRP, NaN where unknown
    villages: gpd.GeoDataFrame  # villages with every indicator
    communes: gpd.GeoDataFrame  # communes of the report level with their scorecard
    zones: gpd.GeoDataFrame  # dead zones: no service from any operator
    zone_operators: pd.DataFrame  # per dead zone and operator figures
    no4g_zones: gpd.GeoDataFrame  # no-4G zones: best operator gives 2G/3G only
    no4g_zone_operators: pd.DataFrame  # per no-4G zone and operator figures
    operator_zones: gpd.GeoDataFrame  # per-operator gap zones (columns operator, kind = no_service / no_4g)
    pieces: gpd.GeoDataFrame  # village ∩ cell pieces with their household weight (villages.village_pieces)
    per_operator: dict[str, OperatorView]  # every partner operator (measured or owning fibre) → its own view
    needs_measurement: gpd.GeoDataFrame  # village areas without enough evidence
    district: pd.DataFrame  # one row
    scorecard_long: pd.DataFrame  # one row per target
    report: ReadReport
    operators: list[str]  # the measured operators
    partner_operators: list[str]  # the measured operators and the owners of fibre routes: one package each
    data_period: tuple[float, float]  # first and last measurement time (Unix s), NaN if unknown
    changes: pd.DataFrame | None = None  # what changed since the previous run (set by refresh), else None
    fibre_plan: plans_mod.FibrePlan | None = None  # the cheapest spurs past the fibre goal (plans.plan_fibre)
    measurement_plan: plans_mod.MeasurementPlan | None = None  # where to drive next (None without a roads layer)
