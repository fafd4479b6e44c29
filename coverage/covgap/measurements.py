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
import io
import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from covgap.config import ColumnMapping
from covgap.errors import InputError
from covgap.formats import (  # detect_format and list_measurement_files are part of this module's interface too
    _DECOMPRESSION_ERRORS,
    MeasurementFormat,
    _decompression_error,
    _open_binary,
    _split_fields,
    detect_format,
    list_measurement_files,
)
from covgap.timestamps import parse_timestamps

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
    seen_keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))

    def remember(self, keys: np.ndarray) -> None:
        """Add new keys (not yet seen) to the sorted ``seen_keys``: a linear merge, no re-sort of the whole."""
        keys = np.unique(keys)
        self.seen_keys = np.insert(self.seen_keys, np.searchsorted(self.seen_keys, keys), keys)

    def has_seen(self, keys: np.ndarray) -> np.ndarray:
        """Which of ``keys`` are in ``seen_keys`` (binary search in the sorted array)."""
        if not len(self.seen_keys):
            return np.zeros(len(keys), dtype=bool)
        pos = np.minimum(np.searchsorted(self.seen_keys, keys), len(self.seen_keys) - 1)
        return self.seen_keys[pos] == keys



#: A rejected malformed line keeps at most this many characters of itself in ``raw_fields``.
RAW_LINE_MAX_CHARS = 2000


































