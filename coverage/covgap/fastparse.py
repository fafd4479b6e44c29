"""A compiled one-pass parser for plain blocks of large measurement files (numba).

pyarrow's CSV parser makes text columns, which are then cast to numbers, dictionary-encoded
and parsed as times, each a pass over the block (covgap.measurements). For the blocks of a
large file this module does all of it in one compiled pass over the bytes: every line split
at its separators, latitude, longitude and level read as numbers while their digits are read,
technology and operator coded by their bytes, and the time read at fixed places. What comes
out is what :func:`covgap.measurements.normalise_rows` would convert the text into, so the
checks, reasons and details of rejected rows stay those of one piece of code.

The parser decides only what is plain, and a block holding one line that is not goes whole to
covgap.measurements' reader, which knows every other case:

- every line ends with ``\\n`` and has the header's field count (no blank line, no trailing
  separator, no ``\\r``), no quote character, no byte outside ASCII anywhere;
- latitude, longitude and level are ``-?digits[.digits]`` with at most 15 digits: the value is
  the integer of its digits divided by a power of ten, one correctly rounded division, so
  the same double as pyarrow's (correctly rounded) parse of the text;
- the time is ``YYYY-MM-DD[T ]HH:MM:SS`` with ``Z`` or ``±HH:MM``, a valid date in 1900–2199;
  it gives Unix seconds, as pyarrow's cast of an offset time does;
- technology and operator are at most 16 bytes, and at most :data:`MAX_DISTINCT` spellings
  of each appear in the block (their meaning is worked out in Python, once per spelling).

numba is imported only when a large file is read (:data:`MIN_FILE_BYTES`): its import and the
cached functions cost about 0.3 s in each reading process, which a smaller file does not win back. Without numba (or if it
fails to load) every block goes to covgap.measurements' reader, with the same results.
The property tests compare the two readers row for row (tests/test_fastparse.py).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from covgap.measurements import Parsed, _wanted_columns

log = logging.getLogger(__name__)

#: Files at least this large are read by the compiled parser: 16 blocks. Loading it costs about 0.29 s in
#: each of the two reading processes. Measured alternately (docs/benchmark.md, "The ninth session"),
#: with it a 318 MiB file (5M rows, 20 blocks) ran 4.51–4.75 s against 5.04–5.57 s without; a 127 MiB
#: one (8 blocks) 3.68–3.92 s against 3.64–4.11 s, and a 64 MiB one no faster either.
MIN_FILE_BYTES = 256 << 20
#: Distinct technology or operator spellings a block may hold (a file holds a handful).
MAX_DISTINCT = 64
#: Field roles in the kernel's column table.
SKIP, LAT, LON, SIGNAL, TECHNOLOGY, OPERATOR, TIME = range(7)

_module: Any = None  # covgap.fastkernel, once loaded
_failed = False


def _import_kernel() -> Any:
    """The kernel module (covgap.fastkernel), imported with this checkout's ``coverage/`` folder out of its way.

    numba uses coverage.py when it can import it. From a checkout (the current folder on
    ``sys.path``), ``import coverage`` finds the source root ``coverage/`` as an empty
    namespace package and numba fails on it; hidden while numba loads, numba sees no coverage.py.
    A real coverage.py (a regular package, which Python prefers) is left as it is.
    """
    found = sys.modules.get("coverage")
    if found is None:
        import importlib.util

        spec = importlib.util.find_spec("coverage")
        hide = spec is not None and spec.origin is None  # a namespace package: our source root
    else:
        hide = getattr(found, "__file__", None) is None
    if not hide:
        from covgap import fastkernel

        return fastkernel
    saved = sys.modules.get("coverage")
    sys.modules["coverage"] = None  # type: ignore[assignment]
    try:
        from covgap import fastkernel

        return fastkernel
    finally:
        if saved is None:
            del sys.modules["coverage"]
        else:
            sys.modules["coverage"] = saved


def compiled() -> Any:
    """The compiled functions (covgap.fastkernel: ``parse``, ``group_stats``, ``row_keys``, ``locate``,
    ``sort_keys``, ``spool_pairs``, ``accumulate``, ``rehash``), loaded on first use, or None without numba.
    Each is run once here on a line of its own (:func:`_try`), so numba loads it from its cache (or
    compiles it) now, and a failure to compile falls back to pyarrow's reader
    instead of failing a block."""
    global _module, _failed
    if _module is None and not _failed:
        if os.environ.get("COVGAP_NO_FASTPARSE"):
            _failed = True
            return None
        try:
            module = _import_kernel()
            if not _try(module):
                raise RuntimeError("the compiled parser gave a wrong answer on a line of its own")
            _module = module
        except Exception as err:  # no numba here, or it cannot compile: the reader of covgap.measurements does it all
            log.info("the compiled parser is not available (%s); blocks are read by pyarrow", err)
            _failed = True
    return _module


def loaded() -> Any:
    """The compiled functions if this process has loaded them already (a reading process of a large file),
    else None: for work that is worth doing by them only where they cost no load (covgap.dedupe.sort_keys)."""
    return _module


def kernel() -> Any:
    """The compiled parser (``covgap.fastkernel.parse``), or None without numba."""
    module = compiled()
    return None if module is None else module.parse


def warm() -> bool:
    """Compile the functions now (numba caches them on disk): ``make install`` does it once, so the first
    large file does not pay the compilation (about 2.5 s in each reading process). True if available."""
    return compiled() is not None


def _try(module: Any) -> bool:
    """Each compiled function on one line, with the types of a real block (writable C arrays:
    covgap.grid.writable)."""
    data = np.frombuffer(b"15.1,108.8,-90,LTE,Viettel,2024-01-01 00:00:00+07:00\n", dtype=np.uint8)
    roles = np.array([LAT, LON, SIGNAL, TECHNOLOGY, OPERATOR, TIME], dtype=np.int8)
    out = _Outputs(1)
    one = np.ones(1, dtype=np.int64)
    read = module.parse(data, 1, module.byte_classes(ord(",")), roles, *out.arrays())
    groups = module.group_stats(one, one, one, 2, 2, out.time, out.sig, -140, -44)
    keys = module.row_keys(out.lon, out.lat, out.sig, out.time, one - 1, one.astype(np.uint64), one - 1,
                           one.astype(np.uint64))
    ordered = module.sort_keys(np.array([3, 1, 2] * 3, dtype=np.uint64))
    spooled, bounds = module.spool_pairs(ordered, ordered, 1, 2)
    box = np.array([100.0, 10.0, 110.0, 20.0])  # a grid of one cell, 1 m wide, at the polynomial's origin
    located = module.locate(out.lon, out.lat, np.zeros((2, 2)), np.zeros((2, 2)), np.array([108.8, 15.1, 0.5, -0.5]),
                            np.array([0.0, 0.0, 1.0, 1.0, 1.0]), box, box, 0.1, np.ones(1, dtype=np.uint8))
    from covgap import cellstats  # the accumulator's compiled adding, with the types it is given

    acc = cellstats.CellAccumulator(None)
    acc._add_compiled(module, one * 7, cellstats.PartialStats(
        cell=one, operator=one - 1, technology=one - 1, operators=["Viettel"], technologies=["4G"], n=one * 2,
        tmin=out.time, tmax=out.time, hist_group=one - 1, hist_bin=one * 3, hist_count=one * 2))
    return bool(read == 1 and out.lat[0] == 15.1 and len(groups[0]) == 1 and len(keys) == 1
                and ordered.tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3] and bounds.tolist() == [0, 3, 9]
                and spooled[:, 0].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3] and acc.size == 1 and acc._n[0] == 2
                and acc._hist[0, 3] == 2 and located[2].tolist() == [1] and not located[3][0])


class _Outputs:
    """The arrays the kernel fills for a block of ``n`` lines."""

    def __init__(self, n: int):
        self.lat = np.empty(n)
        self.lon = np.empty(n)
        self.sig = np.empty(n)
        self.time = np.empty(n)
        self.codes = np.empty((2, n), dtype=np.int32)  # technology, operator: positions in their spellings
        self.starts = np.empty(n + 1, dtype=np.int64)  # where each line starts (and the end of the last)
        self.words = np.zeros((2, MAX_DISTINCT, 3), dtype=np.uint64)  # a spelling's 16 bytes in two words, its length
        self.first = np.zeros((2, MAX_DISTINCT), dtype=np.int64)  # where a spelling first appears
        self.count = np.zeros(2, dtype=np.int64)

    def arrays(self) -> tuple:
        return (self.lat, self.lon, self.sig, self.time, self.codes, self.starts, self.words, self.first, self.count)


@functools.lru_cache(maxsize=8)
def _classes(sep: int) -> np.ndarray:
    return compiled().byte_classes(sep)


def roles_of(fmt) -> np.ndarray | None:
    """The kernel's role of every column of the format, or None where the format is not for it."""
    sep = fmt.separator
    if (len(sep) != 1 or sep.isspace() or sep.isalnum() or sep in '".-+:' or ord(sep) >= 128 or fmt.decimal_comma
            or fmt.encoding not in ("utf-8", "utf-8-sig")):
        return None
    roles = np.zeros(len(fmt.columns), dtype=np.int8)
    for role, name in ((LAT, fmt.lat), (LON, fmt.lon), (SIGNAL, fmt.signal), (TECHNOLOGY, fmt.technology),
                       (OPERATOR, fmt.operator), (TIME, fmt.timestamp)):
        if not name:
            continue
        if name not in fmt.columns:
            return None
        j = fmt.columns.index(name)
        if roles[j] != SKIP:  # one column read as two things: the general reader
            return None
        roles[j] = role
    if not (fmt.lat and fmt.lon and fmt.signal):
        return None
    return roles


