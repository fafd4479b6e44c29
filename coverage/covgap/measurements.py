"""Reading measurement rows: parsing each line, validation, rejection, normalisation.

Which files and formats: :mod:`covgap.formats`; timestamps: :mod:`covgap.timestamps`.
Every row of every file is either *used* (returned in a normalised frame) or *rejected*
with one of the reasons in :data:`REJECT_REASONS`. A file that cannot be used at all (no recognisable columns, not a measurement file, unreadable
encoding) raises :class:`~covgap.errors.InputError` naming the file, the columns
found and the columns expected.

Normalised rows have the columns of :data:`NORMALISED_COLUMNS`:

``lon``, ``lat``
    WGS84 degrees.
``signal_dbm``
    RSRP (4G/5G), RSCP (3G) or RSSI/RxLev (2G), float dBm; NaN only on 2G/3G rows
    that carry no level (they still count as "no 4G here").
``technology``
    One of ``2G``, ``3G``, ``4G``, ``5G``, or ``none`` where the app logged "no service" (no level).
``operator``
    Canonical operator name (Viettel, VNPT-VinaPhone, MobiFone, Vietnamobile,
    Gmobile) or the name as written.
``time_s``
    Unix seconds (UTC) as float, NaN when the file gives no time.
``source_file``, ``source_row``
    The file name and the 1-based line number of the row in it (header = line 1).
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from covgap import blocks as blocks_mod
from covgap.config import ColumnMapping
from covgap.errors import InputError
from covgap.formats import (  # detect_format and list_measurement_files are part of this module's interface too
    _DECOMPRESSION_ERRORS,
    MeasurementFormat,
    _decompression_error,
    _split_fields,
    detect_format,
    list_measurement_files,
)
from covgap.timestamps import _epoch, parse_timestamps

log = logging.getLogger(__name__)

__all__ = ["MeasurementFormat", "ReadContext", "detect_format", "list_measurement_files", "normalise_rows",
           "read_measurement_chunks"]

NORMALISED_COLUMNS = ["lon", "lat", "signal_dbm", "technology", "operator", "time_s", "source_file", "source_row"]

#: Why a row was not used. Keys are written to the rejected-rows files.
REJECT_REASONS = {
    "unparseable_coordinate": "latitude or longitude missing or not a number",
    "swapped_lat_lon": "latitude and longitude are swapped (the swapped point lies in the study area); fix the columns",
    "outside_study_area": "the point lies outside the study area",
    "dbm_out_of_range": "signal level outside the physical range of its technology",
    "missing_signal": "no signal level on a 4G/5G row",
    "unknown_technology": "technology not recognised (expected 2G/GSM, 3G/UMTS, 4G/LTE, 5G/NR or 'no service')",
    "unparseable_timestamp": "timestamp present but not in a known format",
    "future_timestamp": "timestamp later than the time of the run",
    "duplicate_row": "exact duplicate of an earlier measurement",
    "unbalanced_quote": "a quoted field does not close on its line (a quoted value cannot span lines)",
    "wrong_field_count": "the line has more or fewer fields than the header (one empty field at the end is allowed)",
}

#: Physical range of the level reported by each technology, dBm (inclusive).
#: 4G/5G RSRP: 3GPP TS 36.133 reporting range −140…−44; 3G RSCP: TS 25.133 −120…−25;
#: 2G RxLev/RSSI: TS 45.008 −110…−48, widened to −115…−40 for phone-reported RSSI.
SIGNAL_RANGE_DBM = {"4G": (-140.0, -44.0), "5G": (-140.0, -44.0), "3G": (-120.0, -25.0), "2G": (-115.0, -40.0)}

TECHNOLOGY_ALIASES = {
    "2g": "2G", "gsm": "2G", "edge": "2G", "gprs": "2G",
    "3g": "3G", "umts": "3G", "wcdma": "3G", "hspa": "3G", "hspa+": "3G", "hsdpa": "3G", "hsupa": "3G",
    "td-scdma": "3G", "hspap": "3G",
    "4g": "4G", "lte": "4G", "lte-a": "4G", "lte+": "4G", "lte_ca": "4G", "4g+": "4G", "lte-ca": "4G",
    # The app logged no network at all (no level): a "no service" sample (covgap.cellstats.NO_SERVICE_TECHNOLOGY).
    "no service": "none", "no_service": "none", "noservice": "none", "out of service": "none", "none": "none",
    "5g": "5G", "nr": "5G", "5g nr": "5G", "nr5g": "5G", "5g-nsa": "5G", "5g-sa": "5G", "nr_nsa": "5G", "nr_sa": "5G",
}

#: Vietnam's operators by MNC (MCC 452) and by common spellings.
OPERATOR_BY_MNC = {"01": "MobiFone", "02": "VNPT-VinaPhone", "04": "Viettel", "05": "Vietnamobile", "07": "Gmobile", "08": "Viettel"}
OPERATOR_ALIASES = {
    "viettel": "Viettel", "viettel mobile": "Viettel",
    "vinaphone": "VNPT-VinaPhone", "vnpt": "VNPT-VinaPhone", "vnpt-vinaphone": "VNPT-VinaPhone", "vina": "VNPT-VinaPhone",
    "vnpt vinaphone": "VNPT-VinaPhone",
    "mobifone": "MobiFone", "mobi": "MobiFone",
    "vietnamobile": "Vietnamobile", "vnmobile": "Vietnamobile",
    "gmobile": "Gmobile", "beeline": "Gmobile",
}

MISSING_TOKENS = {"", "-", "--", "nan", "NaN", "NULL", "null", "None", "N/A", "n/a", "NA"}


@dataclass
class ReadContext:
    """What validation needs besides the file: study area test, clock, defaults."""

    in_study_area: Callable[[np.ndarray, np.ndarray], np.ndarray]
    now_s: float
    timezone: str = "Asia/Ho_Chi_Minh"
    default_technology: str = "4G"
    default_operator: str = "unknown"
    mapping: ColumnMapping = field(default_factory=ColumnMapping)
    #: ``locate(lon, lat) -> (inside, x, y)``: the study-area test that also gives the working-CRS
    #: coordinates (covgap.ingest.StudyAreaLocator); without it, rows are projected later.
    locate: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None


#: A rejected malformed line keeps at most this many characters of itself in ``raw_fields``.
RAW_LINE_MAX_CHARS = 2000


def read_measurement_chunks(
    path: str | Path,
    ctx: ReadContext,
    *,
    chunk_rows: int | None = None,
    fmt: MeasurementFormat | None = None,
    block_bytes: int = blocks_mod.BLOCK_BYTES,
    compiled: bool = False,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Stream a measurement file in blocks of whole lines: ``(used_rows, rejected_rows)`` per block.

    Every non-blank line after the header is one row, used or rejected: a line
    whose quote never closes is ``unbalanced_quote``, a line with more or fewer
    fields than the header is ``wrong_field_count`` (one extra empty field at the
    end, a trailing separator, is allowed); the lines around them are read as usual
    (docs/refresh.md, "Bad rows and bad files"). Exact duplicates are not looked for
    here: they span blocks and files, so the engine finds them (covgap.dedupe).

    ``rejected_rows`` has the columns ``source_file, source_row, reason, detail, raw_fields``
    (``raw_fields``: the columns covgap read, as written, joined by the file's
    separator; for a malformed line, the line itself, cut at :data:`RAW_LINE_MAX_CHARS`).
    Memory stays bounded by the block (``block_bytes``, and ``chunk_rows`` lines if given).
    ``compiled``: blocks parsed by covgap.fastparse where it can (see :func:`read_block`).
    """
    path = Path(path)
    fmt = fmt or detect_format(path, ctx.mapping)
    for block in _blocks_of(path, fmt, block_bytes=block_bytes, max_lines=chunk_rows):
        yield read_block(block, fmt, ctx, source_file=path.name, path=path, compiled=compiled)


