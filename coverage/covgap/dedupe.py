"""Exact duplicate rows across blocks, files and refreshes, in memory bounded by a partition, not by rows.

A row is an exact duplicate when its time, place (to 1e-7°), operator, technology and
level are those of an earlier row (earlier: a file taken in before, or an earlier file
of the batch, or an earlier line of the same file). Each used row gets a 64-bit key
(:func:`measurement_keys`); the engine spools ``(key, sequence)`` pairs to disk in
:data:`PARTITIONS` partitions by the key's top bits (:class:`KeySpool`), and after the
batch :func:`find_duplicates` reads one partition at a time, sorts it, and compares it
with the same partition of the keys already stored (:class:`StoredKeys`). So memory
holds one partition (1/64 of the keys), never the keys of every row; see docs/refresh.md
for the trade-off (a second, targeted read of the few blocks that hold duplicates).

With 64-bit keys the chance that two different rows of 10⁸ share a key is about
3·10⁻⁴ (birthday bound n²/2⁶⁵).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from covgap.grid import writable

#: Partitions by the top bits of the key; a 10⁸-row batch holds 1.6 GB of spooled pairs, 25 MB per partition.
PARTITIONS = 64
_SHIFT = np.uint64(64 - 6)
SPOOL_DTYPE = np.dtype([("key", "<u8"), ("seq", "<u8")])
#: A row's sequence number: the file's position in the batch in the top bits, its line number below.
LINE_BITS = 40
#: Spooled pairs kept in memory before they go to disk (all of them, for a batch smaller than this).
SPOOL_MEMORY_BYTES = 64 << 20

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_NAN_BITS = np.uint64(0x7FF8000000000000)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: every input bit changes about half the output bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _bits(values: np.ndarray) -> np.ndarray:
    """The IEEE bits of floats, with one NaN and one zero (−0.0 is 0.0)."""
    v = np.asarray(values, dtype=np.float64) + 0.0
    bits = v.view(np.uint64).copy()
    bits[np.isnan(v)] = _NAN_BITS
    return bits


def _text_hash(values: list) -> np.ndarray:
    """A stable 64-bit hash per string (the same in every process and run, unlike ``hash()``)."""
    return np.array([int.from_bytes(hashlib.blake2b(str(v).encode("utf-8"), digest_size=8).digest(), "little")
                     for v in values], dtype=np.uint64)


def measurement_keys(rows: pd.DataFrame, *, row_keys: Callable | None = None) -> np.ndarray:
    """A 64-bit key per row of what makes a measurement the same measurement.

    ``rows`` are normalised rows (covgap.measurements): ``lon``, ``lat``, ``signal_dbm``,
    ``time_s`` and the categoricals (or strings) ``technology`` and ``operator``.
    ``row_keys``: the same mixing compiled in one pass (covgap.fastkernel.row_keys).
    """
    if row_keys is not None and len(rows):
        return keys_of(rows["lon"].to_numpy(dtype=float), rows["lat"].to_numpy(dtype=float),
                       rows["signal_dbm"].to_numpy(dtype=float), rows["time_s"].to_numpy(dtype=float),
                       pd.Categorical(rows["operator"]), pd.Categorical(rows["technology"]), row_keys=row_keys)
    lon, lat = _place(rows["lon"].to_numpy(dtype=float)), _place(rows["lat"].to_numpy(dtype=float))
    with np.errstate(over="ignore"):
        h = _mix(_bits(lon) ^ np.uint64(0x9E3779B97F4A7C15))
        h = _mix(h ^ _bits(lat))
        h = _mix(h ^ _bits(rows["signal_dbm"].to_numpy(dtype=float)))
        h = _mix(h ^ _bits(rows["time_s"].to_numpy(dtype=float)))
        for col in ("operator", "technology"):
            cat = pd.Categorical(rows[col])
            codes = np.asarray(cat.codes, dtype=np.int64)
            h = _mix(h ^ _text_hash(list(cat.categories))[codes] if len(codes) else h)
    return h


def _place(degrees: np.ndarray) -> np.ndarray:
    """A coordinate as a key holds it: to 1e-7° (clipped first, so no huge value overflows the rounding)."""
    return np.round(np.clip(degrees, -1e3, 1e3), 7)


def keys_of(lon: np.ndarray, lat: np.ndarray, sig: np.ndarray, t: np.ndarray, op: pd.Categorical, tech: pd.Categorical, *,
            row_keys: Callable) -> np.ndarray:
    """:func:`measurement_keys` of rows given as their columns, by the compiled mixing (``row_keys``)."""
    w = writable  # the types the compiled function is cached for
    return row_keys(w(_place(lon), np.float64), w(_place(lat), np.float64), w(sig, np.float64), w(t, np.float64), w(op.codes, np.int64),
                    _text_hash(list(op.categories)), w(tech.codes, np.int64), _text_hash(list(tech.categories)))


class KeySpool:
    """``(key, sequence)`` of used rows, partitioned by the key's top bits, spooled into ``folder``.

    Pairs stay in memory up to :data:`SPOOL_MEMORY_BYTES`, then go to one file per
    partition, ``<name>-<pp>.bin``. Several spools (one per reading process, different
    names) may share a folder; :func:`find_duplicates` reads every file of a partition.
    The folder belongs to the caller (covgap.ingest.Batch makes and removes it).
    """

    def __init__(self, folder: Path, name: str = "main"):
        self.folder = Path(folder)
        self.name = name
        self._buffers: list[list[np.ndarray]] = [[] for _ in range(PARTITIONS)]
        self._buffered = 0
        self.rows = 0

    def add(self, keys: np.ndarray, seqs: np.ndarray) -> None:
        if not len(keys):
            return
        from covgap import fastparse

        module = fastparse.loaded()
        if module is not None and len(keys) >= COMPILED_SORT_MIN:  # the same pairs in the same order, in two passes
            ordered, bounds = module.spool_pairs(writable(keys, np.uint64), writable(seqs, np.uint64), int(_SHIFT),
                                                 PARTITIONS)
            pairs = ordered.view(SPOOL_DTYPE).reshape(len(keys))
        else:
            pairs = np.empty(len(keys), dtype=SPOOL_DTYPE)
            pairs["key"] = keys
            pairs["seq"] = seqs
            part = (pairs["key"] >> _SHIFT).astype(np.uint8)
            order = np.argsort(part, kind="stable")  # a radix sort for 8-bit values
            pairs, part = pairs[order], part[order]
            bounds = np.searchsorted(part, np.arange(PARTITIONS + 1))
        for p in range(PARTITIONS):
            if bounds[p + 1] > bounds[p]:
                self._buffers[p].append(pairs[bounds[p]:bounds[p + 1]])
        self._buffered += pairs.nbytes
        self.rows += len(pairs)
        if self._buffered > SPOOL_MEMORY_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the pairs held in memory to the partition files."""
        for p, bufs in enumerate(self._buffers):
            if bufs:
                with open(self.folder / f"{self.name}-{p:02d}.bin", "ab") as fh:
                    for b in bufs:
                        fh.write(b.tobytes())
                bufs.clear()
        self._buffered = 0

    def partition(self, p: int) -> np.ndarray:
        """Every pair of partition ``p``: from the files of every spool in the folder, and this one's memory."""
        parts = [np.fromfile(path, dtype=SPOOL_DTYPE) for path in sorted(self.folder.glob(f"*-{p:02d}.bin"))]
        parts += self._buffers[p]
        return np.concatenate(parts) if parts else np.empty(0, dtype=SPOOL_DTYPE)