def parse_block(block, fmt) -> tuple[Parsed, BlockText] | None:
    """The block's columns as numbers, codes and times, with their text for the rows that need it
    (:class:`BlockText`), or None where covgap.measurements' reader must read the block."""
    k = kernel()
    if k is None or not block.n_lines or b"\r" in block.data:
        return None
    roles = roles_of(fmt)
    if roles is None:
        return None
    data = np.frombuffer(block.data, dtype=np.uint8)
    out = _Outputs(block.n_lines)
    read = k(data, block.n_lines, _classes(ord(fmt.separator)), roles, *out.arrays())
    if read != block.n_lines:
        return None
    n = block.n_lines

    def coded(k: int) -> tuple[np.ndarray, pd.Series]:
        firsts = out.first[k, :out.count[k]]
        lengths = out.words[k, :out.count[k], 2].astype(np.int64)
        spellings = [block.data[f:f + m].decode("ascii") for f, m in zip(firsts.tolist(), lengths.tolist())]
        return out.codes[k].astype(np.int64), pd.Series(spellings, dtype=object)

    parsed = Parsed(lat=out.lat, lon=out.lon, signal=out.sig,
                    technology=coded(0) if fmt.technology else None,
                    operator=coded(1) if fmt.operator else None,
                    time=(out.time, np.ones(n, dtype=bool)) if fmt.timestamp else None)
    return parsed, BlockText(block.data, out.starts, fmt)