def _blocks_of(path: Path, fmt: MeasurementFormat, *, block_bytes: int, max_lines: int | None) -> Iterator[blocks_mod.Block]:
    """The file's blocks, with decoding and decompression errors as :class:`InputError`."""
    line_no = fmt.header_line
    try:
        for block in blocks_mod.iter_blocks(path, fmt, block_bytes=block_bytes, max_lines=max_lines):
            yield block
            line_no = block.first_line + block.n_lines - 1
    except UnicodeDecodeError as err:
        raise InputError(path, [f"not valid {fmt.encoding} text ({err.reason} at byte {err.start} of a block "
                                f"after line {line_no}); save it as UTF-8 and try again"]) from err
    except _DECOMPRESSION_ERRORS as err:
        raise _decompression_error(path, err) from err


def read_block(block: blocks_mod.Block, fmt: MeasurementFormat, ctx: ReadContext, *, source_file: str,
               path: Path | None = None, compiled: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One block of lines → ``(used_rows, rejected_rows)`` (see :func:`read_measurement_chunks`).

    ``compiled``: try covgap.fastparse's one-pass parser first (for the blocks of large files);
    a block it does not take is read here as any other, with the same results.
    """
    if compiled:
        got = read_block_columns(block, fmt, ctx, source_file=source_file)
        if got is not None:
            return got[0].frame(), got[1]
    try:
        raw, numbers, malformed = parse_block(block, fmt)
    except UnicodeDecodeError as err:
        raise InputError(path or Path(source_file), [
            f"not valid {fmt.encoding} text ({err.reason} at byte {err.start} of the block from line "
            f"{block.first_line}); save it as UTF-8 and try again"]) from err
    used, rejected = normalise_rows(raw, fmt, ctx, source_file=source_file, source_rows=numbers)
    if len(malformed):
        malformed.insert(0, "source_file", source_file)
        rejected = pd.concat([rejected, malformed], ignore_index=True) if len(rejected) else malformed
        rejected = rejected.sort_values("source_row", kind="mergesort").reset_index(drop=True)
    return used, rejected


def read_block_columns(block: blocks_mod.Block, fmt: MeasurementFormat, ctx: ReadContext, *,
                       source_file: str) -> tuple[UsedColumns, pd.DataFrame, np.ndarray] | None:
    """A block read by covgap.fastparse's compiled parser: ``(used, rejected_rows, where each line starts in the
    block and where the last ends)``, the used rows left in their columns (:class:`UsedColumns`: a reading
    process counts them from there without copying them out into a frame); None if the parser does not
    take it (:func:`read_block` reads it then)."""
    from covgap import fastparse

    got = fastparse.parse_block(block, fmt)
    if got is None:
        return None
    parsed, text = got
    numbers = np.arange(block.first_line, block.first_line + block.n_lines, dtype=np.int64)
    used, rejected = normalise_columns(text, fmt, ctx, source_file=source_file, source_rows=numbers, parsed=parsed)
    return used, rejected, text.starts


def _wanted_columns(fmt: MeasurementFormat) -> list[str]:
    return list(dict.fromkeys(c for c in (fmt.lat, fmt.lon, fmt.signal, fmt.technology, fmt.operator, fmt.timestamp)
                              if c))


def parse_block(block: blocks_mod.Block, fmt: MeasurementFormat, *,
                fast: bool = True) -> tuple[dict[str, pa.Array], np.ndarray, pd.DataFrame]:
    """Split a block into the text of the columns covgap reads: ``(columns, line numbers, malformed lines)``.

    The fast path hands the bytes to pyarrow's CSV parser (C++, no Python per row) when
    the block can hold no surprise: no quote character, and as many rows came out as
    there are lines (no blank line, every line with the header's field count, else
    pyarrow refuses the block). Any other block is split line by line by
    :func:`split_lines`, which knows quotes, blank and malformed lines. Both give the
    same columns; the property tests compare them (``fast=False`` forces the line-by-line reader).
    """
    wanted = _wanted_columns(fmt)
    if fast and block.n_lines and b'"' not in block.data:
        columns = _parse_fast(block, fmt, wanted)
        if columns is not None:
            return columns, np.arange(block.first_line, block.first_line + block.n_lines, dtype=np.int64), _NO_MALFORMED()
    lines = list(io.TextIOWrapper(io.BytesIO(block.data), encoding="utf-8", newline=None))
    raw_rows, numbers, malformed = split_lines(lines, block.first_line, fmt)
    columns = {c: pa.array(raw_rows[c].to_numpy(dtype=object), type=pa.string()) for c in wanted}
    return columns, numbers, malformed


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _NO_MALFORMED() -> pd.DataFrame:
    return pd.DataFrame({"source_row": np.empty(0, dtype=np.int64), "reason": [], "detail": [], "raw_fields": []})


def _parse_fast(block: blocks_mod.Block, fmt: MeasurementFormat, wanted: list[str]) -> dict[str, pa.Array] | None:
    """The wanted columns as pyarrow strings, or None where the line-by-line reader must decide."""
    names = [f"c{i}" for i in range(len(fmt.columns))]
    index = {c: fmt.columns.index(c) for c in wanted}
    try:
        table = pa_csv.read_csv(
            io.BytesIO(block.data),
            read_options=pa_csv.ReadOptions(column_names=names, use_threads=False, block_size=len(block.data) + 1),
            parse_options=pa_csv.ParseOptions(delimiter=fmt.separator, quote_char=False, double_quote=False,
                                              escape_char=False, newlines_in_values=False, ignore_empty_lines=True),
            convert_options=pa_csv.ConvertOptions(include_columns=[names[index[c]] for c in wanted],
                                                  column_types={names[index[c]]: pa.string() for c in wanted},
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False,
                                                  null_values=[]),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        return None  # a malformed line, invalid UTF-8...: the line-by-line reader says which
    if table.num_rows != block.n_lines:  # blank lines: not rows, but counted in line numbers
        return None
    columns = {c: _one_chunk(table.column(names[index[c]])) for c in wanted}
    if fmt.separator.isspace():  # a line of tabs and spaces only is blank, not a row of empty fields
        blank = None
        for arr in columns.values():
            empty = pc.or_(pc.equal(arr, ""), pc.utf8_is_space(arr))
            blank = empty if blank is None else pc.and_(blank, empty)
        if blank is not None and pc.any(blank).as_py():
            return None
    return columns


def split_lines(lines: list[str], first_line: int, fmt: MeasurementFormat) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """Split physical lines into fields: ``(raw_rows, their line numbers, malformed lines)``.

    ``raw_rows`` holds, as strings, the columns covgap reads (named as in the header)
    of every well-formed non-blank line; ``malformed`` holds the rejected lines
    (``source_row, reason, detail, raw_fields``). Blank lines are neither.

    Lines without a quote are counted by their separators and parsed by pandas' C
    parser; lines with a quote are split by the csv module, one by one.
    """
    sep = fmt.separator
    ncols = len(fmt.columns)
    wanted = list(dict.fromkeys(c for c in (fmt.lat, fmt.lon, fmt.signal, fmt.technology, fmt.operator, fmt.timestamp)
                                if c))
    index = [fmt.columns.index(c) for c in wanted]
    numbers = np.arange(first_line, first_line + len(lines), dtype=np.int64)
    n = len(lines)
    block = "".join(lines)
    blank = np.fromiter(map(str.isspace, lines), dtype=bool, count=n)
    if '"' in block:
        quoted = np.fromiter(map(str.__contains__, lines, itertools.repeat('"')), dtype=bool, count=n)
    else:
        quoted = np.zeros(n, dtype=bool)
    nfields = np.fromiter(map(str.count, lines, itertools.repeat(sep)), dtype=np.int64, count=n) + 1

    plain_pos = np.flatnonzero(~blank & ~quoted)
    bad: list[tuple[int, str, str, str]] = []  # (position, reason, detail, line)
    # Plain lines: the field count is the separator count; a trailing empty field is dropped.
    extra = plain_pos[nfields[plain_pos] == ncols + 1]
    trimmed: dict[int, str] = {}
    for i in extra:
        body = lines[i].rstrip("\r\n")
        cut = body.rfind(sep)
        if body[cut + 1:].strip() == "":
            trimmed[int(i)] = body[:cut] + "\n"
    ok_plain = np.zeros(len(lines), dtype=bool)
    ok_plain[plain_pos] = nfields[plain_pos] == ncols
    if trimmed:
        ok_plain[list(trimmed)] = True
    for i in plain_pos[~ok_plain[plain_pos]]:
        bad.append((int(i), "wrong_field_count", f"{nfields[i]} fields, the header has {ncols}", lines[i]))

    # Quoted lines: the csv module knows where quoted fields end.
    quoted_rows: dict[int, list[str]] = {}
    for i in np.flatnonzero(~blank & quoted):
        fields = _split_fields(lines[i].rstrip("\r\n"), sep)
        if fields is None:
            bad.append((int(i), "unbalanced_quote", "a quoted field does not close on this line", lines[i]))
            continue
        if len(fields) == ncols + 1 and fields[-1].strip() == "":
            fields = fields[:-1]
        if len(fields) != ncols:
            bad.append((int(i), "wrong_field_count", f"{len(fields)} fields, the header has {ncols}", lines[i]))
            continue
        quoted_rows[int(i)] = [fields[j] for j in index]

    if ok_plain.all() and not trimmed:
        plain = _parse_plain(lines, sep, index, wanted, block=block)
    else:
        plain = _parse_plain([trimmed.get(int(i), lines[i]) for i in np.flatnonzero(ok_plain)], sep, index, wanted)
    plain_numbers = numbers[ok_plain]
    if quoted_rows:
        extra_frame = pd.DataFrame(list(quoted_rows.values()), columns=wanted, dtype=object)
        raw_rows = pd.concat([plain, extra_frame], ignore_index=True)
        row_numbers = np.concatenate([plain_numbers, numbers[list(quoted_rows)]])
        order = np.argsort(row_numbers, kind="stable")
        raw_rows = raw_rows.iloc[order].reset_index(drop=True)
        row_numbers = row_numbers[order]
    else:
        raw_rows, row_numbers = plain, plain_numbers
    bad.sort()
    malformed = pd.DataFrame({
        "source_row": np.array([numbers[i] for i, *_ in bad], dtype=np.int64),
        "reason": [r for _, r, _, _ in bad],
        "detail": [d for _, _, d, _ in bad],
        "raw_fields": [_raw_line(ln) for *_, ln in bad],
    })
    return raw_rows, row_numbers, malformed


def _raw_line(line: str) -> str:
    line = line.rstrip("\r\n")
    return line if len(line) <= RAW_LINE_MAX_CHARS else line[:RAW_LINE_MAX_CHARS] + "…"


def _parse_plain(lines: list[str], sep: str, index: list[int], names: list[str], *,
                 block: str | None = None) -> pd.DataFrame:
    """Lines without quotes and with the header's field count, parsed by pandas' C parser (csv module if it disagrees).

    ``block``: the lines already joined, when it is all of them.
    """
    if not lines:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in names})
    text = block if block is not None else "".join(lines)
    if not text.endswith("\n"):
        text += "\n"
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, header=None, usecols=index, dtype=str, na_filter=False,
                            keep_default_na=False, quoting=csv.QUOTE_NONE, skip_blank_lines=False, index_col=False,
                            engine="c")
        if len(frame) == len(lines):
            frame = frame[index]
            frame.columns = names
            return frame
    except (pd.errors.ParserError, ValueError):
        pass
    log.debug("pandas' parser disagreed on a block of %d lines; splitting them with the csv module", len(lines))
    rows = [ln.rstrip("\r\n").split(sep) for ln in lines]
    return pd.DataFrame([[r[j] for j in index] for r in rows], columns=names, dtype=object)


#: The technologies of used rows, in the order of their codes in :func:`normalise_rows`.
TECHNOLOGIES = ("2G", "3G", "4G", "5G", "none")
_REASON_LIST = list(REJECT_REASONS)
_MISSING = pa.array(sorted(MISSING_TOKENS), type=pa.string())


def normalise_rows(
    raw: Mapping[str, Any],
    fmt: MeasurementFormat,
    ctx: ReadContext,
    *,
    source_file: str,
    source_rows: np.ndarray,
    parsed: Parsed | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn the text of the columns read (pyarrow strings, by column name) into normalised rows: ``(used, rejected)``.

    :func:`normalise_columns`, with the used rows made a frame (:meth:`UsedColumns.frame`).
    """
    used, rejected = normalise_columns(raw, fmt, ctx, source_file=source_file, source_rows=source_rows, parsed=parsed)
    return used.frame(), rejected