#: Sorted runs a partition of the stored keys may hold before a refresh merges them into one.
MAX_RUNS = 8


class StoredKeys:
    """The sorted keys of every row of a store, per partition under ``folder``: ``<pp>.npy`` and the
    sorted runs later refreshes added, ``<pp>-<nnn>.npy``.

    A refresh writes only its own new keys, as one more run per partition, and hard-links
    the earlier files: so a 1 % file taken into a store of 2·10⁷ rows writes 1.6 MB of
    keys, not the store's 160 MB. When a partition would hold more than :data:`MAX_RUNS`
    runs, that refresh merges them into one ``<pp>.npy``. A store without a folder (a
    first run) has no key.
    """

    def __init__(self, folder: Path | None):
        self.folder = folder

    def files(self, p: int) -> list[Path]:
        """The key files of partition ``p``: its base first, then its runs in the order they were added."""
        if self.folder is None or not self.folder.is_dir():
            return []
        base = self.folder / f"{p:02d}.npy"
        runs = sorted(self.folder.glob(f"{p:02d}-[0-9][0-9][0-9].npy"))
        return ([base] if base.exists() else []) + runs

    def runs(self, p: int) -> list[np.ndarray]:
        """The sorted key arrays of partition ``p`` (no key is in two of them)."""
        return [np.load(path) for path in self.files(p)]

    def partition(self, p: int) -> np.ndarray:
        """Every key of partition ``p``, sorted."""
        runs = self.runs(p)
        return sort_keys(np.concatenate(runs)) if len(runs) > 1 else (runs[0] if runs else np.empty(0, dtype=np.uint64))

    def count(self) -> int:
        """How many keys (read from the file headers, not the data)."""
        if self.folder is None or not self.folder.is_dir():
            return 0
        return sum(int(np.load(path, mmap_mode="r").shape[0]) for path in self.folder.glob("*.npy"))


