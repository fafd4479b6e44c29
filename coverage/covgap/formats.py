"""Measurement files: which files, which encoding and compression, which known format and columns.

Format detection reads a file's first bytes only (:func:`detect_format`); reading the rows and turning
them into normalised measurements is :mod:`covgap.measurements`.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import logging
import lzma
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast
from covgap.config import ColumnMapping
from covgap.errors import InputError


log = logging.getLogger(__name__)

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
    header_line: int = 1  # line number of the header (blank lines before it are skipped)


#: Compressed files covgap reads, by the last suffix of their name (standard library openers).
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz")


TEXT_SUFFIXES = (".csv", ".txt", ".tsv")


#: Listed from a folder so that they are refused with the fix (unpack, save as CSV), not passed over.
REFUSED_SUFFIXES = (".zip", ".xlsx", ".xls")


def list_measurement_files(paths: list[Path], *, warned: set[Path] | None = None) -> list[Path]:
    """Expand folders into the measurement files inside them, sorted by name.

    In a folder: ``*.csv``, ``*.txt``, ``*.tsv``, each also compressed (``.gz``,
    ``.bz2``, ``.xz``), and ``*.zip``, ``*.xlsx``, ``*.xls`` (which are refused with
    the way to fix them, rather than passed over in silence). A file named
    explicitly is always taken (and refused with a reason if it cannot be read).
    Other files in a folder are passed over with a warning; with ``warned`` (the files
    warned of already, added to), once only (``covgap watch`` lists the folders again
    and again).
    """
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files = sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
            found += [q for q in files if _is_measurement_file(q)]
            for q in files:
                if not _is_measurement_file(q) and (warned is None or q not in warned):  # said, not passed over in silence
                    if warned is not None:
                        warned.add(q)
                    log.warning("skipped %s: not a measurement file type (.csv, .txt, .tsv, also .gz/.bz2/.xz); "
                                "rename it if it holds measurements", q)
        elif p.is_file():
            found.append(p)
        else:
            raise InputError(p, ["measurement file or folder not found (check [inputs] measurements in covgap.toml)"])
    return found


def _is_measurement_file(path: Path) -> bool:
    if path.suffix.lower() in REFUSED_SUFFIXES:
        return True
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES:
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in TEXT_SUFFIXES


def detect_encoding(head: bytes, path: Path, *, whole: bool = False) -> str:
    """UTF-8 (with or without BOM) or UTF-16 (Excel 'Unicode text', with or without BOM); anything else is refused.

    ``head`` is the start of the file, or all of it when ``whole``.
    """
    if head.startswith(b"PK\x03\x04"):
        raise InputError(path, ["this is a ZIP file or an Excel workbook (.xlsx), not CSV text; "
                                "in Excel use Save As 'CSV UTF-8 (comma delimited)' and give that file"])
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    sample = head[:4096]
    if len(sample) >= 4:  # UTF-16 without BOM: every other byte of ASCII text is NUL
        even, odd = sample[0::2].count(0), sample[1::2].count(0)
        half = len(sample) // 2
        if odd >= 0.9 * half and even <= 0.1 * half:
            return "utf-16-le"
        if even >= 0.9 * half and odd <= 0.1 * half:
            return "utf-16-be"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        # A multi-byte character cut at the end of the sample is not an error (at the end of the file it is).
        if whole or err.start < len(head) - 4:
            raise InputError(
                path,
                [f"not UTF-8 or UTF-16 text (byte {err.start}: {head[err.start:err.start + 1]!r}); "
                 "save it as UTF-8 CSV (Excel: 'CSV UTF-8') and try again"],
            ) from err
    return "utf-8"


def _open_binary(path: Path) -> BinaryIO:
    """The file's bytes, decompressed by the suffix of its name (``.gz``, ``.bz2``, ``.xz``).

    Raises :class:`InputError` for ``.zip`` (an archive may hold many files: unpack it)
    and for a file whose name says compressed but whose bytes are not.
    """
    suffix = path.suffix.lower()
    if suffix == ".zip":
        raise InputError(path, ["a ZIP archive is not read (it may hold several files); unpack it and give the "
                                "CSV files, or compress single files with gzip (.csv.gz)"])
    if suffix not in COMPRESSED_SUFFIXES:
        return open(path, "rb")
    magic = {".gz": b"\x1f\x8b", ".bz2": b"BZh", ".xz": b"\xfd7zXZ\x00"}[suffix]
    with open(path, "rb") as fh:
        start = fh.read(len(magic))
    if start != magic:
        raise InputError(path, [f"is named {suffix} but is not {_COMPRESSION_NAMES[suffix]}-compressed; "
                                f"rename it without {suffix} if it is plain text, or compress it again"])
    if suffix == ".gz":
        return cast(BinaryIO, gzip.open(path, "rb"))
    return cast(BinaryIO, bz2.open(path, "rb") if suffix == ".bz2" else lzma.open(path, "rb"))


_COMPRESSION_NAMES = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz"}


#: What a damaged or truncated compressed file raises while it is read.
_DECOMPRESSION_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError)


def _decompression_error(path: Path, err: BaseException) -> InputError:
    kind = _COMPRESSION_NAMES.get(path.suffix.lower())
    if kind is None:
        return InputError(path, [f"cannot be read: {err}"])
    return InputError(path, [f"the {kind} data is damaged or cut short ({type(err).__name__}: {err}); "
                             "copy or download the file again"])


#: How much of a file is read to recognise its encoding, separator and columns.
HEAD_BYTES = 1 << 20


def _read_head(path: Path, size: int = HEAD_BYTES) -> bytes:
    try:
        with _open_binary(path) as fh:
            return fh.read(size)
    except InputError:
        raise
    except _DECOMPRESSION_ERRORS as err:
        raise _decompression_error(path, err) from err


def split_physical_lines(text: str) -> list[str]:
    r"""Lines as covgap counts them: ended by ``\n``, ``\r\n`` or ``\r`` (Python's universal newlines).

    Other characters Unicode calls line breaks (U+2028, U+0085, form feed...) are
    ordinary characters inside a line.
    """
    return _LINE_BREAK.split(text)


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


_SEPARATORS = ("\t", ";", ",")


def _split_fields(line: str, sep: str) -> list[str] | None:
    """The fields of one line by the CSV rules (RFC 4180 quoting); None if a quoted field never closes."""
    try:
        return next(csv.reader([line], delimiter=sep, strict=True), [])
    except csv.Error as err:
        if "unexpected end of data" in str(err):
            return None
        if "field larger than field limit" in str(err):  # 128 KiB by default; pandas' parser has no limit
            csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
            return _split_fields(line, sep)
        # Text after a closing quote ("ab"c): read leniently, as the fast path does.
        return next(csv.reader([line], delimiter=sep), [])


def _split_header(line: str, separator: str | None = None) -> tuple[str, list[str]]:
    """The separator (given, or the one giving most columns: tab, semicolon, comma) and the column names."""
    split = {sep: _split_fields(line, sep) for sep in ([separator] if separator else _SEPARATORS)}
    candidates = {sep: fields for sep, fields in split.items() if fields is not None}
    if len(candidates) < len(split):
        raise ValueError("a quote in the header line never closes")
    sep = max(candidates, key=lambda s: (len(candidates[s]), s == "\t"))
    if len(candidates[sep]) <= 1 and not separator:
        sep = ","
    names = [c.strip().strip('"').lstrip("\ufeff").strip() for c in candidates[sep]]
    if len(names) > 1 and names[-1] == "":  # a separator at the end of the header line
        names = names[:-1]
    return sep, names


def _find(columns: list[str], aliases: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in columns}
    for a in aliases:
        if a in lower:
            return lower[a]
    return None


def _check_unique(path: Path, columns: list[str], chosen: list[str], *, case_sensitive: bool) -> None:
    """Refuse a file where a column covgap reads appears twice (after trimming): which one is meant is unknown."""
    def key(c: str) -> str:
        return c if case_sensitive else c.lower()
    problems = []
    for name in dict.fromkeys(chosen):
        at = [i + 1 for i, c in enumerate(columns) if key(c) == key(name)]
        if len(at) > 1:
            problems.append(f"column '{name}' appears {len(at)} times (columns {', '.join(map(str, at))}); "
                            "covgap cannot tell which one holds the values: rename or delete the others")
    if problems:
        raise InputError(path, problems)


def detect_format(path: str | Path, mapping: ColumnMapping | None = None) -> MeasurementFormat:
    """Recognise a measurement file from its header.

    Known: G-NetTrack Pro logs, Cradlepoint site surveys, generic CSV (comma,
    semicolon or tab), or the explicit ``[inputs.columns]`` mapping. OpenCelliD
    tower lists are refused (they list towers, not measurements). Blank lines
    before the header are skipped (and counted in line numbers).

    Raises
    ------
    InputError
        Empty file, unknown encoding, broken compression, tower list, required
        columns missing or named twice.
    """
    path = Path(path)
    head = _read_head(path, HEAD_BYTES)
    encoding = detect_encoding(head, path, whole=len(head) < HEAD_BYTES)
    text = head.decode(encoding, errors="replace")
    if encoding == "utf-8" and text.startswith("\ufeff"):
        text = text[1:]
    lines = split_physical_lines(text)
    if len(head) == HEAD_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line of the sample may be cut short
    header_index = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if header_index is None:
        raise InputError(path, ["the file is empty; expected a header line and measurement rows"])
    header = lines[header_index]
    mapping = mapping or ColumnMapping()
    given_sep = None
    if mapping.is_set and mapping.separator:
        given_sep = {"tab": "\t", "\\t": "\t"}.get(mapping.separator, mapping.separator)
        if len(given_sep) != 1:
            raise InputError(path, [f"[inputs.columns] separator = '{mapping.separator}' must be one character "
                                    "(or 'tab')"])
    try:
        sep, columns = _split_header(header, given_sep)
    except ValueError as err:
        raise InputError(path, [f"line {header_index + 1} (the header): {err}; fix the quotes of the column names"]) from err
    data_lines = lines[header_index + 1:]
    lower = {c.lower() for c in columns}

    def made(**kw) -> MeasurementFormat:
        chosen = [c for c in (kw["lat"], kw["lon"], kw["signal"], kw.get("technology"), kw.get("operator"),
                              kw.get("timestamp")) if c]
        _check_unique(path, columns, chosen, case_sensitive=kw["name"] == "mapped")
        return MeasurementFormat(separator=sep, decimal_comma=_has_decimal_comma(data_lines, sep), encoding=encoding,
                                 columns=tuple(columns), header_line=header_index + 1, **kw)

    if mapping.is_set:
        wanted = {"lat": mapping.lat, "lon": mapping.lon, "signal_dbm": mapping.signal_dbm,
                  "operator": mapping.operator, "technology": mapping.technology, "timestamp": mapping.timestamp}
        missing = [f"{k} = '{v}'" for k, v in wanted.items() if v and v not in columns]
        if not missing:
            return made(name="mapped", lat=mapping.lat, lon=mapping.lon, signal=mapping.signal_dbm,
                        technology=mapping.technology or None, operator=mapping.operator or None,
                        timestamp=mapping.timestamp or None)
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
        shown = ", ".join(c.encode("unicode_escape").decode("ascii") if not c.isprintable() else c for c in columns)
        raise InputError(
            path,
            [f"missing required column(s): {', '.join(missing)}; columns found: {shown or '(none)'}{hint}"],
        )
    return made(name=name, lat=lat, lon=lon, signal=signal, technology=tech, operator=operator, timestamp=timestamp)


def _has_decimal_comma(lines: list[str], sep: str) -> bool:
    if sep == ",":
        return False
    return any(re.search(r"(?<![\d])-?\d+,\d+(?![\d])", ln) for ln in lines[:50])
