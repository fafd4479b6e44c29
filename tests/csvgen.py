"""Random measurement files for the reader's fuzz tests (tests/test_reader.py, scripts/fuzz_reader.py).

:func:`generate_file` builds one file (name and bytes) from a :class:`Chooser`: a
few recognised column names and junk, a separator, quoting, line endings,
encodings and compression, values good and bad (``1e3``, ``-``, ``nan``,
full-width digits, every time form, NULs, huge fields) and broken lines (quotes
that never close, missing or extra fields, trailing separators, blank lines).

:func:`expected_rows` counts, independently of covgap, the line numbers that must
each come out as one row (used or rejected): the non-blank physical lines after
the header (the first non-blank line), lines being ended by ``\\n``, ``\\r\\n`` or
``\\r`` (docs/refresh.md).

Two choosers share the generator: :class:`RandomChooser` (``random.Random``, for
the long run) and :class:`HypothesisChooser` (draws from ``st.data()``, so that
Hypothesis can shrink a failing file).
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import itertools
import random
import re
from collections.abc import Sequence
from typing import Any


class RandomChooser:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def choice(self, options: Sequence[Any]) -> Any:
        return options[self.rng.randrange(len(options))]

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p


class HypothesisChooser:
    """Draws through a Hypothesis ``data`` object (``st.data()``)."""

    def __init__(self, data):
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def choice(self, options: Sequence[Any]) -> Any:
        return self.data.draw(self.st.sampled_from(list(options)))

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def chance(self, p: float) -> bool:
        # Hypothesis shrinks towards False; p is respected only roughly, which is fine here.
        return self.data.draw(self.st.integers(0, 999)) < int(p * 1000)


LAT_NAMES = ["lat", "Latitude", "LAT", " latitude ", "y", "lat_deg", "Vĩ độ"]
LON_NAMES = ["lon", "Longitude", "lng", "long", "x", " LON", "lon_deg"]
SIGNAL_NAMES = ["rsrp", "RSRP", "rsrp_dbm", "dbm", "rscp", "rssi", "Level", "signal"]
TECH_NAMES = ["technology", "tech", "NetworkTech", "rat", "networkmode"]
OPERATOR_NAMES = ["operator", "Operatorname", "carrier", "mnc", "network"]
TIME_NAMES = ["timestamp", "Timestamp", "time", "datetime", "date", "utc"]
JUNK_NAMES = ["note", "ghi chú", "", "Speed", "CellID", "x,y", 'say "hi"', "đường", "\u2028col", "radio", "mcc",
              "net", "area", "cell", "a\x00b", "lat"]
SEPARATORS = [",", ",", ",", ";", "\t", "\t", "|"]
ENCODINGS = ["utf-8", "utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "cp1258"]
NEWLINES = ["\n", "\n", "\r\n", "\r"]
BLANKS = ["", " ", "\t", "\xa0", "  \t ", "\u3000"]
JUNK_VALUES = ["", "-", "--", "nan", "NaN", "NULL", "N/A", "abc", "1e3", "-1e3", "inf", "-inf", "０", "１５.１",
               "15,1", "1.2.3", "0", "+", "\x00", "\x01", "\u2028", "\ufeff", "đường đất", "   ", "true", "1_000",
               "0x10", "½", "٣", "-99999999999999999999", "1e308", "1e-320"]
TECH_VALUES = ["LTE", "lte", "4G", "5G", "NR", "HSPA+", "UMTS", "GSM", "EDGE", "WiMAX", "", "-", "3g", "LTE-A"]
OPERATOR_VALUES = ["Viettel", "VinaPhone", "45204", "452-01", "04", "MobiFone", "Gmobile", "", "-", "Vietnamobile",
                   "452 05", "Beeline"]


def _number(c, lo: float, hi: float, decimals: int) -> str:
    v = lo + (hi - lo) * c.integer(0, 10_000) / 10_000
    return f"{v:.{decimals}f}"


def _value(c, kind: str, sep: str) -> str:
    if c.chance(0.12):
        return c.choice(JUNK_VALUES)
    if kind == "lat":
        return _number(c, 14.8, 15.3, c.integer(0, 8)) if c.chance(0.9) else _number(c, -95, 200, 3)
    if kind == "lon":
        return _number(c, 108.6, 109.1, c.integer(0, 8)) if c.chance(0.9) else _number(c, -200, 200, 3)
    if kind == "signal":
        v = _number(c, -150, -20, c.integer(0, 2))
        return v.replace(".", ",") if sep != "," and c.chance(0.3) else v
    if kind == "tech":
        return c.choice(TECH_VALUES)
    if kind == "operator":
        return c.choice(OPERATOR_VALUES)
    if kind == "time":
        return _timestamp(c)
    return c.choice(["", "x", "ghi chú", "a b", "12", "-", "đình làng", "Speed 12"])


def _timestamp(c) -> str:
    y, mo, d = c.choice([2025, 2026, 2099, 1969, 9999]), c.integer(0, 13), c.integer(0, 32)
    h, mi, s = c.integer(0, 24), c.integer(0, 59), c.integer(0, 60)
    forms = [
        f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}",
        f"{y}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}",
        f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}Z",
        f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}+07",
        f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}+07:00",
        f"{y}-{mo:02d}-{d:02d} {h:02d}:{mi:02d}:{s:02d}-0330",
        f"{y}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.123456+07:00",
        f"{y}.{mo:02d}.{d:02d}_{h:02d}.{mi:02d}.{s:02d}",
        f"{d:02d}/{mo:02d}/{y} {h:02d}:{mi:02d}:{s:02d}",
        f"{d}/{mo}/{y} {h}:{mi:02d}",
        f"{y}-{mo:02d}-{d:02d}",
        str(c.integer(0, 2_000_000_000)),
        str(c.integer(0, 2_000_000_000) * 1000),
        "hôm qua", "2026-03-14T10:00:00 UTC", "2026-03-08T02:30:00", "2026-W11-6",
    ]
    return c.choice(forms)


def _quote(c, value: str, sep: str) -> str:
    """Write a field: mostly plain; sometimes quoted (correctly, or with a quote that never closes)."""
    needs = sep in value or '"' in value or "\n" in value or "\r" in value
    if needs or c.chance(0.05):
        if c.chance(0.97):
            return '"' + value.replace('"', '""') + '"'
        return '"' + value  # never closes
    if c.chance(0.01):
        return value[:1] + '"' + value[1:]  # a stray quote inside a field
    return value


def _column_plan(c) -> list[tuple[str, str]]:
    """(name, kind) of every column, in file order."""
    plan = []
    if c.chance(0.92):
        plan.append((c.choice(LAT_NAMES), "lat"))
    if c.chance(0.92):
        plan.append((c.choice(LON_NAMES), "lon"))
    if c.chance(0.92):
        plan.append((c.choice(SIGNAL_NAMES), "signal"))
    for names, kind, p in ((TECH_NAMES, "tech", 0.5), (OPERATOR_NAMES, "operator", 0.5), (TIME_NAMES, "time", 0.6)):
        if c.chance(p):
            plan.append((c.choice(names), kind))
    for _ in range(c.integer(0, 3)):
        plan.append((c.choice(JUNK_NAMES), "junk"))
    order = list(range(len(plan)))
    for i in range(len(order) - 1, 0, -1):  # Fisher-Yates through the chooser
        j = c.integer(0, i)
        order[i], order[j] = order[j], order[i]
    return [plan[i] for i in order]


def generate_file(c, *, max_rows: int = 30, huge_field: int = 70_000) -> tuple[str, bytes]:
    """One random measurement file: ``(file name, bytes)``."""
    if c.chance(0.01):
        return "empty.csv", c.choice([b"", b"\xef\xbb\xbf", b"\xc2\xa0\n", b"\x01\n", b"\n\n", b"\x00\x00"])
    sep = c.choice(SEPARATORS)
    plan = _column_plan(c)
    newline = c.choice(NEWLINES)
    mixed_newlines = c.chance(0.1)
    lines: list[str] = [c.choice(BLANKS) for _ in range(c.integer(0, 2) if c.chance(0.1) else 0)]
    header = sep.join(_quote(c, name, sep) for name, _ in plan)
    if c.chance(0.05):
        header += sep
    lines.append(header)
    for _ in range(c.integer(0, max_rows)):
        roll = c.integer(0, 99)
        if roll < 4:
            lines.append(c.choice(BLANKS))
            continue
        fields = [_quote(c, _value(c, kind, sep), sep) for _, kind in plan]
        if roll < 6 and fields:
            fields.pop(c.integer(0, len(fields) - 1))
        elif roll < 8:
            fields.append(_value(c, "junk", sep))
        elif roll < 11:
            fields.append("")  # a trailing separator
        elif roll < 12 and fields:
            fields[c.integer(0, len(fields) - 1)] = "x" * huge_field
        elif roll < 14 and fields:
            i = c.integer(0, len(fields) - 1)
            fields[i] = fields[i][:1] + c.choice(["\x00", "\x1a", "\u2028", "\x0b", "\x85", "\x1c"]) + fields[i][1:]
        lines.append(sep.join(fields))
    if mixed_newlines:
        text = "".join(ln + c.choice(NEWLINES) for ln in lines)
    else:
        text = newline.join(lines) + (newline if c.chance(0.9) else "")
    encoding = c.choice(ENCODINGS)
    data = text.encode(encoding, errors="replace")
    name = c.choice(["m.csv", "m.tsv", "m.txt"])
    roll = c.integer(0, 99)
    if roll < 8:
        data, name = gzip.compress(data, mtime=0), name + ".gz"
    elif roll < 9:
        data, name = gzip.compress(data, mtime=0)[: max(1, len(data) // 3)], name + ".gz"  # cut short
    elif roll < 11:
        data, name = bz2.compress(data), name + ".bz2"
    elif roll < 12:
        name += ".gz"  # plain text with a compressed name
    return name, data


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def expected_rows(name: str, data: bytes) -> list[int] | None:
    """The line numbers that must each be one row, or None if the file cannot be UTF-8/UTF-16 text.

    Independent of covgap: decompress by name, decode (UTF-8 BOM, UTF-16 BOM, else
    UTF-8), split on ``\\r\\n``, ``\\r``, ``\\n``; the header is the first line that is not
    blank (blank: nothing but whitespace); the rows are the later non-blank lines.
    """
    try:
        if name.endswith(".gz"):
            data = gzip.decompress(data)
        elif name.endswith(".bz2"):
            data = bz2.decompress(data)
    except (OSError, EOFError, ValueError):
        return None
    if data.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return None
    lines = _LINE_BREAK.split(text)
    numbers = [i + 1 for i, ln in enumerate(lines) if ln.strip()]
    return numbers[1:]


NOW_S = 1_790_000_000  # 2026-09-21, the clock of the fuzz runs


def _in_box(lon, lat):
    import numpy as np

    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    return (lon >= 108.6) & (lon <= 109.1) & (lat >= 14.8) & (lat <= 15.3)


def read_and_check(path, data: bytes, *, chunk_rows: int = 250_000) -> tuple[str, int]:
    """Read one generated file with covgap's reader: ``(outcome, rows unaccounted)``.

    ``outcome`` is ``"accepted"`` or ``"refused"`` (an InputError naming the file);
    rows unaccounted counts the non-blank data lines that did not come out exactly
    once (as a used or a rejected row) plus the rows that came out of no such line.
    Anything the reader raises other than :class:`~covgap.errors.InputError` (a
    crash) propagates; so does an AssertionError on a malformed result.
    """
    from collections import Counter

    import pandas as pd

    from covgap import measurements as meas
    from covgap.errors import InputError

    ctx = meas.ReadContext(in_study_area=_in_box, now_s=NOW_S)
    expected = expected_rows(path.name, data)
    rows: list[int] = []
    chunks = []
    try:
        fmt = meas.detect_format(path, ctx.mapping)
        for used, rejected in meas.read_measurement_chunks(path, ctx, chunk_rows=chunk_rows, fmt=fmt):
            assert set(rejected["reason"]) <= set(meas.REJECT_REASONS), set(rejected["reason"])
            rows += used["source_row"].tolist() + rejected["source_row"].tolist()
            chunks.append((used, rejected))
    except InputError as err:
        assert str(err).startswith(f"{path}: "), str(err)
        return "refused", 0
    # The compiled parser of large files (covgap.fastparse) must give the same rows, block by block.
    again = meas.read_measurement_chunks(path, ctx, chunk_rows=chunk_rows, fmt=fmt, compiled=True)
    for (used, rejected), (used_c, rejected_c) in itertools.zip_longest(chunks, again):
        pd.testing.assert_frame_equal(used_c, used)
        pd.testing.assert_frame_equal(rejected_c, rejected)
    if expected is None:  # not UTF-8/UTF-16 text, or a damaged archive, yet accepted
        return "accepted", max(len(rows), 1)
    got, want = Counter(rows), Counter(expected)
    return "accepted", sum(((got - want) + (want - got)).values())