@dataclass
class UsedColumns:
    """The normalised columns of every line of a block, and which lines are used (``keep``: their positions, or
    every line): what :func:`normalise_columns` gives before the used rows are copied out into a frame."""

    lon: np.ndarray
    lat: np.ndarray
    signal_dbm: np.ndarray
    technology: np.ndarray  # int8 positions in TECHNOLOGIES (−1: unknown)
    operator: pd.Categorical
    time_s: np.ndarray
    source_file: str
    source_row: np.ndarray
    x: np.ndarray | None  # working-CRS coordinates (NaN where not located), when the context projects
    y: np.ndarray | None
    keep: np.ndarray | slice
    used: np.ndarray  # bool per line

    @property
    def n_used(self) -> int:
        return int(self.used.sum())

    def technology_categorical(self) -> Any:
        return pd.Categorical.from_codes(self.technology, categories=pd.Index(list(TECHNOLOGIES)))

    def frame(self) -> pd.DataFrame:
        """The used rows: :data:`NORMALISED_COLUMNS`, plus ``x``, ``y`` when located."""
        keep = self.keep
        columns = {
            "lon": self.lon[keep], "lat": self.lat[keep], "signal_dbm": self.signal_dbm[keep],
            "technology": self.technology_categorical()[keep],
            "operator": self.operator[keep],
            "time_s": self.time_s[keep],
            "source_file": pd.Categorical.from_codes(np.zeros(self.n_used, dtype=np.int8),
                                                     categories=pd.Index([self.source_file])),
            "source_row": self.source_row[keep],
        }
        if self.x is not None and self.y is not None:
            columns["x"] = self.x[keep]
            columns["y"] = self.y[keep]
        return pd.DataFrame(columns)