def _write_partition(stored: StoredKeys, p: int, fresh: np.ndarray, new_folder: Path, runs: list[np.ndarray]) -> None:
    """Partition ``p`` of the keys after this batch in ``new_folder``: the stored files hard-linked and
    ``fresh`` (sorted, none stored yet) as one more run, or everything merged into one file when the
    runs would be more than :data:`MAX_RUNS`."""
    files = stored.files(p)
    if len(fresh) and len(files) + 1 > MAX_RUNS:  # merged only when a run is added (an empty partition is given no runs)
        merged = sort_keys(np.concatenate([*runs, fresh]))
        np.save(new_folder / f"{p:02d}.npy", merged.astype(np.uint64, copy=False))
        return
    for path in files:
        _link_or_copy(path, new_folder / path.name)
    if len(fresh):
        last = max((int(f.stem.split("-")[1]) for f in files if "-" in f.stem), default=0)
        name = f"{p:02d}.npy" if not files else f"{p:02d}-{last + 1:03d}.npy"
        np.save(new_folder / name, fresh.astype(np.uint64, copy=False))


def find_duplicates(spool: KeySpool, stored: StoredKeys, *, drop_files: set[int] = frozenset(),  # type: ignore[assignment]
                    new_folder: Path | None = None, threads: int = 1,
                    map_partitions: Callable[[list[tuple]], Iterable[np.ndarray | None]] | None = None) -> np.ndarray:
    """Sequence numbers of the duplicate rows of the batch, sorted; the keys of the rows kept go
    into ``new_folder`` (the stored keys plus the batch's: :class:`StoredKeys`).

    ``drop_files``: positions in the batch of files refused after some of their rows were
    spooled; their pairs are ignored. ``threads``: partitions worked on at once (they are
    independent, and numpy's sorts and binary searches run outside the GIL); memory holds
    that many partitions. ``map_partitions``, if given, does the partitions instead: it is given
    the arguments of :func:`partition_duplicates` for each and returns their results in order
    (covgap.ingest: the reading processes, whose compiled sort is loaded).
    """
    spool.flush()  # all on disk: memory holds one partition (per thread) at a time
    if new_folder is not None:
        new_folder.mkdir(parents=True, exist_ok=True)

    def one(p: int) -> np.ndarray | None:
        return _partition_duplicates(spool, stored, p, drop_files, new_folder)

    if map_partitions is not None:
        found = list(map_partitions([(spool.folder, stored.folder, p, set(drop_files), new_folder)
                                     for p in range(PARTITIONS)]))
    elif threads <= 1:
        found = [one(p) for p in range(PARTITIONS)]
    else:
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="covgap-dedupe")
        try:
            found = list(pool.map(one, range(PARTITIONS)))
        except BaseException:  # Ctrl-C or an error: no partition started after it
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
    dups = [d for d in found if d is not None]
    return np.sort(np.concatenate(dups)) if dups else np.empty(0, dtype=np.uint64)


def partition_duplicates(spool_folder: Path, stored_folder: Path | None, p: int, drop_files: set[int],
                         new_folder: Path | None) -> np.ndarray | None:
    """The duplicates of partition ``p`` of the pairs spooled (on disk) in ``spool_folder`` against the keys
    stored in ``stored_folder``, None if it has none; writes its kept keys (another process may do it)."""
    return _partition_duplicates(KeySpool(spool_folder), StoredKeys(stored_folder), p, drop_files, new_folder)


