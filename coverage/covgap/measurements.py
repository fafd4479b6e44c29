"""Reading measurement CSVs: format recognition, parsing, validation, rejection.

Every row of every file is either *used* (returned in a normalised frame) or
*rejected* with one of the reasons in :data:`REJECT_REASONS`. A file that cannot
be used at all (no recognisable columns, not a measurement file, unreadable
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

import codecs
import gzip
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from covgap.config import ColumnMapping
from covgap.errors import InputError

log = logging.getLogger(__name__)

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

LAT_ALIASES = ("lat", "latitude", "y", "lat_deg")
LON_ALIASES = ("lon", "lng", "long", "longitude", "x", "lon_deg")
SIGNAL_ALIASES = ("rsrp", "rsrp_dbm", "signal_dbm", "dbm", "rscp", "rssi", "level", "signal", "rssi_dbm")
TECH_ALIASES = ("technology", "tech", "networktech", "network_type", "networktype", "rat", "networkmode")
OPERATOR_COL_ALIASES = ("operator", "operatorname", "carrier", "network", "provider", "mnc", "operator_name")
TIME_ALIASES = ("timestamp", "time", "datetime", "date_time", "date", "utc")
OPENCELLID_COLUMNS = {"radio", "mcc", "net", "area", "cell"}


@dataclass(frozen=True)
class MeasurementFormat:
    """How to read one file: which known format, separator, and which column is which."""

    name: str
    separator: str
    lat: str
    lon: str
    signal: str
    technology: str | None = None
    operator: str | None = None
    timestamp: str | None = None
    decimal_comma: bool = False
    encoding: str = "utf-8"
    columns: tuple[str, ...] = field(default=())


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


def list_measurement_files(paths: list[Path]) -> list[Path]:
    """Expand folders into the measurement files inside them, sorted by name."""
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found += sorted(
                q for q in p.rglob("*")
                if q.is_file() and not q.name.startswith(".")
                and (q.suffix.lower() in (".csv", ".txt", ".tsv") or q.name.lower().endswith((".csv.gz", ".txt.gz", ".tsv.gz")))
            )
        elif p.is_file():
            found.append(p)
        else:
            raise InputError(p, ["measurement file or folder not found (check [inputs] measurements in covgap.toml)"])
    return found


def detect_encoding(head: bytes, path: Path) -> str:
    """UTF-8 (with or without BOM) or UTF-16 (Excel 'Unicode text'); anything else is refused."""
    if head.startswith(b"PK\x03\x04"):
        raise InputError(path, ["this is a ZIP file or an Excel workbook (.xlsx), not CSV text; "
                                "in Excel use Save As 'CSV UTF-8 (comma delimited)' and give that file"])
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        # A multi-byte character cut at the end of the sample is not an error.
        if err.start < len(head) - 4:
            raise InputError(
                path,
                [f"not UTF-8 or UTF-16 text (byte {err.start}: {head[err.start:err.start + 1]!r}); "
                 "save it as UTF-8 CSV (Excel: 'CSV UTF-8') and try again"],
            ) from err
    return "utf-8"


def _open_bytes(path: Path) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        return fh.read(65536)


def _split_header(line: str) -> tuple[str, list[str]]:
    counts = {sep: line.count(sep) for sep in ("\t", ";", ",")}
    sep = max(counts, key=lambda s: (counts[s], s == "\t"))
    if counts[sep] == 0:
        sep = ","
    return sep, [c.strip().strip('"').strip() for c in line.split(sep)]


def _find(columns: list[str], aliases: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in columns}
    for a in aliases:
        if a in lower:
            return lower[a]
    return None


def detect_format(path: str | Path, mapping: ColumnMapping | None = None) -> MeasurementFormat:
    """Recognise a measurement file from its header.

    Known: G-NetTrack Pro logs, Cradlepoint site surveys, generic CSV (comma,
    semicolon or tab), or the explicit ``[inputs.columns]`` mapping. OpenCelliD
    tower lists are refused (they list towers, not measurements).

    Raises
    ------
    InputError
        Empty file, unknown encoding, tower list, or required columns missing.
    """
    path = Path(path)
    head = _open_bytes(path)
    if not head.strip():
        raise InputError(path, ["the file is empty; expected a header line and measurement rows"])
    encoding = detect_encoding(head, path)
    text = head.decode(encoding, errors="ignore")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0].lstrip("\ufeff")
    sep, columns = _split_header(header)
    lower = {c.lower() for c in columns}
    mapping = mapping or ColumnMapping()

    if mapping.is_set:
        if mapping.separator:
            sep = {"tab": "\t", "\\t": "\t"}.get(mapping.separator, mapping.separator)
            columns = [c.strip().strip('"') for c in header.split(sep)]
        wanted = {"lat": mapping.lat, "lon": mapping.lon, "signal_dbm": mapping.signal_dbm,
                  "operator": mapping.operator, "technology": mapping.technology, "timestamp": mapping.timestamp}
        missing = [f"{k} = '{v}'" for k, v in wanted.items() if v and v not in columns]
        if not missing:
            return MeasurementFormat(
                name="mapped", separator=sep, lat=mapping.lat, lon=mapping.lon, signal=mapping.signal_dbm,
                technology=mapping.technology or None, operator=mapping.operator or None,
                timestamp=mapping.timestamp or None, decimal_comma=_has_decimal_comma(lines, sep),
                encoding=encoding, columns=tuple(columns),
            )
        # The mapping is for another kind of file; fall through to recognition, and
        # mention the mapping if nothing fits.

    if OPENCELLID_COLUMNS <= lower and not ({"rsrp", "level", "rssi"} & lower):
        raise InputError(
            path,
            ["this is an OpenCelliD tower list (columns radio, mcc, net, area, cell...): it lists towers, "
             "not measurements of signal; give drive-test or phone measurement files instead"],
        )

    lat = _find(columns, LAT_ALIASES)
    lon = _find(columns, LON_ALIASES)
    tech = _find(columns, TECH_ALIASES)
    operator = _find(columns, OPERATOR_COL_ALIASES)
    timestamp = _find(columns, TIME_ALIASES)
    if {"latitude", "longitude", "level"} <= lower and ({"networktech", "networkmode"} & lower):
        name = "gnettrack"
        signal = _find(columns, ("level",))
        tech = _find(columns, ("networktech", "networkmode"))
        operator = _find(columns, ("operatorname", "operator"))
    elif {"latitude", "longitude", "carrier", "rsrp"} <= lower:
        name = "cradlepoint"
        signal = _find(columns, ("rsrp",))
        operator = _find(columns, ("carrier",))
        tech = _find(columns, ("technology", "service type", "service_type", "network type", "tech"))
    else:
        name = "generic"
        signal = _find(columns, SIGNAL_ALIASES)

    missing = []
    if lat is None:
        missing.append("latitude (lat, latitude or y)")
    if lon is None:
        missing.append("longitude (lon, lng, long, longitude or x)")
    if signal is None:
        missing.append("signal in dBm (rsrp, rsrp_dbm, rscp, rssi, dbm or level)")
    if missing:
        hint = "; or map the columns in [inputs.columns] of covgap.toml (lat, lon, signal_dbm, ...)"
        if mapping.is_set:
            absent = [c for c in (mapping.lat, mapping.lon, mapping.signal_dbm) if c not in columns]
            hint = f"; the [inputs.columns] mapping names columns this file lacks: {', '.join(absent)}"
        raise InputError(
            path,
            [f"missing required column(s): {', '.join(missing)}; columns found: {', '.join(columns) or '(none)'}{hint}"],
        )
    return MeasurementFormat(
        name=name, separator=sep, lat=lat, lon=lon, signal=signal, technology=tech, operator=operator,
        timestamp=timestamp, decimal_comma=_has_decimal_comma(lines, sep), encoding=encoding, columns=tuple(columns),
    )


def _has_decimal_comma(lines: list[str], sep: str) -> bool:
    if sep == ",":
        return False
    return any(re.search(r"(?<![\d])-?\d+,\d+(?![\d])", ln) for ln in lines[1:50])


def read_measurement_chunks(
    path: str | Path,
    ctx: ReadContext,
    *,
    chunk_rows: int = 250_000,
    fmt: MeasurementFormat | None = None,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Stream a measurement file in chunks: ``(used_rows, rejected_rows)`` per chunk.

    ``rejected_rows`` has the columns ``source_file, source_row, reason, detail, raw_fields``
    (``raw_fields``: the columns covgap read, as written, joined by the file's separator).
    Memory stays bounded by ``chunk_rows`` (duplicates are found with a sorted
    array of 8-byte row keys, the only thing that grows with the file).
    """
    path = Path(path)
    fmt = fmt or detect_format(path, ctx.mapping)
    usecols = [c for c in (fmt.lat, fmt.lon, fmt.signal, fmt.technology, fmt.operator, fmt.timestamp) if c]
    try:
        reader = pd.read_csv(
            path,
            sep=fmt.separator,
            usecols=lambda c: c.strip().strip('"').lstrip("\ufeff").strip() in usecols,
            dtype=str,
            keep_default_na=False,
            encoding=fmt.encoding,
            chunksize=chunk_rows,
            compression="infer",
            # Blank lines are kept as empty rows (and dropped below) so that the row
            # index maps exactly to the line number in the file.
            skip_blank_lines=False,
            on_bad_lines="warn",
            engine="c",
        )
        start_line = 2
        for chunk in reader:
            chunk.columns = [c.strip().strip('"').lstrip("\ufeff").strip() for c in chunk.columns]
            lines = np.arange(start_line, start_line + len(chunk), dtype=np.int64)
            start_line += len(chunk)
            # A line with no value in any column covgap reads is a blank line, not a measurement.
            blank = (chunk.apply(lambda col: col.str.strip()) == "").all(axis=1).to_numpy()
            if blank.any():
                chunk = chunk.loc[~blank]
                lines = lines[~blank]
            yield normalise_rows(chunk, fmt, ctx, source_file=path.name, source_rows=lines)
    except UnicodeDecodeError as err:
        raise InputError(path, [f"not valid {fmt.encoding} text ({err.reason} at byte {err.start}); save it as UTF-8 and try again"]) from err
    except pd.errors.ParserError as err:
        raise InputError(path, [f"cannot be parsed as {fmt.name} with separator {fmt.separator!r}: {err}"]) from err


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
    read_cols = [c for c in fmt.columns if c in raw.columns] or list(raw.columns)
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
    cols["lon"] = cols["lon"].round(7)
    cols["lat"] = cols["lat"].round(7)
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