def normalise_columns(
    raw: Mapping[str, Any],
    fmt: MeasurementFormat,
    ctx: ReadContext,
    *,
    source_file: str,
    source_rows: np.ndarray,
    parsed: Parsed | None = None,
) -> tuple[UsedColumns, pd.DataFrame]:
    """Turn the text of the columns read (pyarrow strings, by column name) into normalised columns of every line,
    with which lines are used, and the rejected rows: ``(used, rejected)``.

    Numbers and times are converted by pyarrow where every value of the block is plain;
    a column holding anything else (spaces, quotes, ``-`` for missing, mixed time shapes)
    is converted by the text rules (:func:`_clean` and pandas), value by value the same.
    ``used`` has :data:`NORMALISED_COLUMNS` (``technology``, ``operator`` and
    ``source_file`` as categoricals), plus ``x``, ``y`` (working CRS) when the context
    can project (:attr:`ReadContext.locate`).

    ``parsed``: the columns already converted (covgap.fastparse, a block parsed in one compiled
    pass); ``raw`` then gives the text of the rows that need it only (rejected rows).
    """
    n = len(source_rows)
    conv = parsed or _convert(raw, fmt, ctx)
    reason = np.zeros(n, dtype=np.int8)  # 0: used; k: the k-th reason of REJECT_REASONS
    details: list[tuple[np.ndarray, Callable[[np.ndarray], np.ndarray] | str]] = []

    def reject(mask: np.ndarray, why: str, what: Callable[[np.ndarray], np.ndarray] | str) -> None:
        """Mark the rows of ``mask`` not yet rejected; ``what`` gives the detail (a callable is
        given the positions of those rows only, so details are built for rejected rows alone)."""
        new = mask & (reason == 0)
        if new.any():
            pos = np.flatnonzero(new)
            reason[pos] = _REASON_LIST.index(why) + 1
            details.append((pos, what))

    def text(column: str) -> Callable[[np.ndarray], pd.Series]:
        """The cleaned text of a column at some positions (for details only)."""
        return lambda pos: _clean(pd.Series(raw[column].take(pa.array(pos)).to_pylist(), dtype=object)).fillna("")

    lat, lon = conv.lat, conv.lon
    lat_text, lon_text = text(fmt.lat), text(fmt.lon)

    def coord_text(pos: np.ndarray) -> np.ndarray:
        return ("lat=" + lat_text(pos) + " lon=" + lon_text(pos)).to_numpy(dtype=object)

    def labelled(label: str, column: str) -> Callable[[np.ndarray], np.ndarray]:
        return lambda pos: (label + text(column)(pos)).to_numpy(dtype=object)

    not_number = ~np.isfinite(lat) | ~np.isfinite(lon) | ((lat == 0) & (lon == 0))
    impossible = ~not_number & ((np.abs(lat) > 90) | (np.abs(lon) > 180))
    if impossible.any():  # a latitude of 108.8 is a longitude: swapped columns
        swapped = np.zeros(n, dtype=bool)
        swapped[impossible] = ctx.in_study_area(lat[impossible], lon[impossible])
        reject(swapped, "swapped_lat_lon", coord_text)
    reject(not_number | impossible, "unparseable_coordinate", coord_text)

    # Technology: a code into TECHNOLOGIES; -1 not recognised.
    default_tech = TECHNOLOGIES.index(ctx.default_technology) if ctx.default_technology in TECHNOLOGIES else -1
    if fmt.technology and conv.technology is not None:
        codes, uniques = conv.technology
        # G-NetTrack's Level is RSRP, RSCP or RxLev by the technology: a row without one cannot be read.
        missing_code = default_tech if fmt.name != "gnettrack" else -1
        per_unique = _cached(_technology_codes, tuple(uniques), missing_code)
        tech = per_unique[codes] if len(per_unique) else np.full(n, -1, dtype=np.int8)
        reject(tech < 0, "unknown_technology", labelled("technology=", fmt.technology))
    else:
        tech = np.full(n, default_tech, dtype=np.int8)

    # Signal
    sig = conv.signal
    no_sig = ~np.isfinite(sig)
    needs_level = ~np.isin(tech, [TECHNOLOGIES.index(t) for t in ("2G", "3G", "none")])
    reject(no_sig & needs_level, "missing_signal", labelled("signal=", fmt.signal))
    lo_of = np.array([SIGNAL_RANGE_DBM.get(t, (-140.0, -44.0))[0] for t in TECHNOLOGIES] + [-140.0])
    hi_of = np.array([SIGNAL_RANGE_DBM.get(t, (-140.0, -44.0))[1] for t in TECHNOLOGIES] + [-44.0])
    lo, hi = lo_of[tech], hi_of[tech]  # tech -1 takes the last entry: the 4G range
    with np.errstate(invalid="ignore"):
        out_of_range = np.isfinite(sig) & ((sig < lo) | (sig > hi))
    reject(out_of_range, "dbm_out_of_range",
           lambda pos: np.array([f"{TECHNOLOGIES[tech[i]] if tech[i] >= 0 else 'None'} level {sig[i]:g} dBm outside "
                                 f"{lo[i]:g}…{hi[i]:g}" for i in pos], dtype=object))

    # Operator: canonical names, worked out once per distinct spelling.
    if fmt.operator and conv.operator is not None:
        codes, uniques = conv.operator
        per_unique, op_names = _cached(_operator_codes, tuple(uniques), ctx.default_operator)
        op = pd.Categorical.from_codes((per_unique[codes] if len(codes) else codes).astype(np.int32),
                                       categories=pd.Index(op_names))
    else:
        op = pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=pd.Index([ctx.default_operator]))

    # Time
    if fmt.timestamp and conv.time is not None:
        time_s, present = conv.time
        reject(present & ~np.isfinite(time_s), "unparseable_timestamp", labelled("timestamp=", fmt.timestamp))
        with np.errstate(invalid="ignore"):
            future = np.isfinite(time_s) & (time_s > ctx.now_s + 300)
        reject(future, "future_timestamp", labelled("timestamp=", fmt.timestamp))
    else:
        time_s = np.full(n, np.nan)

    # Study area (and swapped coordinates)
    ok = reason == 0
    inside = np.zeros(n, dtype=bool)
    x = y = None
    if ok.any():
        if ctx.locate is not None:
            inside_ok, x_ok, y_ok = ctx.locate(lon[ok], lat[ok])
            inside[ok] = inside_ok
            x = np.full(n, np.nan)
            y = np.full(n, np.nan)
            x[ok], y[ok] = x_ok, y_ok
        else:
            inside[ok] = ctx.in_study_area(lon[ok], lat[ok])
    outside = ok & ~inside
    if outside.any():
        swapped = np.zeros(n, dtype=bool)
        swapped[outside] = ctx.in_study_area(lat[outside], lon[outside])
        reject(swapped, "swapped_lat_lon", coord_text)
        reject(outside & ~swapped, "outside_study_area",
               lambda pos: np.array([f"lat={lat[i]:.6f} lon={lon[i]:.6f}" for i in pos], dtype=object))

    used_mask = reason == 0
    keep = np.flatnonzero(used_mask) if not used_mask.all() else slice(None)
    used = UsedColumns(lon=lon, lat=lat, signal_dbm=sig, technology=tech, operator=op, time_s=time_s,
                       source_file=source_file, source_row=source_rows, x=x, y=y, keep=keep, used=used_mask)
    return used, _rejected_frame(raw, fmt, reason, details, source_file, source_rows)


