"""The dask engine: blocks of measurement files read as tasks on Dask workers (docs/scale.md).

An executor of :class:`covgap.ingest.Batch`, beside the in-process reader and the forked
worker processes: everything after reading (duplicates, store, outputs) is the same code.

Each block becomes a task that reads it (:func:`covgap.ingest.process_block`) on a worker;
the block's compact cell statistics stay on the worker and are merged there by a tree
reduction (:data:`FAN_IN` at a time), so only cell statistics travel for the merge and one
merged :class:`~covgap.cellstats.PartialStats` per file reaches the client. The row keys,
line numbers and rejected rows of each block come back to the client, in line order, and
go to its key spool and rejected-rows file exactly as in the local engine. Blocks of plain
UTF-8 files travel as references (offset and length): the worker reads the bytes itself,
so the files must be readable by the workers at the same paths.

The read context holds closures and pyproj transformers; workers get picklable
:class:`~covgap.ingest.ReadSettings` instead (scattered once) and build the context once
per process (:func:`covgap.ingest.context_of`). Dask is imported only here, and this
module only when the dask engine is chosen.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections import deque
from operator import itemgetter
from pathlib import Path
from typing import Any


from covgap import cellstats, ingest, measurements as meas
from covgap.blocks import Block, read_ref
from covgap.config import EngineConfig
from covgap.errors import EngineError

log = logging.getLogger(__name__)

#: Partial statistics merged by one reduction task.
FAN_IN = 4
#: Blocks in flight per worker: enough to keep every worker busy, few enough to bound memory.
BLOCKS_PER_WORKER = 3

INSTALL_HINT = "pip install 'covgap[dask]' (or pip install 'dask[distributed]')"


# --------------------------------------------------------------------------- on the workers
def read_block_task(settings: ingest.ReadSettings, block: Block, length: int | None, fmt: meas.MeasurementFormat,
                    name: str, path: Path) -> tuple[cellstats.PartialStats | None, ingest.BlockResult | None, tuple | None]:
    """Read one block on a worker: ``(partial statistics, the rest of the result, error)``.

    Errors are returned, not raised: an :class:`InputError` keeps its problems (it does not
    pickle as itself) and a bug keeps its traceback, as in the local worker processes.
    """
    try:
        ctx = ingest.context_of(settings)
        if length is not None:  # sent as a reference: read the bytes here
            block = read_ref(path, block, length)
        res = ingest.process_block(block, fmt, ctx, settings.grid, settings.crs, name, path)
        partial, res.partial = res.partial, None
        return partial, res, None
    except Exception as err:
        return None, None, ingest.error_payload(err)


def duplicate_rows_task(settings: ingest.ReadSettings, taken, lines, block_bytes: int, chunk_rows: int | None) -> tuple:
    """Read the duplicate lines ``lines`` of a file again on a worker (some of its blocks):
    ``(ingest.duplicate_rows result, error)``, errors returned as in :func:`read_block_task`."""
    try:
        ctx = ingest.context_of(settings)
        return ingest.duplicate_rows(taken, lines, ctx, settings.grid, settings.crs, block_bytes=block_bytes,
                                     chunk_rows=chunk_rows), None
    except Exception as err:
        return None, ingest.error_payload(err)


def merge_partials(settings: ingest.ReadSettings, *parts: cellstats.PartialStats | None) -> cellstats.PartialStats | None:
    """One node of the tree reduction: several blocks' statistics merged into one (on a worker)."""
    acc = cellstats.CellAccumulator(settings.grid)
    for part in parts:
        if part is not None:
            acc.add_partial(part)
    return acc.to_partial() if acc.size else None


def _rest(result: tuple) -> tuple:
    """What of a block's result goes back to the client: everything but its statistics."""
    return result[1], result[2]