_GNETTRACK_TS = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})_(\d{2})\.(\d{2})\.(\d{2})$")
_HAS_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$")
_DAY_FIRST = re.compile(r"^\d{1,2}/\d{1,2}/\d{4}")


def parse_timestamps(raw: pd.Series, timezone: str) -> np.ndarray:
    """Unix seconds from timestamps of many shapes; NaN where absent or unparseable.

    Accepted: ISO 8601 with or without offset (``T`` or space), G-NetTrack's
    ``YYYY.MM.DD_HH.MM.SS``, day-first ``DD/MM/YYYY HH:MM[:SS]`` (Vietnamese
    spreadsheets), Unix seconds or milliseconds. Times without an offset are
    local time in ``timezone``.
    """
    out = np.full(len(raw), np.nan)
    present = raw.notna().to_numpy()
    if not present.any():
        return out
    s = raw[present].astype(str)
    vals = np.full(len(s), np.nan)

    num = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
    is_num = np.isfinite(num)
    vals[is_num & (num > 1e11)] = num[is_num & (num > 1e11)] / 1000.0
    vals[is_num & (num > 1e8) & (num <= 1e11)] = num[is_num & (num > 1e8) & (num <= 1e11)]

    text = s[~is_num].str.replace(_GNETTRACK_TS, r"\1-\2-\3 \4:\5:\6", regex=True)
    if len(text):
        has_offset = text.str.contains(_HAS_OFFSET)
        day_first = text.str.contains(_DAY_FIRST)
        result = pd.Series(np.nan, index=text.index)
        aware = text[has_offset]
        if len(aware):
            parsed = pd.to_datetime(aware, format="ISO8601", utc=True, errors="coerce")
            result[aware.index] = _epoch(parsed)
        naive = text[~has_offset & ~day_first]
        if len(naive):
            parsed = pd.to_datetime(naive, format="ISO8601", errors="coerce")
            result[naive.index] = _epoch(_localise(parsed, timezone))
        dmy = text[~has_offset & day_first]
        if len(dmy):
            parsed = pd.to_datetime(dmy, format="%d/%m/%Y %H:%M:%S", errors="coerce")
            short = parsed.isna()
            if short.any():
                parsed[short] = pd.to_datetime(dmy[short], format="%d/%m/%Y %H:%M", errors="coerce")
            result[dmy.index] = _epoch(_localise(parsed, timezone))
        pos = np.flatnonzero(~is_num)
        vals[pos] = result.to_numpy(dtype=float)
    out[present] = vals
    return out


def _localise(parsed: pd.Series, timezone: str) -> pd.Series:
    if getattr(parsed.dt, "tz", None) is not None:
        return parsed.dt.tz_convert("UTC")
    return parsed.dt.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")


def _epoch(parsed: pd.Series) -> np.ndarray:
    """Unix seconds (float, NaN for NaT) of a datetime series."""
    if getattr(parsed.dt, "tz", None) is None:
        parsed = parsed.dt.tz_localize("UTC")
    out = np.full(len(parsed), np.nan)
    ok = parsed.notna().to_numpy()
    if ok.any():
        ints = parsed[ok].dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[s]").astype("int64")
        out[ok] = ints.to_numpy(dtype=float)
    return out