@dataclass
class Parsed:
    """The columns of a block converted: numbers, technology and operator codes, times (see :func:`normalise_rows`)."""

    lat: np.ndarray
    lon: np.ndarray
    signal: np.ndarray
    technology: tuple[np.ndarray, pd.Series] | None  # codes, the distinct values as written
    operator: tuple[np.ndarray, pd.Series] | None
    time: tuple[np.ndarray, np.ndarray] | None  # Unix seconds (NaN where not parsed), present


def _convert(raw: Mapping[str, pa.Array], fmt: MeasurementFormat, ctx: ReadContext) -> Parsed:
    """The text of the columns read converted by pyarrow (and the text rules where a value is not plain)."""
    return Parsed(lat=_column_to_float(raw[fmt.lat], fmt.decimal_comma),
                  lon=_column_to_float(raw[fmt.lon], fmt.decimal_comma),
                  signal=_column_to_float(raw[fmt.signal], fmt.decimal_comma),
                  technology=_dictionary(raw[fmt.technology]) if fmt.technology else None,
                  operator=_dictionary(raw[fmt.operator]) if fmt.operator else None,
                  time=parse_time_column(raw[fmt.timestamp], ctx.timezone) if fmt.timestamp else None)


def lines_at(block: blocks_mod.Block, lines: np.ndarray) -> list[str]:
    """The text of the lines of a block at the given line numbers (found by their line ends, not by parsing the block)."""
    idx = np.asarray(lines, dtype=np.int64) - block.first_line
    data = block.data
    if b"\r" in data:  # universal newlines: let Python cut the lines
        every = list(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=None))
        return [every[i] for i in idx]
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    starts = np.r_[0, ends + 1]
    stops = np.r_[ends + 1, len(data)]
    return [data[starts[i]:stops[i]].decode("utf-8") for i in idx]


