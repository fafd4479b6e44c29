"""The analysis grid: square cells aligned to the study area, in the working CRS.

Points are binned with array arithmetic (``floor((x - x0) / size)``), never with a
point-in-polygon join. Cells are numbered row-major from the top-left corner, so
the same numbering is the pixel order of the GeoTIFFs rasterio writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS



def writable(a, dtype) -> np.ndarray:
    """``a`` as a C-contiguous writable array of ``dtype``, copied only if it is not one: what the compiled
    functions of covgap.fastkernel are given (numba caches them for these types; a read-only array, as
    pandas may hand out, would make it compile them again)."""
    return np.require(np.asarray(a), dtype=dtype, requirements=["C", "W"])

@dataclass(frozen=True)
class Grid:
    """A grid of ``nrows`` × ``ncols`` square cells of side ``size`` metres.

    ``x0`` is the west edge and ``y0`` the north edge of the top-left cell.
    """

    x0: float
    y0: float
    size: float
    nrows: int
    ncols: int
    crs: CRS

    @property
    def ncells(self) -> int:
        return self.nrows * self.ncols

    @property
    def transform(self) -> Affine:
        """Affine transform of the grid as a raster (north up)."""
        return Affine(self.size, 0.0, self.x0, 0.0, -self.size, self.y0)

    @property
    def cell_area_km2(self) -> float:
        return self.size * self.size / 1e6

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Cell numbers of points (``-1`` for points outside the grid)."""
        col = np.floor((np.asarray(x, dtype=float) - self.x0) / self.size)
        row = np.floor((self.y0 - np.asarray(y, dtype=float)) / self.size)
        inside = (col >= 0) & (col < self.ncols) & (row >= 0) & (row < self.nrows)
        cell = np.where(inside, row * self.ncols + col, -1)
        return cell.astype(np.int64)

    def row_col(self, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cell = np.asarray(cell, dtype=np.int64)
        return cell // self.ncols, cell % self.ncols

    def cell_boxes(self, cell: np.ndarray) -> np.ndarray:
        """Shapely polygons of the given cells."""
        row, col = self.row_col(cell)
        xmin = self.x0 + col * self.size
        ymax = self.y0 - row * self.size
        return shapely.box(xmin, ymax - self.size, xmin + self.size, ymax)

    def cell_centres(self, cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        row, col = self.row_col(cell)
        return self.x0 + (col + 0.5) * self.size, self.y0 - (row + 0.5) * self.size

    def cells_in_bounds(self, bounds: tuple[float, float, float, float]) -> np.ndarray:
        """Numbers of every cell that overlaps the box ``(minx, miny, maxx, maxy)``."""
        minx, miny, maxx, maxy = bounds
        c0 = max(0, math.floor((minx - self.x0) / self.size))
        c1 = min(self.ncols - 1, math.floor((maxx - self.x0) / self.size))
        r0 = max(0, math.floor((self.y0 - maxy) / self.size))
        r1 = min(self.nrows - 1, math.floor((self.y0 - miny) / self.size))
        if c1 < c0 or r1 < r0:
            return np.empty(0, dtype=np.int64)
        rows, cols = np.meshgrid(np.arange(r0, r1 + 1), np.arange(c0, c1 + 1), indexing="ij")
        return (rows * self.ncols + cols).ravel().astype(np.int64)

    def count_cells_in_bounds(self, bounds: np.ndarray) -> np.ndarray:
        """``len(self.cells_in_bounds(b))`` for each row ``b`` of ``bounds`` (n × 4), at once; 0 for a box with NaN."""
        b = np.asarray(bounds, dtype=float).reshape(-1, 4)
        with np.errstate(invalid="ignore"):
            c0 = np.maximum(0, np.floor((b[:, 0] - self.x0) / self.size))
            c1 = np.minimum(self.ncols - 1, np.floor((b[:, 2] - self.x0) / self.size))
            r0 = np.maximum(0, np.floor((self.y0 - b[:, 3]) / self.size))
            r1 = np.minimum(self.nrows - 1, np.floor((self.y0 - b[:, 1]) / self.size))
            n = np.clip(c1 - c0 + 1, 0, None) * np.clip(r1 - r0 + 1, 0, None)
        return np.nan_to_num(n, nan=0.0).astype(np.int64)


def make_grid(bounds: tuple[float, float, float, float], *, size: float, crs: CRS) -> Grid:
    """The grid covering ``bounds`` (working CRS), snapped to multiples of ``size``.

    Snapping to multiples of the cell size (with a tolerance of a millionth of a
    cell for reprojection round-off) keeps the grid identical from run to
    run and across refreshes, so cell statistics stay mergeable.
    """
    if size <= 0:
        raise ValueError(f"cell size must be positive, got {size}")
    minx, miny, maxx, maxy = bounds
    eps = 1e-6  # a tenth of a millimetre per 100 m: absorbs reprojection round-off at cell edges
    x0 = math.floor(minx / size + eps) * size
    y0 = math.ceil(maxy / size - eps) * size
    ncols = max(1, math.ceil((maxx - x0) / size - eps))
    nrows = max(1, math.ceil((y0 - miny) / size - eps))
    return Grid(x0=x0, y0=y0, size=float(size), nrows=nrows, ncols=ncols, crs=CRS.from_user_input(crs))
