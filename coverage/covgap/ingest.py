"""Reading measurement files into cell statistics: the one engine of run, refresh and the library.

A :class:`Batch` reads files block by block (covgap.blocks): each block's rows are parsed,
checked and normalised (:mod:`covgap.measurements`), projected and binned into compact
cell statistics (:func:`process_block`, a pure function, so large files are read by
several worker processes, and by Dask workers in covgap.engine_dask); the statistics of a
file merge into a :class:`covgap.cellstats.CellAccumulator`, its rejected rows go to a
callback or straight to the store's ``rejected/`` file, and the keys of its used rows are
spooled to disk. When every file is read, :meth:`Batch.finish` finds the exact duplicates
of the whole batch and of the store (covgap.dedupe) and takes them out. Memory is bounded
by the blocks in flight plus one file's cell statistics, whatever the number of rows.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import logging
import os
import pickle
import queue
import shutil
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from covgap import blocks as blocks_mod, cellstats, dedupe, fastparse, forked, measurements as meas, store as store_mod
from covgap.blocks import BLOCK_BYTES, Block, read_ref
from covgap.config import Config, EngineConfig
from covgap.errors import InputError
from covgap.grid import writable
from covgap.model import Layers
from covgap.store import FileRecord, RejectedWriter, sha256_file


log = logging.getLogger(__name__)

#: Tracebacks of the files refused for an internal error, in the output folder.
ERRORS_LOG = "errors.log"

#: A progress factory: ``progress(label, total_bytes)`` returns a context manager whose value has ``update(n)``.
ProgressFactory = Callable[[str, int], Any]


class StudyAreaLocator:
    """The study-area test that also projects: ``locate(lon, lat) -> (inside, x, y)``.

    Points are projected once (:func:`_fast_projection`, else pyproj) and binned on the analysis grid; a cell that the
    study area's boundary does not touch is wholly inside or wholly outside, so only
    points in boundary cells get the exact point-in-polygon test. The same answer as
    ``shapely.contains_xy`` on every point (the property tests compare them), for a fraction
    of the cost. :meth:`inside` is the test alone (the read context's ``in_study_area``).
    """

    def __init__(self, layers: Layers):
        import rasterio.features

        self.to_work = Transformer.from_crs("EPSG:4326", layers.crs, always_xy=True)
        self.grid = grid = layers.grid
        self.area = layers.study_area
        shapely.prepare(self.area)
        shape = (grid.nrows, grid.ncols)
        centre_in = rasterio.features.rasterize([(self.area, 1)], out_shape=shape, transform=grid.transform,
                                                fill=0, dtype="uint8", all_touched=False).astype(bool)
        edge = rasterio.features.rasterize([(self.area.boundary, 1)], out_shape=shape, transform=grid.transform,
                                           fill=0, dtype="uint8", all_touched=True).astype(bool)
        grown = edge.copy()  # one cell more on every side: round-off at cell edges cannot matter
        grown[1:, :] |= edge[:-1, :]
        grown[:-1, :] |= edge[1:, :]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        # The grid's outer ring too: the boundary may run along the grid's edge, where rasterising misses it.
        grown[[0, -1], :] = True
        grown[:, [0, -1]] = True
        self.kind = np.where(grown, 2, np.where(centre_in, 1, 0)).astype(np.uint8).ravel()  # 0 out, 1 in, 2 exact
        self.bounds = self.area.bounds
        self.fast = _fast_projection(layers.crs, grid, self.to_work)
        self._tables: tuple | None = None  # the arguments of the compiled locate, made on its first use

    def __call__(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lon = np.asarray(lon, dtype=float)
        lat = np.asarray(lat, dtype=float)
        module = fastparse.loaded() if self.fast is not None else None
        exact: np.ndarray | None
        if module is not None and len(lon):  # a process that has loaded the compiled functions: one pass
            x, y, kind, exact = self._compiled(module, lon, lat)
            again = np.flatnonzero(exact)
            if len(again):  # the fast projection's doubtful points, as _project does them
                xa, ya = self._exact(lon[again], lat[again])
                kind[again] = self._kind(lon[again], lat[again], xa, ya)
                x[again], y[again] = xa, ya
        else:
            x, y, exact = self._project(lon, lat)
            kind = self._kind(lon, lat, x, y)
        inside = kind == 1
        edge = np.flatnonzero(kind == 2)
        if len(edge):
            if exact is not None:  # the boundary test takes the exact coordinates
                again = edge[~exact[edge]]
                x[again], y[again] = self._exact(lon[again], lat[again])
            inside[edge] = shapely.contains_xy(self.area, x[edge], y[edge])
        return inside, x, y

    def _kind(self, lon: np.ndarray, lat: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """0 outside, 1 inside, 2 to be tested exactly, of points at working-CRS ``x``, ``y`` (set to NaN, in
        place, where ``lon``, ``lat`` are not coordinates)."""
        with np.errstate(invalid="ignore"):
            ok = (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
        x[~ok] = np.nan
        y[~ok] = np.nan
        cell = self.grid.cell_of(x, y)
        kind = np.where(cell >= 0, self.kind[np.maximum(cell, 0)], 0)
        minx, miny, maxx, maxy = self.bounds
        with np.errstate(invalid="ignore"):  # off the grid (by round-off) yet in the area's box: test exactly
            kind[(cell < 0) & (x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy)] = 2
        return kind

    def _compiled(self, module: Any, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, ...]:
        """covgap.fastkernel.locate: :meth:`_project` and :meth:`_kind` in one pass, but for the points the
        fast projection leaves to the exact one (``exact``: their ``kind`` is still to be worked out)."""
        if self._tables is None:
            assert self.fast is not None
            fast, box = self.fast
            table = np.zeros((2, fast.degree + 1, fast.degree + 1))
            for k, coefficients in enumerate((fast.cx, fast.cy)):
                for i, row in enumerate(coefficients):
                    table[k, i, :len(row)] = row
            g = self.grid
            self._tables = (table[0], table[1], np.array([fast.lon0, fast.lat0, fast.x0, fast.y0]),
                            np.array([g.x0, g.y0, g.size, g.nrows, g.ncols], dtype=float), np.array(box, dtype=float),
                            np.array(self.bounds, dtype=float), EDGE_GUARD_M / g.size, self.kind)
        return module.locate(writable(lon, np.float64), writable(lat, np.float64), *self._tables)

    def _exact(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.to_work.transform(lon, lat)
        return np.asarray(x, dtype=float), np.asarray(y, dtype=float)

    def _project(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(x, y, which are exact)``: the fast projection, then the exact one again for every point
        whose cell the fast one could get wrong (nearer a cell edge than :data:`EDGE_GUARD_M`, or
        outside the box the fast one was checked on). ``None``: all exact (no fast projection)."""
        if self.fast is None:
            return (*self._exact(lon, lat), None)
        fast, (west, south, east, north) = self.fast
        x, y = fast.transform(lon, lat)  # new float arrays (PolynomialProjection), changed in place below
        g = self.grid
        u = (x - g.x0) / g.size
        v = (g.y0 - y) / g.size
        tol = EDGE_GUARD_M / g.size
        with np.errstate(invalid="ignore"):
            safe = ((np.abs(u - np.rint(u)) > tol) & (np.abs(v - np.rint(v)) > tol)
                    & (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north))
        again = np.flatnonzero(~safe)
        if len(again):
            x[again], y[again] = self._exact(lon[again], lat[again])
        return x, y, ~safe

    def inside(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Which WGS84 lon/lat points are inside the study area."""
        return self(lon, lat)[0]


#: A point nearer than this (metres) to a cell edge is projected again exactly (StudyAreaLocator).
EDGE_GUARD_M = 1e-3


def _fast_projection(crs: CRS, grid, exact: Transformer) -> tuple[PolynomialProjection, tuple[float, float, float, float]] | None:
    """A polynomial stand-in for the exact projection to the working CRS over the grid's lon/lat box (a
    cell wider), and that box; None when no polynomial of :data:`POLYNOMIAL_DEGREES` agrees with the
    exact projection to within a hundredth of :data:`EDGE_GUARD_M` on a 201 × 201 lattice of the box.

    Over a district the exact projection is smooth enough for a polynomial of degree 4 to follow it to
    about ten nanometres, for a quarter of the cost of PROJ's fast transverse Mercator (``+approx``). The
    check decides: points outside the box, and points nearer a cell edge than the guard, are projected
    again exactly (:meth:`StudyAreaLocator._project`), so every point gets the cell, and every boundary
    test the coordinates, of the exact projection.
    """
    to_geo = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    xs = np.linspace(grid.x0 - grid.size, grid.x0 + (grid.ncols + 1) * grid.size, 65)
    ys = np.linspace(grid.y0 + grid.size, grid.y0 - (grid.nrows + 1) * grid.size, 65)
    gx, gy = np.meshgrid(xs, ys)
    lon, lat = (np.asarray(a, dtype=float) for a in to_geo.transform(gx.ravel(), gy.ravel()))
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        return None
    box = (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))
    lon, lat = (a.ravel() for a in np.meshgrid(np.linspace(box[0], box[2], 201), np.linspace(box[1], box[3], 201)))
    ex, ey = (np.asarray(a, dtype=float) for a in exact.transform(lon, lat))
    if not (np.isfinite(ex).all() and np.isfinite(ey).all()):
        return None
    for degree in POLYNOMIAL_DEGREES:
        poly = PolynomialProjection.fit(exact, box, degree)
        fx, fy = poly.transform(lon, lat)
        if max(np.max(np.abs(ex - fx)), np.max(np.abs(ey - fy))) < EDGE_GUARD_M / 100:
            return poly, box
    return None


#: The degrees of the polynomials tried for the fast projection, in order (:func:`_fast_projection`).
POLYNOMIAL_DEGREES = (4, 6)


@dataclass(frozen=True)
class PolynomialProjection:
    """``x``, ``y`` as polynomials in ``(lon − lon0, lat − lat0)``, fitted by least squares to an exact
    projection on a lattice of a lon/lat box; evaluated by Horner's rule in place (a few array
    operations a term). Plain numbers: it pickles to the reading processes and Dask workers."""

    lon0: float
    lat0: float
    x0: float
    y0: float
    degree: int
    cx: tuple[tuple[float, ...], ...]  # cx[i][j]: the coefficient of u**i * v**j (j <= degree - i)
    cy: tuple[tuple[float, ...], ...]

    @classmethod
    def fit(cls, exact: Transformer, box: tuple[float, float, float, float], degree: int) -> PolynomialProjection:
        west, south, east, north = box
        lon0, lat0 = (west + east) / 2, (south + north) / 2
        lon, lat = (a.ravel() for a in np.meshgrid(np.linspace(west, east, 61), np.linspace(south, north, 61)))
        x, y = (np.asarray(a, dtype=float) for a in exact.transform(lon, lat))
        x0, y0 = float(x.mean()), float(y.mean())
        terms = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i)]
        u, v = lon - lon0, lat - lat0
        design = np.stack([u ** i * v ** j for i, j in terms], axis=1)
        (kx, *_), (ky, *_) = (np.linalg.lstsq(design, z, rcond=None) for z in (x - x0, y - y0))
        cx = tuple(tuple(float(kx[terms.index((i, j))]) for j in range(degree + 1 - i)) for i in range(degree + 1))
        cy = tuple(tuple(float(ky[terms.index((i, j))]) for j in range(degree + 1 - i)) for i in range(degree + 1))
        return cls(lon0, lat0, x0, y0, degree, cx, cy)

    def transform(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.asarray(lon, dtype=float) - self.lon0
        v = np.asarray(lat, dtype=float) - self.lat0
        x = np.zeros_like(u)
        y = np.zeros_like(u)
        for i in range(self.degree, -1, -1):  # x = Σ_i u^i Σ_j cx[i][j] v^j, both sums by Horner's rule
            ax = np.full_like(v, self.cx[i][-1])
            ay = np.full_like(v, self.cy[i][-1])
            for j in range(len(self.cx[i]) - 2, -1, -1):
                ax *= v
                ax += self.cx[i][j]
                ay *= v
                ay += self.cy[i][j]
            x *= u
            x += ax
            y *= u
            y += ay
        x += self.x0
        y += self.y0
        return x, y


def project_rows(rows: pd.DataFrame, crs: CRS) -> pd.DataFrame:
    """Add working-CRS ``x``, ``y`` to normalised rows."""
    to_work = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x, y = to_work.transform(rows["lon"].to_numpy(), rows["lat"].to_numpy())
    return rows.assign(x=np.asarray(x), y=np.asarray(y))


def read_context(layers: Layers, config: Config, *, now_s: float | None = None) -> meas.ReadContext:
    locator = StudyAreaLocator(layers)
    return meas.ReadContext(
        in_study_area=locator.inside,
        now_s=time.time() if now_s is None else now_s,
        timezone=config.study.timezone,
        default_technology=config.inputs.default_technology,
        default_operator=config.inputs.default_operator,
        mapping=config.inputs.columns,
        locate=locator,
    )


@dataclass(frozen=True, eq=False)
class ReadSettings:
    """What reading needs, as plain picklable values: a process on another machine rebuilds the
    read context from them (:func:`context_of`) instead of being sent its closures and pyproj
    transformers. Equal (and hashed) by ``digest``, so a process builds each context once.
    """

    crs: CRS
    grid: Any  # covgap.grid.Grid: numbers and a CRS, picklable
    study_area: shapely.Geometry
    now_s: float
    timezone: str
    default_technology: str
    default_operator: str
    mapping: Any  # covgap.config.ColumnMapping (frozen dataclass of strings)
    digest: str

    @classmethod
    def of(cls, layers: Layers, ctx: meas.ReadContext) -> ReadSettings:
        """The settings of a read context made by :func:`read_context` for ``layers``."""
        import hashlib
        import pickle

        g = layers.grid
        plain = (shapely.to_wkb(layers.study_area), layers.crs.to_wkt(), (g.x0, g.y0, g.size, g.nrows, g.ncols, g.crs.to_wkt()),
                 ctx.now_s, ctx.timezone, ctx.default_technology, ctx.default_operator, repr(ctx.mapping))
        digest = hashlib.sha256(pickle.dumps(plain)).hexdigest()
        return cls(crs=layers.crs, grid=g, study_area=layers.study_area, now_s=ctx.now_s, timezone=ctx.timezone,
                   default_technology=ctx.default_technology, default_operator=ctx.default_operator, mapping=ctx.mapping,
                   digest=digest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ReadSettings) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)


@functools.lru_cache(maxsize=4)
def context_of(settings: ReadSettings) -> meas.ReadContext:
    """The read context of ``settings``, built once per process (cached by the settings' digest)."""
    locator = StudyAreaLocator(settings)  # type: ignore[arg-type]  # has crs, grid, study_area
    return meas.ReadContext(
        in_study_area=locator.inside,
        now_s=settings.now_s,
        timezone=settings.timezone,
        default_technology=settings.default_technology,
        default_operator=settings.default_operator,
        mapping=settings.mapping,
        locate=locator,
    )


# --------------------------------------------------------------------------- one block
@dataclass
class BlockResult:
    """What reading one block gives: compact cell statistics, the keys of the used rows, the rejected rows."""

    partial: cellstats.PartialStats | None  # None: merged in the worker process that read the block
    keys: np.ndarray  # uint64 per used row (covgap.dedupe)
    lines: np.ndarray  # int64 line number per used row
    rejected: pd.DataFrame
    n_read: int
    n_used: int
    #: ``(first line, where every LINE_INDEX_STEP-th line starts in the block)``: a block the compiled parser
    #: read; its duplicate rows are then read again by those places, not by reading the block again.
    line_index: tuple[int, np.ndarray] | None = None

    @classmethod
    def statistics_only(cls, partial: cellstats.PartialStats) -> BlockResult:
        """A result of no row holding statistics merged elsewhere (a worker's share of a file)."""
        return cls(partial=partial, keys=np.empty(0, dtype=np.uint64), lines=np.empty(0, dtype=np.int64),
                   rejected=pd.DataFrame(columns=store_mod.REJECTED_COLUMNS), n_read=0, n_used=0)


def error_payload(err: Exception) -> tuple:
    """A block's or file's error as plain values to send back from another process: an :class:`InputError`
    keeps its path, problems and counts (it does not pickle as itself), a bug its traceback."""
    problems = (err.path, err.problems, err.counts) if isinstance(err, InputError) else None
    return type(err).__name__, str(err), problems, traceback.format_exc()


def raise_payload(path: Path, payload: tuple) -> NoReturn:
    """Raise again, in the main process, an error made by :func:`error_payload`: the same message."""
    kind, message, problems, trace = payload
    if problems is not None:
        where, found, counts = problems
        raise InputError(where, found, counts=counts)
    raise _WorkerError(kind, message, trace)


def process_block(block: Block, fmt: meas.MeasurementFormat, ctx: meas.ReadContext, grid, crs: CRS,
                  source_file: str, path: Path | None = None, *, compiled: bool = False) -> BlockResult:
    """Read, check and aggregate one block: a pure function of its inputs (runs in any process).
    ``compiled``: parse it with covgap.fastparse if it can (a large file's block)."""
    got = meas.read_block_columns(block, fmt, ctx, source_file=source_file) if compiled else None
    line_index = None
    if got is not None:
        columns, rejected, starts = got
        line_index = (block.first_line, starts[:-1:LINE_INDEX_STEP].astype(np.int64))
        if columns.x is not None and columns.y is not None:  # counted from the columns: no frame of the used rows
            return _block_result_of_columns(columns, rejected, grid, line_index)
        used = columns.frame()
    else:
        used, rejected = meas.read_block(block, fmt, ctx, source_file=source_file, path=path)
    if len(used) and "x" not in used:
        used = project_rows(used, crs)
    module = fastparse.compiled() if compiled else None
    partial = cellstats.partial_stats(used if len(used) else _EMPTY_ROWS, grid,
                                      group_stats=module.group_stats if module is not None and len(used) else None)
    keys = dedupe.measurement_keys(used, row_keys=module.row_keys if module is not None else None)
    return BlockResult(partial=partial, keys=keys, lines=used["source_row"].to_numpy(dtype=np.int64),
                       rejected=rejected, n_read=len(used) + len(rejected), n_used=len(used), line_index=line_index)


def _block_result_of_columns(columns: meas.UsedColumns, rejected: pd.DataFrame, grid, line_index) -> BlockResult:
    """:func:`process_block`'s result from a block's columns (covgap.measurements.UsedColumns), by the compiled
    functions: the lines not used get no cell, so the compiled counting leaves them out, and their keys
    are dropped. The same statistics and keys as from the frame of the used rows (tested)."""
    module = fastparse.compiled()
    assert module is not None and columns.x is not None and columns.y is not None
    cell = grid.cell_of(columns.x, columns.y)
    cell[~columns.used] = -1
    tech = columns.technology_categorical()
    n_used = columns.n_used
    if n_used:
        partial = cellstats.partial_stats_of(cell, columns.operator, tech, columns.time_s, columns.signal_dbm,
                                             group_stats=module.group_stats)
        keys = dedupe.keys_of(columns.lon, columns.lat, columns.signal_dbm, columns.time_s, columns.operator, tech,
                              row_keys=module.row_keys)[columns.keep]
    else:
        partial = cellstats.partial_stats(_EMPTY_ROWS, grid)
        keys = np.empty(0, dtype=np.uint64)
    return BlockResult(partial=partial, keys=keys, lines=columns.source_row[columns.keep].astype(np.int64, copy=False),
                       rejected=rejected, n_read=n_used + len(rejected), n_used=n_used, line_index=line_index)


#: Every this many lines of a block the compiled parser read, where the line starts is kept (BlockResult).
LINE_INDEX_STEP = 64


def _compiled(path: Path) -> bool:
    """Whether a file's blocks are parsed by covgap.fastparse's compiled parser: a file of
    :data:`covgap.fastparse.MIN_FILE_BYTES` or more (its start, about 0.3 s a reading process, is won
    back only on many blocks), or any file once this process has loaded it (``covgap watch`` loads it
    when it starts, and the reading processes it forks have it too)."""
    if fastparse.loaded() is not None:
        return True
    try:
        return path.stat().st_size >= fastparse.MIN_FILE_BYTES
    except OSError:
        return False


def _record(scanned, refs: list):
    """Pass ``(ref, length)`` pairs through, keeping them in ``refs``."""
    for item in scanned:
        refs.append(item)
        yield item


def _record_blocks(blocks, refs: list):
    """Pass blocks through, keeping a reference to each block of a plain file in ``refs``."""
    for block in blocks:
        if block.offset is not None:
            refs.append((block.ref(), len(block.data)))
        yield block


_EMPTY_ROWS = pd.DataFrame({"x": np.empty(0), "y": np.empty(0), "operator": pd.Series([], dtype=object),
                            "technology": pd.Series([], dtype=object), "time_s": np.empty(0), "signal_dbm": np.empty(0)})

class _Workers:
    """Processes that read blocks, each keeping the cell statistics of its share of a file.

    Made by fork, so they share the study area, grid and clock without pickling them.
    Block ``i`` of a file goes to worker ``i mod n`` (its own queue); a worker sends back
    per block only what must stay in line order (rejected rows) or be spooled (row
    keys), and its statistics once, when the file ends: only cell statistics travel.

    Each worker answers on a queue of its own, whose only writer it is. A worker killed
    while it sends (out of memory, or killed by hand) can leave only its own queue locked
    or cut short: here that queue ends (end of file) and the worker is reported dead,
    while the others go on. With one queue shared by every worker, a worker killed while
    holding its lock stopped the others from answering, and the batch waited forever.
    """

    def __init__(self, n: int, ctx: meas.ReadContext, grid, crs: CRS, spool_dir: Path):
        import multiprocessing

        mp = multiprocessing.get_context("fork")
        self.inboxes = [mp.Queue(maxsize=2) for _ in range(n)]
        self.outboxes: list[Any] = [mp.Queue() for _ in range(n)]  # (their ends, _reader and _writer, are used)
        parent = forked.parent_to_end_with()
        self.procs = [mp.Process(target=_worker_main, args=(self.inboxes[i], self.outboxes, ctx, grid, crs, spool_dir, i,
                                                            parent),
                                 daemon=True, name=f"covgap-reader-{i}") for i in range(n)]
        for proc in self.procs:
            proc.start()
        for box in self.outboxes:  # this process only reads them: a worker's end is its own, and ends with it
            box._writer.close()
        self.reported: set[int] = set()  # workers whose death get_or_death reported
        self._ended: set[int] = set()  # outboxes that reached their end: their worker is gone
        self._ready: deque[tuple] = deque()  # messages received and not yet returned

    def _receive(self, timeout: float) -> None:
        """Take the messages that arrive within ``timeout`` seconds (at most one per worker) into ``_ready``."""
        from multiprocessing.connection import wait

        readers = {self.outboxes[i]._reader: i for i in range(len(self.outboxes)) if i not in self._ended}
        if not readers:
            time.sleep(min(timeout, 0.1))
            return
        for reader in wait(list(readers), timeout):
            i = readers[reader]
            try:
                self._ready.append(self.outboxes[i].get(block=False))
            except queue.Empty:
                continue
            except (EOFError, OSError):  # the worker ended, maybe in the middle of a message
                self._ended.add(i)

    def has_message(self) -> bool:
        """Whether a message is waiting (without waiting for one)."""
        if not self._ready:
            self._receive(0.0)
        return bool(self._ready)

    def put(self, i: int, msg: tuple, *, unless_dead: bool = False) -> None:
        """Give worker ``i`` a message, waiting while its queue is full; if it died, raise (or, with
        ``unless_dead``, drop the message: :meth:`get` reports the death)."""
        while self.procs[i].is_alive():
            try:
                self.inboxes[i].put(msg, timeout=1.0)
                return
            except queue.Full:
                continue
        if not unless_dead:
            raise _died(self.procs[i])

    def get(self):
        """The next message from any worker; raises if one died (killed, out of memory)."""
        while not self._ready:
            self._receive(1.0)
            if not self._ready:
                dead = [p for p in self.procs if not p.is_alive()]
                if dead:
                    raise _died(dead[0])
        return self._ready.popleft()

    def get_or_death(self) -> tuple:
        """The next message from any worker, or ``("dead", i)`` once for each worker that ended."""
        while not self._ready:
            self._receive(1.0)
            if not self._ready:
                for i, proc in enumerate(self.procs):
                    if i not in self.reported and not proc.is_alive():
                        self.reported.add(i)
                        return ("dead", i)
        return self._ready.popleft()

    def sync(self) -> None:
        """Have every worker write its spooled row keys to disk (before the duplicates are looked for)."""
        for i in range(len(self.procs)):
            self.put(i, ("sync",))
        synced = 0
        while synced < len(self.procs):
            if self.get()[0] == "synced":
                synced += 1

    def close(self) -> None:
        for inbox, proc in zip(self.inboxes, self.procs):
            if proc.is_alive():
                try:
                    inbox.put(("stop",), timeout=1.0)
                except Exception:  # a full queue of a stuck worker: it is terminated below
                    pass
        for proc in self.procs:
            proc.join(timeout=5.0)
            if proc.is_alive():
                proc.terminate()
                proc.join()


def _died(proc) -> RuntimeError:
    return RuntimeError(f"a reading process ended unexpectedly (exit code {proc.exitcode}; killed, or out of memory?)")


def _worker_main(inbox, outboxes: list, ctx: meas.ReadContext, grid, crs: CRS, spool_dir: Path, wid: int,
                 parent_pid: int | None = None) -> None:
    """A reading process: blocks in, per-block results and per-file statistics out (on ``outboxes[wid]``, its
    own); row keys to its own spool. It ends with the main process (``parent_pid``: covgap.forked.end_with_parent)."""
    import signal

    if parent_pid is not None:
        forked.end_with_parent(parent_pid)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle: it stops the workers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # stopped by it outright (not by a handler it forked with: covgap watch's)
    outbox = outboxes[wid]
    for other in outboxes:  # inherited by fork: the others' ends are theirs alone (they end when their worker dies)
        if other is not outbox:
            other._writer.close()
    # ... and this one's reading end the main process's: were it gone, a large result would fill the pipe with no one
    # to read it, and this process wait at its exit for ever.
    outbox._reader.close()
    accs: dict[int, cellstats.CellAccumulator] = {}
    spool = dedupe.KeySpool(spool_dir, f"w{wid}")
    parent = os.getppid()
    while True:
        try:
            msg = inbox.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the main process is gone (killed): no one to read for
                return
            continue
        if msg[0] == "stop":
            return
        if msg[0] == "sync":
            spool.flush()
            outbox.put(("synced", -1))
            continue
        if msg[0] == "flush":
            acc = accs.pop(msg[1], None)
            spool.flush()  # a worker that dies later loses no key of this file
            outbox.put(("flush", msg[1], acc.to_partial() if acc is not None and acc.size else None))
            continue
        if msg[0] in _TASKS:  # a small file read whole, a file's duplicates taken out, statistics written
            kind, file_pos, args, opts = msg
            try:
                task: Callable[..., Any] = _TASKS[kind]()
                outbox.put((kind, file_pos, pickle.dumps(task(*args, ctx, grid, crs, **opts)), None))
            except Exception as err:
                outbox.put((kind, file_pos, None, error_payload(err)))
            continue
        _, file_pos, idx, block, length, fmt, name, path, compiled = msg
        try:
            if length is not None:  # sent as a reference: read the bytes here
                block = read_ref(path, block, length)
            res = process_block(block, fmt, ctx, grid, crs, name, path, compiled=compiled)
            assert res.partial is not None  # process_block always computes it
            accs.setdefault(file_pos, cellstats.CellAccumulator(grid)).add_partial(res.partial)
            spool.add(res.keys, dedupe.make_seq(file_pos, res.lines))
            res.partial = None
            res.keys = res.lines = np.empty(0, dtype=np.int64)
            outbox.put(("block", file_pos, idx, res))
        except Exception as err:
            outbox.put(("error", file_pos, idx, error_payload(err)))


#: The whole-file tasks of the worker processes (looked up when run: the tests replace some).
_TASKS: dict[str, Callable[[], Callable[..., Any]]] = {"file": lambda: read_whole_file, "takeout": lambda: take_out_rows,
                                                       "duprows": lambda: duplicate_rows, "stats": lambda: _write_stats,
                                                       "dups": lambda: _partition_duplicates}


class _WorkerError(Exception):
    """A block failed in a worker process for a reason other than the file's content (a bug)."""

    def __init__(self, kind: str, message: str, trace: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.trace = trace


def default_workers() -> int:
    """Processes that read blocks in parallel: the cores this process may use (at most 8)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


# --------------------------------------------------------------------------- a batch of files
@dataclass
class _Taken:
    """A file read in this batch: where it is, how it was read, its record and (without a store) statistics."""

    pos: int
    path: Path
    fmt: meas.MeasurementFormat
    record: FileRecord
    stats: pd.DataFrame | None
    refs: list = field(default_factory=list)  # (block without bytes, length) of each block, for a plain file
    #: first line of a block → where every LINE_INDEX_STEP-th line of it starts (blocks the compiled parser read)
    line_index: dict[int, np.ndarray] = field(default_factory=dict)
    unwritten: bool = False  # its statistics (in memory) are not in the store folder yet: finish() writes them


#: Small files in the hands of one worker process at a time (one read, one waiting in its queue).
FILES_PER_WORKER = 2
#: Small files read ahead of the one taken in next, per worker process (bounds the results held in memory).
FILES_AHEAD = 4


@dataclass
class _Tally:
    """Rows read, used and rejected (by reason) of one file, as its blocks come."""

    n_read: int = 0
    n_used: int = 0
    n_rej: int = 0
    by_reason: dict[str, int] = field(default_factory=lambda: {r: 0 for r in meas.REJECT_REASONS})

    def add(self, res: BlockResult) -> None:
        self.n_read += res.n_read
        self.n_used += res.n_used
        self.n_rej += len(res.rejected)
        if len(res.rejected):
            for reason, k in res.rejected["reason"].value_counts().items():
                self.by_reason[str(reason)] += int(k)

    def check(self, path: Path, fmt: meas.MeasurementFormat) -> None:
        """Refuse a file of no data row, or of no usable row."""
        if self.n_read == 0:
            raise InputError(path, [f"has a header but no data rows; columns found: {', '.join(fmt.columns)}"])
        if self.n_used == 0:
            top = ", ".join(f"{r} {k}" for r, k in sorted(self.by_reason.items(), key=lambda kv: -kv[1]) if k)
            raise InputError(path, [
                f"no usable row: all {self.n_read} rows rejected ({top}); read as {fmt.name} with "
                f"lat = '{fmt.lat}', lon = '{fmt.lon}', signal = '{fmt.signal}'; columns found: {', '.join(fmt.columns)}"])

    def record(self, path: Path, sha256: str, size: int, fmt: meas.MeasurementFormat,
               writer: RejectedWriter | None) -> FileRecord:
        return FileRecord(
            sha256=sha256, name=path.name, path=str(path.resolve()), size_bytes=size, format=fmt.name,
            rows_read=self.n_read, rows_used=self.n_used, rows_rejected=self.n_rej,
            rejected_by_reason={r: k for r, k in self.by_reason.items() if k},
            rejected_file=writer.rel_path if writer else "",
        )


def _take_block(res: BlockResult, tally: _Tally, acc: cellstats.CellAccumulator, writer: RejectedWriter | None,
                on_rejected: Callable[[pd.DataFrame], Any] | None) -> None:
    """One block's result into its file's counts and statistics; its rejected rows to the writer and ``on_rejected``
    (the same for a file read here, :meth:`Batch.add`, and one read whole by a worker, :func:`read_whole_file`)."""
    tally.add(res)
    if len(res.rejected):
        if writer:
            writer.write(res.rejected)
        if on_rejected:
            on_rejected(res.rejected)
    if res.partial is not None:
        acc.add_partial(res.partial)


@dataclass
class _FileRead:
    """A small file read whole by a worker process: what the main process needs to take it in."""

    fmt: meas.MeasurementFormat
    record: FileRecord
    stats: pd.DataFrame | None  # None: more than KEEP_STATS_ROWS, in the store only (else not written yet)
    keys: np.ndarray
    lines: np.ndarray
    refs: list
    rejected: list[pd.DataFrame]  # each block's rejected rows, for the batch's on_rejected


def read_whole_file(path: Path, sha256: str, ctx: meas.ReadContext, grid, crs: CRS, *, folder: Path | None,
                    block_bytes: int, keep_rejected: bool) -> _FileRead:
    """Read one file block after block in this process, as :meth:`Batch.add` does (a worker's task for a small file).

    Its rejected rows (and statistics of more than :data:`KEEP_STATS_ROWS` rows) are written to the
    store ``folder``; the record, the smaller statistics, the row keys and (with ``keep_rejected``)
    the rejected rows come back to be taken in, spooled and reported in file order.
    """
    fmt = meas.detect_format(path, ctx.mapping)
    writer = RejectedWriter(folder, sha256, path.name) if folder is not None else None
    size = path.stat().st_size
    tally = _Tally()
    acc = cellstats.CellAccumulator(grid)
    refs: list[tuple[Block, int]] = []
    keys: list[np.ndarray] = []
    lines: list[np.ndarray] = []
    rejected: list[pd.DataFrame] = []
    try:
        for block in _record_blocks(meas._blocks_of(path, fmt, block_bytes=block_bytes, max_lines=None), refs):
            res = process_block(block, fmt, ctx, grid, crs, path.name, path)
            _take_block(res, tally, acc, writer, rejected.append if keep_rejected else None)
            keys.append(res.keys)
            lines.append(res.lines)
        tally.check(path, fmt)
    except BaseException:
        if writer:
            writer.discard()
        raise
    finally:
        if writer:
            writer.close()
    record = tally.record(path, sha256, size, fmt, writer)
    stats: pd.DataFrame | None = acc.to_stats()
    del acc
    if folder is not None:
        assert stats is not None
        if len(stats) <= KEEP_STATS_ROWS:  # written by Batch.finish, once its duplicates are out
            record.stats_file = store_mod.file_stats_path(sha256)
        else:
            record.stats_file = store_mod.write_file_stats(stats, folder, sha256)
            stats = None
    return _FileRead(fmt=fmt, record=record, stats=stats, keys=np.concatenate(keys) if keys else np.empty(0, dtype=np.uint64),
                     lines=np.concatenate(lines) if lines else np.empty(0, dtype=np.int64), refs=refs, rejected=rejected)


@dataclass
class _Pending:
    """A small file given to a worker process, until it is taken in."""

    path: Path
    sha256: str
    pos: int
    wid: int
    done: bool = False
    result: bytes | None = None  # the pickled _FileRead
    error: tuple | None = None  # error_payload of the worker
    died: Exception | None = None  # the worker died with the file in hand


class Batch:
    """Files read into cell statistics, with exact duplicates found across all of them and the store.

    ``add`` reads one file (its blocks in parallel worker processes when it is large, or
    as tasks on Dask workers with ``engine.name == "dask"``: covgap.engine_dask);
    ``add_files`` reads many, small ones a whole file per worker process, in file order;
    ``finish`` finds the duplicate rows of the whole batch (covgap.dedupe), takes them out
    of each file's statistics and reports them as rejected rows. With a store ``folder``,
    each file's statistics go to ``stats/`` and its rejected rows to ``rejected/``;
    ``on_rejected`` receives the rejected rows as well (or instead).

    Memory is bounded by the blocks in flight plus one file's cell statistics; the row
    keys are spooled to disk (:class:`covgap.dedupe.KeySpool`).
    """

    def __init__(self, layers: Layers, ctx: meas.ReadContext, *, folder: Path | None = None,
                 stored_keys: dedupe.StoredKeys | None = None, on_rejected: Callable[[pd.DataFrame], None] | None = None,
                 progress: ProgressFactory | None = None, chunk_rows: int | None = None,
                 block_bytes: int = BLOCK_BYTES, workers: int | None = None, engine: EngineConfig | None = None):
        self.layers = layers
        self.ctx = ctx
        self.folder = folder
        self.stored = stored_keys or dedupe.StoredKeys(None)
        self.on_rejected = on_rejected
        self.progress = progress
        self.chunk_rows = chunk_rows
        self.block_bytes = block_bytes
        engine = engine or EngineConfig()
        if workers is None:
            workers = engine.workers or default_workers()
        self.workers = max(1, workers)
        self._dask: Any = None
        if engine.name == "dask":  # connected first: a scheduler out of reach stops the batch before any file is read
            from covgap import engine_dask

            self._dask = engine_dask.DaskExecutor(engine, ReadSettings.of(layers, ctx), workers=self.workers)
        self._spool_dir = Path(tempfile.mkdtemp(prefix="covgap-keys-"))
        self.spool = dedupe.KeySpool(self._spool_dir)
        self.taken: list[_Taken] = []
        self._kept_rows = 0  # rows of the statistics kept in memory (KEEP_STATS_TOTAL_ROWS)
        self._dropped: set[int] = set()
        self._unwritten: Unwritten | None = None  # what finish(unwritten=) leaves to the caller
        self._next_pos = 0
        self._pool: _Workers | None = None
        self._in_flight: dict[int, int] = {}  # small files in the hands of each worker process
        self.duplicates = 0

    # ------------------------------------------------------------------ reading
    def add(self, path: Path, sha256: str | None = None) -> FileRecord:
        """Read one file; returns its record (duplicates are counted by :meth:`finish`).

        Raises
        ------
        InputError
            Empty file, unknown format or encoding, missing column, no data row or no usable row.
        """
        path = Path(path)
        fmt = meas.detect_format(path, self.ctx.mapping)
        # Without a SHA-256, a file read by scanning its blocks is hashed by that scan, beside the
        # reading processes (its rejected rows take the file's name at the end); others first.
        hasher = hashlib.sha256() if sha256 is None and self._by_scan(path, fmt) else None
        if sha256 is None and hasher is None:
            sha256 = sha256_file(path)
        pos = self._next_pos
        self._next_pos += 1
        writer = RejectedWriter(self.folder, sha256, path.name) if self.folder is not None else None
        size = path.stat().st_size
        tally = _Tally()
        acc = cellstats.CellAccumulator(self.layers.grid)
        refs: list[tuple[Block, int]] = []
        line_index: dict[int, np.ndarray] = {}
        bar_cm = self.progress(path.name, size) if self.progress else contextlib.nullcontext(None)
        try:
            with bar_cm as bar:
                done = 0
                for res, nbytes in self._results(path, fmt, pos, refs, hasher):
                    _take_block(res, tally, acc, writer, self.on_rejected)
                    self.spool.add(res.keys, dedupe.make_seq(pos, res.lines))
                    if res.line_index is not None:
                        line_index[res.line_index[0]] = res.line_index[1]
                    if bar is not None and done < size:
                        step = min(size - done, nbytes)
                        bar.update(step)
                        done += step
                if bar is not None and size > done:
                    bar.update(size - done)
            tally.check(path, fmt)
            if sha256 is None:
                assert hasher is not None
                sha256 = hasher.hexdigest()
                if writer:
                    writer.name_by(sha256)
        except BaseException:
            self._dropped.add(pos)
            if writer:
                writer.discard()
            if self._pool is not None and not all(p.is_alive() for p in self._pool.procs):
                self._restart_pool()  # a reading process died with this file: new ones for the next files
            raise
        finally:
            if writer:
                writer.close()
        record = tally.record(path, sha256, size, fmt, writer)
        stats = acc.to_stats()
        del acc
        if self.folder is not None and len(stats) <= KEEP_STATS_ROWS:
            # Small statistics stay in memory (many small files: no read back) and are written by finish(),
            # once, after their duplicates are taken out; large ones are written now and read again.
            record.stats_file = store_mod.file_stats_path(sha256)
            self._take(_Taken(pos, path, fmt, record, stats, refs, line_index, unwritten=True))
        elif self.folder is not None:
            record.stats_file = store_mod.write_file_stats(stats, self.folder, sha256)
            self.taken.append(_Taken(pos, path, fmt, record, None, refs, line_index))
        else:
            self.taken.append(_Taken(pos, path, fmt, record, stats, refs, line_index))
        log.info("%s (%s): %d rows read, %d used, %d rejected", path.name, fmt.name, tally.n_read, tally.n_used, tally.n_rej)
        return record

    def add_files(self, files: Iterable[tuple[Path, str | None]]) -> Iterator[tuple[Path, FileRecord | Exception]]:
        """Read files in the order given: ``(path, record)`` of each, or ``(path, error)`` for a file refused, in that order.

        The same as :meth:`add` on each file, error by error and byte for byte in the store; but
        with several worker processes, small files (:meth:`_small`) are read whole by the workers,
        a few at a time, so a batch of many small files uses every core. Their results are taken
        in here in file order: rejected rows to ``on_rejected``, row keys to the batch's spool,
        records in order. A worker that dies refuses the file it was reading (the first of those it
        held); the others it held are given to the workers left, and the batch goes on (on new
        processes once none is left). ``files`` is consumed a few files ahead of the results.

        A batch of one file (a refresh of the file that just came in, most often) is read by
        :meth:`add`: a small one here, with no process to start and no result to send back
        (0.4 s of a 1 % refresh, docs/benchmark.md), a large one by blocks on the workers.
        """
        files = iter(files)
        one_by_one = self.workers < 2 or self._dask is not None or self.chunk_rows is not None
        head = [] if one_by_one else list(itertools.islice(files, 2))
        if len(head) < 2:  # one process, or a batch of one file
            for path, sha256 in itertools.chain(head, files):
                yield path, self._add_or_error(path, sha256)
            return
        waiting: deque[_Pending] = deque()
        for path, sha256 in itertools.chain(head, files):
            path = Path(path)
            if not self._small(path):  # the earlier small files first, then this one read by blocks
                yield from self._drain(waiting, 0)
                yield path, self._add_or_error(path, sha256)
                continue
            yield from self._drain(waiting, FILES_AHEAD * self.workers - 1)
            self._submit(waiting, path, sha256)
        yield from self._drain(waiting, 0)

    def _add_or_error(self, path: Path, sha256: str | None) -> FileRecord | Exception:
        try:
            return self.add(path, sha256)
        except Exception as err:  # the caller refuses the file with it (KeyboardInterrupt goes through)
            return err

    def _small(self, path: Path) -> bool:
        """Read whole by one worker process: a plain file of at most one block, or a compressed one of an eighth."""
        try:
            size = path.stat().st_size
        except OSError:  # vanished: add() refuses it as one process does
            return False
        compressed = path.suffix.lower() in blocks_mod.COMPRESSED_SUFFIXES
        return size <= (self.block_bytes // 8 if compressed else self.block_bytes)

    def _file_pool(self) -> _Workers:
        """The worker processes (started on first use, by fork)."""
        if self._pool is None:
            self._pool = _Workers(self.workers, self.ctx, self.layers.grid, self.layers.crs, self._spool_dir)
            self._in_flight = {i: 0 for i in range(self.workers)}
        return self._pool

    def _submit(self, waiting: deque[_Pending], path: Path, sha256: str | None) -> None:
        """Give a small file to the worker with the fewest files in hand (waiting for one to have room)."""
        while True:
            wid = self._least_busy()
            if self._in_flight[wid] < FILES_PER_WORKER:
                break
            self._receive(waiting)
        if sha256 is None:
            sha256 = sha256_file(path)
        pending = _Pending(path, sha256, self._next_pos, wid)
        self._next_pos += 1
        waiting.append(pending)
        self._send(pending)

    def _least_busy(self) -> int:
        """The live worker with the fewest files in hand (the processes started, or started again, first)."""
        pool = self._file_pool()
        return min((i for i in self._in_flight if i not in pool.reported), key=self._in_flight.__getitem__)

    def _send(self, pending: _Pending) -> None:
        """Give a file to its worker (``pending.wid``); if that worker died, :meth:`_receive` hears of it."""
        assert self._pool is not None
        opts = dict(folder=self.folder, block_bytes=self.block_bytes, keep_rejected=self.on_rejected is not None)
        self._in_flight[pending.wid] += 1
        self._pool.put(pending.wid, ("file", pending.pos, (pending.path, pending.sha256), opts), unless_dead=True)

    def _receive(self, waiting: deque[_Pending]) -> None:
        """Wait for one message of the file pool: a file's result, or a worker's death (its files refused)."""
        assert self._pool is not None
        msg = self._pool.get_or_death()
        if msg[0] == "file":
            for p in waiting:
                if p.pos == msg[1] and not p.done:  # (done: refused already, its worker reported dead)
                    p.result, p.error, p.done = msg[2], msg[3], True
                    self._in_flight[p.wid] -= 1
            return
        if msg[0] != "dead":  # left over from a file read by blocks and given up on
            return
        err = _died(self._pool.procs[msg[1]])
        held = [p for p in waiting if p.wid == msg[1] and not p.done]
        self._in_flight[msg[1]] = 0
        if held:  # the first was being read when the worker died: refused; the others never began, read again
            held[0].died, held[0].done = err, True
            self._remove_partial(held[0])
        if len(self._pool.reported) == len(self._pool.procs):
            self._restart_pool()
        for p in held[1:]:
            self._remove_partial(p)  # (nothing, unless its answer was lost with the worker)
            p.wid = self._least_busy()
            self._send(p)

    def _restart_pool(self) -> None:
        """After a worker died (and the others' files in hand came back): new processes for what follows."""
        assert self._pool is not None
        self._pool.close()
        self._pool = None

    def _remove_partial(self, pending: _Pending) -> None:
        """The rejected rows and statistics a worker that died may have begun to write for this file."""
        if self.folder is None:
            return
        RejectedWriter(self.folder, pending.sha256, pending.path.name).path.unlink(missing_ok=True)
        (self.folder / store_mod.STATS_DIR / f"{pending.sha256[:16]}.parquet").unlink(missing_ok=True)

    def _drain(self, waiting: deque[_Pending], keep: int) -> Iterator[tuple[Path, FileRecord | Exception]]:
        """Take in the files read, in order, until at most ``keep`` wait (and none is ready at the head)."""
        while waiting:
            head = waiting[0]
            if not head.done:
                if len(waiting) <= keep:
                    return
                self._receive(waiting)
                continue
            waiting.popleft()
            yield head.path, self._take_in(head)
        if self._pool is not None and self._pool.reported:  # a death with nothing left in hand
            self._restart_pool()

    def _take_in(self, pending: _Pending) -> FileRecord | Exception:
        """A small file's result from a worker, taken in as :meth:`add` would have (or its error)."""
        path, pos = pending.path, pending.pos
        try:
            if pending.died is not None:
                raise pending.died
            if pending.error is not None:
                raise_payload(path, pending.error)
        except Exception as err:
            self._dropped.add(pos)
            return err
        assert pending.result is not None
        got: _FileRead = pickle.loads(pending.result)
        if self.on_rejected:
            for rejected in got.rejected:
                self.on_rejected(rejected)
        self.spool.add(got.keys, dedupe.make_seq(pos, got.lines))
        if self.progress:
            with self.progress(path.name, got.record.size_bytes) as bar:
                if bar is not None:
                    bar.update(got.record.size_bytes)
        self._take(_Taken(pos, path, got.fmt, got.record, got.stats, got.refs,
                          unwritten=self.folder is not None and got.stats is not None))
        rec = got.record
        log.info("%s (%s): %d rows read, %d used, %d rejected", path.name, got.fmt.name, rec.rows_read, rec.rows_used,
                 rec.rows_rejected)
        return rec

    def _blocks(self, path: Path, fmt: meas.MeasurementFormat):
        return meas._blocks_of(path, fmt, block_bytes=self.block_bytes, max_lines=self.chunk_rows)

    def _by_scan(self, path: Path, fmt: meas.MeasurementFormat) -> bool:
        """Whether :meth:`_results` reads the file by scanning its blocks for the worker processes
        (a plain UTF-8 file of more than two blocks, several workers)."""
        return (self._dask is None and self.workers > 1 and self.chunk_rows is None
                and path.stat().st_size > 2 * self.block_bytes and blocks_mod.scannable(path, fmt))

    def _results(self, path: Path, fmt: meas.MeasurementFormat, pos: int, refs: list, hasher: Any = None):
        """``(BlockResult, bytes)`` of each block of the file, in order; large files on worker processes
        (whose statistics come last, in results of no row). ``refs`` receives ``(block ref, length)``
        of each block of a plain file (to read some again without reading the others). ``hasher`` is
        given only with :meth:`_by_scan`: the scan feeds it the file's bytes."""
        layers = self.layers
        if self._dask is not None:  # every block a task on the Dask workers, small files too
            yield from self._dask.results(path, fmt, _record_blocks(self._blocks(path, fmt), refs))
            return
        if self._by_scan(path, fmt):
            scanned = blocks_mod.scan_plain(path, fmt, block_bytes=self.block_bytes, hasher=hasher)
            assert scanned is not None
            yield from self._results_parallel(path, fmt, pos, _record(scanned, refs))
            return
        assert hasher is None
        blocks = _record_blocks(self._blocks(path, fmt), refs)
        first = next(blocks, None)
        if first is None:
            return
        second = next(blocks, None)
        if second is None or self.workers < 2:  # one block (most files), or one core: no process to start
            compiled = _compiled(path)
            for block in (first,) if second is None else itertools.chain((first, second), blocks):
                yield (process_block(block, fmt, self.ctx, layers.grid, layers.crs, path.name, path, compiled=compiled),
                       len(block.data))
            return
        yield from self._results_parallel(path, fmt, pos, itertools.chain((first, second), blocks))

    def _results_parallel(self, path: Path, fmt: meas.MeasurementFormat, pos: int, blocks):
        pool = self._file_pool()
        n = len(pool.inboxes)
        done: dict[int, tuple[BlockResult, int]] = {}
        sizes: dict[int, int] = {}
        sent = flushed = 0
        next_out = 0
        compiled = _compiled(path)
        error = None
        partials = []

        def receive(msg) -> None:
            nonlocal flushed, error
            if msg[1] != pos:  # left over from a file given up on
                return
            if msg[0] == "block":
                done[msg[2]] = (msg[3], sizes.pop(msg[2]))
            elif msg[0] == "flush":
                flushed += 1
                if msg[2] is not None:
                    partials.append(msg[2])
            elif error is None:
                error = msg[3]

        try:
            for item in blocks:
                if error is not None:
                    break
                # A block of a plain file is sent as a reference: the worker reads the bytes itself (page cache).
                block, length = item if isinstance(item, tuple) else (item, len(item.data) if item.offset is not None else None)
                sizes[sent] = length if length is not None else len(block.data)
                pool.put(sent % n, ("block", pos, sent, block.ref() if length is not None else block, length,
                                    fmt, path.name, path, compiled))
                sent += 1
                while pool.has_message():
                    receive(pool.get())
                while next_out in done:
                    yield done.pop(next_out)
                    next_out += 1
        finally:
            for i in range(n):
                pool.put(i, ("flush", pos), unless_dead=True)  # a worker that died is reported by pool.get() below
        while flushed < n or (error is None and next_out < sent):
            receive(pool.get())
            while error is None and next_out in done:
                yield done.pop(next_out)
                next_out += 1
        if error is not None:
            raise_payload(path, error)
        for part in partials:
            yield BlockResult.statistics_only(part), 0

    def close(self) -> None:
        """Stop the worker processes (or leave the Dask cluster) and remove the spooled keys."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._dask is not None:
            self._dask.close()
            self._dask = None
        shutil.rmtree(self._spool_dir, ignore_errors=True)

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ duplicates
    def _take(self, taken: _Taken) -> None:
        """A file taken in; its unwritten statistics stay in memory within :data:`KEEP_STATS_TOTAL_ROWS`, else
        they are written to the store now (and taken out of there if the file has duplicates)."""
        if taken.unwritten and taken.stats is not None:
            if self._kept_rows + len(taken.stats) <= KEEP_STATS_TOTAL_ROWS:
                self._kept_rows += len(taken.stats)
            else:
                assert self.folder is not None
                taken.record.stats_file = store_mod.write_file_stats(taken.stats, self.folder, taken.record.sha256)
                taken.stats, taken.unwritten = None, False
        self.taken.append(taken)

    def finish(self, keys_folder: Path | None = None, *, unwritten: Unwritten | None = None) -> list[FileRecord]:
        """Find the exact duplicates of the batch and take them out; returns the records of the files taken.

        ``keys_folder``: where the keys of every row kept (the stored ones and this batch's) are written.
        ``unwritten``: the statistics kept in memory, and the duplicate rows this process takes out of a
        file, are put in it instead of written to the store folder here; the caller writes them
        (:meth:`Unwritten.write`), while it does other work.
        """
        if self._pool is not None:
            self._pool.sync()
        # With Dask, the duplicate search runs on the client once the workers are done: its own cores.
        # Many keys are searched by the reading processes (each sorts its partitions by the compiled
        # sort once it has loaded it), few here, in threads.
        by_workers = None
        if self._pool is not None and _spooled_bytes(self._spool_dir) >= DUPLICATES_IN_WORKERS_BYTES:
            def by_workers(args: list[tuple]) -> Iterator[np.ndarray | None]:
                return self._run_in_workers([("dups", a, {}) for a in args])
        dups = dedupe.find_duplicates(self.spool, self.stored, drop_files=self._dropped, new_folder=keys_folder,
                                      threads=self.workers if self._dask is None else default_workers(),
                                      map_partitions=by_workers)
        shutil.rmtree(self._spool_dir, ignore_errors=True)
        by_pos = {t.pos: t for t in self.taken}
        todo = [(by_pos[pos], lines) for pos, lines in dedupe.split_seq(dups)]
        self._unwritten = unwritten if self.folder is not None else None
        in_workers = self.workers > 1 and self._dask is None
        if self._dask is not None:  # each file's duplicates read again on the Dask workers, some blocks a task
            for taken, lines in todo:
                parts = _by_blocks(taken, lines, self._dask.workers)
                self._take_out_by_blocks(taken, parts, self._dask.duplicate_rows(
                    taken, parts, block_bytes=self.block_bytes, chunk_rows=self.chunk_rows))
        elif in_workers and (len(todo) > 1 or (todo and len(_by_blocks(*todo[0], self.workers)) > 1)):
            self._take_out_in_workers(todo)
        else:
            for taken, lines in todo:
                self._take_out(taken, lines)
        if self._unwritten is None:
            self._write_statistics(in_workers)
        else:
            self._unwritten.stats += [(t.stats, t.record.sha256) for t in self.taken if t.unwritten and t.stats is not None]
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self.duplicates = len(dups)
        return [t.record for t in self.taken]

    def _write_statistics(self, in_workers: bool) -> None:
        """Write the statistics kept in memory to the store folder (by the worker processes when there are many)."""
        unwritten = [t for t in self.taken if t.unwritten]
        if self.folder is None or not unwritten:
            return
        if in_workers and len(unwritten) > 1:
            tasks = [("stats", (t.stats, t.record.sha256), dict(folder=self.folder)) for t in unwritten]
            for _ in self._run_in_workers(tasks):
                pass
        else:
            for t in unwritten:
                assert t.stats is not None
                store_mod.write_file_stats(t.stats, self.folder, t.record.sha256)
        for t in unwritten:
            t.unwritten = False

    def stats_of(self, taken: _Taken) -> pd.DataFrame:
        return _stats_of(taken, self.folder)

    def _take_out(self, taken: _Taken, lines: np.ndarray) -> None:
        """Move the rows at ``lines`` of a file from its statistics to its rejected rows (duplicate_row)."""
        self._apply_take_out(taken, take_out_rows(taken, lines, self.ctx, self.layers.grid, self.layers.crs,
                                                  folder=self.folder, block_bytes=self.block_bytes,
                                                  chunk_rows=self.chunk_rows, unwritten=self._unwritten))

    def _apply_take_out(self, taken: _Taken, result: tuple[FileRecord, pd.DataFrame | None, pd.DataFrame]) -> None:
        record, stats, dup_rejected = result
        for name, value in vars(record).items():  # in place: the caller holds the record add() returned
            setattr(taken.record, name, value)
        taken.stats = stats
        if self.on_rejected:
            self.on_rejected(dup_rejected)

    def _take_out_in_workers(self, todo: list[tuple[_Taken, np.ndarray]]) -> None:
        """:meth:`_take_out` of each file on the worker processes, a few tasks at a time, applied in file order.

        A file is one task, except a file that holds more than its share of the batch's duplicates
        (more than 1/workers of them: one large file, or a large file beside small ones) spread over
        several blocks: every worker reads some of its blocks again (:meth:`_take_out_by_blocks`), so
        it does not keep one worker busy while the others wait. Files of similar sizes stay a task
        each: their statistics are then rewritten by the workers, not here.
        """
        total = sum(len(lines) for _, lines in todo)
        file_opts = dict(folder=self.folder, block_bytes=self.block_bytes, chunk_rows=self.chunk_rows)
        block_opts = dict(block_bytes=self.block_bytes, chunk_rows=self.chunk_rows)
        plan: list[tuple[_Taken, list[np.ndarray] | None]] = []
        tasks: list[tuple[str, tuple, dict]] = []
        for taken, lines in todo:
            parts = _by_blocks(taken, lines, self.workers) if len(lines) * self.workers > total else [lines]
            if len(parts) > 1:
                light = replace(taken, stats=None)  # the reading needs no statistics: they stay here
                tasks += [("duprows", (light, part), block_opts) for part in parts]
                plan.append((taken, parts))
            else:
                tasks.append(("takeout", (taken, lines), file_opts))
                plan.append((taken, None))
        results = self._run_in_workers(tasks)
        for taken, by_blocks in plan:
            if by_blocks is None:
                self._apply_take_out(taken, next(results))
            else:
                self._take_out_by_blocks(taken, by_blocks, [next(results) for _ in by_blocks])

    def _take_out_by_blocks(self, taken: _Taken, parts: list[np.ndarray], results: list) -> None:
        """:meth:`_take_out` of one file whose duplicates the worker processes read again, each the lines
        ``parts[i]`` of some of its blocks (``results``: their rows as ``duplicate_rows`` gives them):
        their statistics are merged and taken out here."""
        minus = cellstats.merge_stats(*(m for m, _ in results))
        dup_rejected = pd.concat([r for _, r in results], ignore_index=True)
        self._apply_take_out(taken, apply_take_out(taken, sum(len(lines) for lines in parts), minus, dup_rejected,
                                                   folder=self.folder, unwritten=self._unwritten))

    def _run_in_workers(self, tasks: list[tuple[str, tuple, dict]]) -> Iterator[Any]:
        """The results of ``(kind, args, options)`` tasks done by the worker processes, a few at a time, in order.

        An error is raised again here, in order, as with one process; a worker that dies stops the batch.
        """
        if self._pool is not None and not all(p.is_alive() for p in self._pool.procs):
            self._restart_pool()
        pool = self._file_pool()
        n = len(pool.procs)
        results: dict[int, tuple] = {}
        sent = done = 0
        while done < len(tasks):
            while sent < len(tasks) and sent - done < FILES_PER_WORKER * n:
                kind, args, opts = tasks[sent]
                pool.put(sent % n, (kind, sent, args, opts))
                sent += 1
            while done not in results:
                msg = pool.get()
                # The answer to task msg[1], whichever comes first: another worker's later task may answer
                # before this one (it was dropped when its kind differed from the awaited task's: a wait forever).
                if isinstance(msg[1], int) and 0 <= msg[1] < sent and msg[0] == tasks[msg[1]][0]:
                    results[msg[1]] = msg[2:]
            got, error = results.pop(done)
            if error is not None:
                kind, args = tasks[done][:2]
                raise_payload(args[0].path if kind in ("takeout", "duprows") else args[4] or args[0] if kind == "dups"
                              else Path(str(self.folder)), error)
            yield pickle.loads(got)
            done += 1


#: Spooled row keys (16 bytes a row) from which the duplicate search is done by the reading processes: 1M rows.
DUPLICATES_IN_WORKERS_BYTES = 16 << 20


def _spooled_bytes(folder: Path) -> int:
    """Bytes of the pairs spooled to disk in ``folder`` (the reading processes' and this one's, once flushed)."""
    total = 0
    for path in folder.glob("*.bin"):
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


def _partition_duplicates(spool_folder: Path, stored_folder: Path | None, p: int, drop_files: set[int],
                          new_folder: Path | None, ctx: meas.ReadContext, grid, crs: CRS) -> np.ndarray | None:
    """covgap.dedupe.partition_duplicates as a task of a reading process."""
    return dedupe.partition_duplicates(spool_folder, stored_folder, p, drop_files, new_folder)


def _write_stats(stats: pd.DataFrame, sha256: str, ctx: meas.ReadContext, grid, crs: CRS, *, folder: Path) -> str:
    """A worker's task: one file's statistics into the store folder."""
    return store_mod.write_file_stats(stats, folder, sha256)


def _stats_of(taken: _Taken, folder: Path | None) -> pd.DataFrame:
    if taken.stats is not None:
        return taken.stats
    assert folder is not None
    return store_mod.read_stats(folder / taken.record.stats_file)


def _by_blocks(taken: _Taken, lines: np.ndarray, n: int) -> list[np.ndarray]:
    """``lines`` of a plain file cut into at most ``n`` runs of whole blocks, each about as many blocks (reading
    the blocks again is most of the cost); one run when the blocks are not known (compressed files)."""
    if not taken.refs or n < 2:
        return [lines]
    firsts = np.array([ref.first_line for ref, _ in taken.refs], dtype=np.int64)
    block = np.searchsorted(firsts, lines, side="right") - 1
    touched = np.unique(block)
    if len(touched) < 2:
        return [lines]
    cut_blocks = touched[[len(touched) * k // n for k in range(1, n)]]
    cuts = np.searchsorted(block, cut_blocks, side="left")
    return [part for part in np.split(lines, cuts) if len(part)]


def _lines_again(taken: _Taken, lines: np.ndarray, *, block_bytes: int, chunk_rows: int | None) -> Iterator[list[str]]:
    """The text of a file's lines ``lines`` (sorted), block by block. A plain file's blocks holding
    some are read by their offsets; where the compiled parser kept a block's line index
    (:data:`LINE_INDEX_STEP`), only the few KiB around each line are read, else the block is read
    again whole and its line ends found (:func:`covgap.measurements.lines_at`). Other files are read
    again from their start."""
    lo, hi = int(lines[0]), int(lines[-1])
    if not taken.refs:
        for block in meas._blocks_of(taken.path, taken.fmt, block_bytes=block_bytes, max_lines=chunk_rows):
            last = block.first_line + block.n_lines - 1
            if last < lo:
                continue
            if block.first_line > hi:
                break
            yield meas.lines_at(block, lines[(lines >= block.first_line) & (lines <= last)])
        return
    with open(taken.path, "rb") as fh:
        for ref, length in taken.refs:
            wanted = lines[np.searchsorted(lines, ref.first_line):np.searchsorted(lines, ref.first_line + ref.n_lines)]
            if not len(wanted):
                continue
            index = taken.line_index.get(ref.first_line)
            if index is None:
                yield meas.lines_at(read_ref(taken.path, ref, length), wanted)
            else:
                yield _lines_by_index(fh, taken.path, ref, length, index, wanted)


def _lines_by_index(fh, path: Path, ref: Block, length: int, index: np.ndarray, wanted: np.ndarray) -> list[str]:
    """The text of lines ``wanted`` of a block (each with its line end, as :func:`covgap.measurements.lines_at`
    gives it), read by the block's line index: the stretch of LINE_INDEX_STEP lines holding each."""
    rel = wanted - ref.first_line
    anchor = rel // LINE_INDEX_STEP
    out: list[str] = []
    for a in np.unique(anchor).tolist():
        start = int(index[a])
        end = int(index[a + 1]) if a + 1 < len(index) else length
        fh.seek((ref.offset or 0) + start)
        chunk = fh.read(end - start)
        window = chunk.split(b"\n")
        for k in (rel[anchor == a] - a * LINE_INDEX_STEP).tolist():
            if len(chunk) != end - start or k >= len(window) - 1 + (0 if chunk.endswith(b"\n") else 1):
                raise InputError(path, ["changed while it was being read; read it again when it is complete"])
            out.append(window[k].decode("utf-8") + ("\n" if k < len(window) - 1 else ""))
    return out


def take_out_rows(taken: _Taken, lines: np.ndarray, ctx: meas.ReadContext, grid, crs: CRS, *, folder: Path | None,
                  block_bytes: int, chunk_rows: int | None,
                  unwritten: Unwritten | None = None) -> tuple[FileRecord, pd.DataFrame | None, pd.DataFrame]:
    """The rows at ``lines`` of a file moved from its statistics to its rejected rows (duplicate_row):
    ``(new record, statistics to keep in memory or None, the rows as rejected rows)``; the store's files are rewritten.

    In any process (a worker's task when many files have duplicates); ``taken`` is not changed.
    """
    minus, dup_rejected = duplicate_rows(taken, lines, ctx, grid, crs, block_bytes=block_bytes, chunk_rows=chunk_rows)
    return apply_take_out(taken, len(lines), minus, dup_rejected, folder=folder, unwritten=unwritten)


def duplicate_rows(taken: _Taken, lines: np.ndarray, ctx: meas.ReadContext, grid, crs: CRS, *,
                   block_bytes: int, chunk_rows: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows at ``lines`` of a file read again: ``(their cell statistics, the rows as rejected rows)``.

    In any process: a worker's task when the duplicates of one large file are read again by
    several processes, each the lines of some of its blocks.
    """
    minus_parts, rejected_parts = [], []
    picked: list[str] = []
    at = 0  # lines[:at] parsed already

    def parse() -> None:  # the lines picked so far, at once (a parse per block costs more than the lines)
        nonlocal picked, at
        used, dup_rejected = meas.rows_of_lines(picked, lines[at:at + len(picked)], taken.fmt, ctx,
                                                source_file=taken.path.name, reason="duplicate_row",
                                                detail=DUPLICATE_DETAIL)
        minus_parts.append(cellstats.aggregate_to_cells(used if "x" in used else project_rows(used, crs), grid))
        rejected_parts.append(dup_rejected)
        at += len(picked)
        picked = []

    for text in _lines_again(taken, lines, block_bytes=block_bytes, chunk_rows=chunk_rows):
        picked += text
        if len(picked) >= TAKE_OUT_LINES:  # many duplicates (a file repeating another): memory stays bounded
            parse()
    if at + len(picked) != len(lines):  # the file changed under us between the two reads
        raise InputError(taken.path, ["changed while it was being read; read it again when it is complete"])
    if picked:
        parse()
    return cellstats.merge_stats(*minus_parts), pd.concat(rejected_parts, ignore_index=True)


def apply_take_out(taken: _Taken, k: int, minus: pd.DataFrame, dup_rejected: pd.DataFrame, *,
                   folder: Path | None, unwritten: Unwritten | None = None) -> tuple[FileRecord, pd.DataFrame | None, pd.DataFrame]:
    """``k`` duplicate rows of a file (their statistics ``minus``) moved from its statistics to its rejected
    rows: see :func:`take_out_rows`. With ``unwritten``, the rows are added to the file's rejected rows
    by :meth:`Unwritten.write` later (the record names that file already)."""
    stats = cellstats.subtract_stats(_stats_of(taken, folder), minus)
    rec = replace(taken.record)
    rec.rows_used -= k
    rec.rows_rejected += k
    by_reason = {**rec.rejected_by_reason, "duplicate_row": rec.rejected_by_reason.get("duplicate_row", 0) + k}
    rec.rejected_by_reason = {r: by_reason[r] for r in meas.REJECT_REASONS if by_reason.get(r)}
    if folder is not None:
        if not taken.unwritten:  # written already (large): written again; else finish() writes them once
            (folder / rec.stats_file).unlink()
            rec.stats_file = store_mod.write_file_stats(stats, folder, rec.sha256)
        if unwritten is not None and not dup_rejected.empty:
            unwritten.rejected.append((rec.sha256, rec.name, rec.rejected_file, dup_rejected))
            rec.rejected_file = rec.rejected_file or store_mod.rejected_path(rec.sha256, rec.name)
        else:
            rec.rejected_file = store_mod.add_rejected_rows(folder, rec.sha256, rec.name, rec.rejected_file, dup_rejected)
    return rec, (stats if folder is None or taken.unwritten else None), dup_rejected


@dataclass
class Unwritten:
    """What a batch left for its caller to write into the store folder (``Batch.finish(unwritten=)``), so that
    the caller can write it beside other work (covgap.refresh: a forked child, while the analysis runs)."""

    #: ``(statistics, sha256)`` of the files whose statistics are in memory only
    stats: list[tuple[pd.DataFrame, str]] = field(default_factory=list)
    #: ``(sha256, name, rejected file before, rows)``: duplicate rows to add to a file's rejected rows, in order
    rejected: list[tuple[str, str, str, pd.DataFrame]] = field(default_factory=list)

    def write(self, folder: Path) -> None:
        for stats, sha256 in self.stats:
            store_mod.write_file_stats(stats, folder, sha256)
        for sha256, name, rel_path, rows in self.rejected:
            store_mod.add_rejected_rows(folder, sha256, name, rel_path, rows)


#: The duplicate rows of a file are parsed again this many lines at a time (at least a block's, at once).
TAKE_OUT_LINES = 100_000
#: With a store, a file's statistics of at most this many rows are also kept in memory for the merge.
KEEP_STATS_ROWS = 50_000
#: ... while the statistics a batch keeps in memory stay within this many rows in all (about 450 bytes a
#: row: some 180 MB); past it a file's statistics are written to the store when it is taken in, and read
#: back for the merge, so a batch of any number of files stays within bounded memory.
KEEP_STATS_TOTAL_ROWS = 400_000

#: The detail of a duplicate row in the rejected rows.
DUPLICATE_DETAIL = "same time, place, operator, technology and level as an earlier row"


def ingest_file(path: Path, layers: Layers, ctx: meas.ReadContext, *, sha256: str | None = None,
                folder: Path | None = None, on_rejected: Callable[[pd.DataFrame], None] | None = None,
                progress: ProgressFactory | None = None, chunk_rows: int | None = None,
                workers: int | None = None, engine: EngineConfig | None = None) -> tuple[FileRecord, pd.DataFrame]:
    """Read one file on its own (a batch of one): ``(record, stats)``; duplicates within the file are found.

    Raises
    ------
    InputError
        Empty file, unknown format or encoding, missing column, no data row or no usable row.
    """
    with Batch(layers, ctx, folder=folder, on_rejected=on_rejected, progress=progress, chunk_rows=chunk_rows,
               workers=workers, engine=engine) as batch:
        batch.add(path, sha256)
        keys = folder / store_mod.KEYS_DIR if folder is not None else None
        (record,) = batch.finish(keys_folder=keys)
        return record, batch.stats_of(batch.taken[0])


def internal_error_reason(path: Path, err: BaseException) -> tuple[str, str]:
    """``(reason, traceback)`` of a file refused because covgap failed on it (a bug, not the file's fault)."""
    if isinstance(err, _WorkerError):  # named as in the process that read the file: the same reason as one process gives
        kind, message, trace = err.kind, err.message, err.trace
    else:
        kind, message, trace = type(err).__name__, str(err), "".join(traceback.format_exception(err))
    reason = (f"{path}: internal_error: {kind}: {message} (a bug in covgap, not in the file: please "
              f"report it with the traceback from {ERRORS_LOG} in the output folder, or run again with -v)")
    return reason, f"{path}\n{trace}"