def rows_of_lines(picked: list[str], lines: np.ndarray, fmt: MeasurementFormat, ctx: ReadContext, *,
                  source_file: str, reason: str, detail: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lines of a file read again (their text and line numbers; all were used rows): ``(used rows, the same
    rows as rejected rows with reason)``.

    For rows found to be duplicates after the file was read: their statistics are taken
    out and they are reported like any rejected row, with the fields as written. Only
    those lines are parsed again (:func:`lines_at`), all of a file's at once.
    """
    lines = np.asarray(lines, dtype=np.int64)
    raw_rows, pos, malformed = split_lines(picked, 0, fmt)
    if len(malformed) or len(pos) != len(lines):
        raise ValueError(f"{source_file}: lines {lines[:5].tolist()}... were rows when first read and are not now")
    numbers = lines[pos]
    raw = {c: pa.array(raw_rows[c].to_numpy(dtype=object), type=pa.string()) for c in _wanted_columns(fmt)}
    used, _ = normalise_rows(raw, fmt, ctx, source_file=source_file, source_rows=numbers)
    if len(used) != len(lines):
        raise ValueError(f"{source_file}: lines {lines[:5].tolist()}... were used rows when first read and are not now")
    rejected = pd.DataFrame({"source_file": source_file, "source_row": numbers, "reason": reason, "detail": detail,
                             "raw_fields": pd.Series(_raw_fields(raw, fmt, np.arange(len(numbers))), dtype=object)})
    return used, rejected


def _raw_fields(raw: Mapping[str, Any], fmt: MeasurementFormat, pos: np.ndarray) -> list[str]:
    """The columns covgap read, as written, joined by the file's separator, at positions ``pos``."""
    if not len(pos):
        return []
    read_cols = [c for c in dict.fromkeys(fmt.columns) if c in raw] or list(raw)
    joined = getattr(raw, "joined", None)  # a block the compiled parser read: cut from its bytes, a line at a time
    if joined is not None:
        return joined(pos, read_cols)
    take = pa.array(np.asarray(pos, dtype=np.int64))
    parts = [raw[c].take(take).to_pylist() for c in read_cols]
    return [fmt.separator.join(vals) for vals in zip(*parts)]


def _rejected_frame(raw: Mapping[str, Any], fmt: MeasurementFormat, reason: np.ndarray,
                    details: list, source_file: str, source_rows: np.ndarray) -> pd.DataFrame:
    """The rejected rows with their reason, detail and the fields read, as written."""
    rej = np.flatnonzero(reason)
    detail = np.full(len(rej), "", dtype=object)  # the rejected rows' only (not one per row of the block)
    for pos, what in details:
        detail[np.searchsorted(rej, pos)] = what(pos) if callable(what) else what
    raw_fields = _raw_fields(raw, fmt, rej)
    return pd.DataFrame({"source_file": source_file, "source_row": source_rows[rej],
                         "reason": np.array(_REASON_LIST, dtype=object)[reason[rej] - 1] if len(rej) else [],
                         "detail": detail, "raw_fields": pd.Series(raw_fields, dtype=object)})


def _dictionary(arr: pa.Array) -> tuple[np.ndarray, pd.Series]:
    """``(codes, distinct values)`` of a string column (a file holds a handful of operators or technologies)."""
    enc = pc.dictionary_encode(arr)
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), pd.Series(enc.dictionary.to_pylist(), dtype=object)