# --------------------------------------------------------------------------- on the client
def connect(engine: EngineConfig, workers: int):
    """A Dask client: of the scheduler at ``engine.scheduler``, or of a new LocalCluster of ``workers`` processes.

    Returns ``(client, cluster or None)``.

    Raises
    ------
    EngineError
        Dask is not installed, or the scheduler cannot be reached (or the cluster not started) in time.
    """
    try:
        import distributed
    except ImportError as err:
        raise EngineError(f"the dask engine (--engine dask, or [engine] name = 'dask') needs Dask, which is not installed: "
                          f"{INSTALL_HINT}; or read with --engine local") from err
    if engine.scheduler:
        try:
            client = distributed.Client(engine.scheduler, timeout=engine.connect_timeout_s, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as err:
            raise EngineError(f"cannot reach the Dask scheduler at {engine.scheduler} within {engine.connect_timeout_s:g} s "
                              f"({type(err).__name__}: {err}); start it (dask scheduler) and its workers (dask worker "
                              f"{engine.scheduler}), or fix [engine] scheduler in the covgap.toml (empty: a cluster on this "
                              "machine), or read with --engine local") from err
        log.info("dask engine: scheduler %s, %d workers", engine.scheduler, len(client.scheduler_info().get("workers", {})))
        return client, None
    try:
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                           silence_logs=logging.WARNING, timeout=engine.connect_timeout_s)
    except (OSError, TimeoutError) as err:
        raise EngineError(f"cannot start a Dask LocalCluster of {workers} workers on this machine ({type(err).__name__}: "
                          f"{err}); raise [engine] connect_timeout_s, lower [engine] workers, or read with --engine local") from err
    log.info("dask engine: LocalCluster of %d worker processes", workers)
    return distributed.Client(cluster, set_as_default=False), cluster


class DaskExecutor:
    """Reads the blocks of each file of a :class:`covgap.ingest.Batch` on Dask workers."""

    def __init__(self, engine: EngineConfig, settings: ingest.ReadSettings, *, workers: int):
        self.client, self.cluster = connect(engine, workers)
        try:
            self.settings = self.client.scatter(settings, broadcast=True, hash=False)
            self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def duplicate_rows(self, taken, parts: list, *, block_bytes: int, chunk_rows: int | None) -> list[tuple]:
        """The duplicate lines of one file read again on the workers, ``parts[i]`` (the lines of some of
        its blocks) a task each: their ``(statistics, rejected rows)`` in order (``Batch._take_out_by_blocks``)."""
        light = dataclasses.replace(taken, stats=None, path=Path(taken.path).resolve())  # the workers may run elsewhere
        tag = uuid.uuid4().hex[:12]
        futures = [self.client.submit(duplicate_rows_task, self.settings, light, lines, block_bytes, chunk_rows,
                                      key=f"covgap-duprows-{tag}-{i}") for i, lines in enumerate(parts)]
        try:
            got = self.client.gather(futures)
        except BaseException:
            self.client.cancel(futures)
            raise
        for _, error in got:
            if error is not None:
                ingest.raise_payload(Path(taken.path), error)
        return [result for result, _ in got]

    def results(self, path: Path, fmt: meas.MeasurementFormat, blocks):
        """``(BlockResult, bytes)`` of each block in order (statistics merged away), then one result of
        no row holding the file's merged statistics: what ``Batch._results`` yields."""
        client = self.client
        path = Path(path).resolve()  # the workers may run elsewhere: an absolute path
        tag = uuid.uuid4().hex[:12]
        window = BLOCKS_PER_WORKER * self.workers
        pending: deque = deque()  # (future of the rest, bytes) in block order
        levels: list[list] = [[]]  # the tree reduction, filled as blocks are sent
        every: list = []  # futures to cancel if the file is given up on

        def reduce(level: int) -> None:
            parts, levels[level] = levels[level], []
            if level + 1 == len(levels):
                levels.append([])
            fut = client.submit(merge_partials, self.settings, *parts, key=f"covgap-merge-{tag}-{level}-{len(every)}")
            every.append(fut)
            levels[level + 1].append(fut)
            if len(levels[level + 1]) == FAN_IN:
                reduce(level + 1)

        def take_one():
            fut, nbytes = pending.popleft()
            res, error = fut.result()
            if error is not None:
                ingest.raise_payload(path, error)
            return res, nbytes

        try:
            for idx, block in enumerate(blocks):
                length = len(block.data) if block.offset is not None else None
                sent: Any = block.ref() if length is not None else client.scatter(block, hash=False)
                read = client.submit(read_block_task, self.settings, sent, length, fmt, path.name, path,
                                     key=f"covgap-block-{tag}-{idx}")
                part = client.submit(itemgetter(0), read, key=f"covgap-part-{tag}-{idx}")
                rest = client.submit(_rest, read, key=f"covgap-rest-{tag}-{idx}")
                every += [read, part, rest]
                del read  # kept by the scheduler until its two dependents ran
                pending.append((rest, len(block.data)))
                levels[0].append(part)
                if len(levels[0]) == FAN_IN:
                    reduce(0)
                while len(pending) >= window:
                    yield take_one()
            while pending:
                yield take_one()
            left = [f for level in levels for f in level]
            final = client.submit(merge_partials, self.settings, *left, key=f"covgap-merge-{tag}-final") if len(left) != 1 else left[0]
            every.append(final)
            merged = final.result()
        finally:
            client.cancel(every)
        if merged is not None:
            yield ingest.BlockResult.statistics_only(merged), 0