#: Keys from which :func:`sort_keys` uses the compiled sort (where it is loaded).
COMPILED_SORT_MIN = 4096


def sort_keys(keys: np.ndarray) -> np.ndarray:
    """Row keys sorted: by the compiled sort for hashes when this process has loaded covgap.fastkernel
    (a reading process of a large file), else by ``np.sort``; the same result."""
    from covgap import fastparse

    module = fastparse.loaded()
    if module is None or len(keys) < COMPILED_SORT_MIN:
        return np.sort(keys)
    return module.sort_keys(writable(keys, np.uint64))


def _partition_duplicates(spool: KeySpool, stored: StoredKeys, p: int, drop_files: set[int],
                          new_folder: Path | None) -> np.ndarray | None:
    """The duplicates of partition ``p`` (:func:`find_duplicates`), None if it has none; writes its kept keys."""
    pairs = spool.partition(p)
    if drop_files and len(pairs):
        file_of = (pairs["seq"] >> np.uint64(LINE_BITS)).astype(np.int64)
        pairs = pairs[~np.isin(file_of, list(drop_files))]
    if not len(pairs):
        if new_folder is not None:
            _write_partition(stored, p, np.empty(0, dtype=np.uint64), new_folder, [])
        return None
    runs = stored.runs(p)
    keys = sort_keys(pairs["key"])
    first = np.ones(len(keys), dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    seen = _in_runs(runs, keys)
    dups = None
    if not first.all() or seen.any():  # some duplicates: which rows they are (the earliest of equal keys stays)
        few = pairs[_members(pairs["key"], np.unique(keys[~first | seen]))]  # the pairs of those keys only
        order = np.lexsort((few["seq"], few["key"]))
        k, q = few["key"][order], few["seq"][order]
        head = np.ones(len(k), dtype=bool)
        head[1:] = k[1:] != k[:-1]
        dups = q[~head | _in_runs(runs, k)]
    if new_folder is not None:
        _write_partition(stored, p, keys[first & ~seen], new_folder, runs)
    return dups


def _in_runs(runs: list[np.ndarray], keys: np.ndarray) -> np.ndarray:
    """Which of ``keys`` are in any of the sorted arrays ``runs``."""
    found = np.zeros(len(keys), dtype=bool)
    for run in runs:
        found |= _in_sorted(run, keys)
    return found


def _in_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Which of ``keys`` are in the sorted array ``sorted_keys`` (binary search)."""
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool)
    return sorted_keys[np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)] == keys


#: Bits of a key that index the table :func:`_members` filters with.
_TABLE_BITS = 16


def _members(keys: np.ndarray, few: np.ndarray) -> np.ndarray:
    """Which of ``keys`` are in ``few`` (sorted, a few keys: a partition's duplicates).

    A table indexed by the keys' low bits (uniform: the keys are hashes) rules out almost every
    key in one pass; only the rest are searched in ``few``. A binary search of every key
    costs five times as much.
    """
    if len(few) > (1 << _TABLE_BITS) // 16:  # a crowded table rules out little
        return _in_sorted(few, keys)
    low = np.uint64((1 << _TABLE_BITS) - 1)
    table = np.zeros(1 << _TABLE_BITS, dtype=bool)
    table[(few & low).astype(np.intp)] = True
    maybe = np.flatnonzero(table[(keys & low).astype(np.intp)])
    found = np.zeros(len(keys), dtype=bool)
    found[maybe] = _in_sorted(few, keys[maybe])
    return found


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def split_seq(seqs: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(file position, sorted line numbers)`` of sequence numbers."""
    seqs = np.asarray(seqs, dtype=np.uint64)
    files = (seqs >> np.uint64(LINE_BITS)).astype(np.int64)
    lines = (seqs & np.uint64((1 << LINE_BITS) - 1)).astype(np.int64)
    for f in np.unique(files):
        yield int(f), np.sort(lines[files == f])


def make_seq(file_pos: int, lines: np.ndarray) -> np.ndarray:
    return (np.uint64(file_pos) << np.uint64(LINE_BITS)) | np.asarray(lines, dtype=np.uint64)
