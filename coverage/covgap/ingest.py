"""Reading measurement files into cell statistics: the one path of run, refresh and the library.

:func:`ingest_file` streams a file in chunks: each chunk's rows are normalised and
validated (:mod:`covgap.measurements`), used rows are binned into a running
:class:`covgap.cellstats.CellAccumulator`, rejected rows go to a callback or straight to the store's
``rejected/`` file. Memory is bounded by the chunk size plus the file's cell statistics.
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Transformer

from covgap import cellstats, measurements as meas, store as store_mod
from covgap.config import Config
from covgap.errors import InputError
from covgap.model import Layers
from covgap.store import FileRecord, RejectedWriter, sha256_file


log = logging.getLogger(__name__)

#: Tracebacks of the files refused for an internal error, in the output folder.
ERRORS_LOG = "errors.log"

#: A progress factory: ``progress(label, total_bytes)`` returns a context manager whose value has ``update(n)``.
ProgressFactory = Callable[[str, int], Any]


def study_area_test(layers: Layers) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A vectorised test: are these WGS84 lon/lat points inside the study area?"""
    to_work = Transformer.from_crs("EPSG:4326", layers.crs, always_xy=True)
    area = layers.study_area
    shapely.prepare(area)
    minx, miny, maxx, maxy = area.bounds

    def inside(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        lon = np.asarray(lon, dtype=float)
        lat = np.asarray(lat, dtype=float)
        ok = (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
        out = np.zeros(len(lon), dtype=bool)
        if not ok.any():
            return out
        x, y = to_work.transform(lon[ok], lat[ok])
        x = np.asarray(x)
        y = np.asarray(y)
        box = np.isfinite(x) & (x >= minx) & (x <= maxx) & (y >= miny) & (y <= maxy)
        res = np.zeros(len(x), dtype=bool)
        res[box] = shapely.contains_xy(area, x[box], y[box])
        out[ok] = res
        return out

    return inside


def project_rows(rows: pd.DataFrame, crs: CRS) -> pd.DataFrame:
    """Add working-CRS ``x``, ``y`` to normalised rows."""
    to_work = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    x, y = to_work.transform(rows["lon"].to_numpy(), rows["lat"].to_numpy())
    return rows.assign(x=np.asarray(x), y=np.asarray(y))


def read_context(layers: Layers, config: Config, *, now_s: float | None = None) -> meas.ReadContext:
    return meas.ReadContext(
        in_study_area=study_area_test(layers),
        now_s=time.time() if now_s is None else now_s,
        timezone=config.study.timezone,
        default_technology=config.inputs.default_technology,
        default_operator=config.inputs.default_operator,
        mapping=config.inputs.columns,
    )


def ingest_file(path: Path, layers: Layers, ctx: meas.ReadContext, *, sha256: str | None = None,
                folder: Path | None = None, on_rejected: Callable[[pd.DataFrame], None] | None = None,
                progress: ProgressFactory | None = None, chunk_rows: int = 250_000) -> tuple[FileRecord, pd.DataFrame]:
    """Stream one file into its cell statistics: ``(record, stats)``.

    With a store ``folder``, the statistics also go to ``stats/`` and the rejected rows to
    ``rejected/``; ``on_rejected`` receives each chunk's rejected rows instead or as well.
    ``sha256`` (computed when not given) identifies the file in the store.

    Memory is bounded by ``chunk_rows`` plus the cell statistics of the file: each
    chunk's statistics merge into a running total and its rejected rows go straight
    to disk. On refusal the file's partial output and its row keys are undone.

    Raises
    ------
    InputError
        Empty file, unknown format or encoding, missing column, no data row or no usable row.
    """
    path = Path(path)
    fmt = meas.detect_format(path, ctx.mapping)
    if sha256 is None:
        sha256 = sha256_file(path)
    keys_before = ctx.seen_keys
    writer = RejectedWriter(folder, sha256, path.name) if folder is not None else None
    size = path.stat().st_size
    bytes_per_row = _bytes_per_row(path, size)
    by_reason = {r: 0 for r in meas.REJECT_REASONS}
    n_read = n_used = n_rej = 0
    acc = cellstats.CellAccumulator(layers.grid)
    bar_cm = progress(path.name, size) if progress else contextlib.nullcontext(None)
    try:
        with bar_cm as bar:
            done = 0
            for used, rejected in meas.read_measurement_chunks(path, ctx, chunk_rows=chunk_rows, fmt=fmt):
                n_read += len(used) + len(rejected)
                n_used += len(used)
                n_rej += len(rejected)
                if len(rejected):
                    for reason, k in rejected["reason"].value_counts().items():
                        by_reason[str(reason)] += int(k)
                    if writer:
                        writer.write(rejected)
                    if on_rejected:
                        on_rejected(rejected)
                if len(used):
                    acc.add(project_rows(used, layers.crs))
                del used, rejected
                if bar is not None:
                    step = min(size - done, int((n_read * bytes_per_row) - done)) if n_read else 0
                    if step > 0:
                        bar.update(step)
                        done += step
            if bar is not None and size > done:
                bar.update(size - done)
        if n_read == 0:
            raise InputError(path, [f"has a header but no data rows; columns found: {', '.join(fmt.columns)}"])
        if n_used == 0:
            top = ", ".join(f"{r} {k}" for r, k in sorted(by_reason.items(), key=lambda kv: -kv[1]) if k)
            raise InputError(path, [
                f"no usable row: all {n_read} rows rejected ({top}); read as {fmt.name} with "
                f"lat = '{fmt.lat}', lon = '{fmt.lon}', signal = '{fmt.signal}'; columns found: {', '.join(fmt.columns)}"])
    except BaseException:
        ctx.seen_keys = keys_before
        if writer:
            writer.discard()
        raise
    finally:
        if writer:
            writer.close()
    record = FileRecord(
        sha256=sha256, name=path.name, path=str(path.resolve()), size_bytes=size, format=fmt.name,
        rows_read=n_read, rows_used=n_used, rows_rejected=n_rej,
        rejected_by_reason={r: k for r, k in by_reason.items() if k},
        rejected_file=writer.rel_path if writer else "",
    )
    stats = acc.to_stats()
    if folder is not None:
        record.stats_file = store_mod.write_file_stats(stats, folder, sha256)
    log.info("%s (%s): %d rows read, %d used, %d rejected", path.name, fmt.name, n_read, n_used, n_rej)
    return record, stats


def internal_error_reason(path: Path, err: BaseException) -> tuple[str, str]:
    """``(reason, traceback)`` of a file refused because covgap failed on it (a bug, not the file's fault)."""
    trace = "".join(traceback.format_exception(err))
    reason = (f"{path}: internal_error: {type(err).__name__}: {err} (a bug in covgap, not in the file: please "
              f"report it with the traceback from {ERRORS_LOG} in the output folder, or run again with -v)")
    return reason, f"{path}\n{trace}"


def _bytes_per_row(path: Path, size: int) -> float:
    """Average line length from the first 64 KiB (for the progress bar)."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    lines = head.count(b"\n")
    return len(head) / lines if lines else float(size or 1)
