"""Timestamps of measurement files in the many shapes apps write them, as Unix seconds (UTC).

ISO 8601 with or without an offset, G-NetTrack's ``YYYY.MM.DD_HH.MM.SS``, day-first
spreadsheet dates, Unix seconds or milliseconds; a time without an offset is local time in
the configured zone. An unparseable value is NaN (the reader rejects that row), never an
exception, even when one file mixes shapes.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd


_GNETTRACK_TS = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})_(\d{2})\.(\d{2})\.(\d{2})$")
# An offset at the end: Z, +07, +0700, +07:00; only after a time of day (a date alone, 2026-03-14, has none).
_HAS_OFFSET = re.compile(r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")
_DAY_FIRST = re.compile(r"^\d{1,2}/\d{1,2}/\d{4}")


def parse_timestamps(raw: pd.Series, timezone: str) -> np.ndarray:
    """Unix seconds from timestamps of many shapes; NaN where absent or unparseable.

    Accepted: ISO 8601 with or without offset (``T`` or space; ``Z``, ``+07``,
    ``+0700``, ``+07:00``), G-NetTrack's ``YYYY.MM.DD_HH.MM.SS``, day-first
    ``DD/MM/YYYY HH:MM[:SS]`` (Vietnamese spreadsheets), Unix seconds or
    milliseconds. Times without an offset are local time in ``timezone``; one
    file may mix both forms. Never raises on a value: what cannot be read is NaN.
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
        has_offset = text.str.contains(_HAS_OFFSET) & text.str.contains(":", regex=False)
        day_first = text.str.contains(_DAY_FIRST)
        result = pd.Series(np.nan, index=text.index)
        aware = text[has_offset]
        if len(aware):
            result[aware.index] = _epoch_seconds(aware, "ISO8601", timezone, utc=True)
        naive = text[~has_offset & ~day_first]
        if len(naive):
            result[naive.index] = _epoch_seconds(naive, "ISO8601", timezone)
        dmy = text[~has_offset & day_first]
        if len(dmy):
            long_form = _epoch_seconds(dmy, "%d/%m/%Y %H:%M:%S", timezone)
            short = ~np.isfinite(long_form)
            if short.any():
                long_form[short] = _epoch_seconds(dmy[short], "%d/%m/%Y %H:%M", timezone)
            result[dmy.index] = long_form
        pos = np.flatnonzero(~is_num)
        vals[pos] = result.to_numpy(dtype=float)
    out[present] = vals
    return out


def _epoch_seconds(text: pd.Series, fmt: str, timezone: str, *, utc: bool = False) -> np.ndarray:
    """Unix seconds of each string (NaN where unreadable); naive times are local to ``timezone``.

    The whole column at once; if pandas cannot (mixed offsets or forms it parses into
    objects, out-of-range dates), value by value.
    """
    try:
        parsed = pd.to_datetime(text, format=fmt, utc=utc, errors="coerce")
        if pd.api.types.is_datetime64_any_dtype(parsed):
            if not utc:
                parsed = _localise(parsed, timezone)
            return _epoch(parsed)
    except (ValueError, TypeError, OverflowError, ArithmeticError):
        pass
    return np.array([_epoch_one(v, fmt, timezone, utc=utc) for v in text], dtype=float)


def _epoch_one(value: str, fmt: str, timezone: str, *, utc: bool) -> float:
    try:
        ts = pd.to_datetime(value, format=fmt, utc=utc, errors="coerce")
        if ts is pd.NaT or not isinstance(ts, pd.Timestamp):
            return np.nan
        if ts.tzinfo is None:
            ts = ts.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
            if ts is pd.NaT:
                return np.nan
        return float(ts.value // 1_000_000_000)
    except (ValueError, TypeError, OverflowError, ArithmeticError):
        return np.nan


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