def read_measurement_chunks(
    path: str | Path,
    ctx: ReadContext,
    *,
    chunk_rows: int = 250_000,
    fmt: MeasurementFormat | None = None,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Stream a measurement file in chunks: ``(used_rows, rejected_rows)`` per chunk.

    Every non-blank line after the header is one row, used or rejected: a line
    whose quote never closes is ``unbalanced_quote``, a line with more or fewer
    fields than the header is ``wrong_field_count`` (one extra empty field at the
    end, a trailing separator, is allowed); the lines around them are read as usual
    (docs/refresh.md, "Bad rows and bad files").

    ``rejected_rows`` has the columns ``source_file, source_row, reason, detail, raw_fields``
    (``raw_fields``: the columns covgap read, as written, joined by the file's
    separator; for a malformed line, the line itself, cut at :data:`RAW_LINE_MAX_CHARS`).
    Memory stays bounded by ``chunk_rows`` (duplicates are found with a sorted
    array of 8-byte row keys, the only thing that grows with the file).
    """
    path = Path(path)
    fmt = fmt or detect_format(path, ctx.mapping)
    line_no = 0
    try:
        with _open_binary(path) as raw, io.TextIOWrapper(raw, encoding=fmt.encoding, newline=None) as text:
            for _ in range(fmt.header_line):
                text.readline()
                line_no += 1
            while True:
                lines = list(itertools.islice(text, chunk_rows))
                if not lines:
                    break
                first = line_no + 1
                line_no += len(lines)
                raw_rows, numbers, malformed = split_lines(lines, first, fmt)
                used, rejected = normalise_rows(raw_rows, fmt, ctx, source_file=path.name, source_rows=numbers)
                if len(malformed):
                    malformed.insert(0, "source_file", path.name)
                    rejected = pd.concat([rejected, malformed], ignore_index=True) if len(rejected) else malformed
                    rejected = rejected.sort_values("source_row", kind="mergesort").reset_index(drop=True)
                yield used, rejected
    except UnicodeDecodeError as err:
        raise InputError(path, [f"not valid {fmt.encoding} text ({err.reason} at byte {err.start} of a block "
                                f"after line {line_no}); save it as UTF-8 and try again"]) from err
    except _DECOMPRESSION_ERRORS as err:
        raise _decompression_error(path, err) from err


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


def normalise_rows(
    raw: pd.DataFrame,
    fmt: MeasurementFormat,
    ctx: ReadContext,
    *,
    source_file: str,
    source_rows: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn raw string columns into normalised rows; return ``(used, rejected)``."""
    n = len(raw)
    reason = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)

    def reject(mask: np.ndarray, why: str, what: Callable[[np.ndarray], np.ndarray] | np.ndarray | str) -> None:
        """Mark the rows of ``mask`` not yet rejected; ``what`` gives the detail (a callable
        is given the positions of those rows only, so details are built for rejected rows alone)."""
        new = mask & (reason == "")
        if new.any():
            reason[new] = why
            if callable(what):
                detail[new] = what(np.flatnonzero(new))
            else:
                detail[new] = what[new] if not isinstance(what, str) else what

    lat_raw = _clean(raw[fmt.lat])
    lon_raw = _clean(raw[fmt.lon])
    lat = _to_float(lat_raw, fmt.decimal_comma)
    lon = _to_float(lon_raw, fmt.decimal_comma)
    def coord_text(pos: np.ndarray) -> np.ndarray:
        return ("lat=" + lat_raw.iloc[pos].fillna("").astype(str) + " lon=" + lon_raw.iloc[pos].fillna("").astype(str)).to_numpy()

    def text_of(label: str, values: pd.Series) -> Callable[[np.ndarray], np.ndarray]:
        return lambda pos: (label + values.iloc[pos].fillna("").astype(str)).to_numpy()
    not_number = ~np.isfinite(lat) | ~np.isfinite(lon) | ((lat == 0) & (lon == 0))
    impossible = ~not_number & ((np.abs(lat) > 90) | (np.abs(lon) > 180))
    if impossible.any():  # a latitude of 108.8 is a longitude: swapped columns
        swapped = np.zeros(n, dtype=bool)
        swapped[impossible] = ctx.in_study_area(lat[impossible], lon[impossible])
        reject(swapped, "swapped_lat_lon", coord_text)
    reject(not_number | impossible, "unparseable_coordinate", coord_text)

    # Technology
    if fmt.technology:
        tech_raw = _clean(raw[fmt.technology])
        tech = tech_raw.str.lower().map(TECHNOLOGY_ALIASES)
        tech = tech.where(tech_raw.notna(), ctx.default_technology if fmt.name != "gnettrack" else None)
        unknown = tech.isna() & tech_raw.notna()
        reject(unknown.to_numpy(), "unknown_technology", text_of("technology=", tech_raw))
    else:
        tech = pd.Series(ctx.default_technology, index=raw.index, dtype=object)
    tech_arr = tech.to_numpy(dtype=object)

    # Signal
    sig_raw = _clean(raw[fmt.signal])
    sig = _to_float(sig_raw, fmt.decimal_comma)
    no_sig = ~np.isfinite(sig)
    needs_level = ~np.isin(tech_arr, ["2G", "3G", "none"])  # 4G/5G rows and rows with no technology at all
    reject(no_sig & needs_level, "missing_signal", text_of("signal=", sig_raw))
    lo = np.full(n, -140.0)
    hi = np.full(n, -44.0)
    for t, (a, b) in SIGNAL_RANGE_DBM.items():
        is_t = tech_arr == t
        lo[is_t], hi[is_t] = a, b
    out_of_range = np.isfinite(sig) & ((sig < lo) | (sig > hi))
    reject(out_of_range, "dbm_out_of_range",
           lambda pos: np.array([f"{tech_arr[i]} level {sig[i]:g} dBm outside {lo[i]:g}…{hi[i]:g}" for i in pos], dtype=object))

    # Operator
    if fmt.operator:
        op = normalise_operator(_clean(raw[fmt.operator]), ctx.default_operator)
    else:
        op = pd.Series(ctx.default_operator, index=raw.index, dtype=object)

    # Time
    if fmt.timestamp:
        ts_raw = _clean(raw[fmt.timestamp])
        time_s = parse_timestamps(ts_raw, ctx.timezone)
        bad_ts = ts_raw.notna().to_numpy() & ~np.isfinite(time_s)
        reject(bad_ts, "unparseable_timestamp", text_of("timestamp=", ts_raw))
        future = np.isfinite(time_s) & (time_s > ctx.now_s + 300)
        reject(future, "future_timestamp", text_of("timestamp=", ts_raw))
    else:
        time_s = np.full(n, np.nan)

    # Study area (and swapped coordinates)
    ok = reason == ""
    inside = np.zeros(n, dtype=bool)
    if ok.any():
        inside[ok] = ctx.in_study_area(lon[ok], lat[ok])
    outside = ok & ~inside
    if outside.any():
        swapped = np.zeros(n, dtype=bool)
        swapped[outside] = ctx.in_study_area(lat[outside], lon[outside])
        reject(swapped, "swapped_lat_lon", coord_text)
        reject(outside & ~swapped, "outside_study_area",
               lambda pos: np.array([f"lat={lat[i]:.6f} lon={lon[i]:.6f}" for i in pos], dtype=object))

    used = pd.DataFrame(
        {
            "lon": lon,
            "lat": lat,
            "signal_dbm": sig,
            "technology": tech_arr,
            "operator": op.to_numpy(dtype=object),
            "time_s": time_s,
            "source_file": source_file,
            "source_row": source_rows,
        }
    )
    # Exact duplicates: the same measurement (time, place, operator, technology, level) again.
    ok = reason == ""
    keys = measurement_keys(used)
    dup = np.zeros(n, dtype=bool)
    if ok.any():
        idx = np.flatnonzero(ok)
        k = keys[idx]
        first = np.zeros(len(k), dtype=bool)
        _, first_pos = np.unique(k, return_index=True)
        first[first_pos] = True
        seen = ctx.has_seen(k)
        dup[idx] = ~first | seen
        ctx.remember(k[first & ~seen])
    reject(dup, "duplicate_row", "same time, place, operator, technology and level as an earlier row")

    used_mask = reason == ""
    read_cols = list(dict.fromkeys(c for c in fmt.columns if c in raw.columns)) or list(raw.columns)
    rej_raw = raw.loc[~used_mask, read_cols]
    raw_fields = rej_raw.iloc[:, 0].astype(str) if len(read_cols) else pd.Series("", index=rej_raw.index)
    for c in read_cols[1:]:
        raw_fields = raw_fields + fmt.separator + rej_raw[c].astype(str)
    rejected = pd.DataFrame(
        {"source_file": source_file, "source_row": source_rows[~used_mask], "reason": reason[~used_mask],
         "detail": detail[~used_mask], "raw_fields": raw_fields.to_numpy(dtype=object)}
    )
    return used.loc[used_mask].reset_index(drop=True), rejected