#: Sets of spellings up to this many are remembered (a file's handful); a column of junk, one spelling a
#: row, is worked out block by block and not kept.
CACHED_SPELLINGS = 64


def _cached(work: Callable, spellings: tuple, arg: Any) -> Any:
    return _cached_work(work, spellings, arg) if len(spellings) <= CACHED_SPELLINGS else work(spellings, arg)


@functools.lru_cache(maxsize=256)
def _cached_work(work: Callable, spellings: tuple, arg: Any) -> Any:
    return work(spellings, arg)


def _technology_codes(spellings: tuple, missing_code: int) -> np.ndarray:
    """The code into :data:`TECHNOLOGIES` of each distinct spelling of a block (−1: not recognised;
    ``missing_code`` for a missing value). Worked out once per set of spellings (:func:`_cached`): a
    file's blocks share it."""
    cleaned = _clean(pd.Series(list(spellings), dtype=object))
    known = cleaned.str.lower().map(TECHNOLOGY_ALIASES)
    out = np.array([TECHNOLOGIES.index(t) if isinstance(t, str) else (missing_code if pd.isna(c) else -1)
                    for t, c in zip(known, cleaned)], dtype=np.int8)
    out.flags.writeable = False  # shared by every block with these spellings
    return out


def _operator_codes(spellings: tuple, default: str) -> tuple[np.ndarray, tuple]:
    """``(code of each distinct spelling into the names, the canonical names)``: several spellings may give
    one name (:func:`normalise_operator`). Worked out once per set of spellings (:func:`_cached`)."""
    names = normalise_operator(_clean(pd.Series(list(spellings), dtype=object)), default)
    codes, cats = pd.factorize(names.to_numpy(dtype=object))
    codes = np.asarray(codes, dtype=np.int64)
    codes.flags.writeable = False
    return codes, tuple(cats)