class BlockText(Mapping):
    """The text of the columns read, by column name, for a block the kernel parsed: ``text[c].take(positions)``
    cuts those rows' fields out of the block's bytes (only rejected rows need their text)."""

    def __init__(self, data: bytes, starts: np.ndarray, fmt):
        self._data = data
        self.starts = starts  # where each line starts in the block, and where the last ends
        self._sep = fmt.separator.encode("ascii")
        self._index = {c: fmt.columns.index(c) for c in _wanted_columns(fmt)}

    def __getitem__(self, column: str) -> _Column:
        return _Column(self, self._index[column])

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def joined(self, positions: np.ndarray, columns: list[str]) -> list[str]:
        """The fields ``columns`` of the lines at ``positions``, joined by the separator as written (each line
        split once: the raw fields of a block's rejected rows, covgap.measurements._raw_fields)."""
        idx = [self._index[c] for c in columns]
        sep = self._sep
        pos = np.asarray(positions, dtype=np.int64)
        out = []
        for a, b in zip(self.starts[pos].tolist(), self.starts[pos + 1].tolist()):
            parts = self._data[a:b].rstrip(b"\n").split(sep)
            out.append(sep.join([parts[j] for j in idx]).decode("ascii"))
        return out

    def field(self, row: int, j: int) -> str:
        line = self._data[self.starts[row]:self.starts[row + 1]].rstrip(b"\n")
        return line.split(self._sep)[j].decode("ascii")


class _Column:
    def __init__(self, text: BlockText, j: int):
        self._text = text
        self._j = j

    def take(self, positions: Any) -> pa.Array:
        pos = np.asarray(positions.to_numpy(zero_copy_only=False) if isinstance(positions, pa.Array) else positions)
        return pa.array([self._text.field(int(p), self._j) for p in pos], type=pa.string())
