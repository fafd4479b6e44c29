"""A measurement file cut into blocks of whole lines: the unit of work of the reading engine.

A :class:`Block` is UTF-8 bytes holding whole lines of one file, with the number of its first
line and how many lines it holds, so every row keeps its exact line number (``source_row``)
whatever the block size. Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (Python's universal
newlines, as in docs/refresh.md); a block never ends between ``\\r`` and ``\\n``.

UTF-8 files (plain or compressed) are cut from their bytes without decoding; UTF-16 files are
decoded line by line and re-encoded as UTF-8 (they are rare and small). Blocks are
independent: :func:`covgap.measurements.read_block` turns one into rows with no other state,
so blocks can be read in parallel (covgap.ingest) or on Dask workers (covgap.engine_dask).
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from covgap.formats import COMPRESSED_SUFFIXES, MeasurementFormat, _open_binary

#: Bytes read per block: about 300,000 rows of a typical export, ~100 MB of memory once parsed.
BLOCK_BYTES = 16 << 20

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class Block:
    """Whole lines of one file: ``data`` (UTF-8), the number of its first line, how many lines.

    ``offset``: where ``data`` starts in the file, when they are the file's own bytes (a
    plain UTF-8 file), so another process can read them again instead of being sent them.
    """

    data: bytes
    first_line: int
    n_lines: int
    offset: int | None = None

    def ref(self) -> Block:
        """The block without its bytes (``offset`` and length say where they are): to send to a worker."""
        assert self.offset is not None
        return Block(b"", self.first_line, self.n_lines, self.offset)


def read_ref(path: Path, ref: Block, length: int) -> Block:
    """The bytes of a block sent as :meth:`Block.ref`."""
    with open(path, "rb") as fh:
        fh.seek(ref.offset or 0)
        data = fh.read(length)
    return Block(data, ref.first_line, ref.n_lines, ref.offset)


def count_lines(data: bytes) -> int:
    """Lines in ``data`` by universal newlines; a last line without an end counts too."""
    if not data:
        return 0
    if b"\r" not in data:
        ends = int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == 10))  # vectorised: ~10× bytes.count
        return ends + (0 if data.endswith(b"\n") else 1)
    ends = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    return ends + (0 if data.endswith((b"\n", b"\r")) else 1)


def _safe_cut(data: bytes) -> int:
    """Position just after the last line end that is certainly one (a final ``\\r`` may precede a ``\\n``)."""
    return max(data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1)) + 1


def iter_blocks(path: Path, fmt: MeasurementFormat, *, block_bytes: int = BLOCK_BYTES,
                max_lines: int | None = None) -> Iterator[Block]:
    """The data lines of a file (after its header) as blocks of at most ``block_bytes`` (a longer line
    makes a longer block) and, if given, ``max_lines`` lines.

    Raises ``UnicodeDecodeError`` (UTF-16 files) and the decompression errors of
    :mod:`covgap.formats`; the caller turns them into an :class:`~covgap.errors.InputError`.
    """
    if fmt.encoding not in ("utf-8", "utf-8-sig"):
        yield from _text_blocks(path, fmt, max_lines or 200_000)
        return
    plain = Path(path).suffix.lower() not in COMPRESSED_SUFFIXES
    with _open_binary(path) as fh:
        pending = fh.read(3) if fmt.encoding == "utf-8-sig" else b""
        if fmt.encoding == "utf-8-sig":
            pending = pending[3:] if pending.startswith(b"\xef\xbb\xbf") else pending
        line_no, pending, eof = _skip_header(fh, pending, fmt.header_line, block_bytes)
        consumed = fh.tell() - len(pending) if plain else None  # file offset of pending's first byte
        read_on = False  # the bytes pending hold no line end: read more before cutting
        while True:
            if not eof and (read_on or len(pending) < block_bytes // 2):
                chunk = fh.read(block_bytes)
                eof = not chunk
                data = pending + chunk if pending else chunk
            else:
                data, pending = pending, b""
            read_on = False
            if eof:
                if data:
                    yield from _split(data, line_no + 1, max_lines, consumed)
                return
            cut = _safe_cut(data)
            if cut == 0:  # one line longer than a block: read on
                pending, read_on = data, True
                continue
            block, pending = data[:cut], data[cut:]
            for b in _split(block, line_no + 1, max_lines, consumed):
                yield b
                line_no += b.n_lines
            if consumed is not None:
                consumed += cut


def scannable(path: Path, fmt: MeasurementFormat) -> bool:
    """Whether :func:`scan_plain` can cut the file: plain (not compressed) UTF-8."""
    return fmt.encoding in ("utf-8", "utf-8-sig") and Path(path).suffix.lower() not in COMPRESSED_SUFFIXES


def scan_plain(path: Path, fmt: MeasurementFormat, *, block_bytes: int = BLOCK_BYTES,
               hasher: Any = None) -> Iterator[tuple[Block, int]] | None:
    """The blocks of a plain UTF-8 file as references, ``(Block without bytes, length)``, without making a
    bytes object per block (one reusable buffer, line ends counted by numpy): for reading in other processes.

    ``hasher`` (a ``hashlib`` object), if given, is fed every byte of the file, header included,
    as the blocks are scanned: once the scan has ended it holds the file's digest (no second read).
    None when the file is compressed or not UTF-8 (:func:`scannable`; then use :func:`iter_blocks`).
    """
    if not scannable(path, fmt):
        return None
    with open(path, "rb") as fh:
        head = fh.read(3)
        pending = head[3:] if fmt.encoding == "utf-8-sig" and head.startswith(b"\xef\xbb\xbf") else head
        line_no, pending, _ = _skip_header(fh, pending, fmt.header_line, 1 << 20)
        start = fh.tell() - len(pending)
        if hasher is not None:
            fh.seek(0)
            hasher.update(fh.read(start))
    return _scan(path, start, line_no, block_bytes, hasher)


def _scan(path: Path, start: int, line_no: int, block_bytes: int, hasher: Any = None) -> Iterator[tuple[Block, int]]:
    buf = bytearray(block_bytes)
    with open(path, "rb") as fh:
        pos = start
        while True:
            fh.seek(pos)
            n = fh.readinto(buf)
            if not n:
                return
            eof = n < len(buf)
            cut = n if eof else buf.rfind(b"\n", 0, n) + 1
            if cut == 0:  # one line longer than the buffer
                buf = bytearray(2 * len(buf))
                continue
            if buf.find(b"\r", 0, cut) >= 0:  # "\r" line ends too: the universal rule
                lines = count_lines(bytes(buf[:cut]))
            else:
                ends = int(np.count_nonzero(np.frombuffer(buf, dtype=np.uint8, count=cut) == 10))
                lines = ends + (0 if buf[cut - 1] == 10 else 1)
            if hasher is not None:  # the blocks follow one another: every byte once, in order
                hasher.update(memoryview(buf)[:cut])
            yield Block(b"", line_no + 1, lines, pos), cut
            pos += cut
            line_no += lines


def _skip_header(fh, pending: bytes, header_line: int, block_bytes: int) -> tuple[int, bytes, bool]:
    """Read past the first ``header_line`` lines; ``(lines skipped, bytes after them, end of file)``."""
    skipped = 0
    eof = False
    while skipped < header_line:
        ends = list(itertools.islice(_LINE_END.finditer(pending), header_line - skipped))
        # A "\r" as the very last byte may be the first half of "\r\n": decide after reading on.
        if ends and ends[-1].group() == b"\r" and ends[-1].end() == len(pending) and not eof:
            ends = ends[:-1]
        if len(ends) == header_line - skipped:
            return header_line, pending[ends[-1].end():], eof
        if eof:
            return header_line, b"", True
        chunk = fh.read(block_bytes)
        eof = not chunk
        pending += chunk
    return skipped, pending, eof


def _split(data: bytes, first_line: int, max_lines: int | None, offset: int | None) -> Iterator[Block]:
    n = count_lines(data)
    if max_lines is None or n <= max_lines:
        yield Block(data, first_line, n, offset)
        return
    start = 0
    line = first_line
    ends = [m.end() for m in _LINE_END.finditer(data)]
    for k in range(max_lines, len(ends) + 1, max_lines):
        end = ends[k - 1]
        yield Block(data[start:end], line, max_lines, None if offset is None else offset + start)
        line += max_lines
        start = end
    if start < len(data):
        yield Block(data[start:], line, count_lines(data[start:]), None if offset is None else offset + start)


def _text_blocks(path: Path, fmt: MeasurementFormat, max_lines: int) -> Iterator[Block]:
    """UTF-16 (or other non-UTF-8) text, decoded with universal newlines and re-encoded as UTF-8."""
    with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding=fmt.encoding, newline=None) as text:
        line_no = 0
        for _ in range(fmt.header_line):
            text.readline()
            line_no += 1
        while True:
            lines = list(itertools.islice(text, max_lines))
            if not lines:
                return
            yield Block("".join(lines).encode("utf-8", errors="surrogatepass"), line_no + 1, len(lines))
            line_no += len(lines)