def measurement_keys(rows: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash per row of what makes a measurement the same measurement."""
    cols = rows[["lon", "lat", "signal_dbm", "technology", "operator", "time_s"]].copy()
    cols["lon"] = cols["lon"].clip(-1e3, 1e3).round(7)
    cols["lat"] = cols["lat"].clip(-1e3, 1e3).round(7)
    return pd.util.hash_pandas_object(cols, index=False).to_numpy(dtype=np.uint64)


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
    # Work on the distinct spellings only (a file holds a handful), then spread back.
    codes, uniques = pd.factorize(raw[present].astype(str))
    out[present] = _normalise_operator_names(pd.Series(uniques, dtype=object)).to_numpy(dtype=object)[codes]
    return out


def _normalise_operator_names(text: pd.Series) -> pd.Series:
    key = text.str.lower().str.strip()
    name = key.map(OPERATOR_ALIASES)
    digits = key.str.replace(r"[^0-9]", "", regex=True)
    mnc = digits.where(~digits.str.startswith("452") | (digits.str.len() <= 3), digits.str[3:])
    mnc = mnc.str.zfill(2).str[-2:]
    by_code = mnc.map(OPERATOR_BY_MNC).where(key.str.fullmatch(r"[0-9 -]+"))
    return name.fillna(by_code).fillna(text)