def _column_to_float(arr: pa.Array, decimal_comma: bool) -> np.ndarray:
    """Numbers of a text column: pyarrow's parser when every value is a plain number (or a missing
    token), else the text rules (strip spaces and quotes, missing tokens, pandas.to_numeric).

    Empty values are made null first (a cast that fails costs more than the test), then the
    cast is tried; ``nan`` and ``NaN`` give NaN as the missing tokens they are. Only when it
    fails are the other missing tokens looked for (a test that costs as much as the cast).
    """
    a = arr
    empty = pc.equal(pc.binary_length(a), 0)
    if pc.any(empty).as_py():
        a = pc.if_else(empty, pa.scalar(None, pa.string()), a)
    if decimal_comma:
        a = pc.replace_substring(a, ",", ".")
    values = _cast_to_float(a)
    if values is not None:
        return values
    missing = pc.is_in(a, value_set=_MISSING)
    if pc.any(missing).as_py():
        values = _cast_to_float(pc.if_else(missing, pa.scalar(None, pa.string()), a))
        if values is not None:
            return values
    return _to_float(_clean(pd.Series(arr.to_pylist(), dtype=object)), decimal_comma)


def _cast_to_float(a: pa.Array) -> np.ndarray | None:
    """pyarrow's cast of a text column to numbers, or None when some value is not a plain number."""
    try:
        return pc.cast(a, pa.float64()).to_numpy(zero_copy_only=False).astype(float, copy=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_ISO_AWARE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}(:?\d{2})?)")
_ISO_NAIVE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?")


def _time_shape(arr: pa.Array) -> str | None:
    """``number``, ``aware``, ``naive`` when the first and last values all have that shape, else None."""
    n = len(arr)
    sample = [v for v in arr.slice(0, 16).to_pylist() + arr.slice(max(n - 16, 0)).to_pylist() if v is not None]
    for shape, pattern in (("number", _NUMBER), ("aware", _ISO_AWARE), ("naive", _ISO_NAIVE)):
        if sample and all(pattern.fullmatch(v) for v in sample):
            return shape
    return None


def parse_time_column(arr: pa.Array, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds of a timestamp column and which rows gave one: ``(seconds or NaN, present)``.

    pyarrow parses a block whose values are all Unix times, all ISO 8601 without an offset
    (local time in ``timezone``) or all with one (the shape is guessed from the first and
    last values; a cast that fails costs more than the guess); anything else (mixed
    shapes, G-NetTrack's, day-first dates, missing values) goes to
    :func:`covgap.timestamps.parse_timestamps`, the reference. The property tests check both agree.
    """
    n = len(arr)
    present = np.ones(n, dtype=bool)
    shape = _time_shape(arr)
    try:
        if shape == "number":
            num = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
            out = np.full(n, np.nan)
            with np.errstate(invalid="ignore"):
                ms = num > 1e11
                sec = (num > 1e8) & ~ms
            out[ms] = num[ms] / 1000.0
            out[sec] = num[sec]
            return out, present
        if shape in ("aware", "naive"):
            ts = pc.cast(arr, pa.timestamp("ns", tz="UTC" if shape == "aware" else None))
            if shape == "aware" and not ts.null_count:  # Unix nanoseconds, floored to seconds as timestamps._epoch does
                ns = pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False)
                return np.floor_divide(ns, 1_000_000_000).astype(float), present
            series = pd.Series(ts.to_pandas())
            if shape == "naive":
                series = series.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
            return _epoch(series), present
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    cleaned = _clean(pd.Series(arr.to_pylist(), dtype=object))
    return parse_timestamps(cleaned, timezone), cleaned.notna().to_numpy()


def _clean(s: pd.Series) -> pd.Series:
    """Strip, and turn the missing-value tokens (``-``, empty, NaN...) into NA."""
    s = s.astype(str).str.strip().str.strip('"').str.strip()
    return s.where(~s.isin(MISSING_TOKENS))


def _to_float(s: pd.Series, decimal_comma: bool) -> np.ndarray:
    if decimal_comma:
        s = s.str.replace(",", ".", regex=False)
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)


def normalise_operator(raw: pd.Series, default: str) -> pd.Series:
    """Canonical operator names from names, MCC-MNC codes (45204) or bare MNCs."""
    out = pd.Series(default, index=raw.index, dtype=object)
    present = raw.notna()
    if not present.any():
        return out
    # Work on the distinct spellings only (a file holds a handful), each worked out once per process, then spread back.
    codes, uniques = pd.factorize(raw[present].astype(str))
    new = [u for u in uniques if u not in _OPERATOR_CACHE]
    if new:
        if len(_OPERATOR_CACHE) > 10_000:
            _OPERATOR_CACHE.clear()
        _OPERATOR_CACHE.update(zip(new, _normalise_operator_names(pd.Series(new, dtype=object)).to_numpy(dtype=object)))
    out[present] = np.array([_OPERATOR_CACHE[u] for u in uniques], dtype=object)[codes]
    return out


#: Canonical operator name of each spelling seen (a spelling always gives the same name).
_OPERATOR_CACHE: dict[str, str] = {}


def _normalise_operator_names(text: pd.Series) -> pd.Series:
    key = text.str.lower().str.strip()
    name = key.map(OPERATOR_ALIASES)
    digits = key.str.replace(r"[^0-9]", "", regex=True)
    mnc = digits.where(~digits.str.startswith("452") | (digits.str.len() <= 3), digits.str[3:])
    mnc = mnc.str.zfill(2).str[-2:]
    by_code = mnc.map(OPERATOR_BY_MNC).where(key.str.fullmatch(r"[0-9 -]+"))
    return name.fillna(by_code).fillna(text)
