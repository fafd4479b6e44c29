"""The compiled parser of large files (covgap.fastparse) against covgap.measurements' reader.

The compiled parser takes a block only when every line is plain; then the used and rejected
rows (values, reasons, details, fields as written) must be exactly those of the reader it
stands in for, and a block it does not take must be read by that reader as before.
"""

from __future__ import annotations

import calendar
import functools

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import CRS

from covgap import blocks, dedupe, fastparse, ingest, measurements as meas
from covgap.errors import InputError
from tests.conftest import cell_centre_lonlat

SETTINGS = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

COLUMNS = ["timestamp", "lat", "lon", "operator", "technology", "rsrp"]


def _fmt(columns=COLUMNS, **kw) -> meas.MeasurementFormat:
    base = dict(name="generic", separator=",", lat="lat", lon="lon", signal="rsrp", technology="technology",
                operator="operator", timestamp="timestamp", columns=tuple(columns))
    base.update(kw)
    return meas.MeasurementFormat(**base)


def _ctx() -> meas.ReadContext:
    return meas.ReadContext(in_study_area=lambda lon, lat: (np.asarray(lat) > 14.95) & (np.asarray(lon) < 108.85),
                            now_s=1_790_000_000)


def _block(text: str, first_line: int = 2) -> blocks.Block:
    data = text.encode("utf-8")
    return blocks.Block(data, first_line, blocks.count_lines(data))


def test_the_compiled_parser_loads_here():
    """numba loads beside this checkout (its coverage/ folder hidden from it): without it every test
    below would compare the reader with itself."""
    assert fastparse.kernel() is not None
    assert fastparse.warm()


def test_times_of_one_date_after_another_are_read_whole():
    """Lines of the same date one after another (the compiled parser then reads only the time of day): another
    time, another offset, ``T`` for the space, ``Z``, another date, all worked out by hand."""
    times = ["2023-01-01 00:00:00+07:00", "2023-01-01 13:45:10+07:00", "2023-01-01T13:45:10+07:00",
             "2023-01-01 13:45:10+07:30", "2023-01-01 13:45:10-07:30", "2023-01-01 23:59:59Z", "2023-01-01 00:00:01Z",
             "2023-01-02 00:00:01Z", "2023-01-01 00:00:01Z", "2023-01-01 00:00:01+00:00"]
    block = _block("".join(f"{t},15.1,108.7,Viettel,LTE,-100\n" for t in times))
    got = fastparse.parse_block(block, _fmt())
    assert got is not None and got[0].time is not None
    utc = [(2022, 12, 31, 17, 0, 0), (2023, 1, 1, 6, 45, 10), (2023, 1, 1, 6, 45, 10), (2023, 1, 1, 6, 15, 10),
           (2023, 1, 1, 21, 15, 10), (2023, 1, 1, 23, 59, 59), (2023, 1, 1, 0, 0, 1), (2023, 1, 2, 0, 0, 1),
           (2023, 1, 1, 0, 0, 1), (2023, 1, 1, 0, 0, 1)]
    np.testing.assert_array_equal(got[0].time[0], [calendar.timegm(t) for t in utc])


def test_a_plain_block_gives_the_values_worked_out_by_hand():
    block = _block("2023-01-01 00:00:00+07:00,15.037435,108.65748,Viettel,LTE,-114\n"
                   "2024-02-29T23:59:59Z,-0.5,7,45204,no service,\n"
                   "1999-12-31 12:30:00-05:30,00015.250,108.000001,MobiFone,UMTS,-75.25\n"
                   "2023-01-01 00:00:00+07:00,15.037435,108.65748,Viettel,LTE,-114")  # the last line without its end
    got = fastparse.parse_block(block, _fmt())
    assert got is not None
    parsed, text = got
    np.testing.assert_array_equal(parsed.lat, [15.037435, -0.5, 15.25, 15.037435])
    np.testing.assert_array_equal(parsed.lon, [108.65748, 7.0, 108.000001, 108.65748])
    np.testing.assert_array_equal(parsed.signal[[0, 2, 3]], [-114.0, -75.25, -114.0])
    assert np.isnan(parsed.signal[1])
    # 2023-01-01 00:00 at +07:00 is 2022-12-31 17:00 UTC; 1999-12-31 12:30 at −05:30 is 18:00 UTC.
    want = [calendar.timegm((2022, 12, 31, 17, 0, 0)), calendar.timegm((2024, 2, 29, 23, 59, 59)),
            calendar.timegm((1999, 12, 31, 18, 0, 0)), calendar.timegm((2022, 12, 31, 17, 0, 0))]
    assert parsed.time is not None
    np.testing.assert_array_equal(parsed.time[0], want)
    assert parsed.technology is not None and parsed.operator is not None
    codes, spellings = parsed.technology
    assert list(spellings) == ["LTE", "no service", "UMTS"] and codes.tolist() == [0, 1, 2, 0]
    codes, spellings = parsed.operator
    assert list(spellings) == ["Viettel", "45204", "MobiFone"] and codes.tolist() == [0, 1, 2, 0]
    assert text["lon"].take(np.array([2, 1])).to_pylist() == ["108.000001", "7"]
    assert text["timestamp"].take(np.array([1])).to_pylist() == ["2024-02-29T23:59:59Z"]


@pytest.mark.parametrize("line", [
    "2023-01-01 00:00:00+07:00,15.1,108.7,Viettel,LTE,-114,",  # a trailing separator
    "2023-01-01 00:00:00+07:00,15.1,108.7,Viettel,LTE",  # a field short
    "2023-01-01 00:00:00+07:00,15.1,108.7,Viettel,LTE,-114\r",  # \r
    "2023-01-01 00:00:00+07:00,15.1,108.7,\"Viettel\",LTE,-114",  # a quote
    "2023-01-01 00:00:00+07:00,15.1,108.7,Viettél,LTE,-114",  # outside ASCII
    "2023-01-01 00:00:00+07:00,15.1,108.7,Viettel,LTE,-",  # a missing-value token
    "2023-01-01 00:00:00+07:00,1e1,108.7,Viettel,LTE,-114",  # another number shape
    "2023-01-01 00:00:00+07:00,.5,108.7,Viettel,LTE,-114",
    "2023-01-01 00:00:00+07:00,5.,108.7,Viettel,LTE,-114",
    "2023-01-01 00:00:00+07:00,+5,108.7,Viettel,LTE,-114",
    "2023-01-01 00:00:00+07:00, 15.1,108.7,Viettel,LTE,-114",
    "2023-01-01 00:00:00+07:00,15.1234567890123456,108.7,Viettel,LTE,-114",  # 18 digits: not exact as an integer
    "2023-02-29 00:00:00+07:00,15.1,108.7,Viettel,LTE,-114",  # no such day
    "2023-01-01 24:00:00+07:00,15.1,108.7,Viettel,LTE,-114",  # the date of the line before: only the time is read
    "2023-01-01 0a:00:00+07:00,15.1,108.7,Viettel,LTE,-114",
    "2023-01-01x00:00:00+07:00,15.1,108.7,Viettel,LTE,-114",
    "2023-01-01 00:60:00+07:00,15.1,108.7,Viettel,LTE,-114",
    "2023-01-01 00:00:00+07:60,15.1,108.7,Viettel,LTE,-114",
    "2023-01-01 00:00:00.5+07:00,15.1,108.7,Viettel,LTE,-114",  # a fraction of a second
    "2023-01-01 00:00:00,15.1,108.7,Viettel,LTE,-114",  # local time: the time zone's rules
    "2023-01-01 00:00:00+0700,15.1,108.7,Viettel,LTE,-114",
    "1850-01-01 00:00:00+07:00,15.1,108.7,Viettel,LTE,-114",
    "1767225600,15.1,108.7,Viettel,LTE,-114",
    "2023-01-01 00:00:00+07:00,15.1,108.7,Viettel Mobile Telecom Corp,LTE,-114",  # more than 16 bytes
    "",  # a blank line
])
def test_a_block_with_one_line_that_is_not_plain_goes_to_the_reader(line):
    good = "2023-01-01 00:00:00+07:00,15.1,108.7,Viettel,LTE,-114"
    block = _block("\n".join([good, line, good]) + "\n")
    assert fastparse.parse_block(block, _fmt()) is None
    assert fastparse.parse_block(_block("\n".join([good, good]) + "\n"), _fmt()) is not None
    ctx = _ctx()
    want = meas.read_block(block, _fmt(), ctx, source_file="f.csv")
    got = meas.read_block(block, _fmt(), ctx, source_file="f.csv", compiled=True)
    pd.testing.assert_frame_equal(got[0], want[0])
    pd.testing.assert_frame_equal(got[1], want[1])


def test_formats_the_parser_does_not_take():
    assert fastparse.roles_of(_fmt(separator="\t")) is None
    assert fastparse.roles_of(_fmt(decimal_comma=True, separator=";")) is None
    assert fastparse.roles_of(_fmt(columns=["lat", "lon", "rsrp"], technology=None, operator=None, timestamp=None)) is not None
    assert fastparse.roles_of(_fmt(lon="lat")) is None  # one column read as two things


def _digits(max_int: int, max_frac: int):
    return st.tuples(st.booleans(), st.integers(0, 10 ** max_int - 1), st.integers(0, max_frac),
                     st.integers(0, 2 ** 60)).map(
        lambda t: ("-" if t[0] else "") + str(t[1]) + ("." + str(t[3]).zfill(t[2])[-t[2]:] if t[2] else ""))


PLAIN_NUMBER = st.one_of(_digits(3, 12), _digits(16, 3), st.sampled_from(["", "-0", "0", "0.000", "007.50", "-140", "-44"]))
PLAIN_TIME = st.tuples(
    st.datetimes(min_value=pd.Timestamp("1900-01-01").to_pydatetime(), max_value=pd.Timestamp("2199-12-31").to_pydatetime()),
    st.sampled_from(["T", " "]), st.sampled_from(["Z", "+07:00", "-05:30", "+14:00", "+00:00", "-00:00"])).map(
    lambda t: t[0].strftime(f"%Y-%m-%d{t[1]}%H:%M:%S") + t[2])
ODD = st.sampled_from(["-", "NaN", " 15", "1e3", "+5", "15.", "", "2026-03-14 08:00", "1767225600", "x"])
PLAIN_ROW = st.fixed_dictionaries({
    "lat": st.one_of(st.floats(14.9, 15.2).map(lambda v: f"{v:.6f}"), PLAIN_NUMBER),
    "lon": st.one_of(st.floats(108.7, 108.9).map(lambda v: f"{v:.6f}"), PLAIN_NUMBER),
    "rsrp": st.one_of(st.integers(-150, -30).map(str), PLAIN_NUMBER),
    "technology": st.sampled_from(["LTE", "4G", "3G", "UMTS", "GSM", "NR", "no service", "", "-", "6G", "lte", "NA"]),
    "operator": st.sampled_from(["Viettel", "45204", "vina", "MobiFone", "", "Acme", "04", "N/A"]),
    "timestamp": st.one_of(PLAIN_TIME, st.just("2099-01-01T00:00:00Z")),
})


@SETTINGS
@given(st.lists(PLAIN_ROW, min_size=1, max_size=30), st.lists(st.tuples(st.integers(0, 29), st.sampled_from(COLUMNS), ODD),
                                                              max_size=2),
       st.sampled_from([",", ";"]), st.booleans(), st.booleans())
def test_the_compiled_parser_gives_the_rows_of_the_reader(rows, odd, sep, extra_column, last_end):
    """Whatever the values, the rows used and rejected (values, reasons, details, fields) are the reader's."""
    columns = COLUMNS + (["note"] if extra_column else [])
    for i, column, value in odd:
        if i < len(rows):
            rows[i] = dict(rows[i], **{column: value})
    text = "\n".join(sep.join([r.get(c, "x y") for c in columns]) for r in rows) + ("\n" if last_end else "")
    block = _block(text, first_line=7)
    fmt = _fmt(columns, separator=sep)
    ctx = _ctx()
    want = meas.read_block(block, fmt, ctx, source_file="f.csv")
    got = meas.read_block(block, fmt, ctx, source_file="f.csv", compiled=True)
    pd.testing.assert_frame_equal(got[0], want[0])
    pd.testing.assert_frame_equal(got[1], want[1])
    if not odd:  # plain lines: the parser took them (else this test would compare the reader with itself)
        long = any(len(r[c].lstrip("-").replace(".", "")) > 15 for r in rows for c in ("lat", "lon", "rsrp"))
        assert (fastparse.parse_block(block, fmt) is None) == long


@functools.lru_cache(maxsize=1)
def _sample_layers():
    """The sample district's layers and configuration, loaded once for the property tests below."""
    from pathlib import Path

    from covgap import config as config_mod, pipeline

    config = config_mod.load_config(Path(__file__).resolve().parents[1] / "data" / "sample" / "covgap.toml")
    return pipeline.load_layers(config), config


@functools.lru_cache(maxsize=1)
def _sample_points() -> list[tuple[str, str]]:
    """Points of the sample district's box as the CSV writes them (lat, lon): most inside the district."""
    import shapely
    from pyproj import Transformer

    layers, _ = _sample_layers()
    minx, miny, maxx, maxy = layers.study_area.bounds
    rng = np.random.default_rng(17)
    x, y = rng.uniform(minx, maxx, 400), rng.uniform(miny, maxy, 400)
    inside = shapely.contains_xy(layers.study_area, x, y)
    x, y = np.r_[x[inside][:150], x[~inside][:30]], np.r_[y[inside][:150], y[~inside][:30]]
    lon, lat = Transformer.from_crs(layers.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return [(f"{a:.6f}", f"{o:.6f}") for a, o in zip(lat, lon)]


DISTRICT_ROW = st.fixed_dictionaries({
    "point": st.integers(0, 179),
    "rsrp": st.one_of(st.integers(-150, -30).map(str), st.just("")),
    "technology": st.sampled_from(["LTE", "4G", "UMTS", "GSM", "NR", "no service", "6G"]),
    "operator": st.sampled_from(["Viettel", "45204", "vina", "MobiFone", "Acme"]),
    "timestamp": st.one_of(st.integers(1_600_000_000, 1_780_000_000).map(
        lambda t: pd.Timestamp(t, unit="s").strftime("%Y-%m-%d %H:%M:%S+07:00")), PLAIN_TIME),
})


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(DISTRICT_ROW, min_size=1, max_size=60), st.integers(0, 5))
def test_a_block_counted_from_its_columns_gives_the_result_of_its_rows(rows, repeats):
    """process_block of a plain block, counted from its columns by the compiled functions (no frame of the used
    rows), against the reader's rows counted by pandas and numpy: statistics, keys, lines and rejected rows."""
    layers, config = _sample_layers()
    points = _sample_points()
    rows = [dict(r, lat=points[r["point"]][0], lon=points[r["point"]][1]) for r in rows]
    rows = rows + rows[:repeats]  # some rows twice: the same keys
    text = "\n".join(",".join(r[c] for c in COLUMNS) for r in rows) + "\n"
    block = _block(text, first_line=5)
    fmt = _fmt()
    ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
    assert fastparse.compiled() is not None
    got = ingest.process_block(block, fmt, ctx, layers.grid, layers.crs, "f.csv", compiled=True)
    want = ingest.process_block(block, fmt, ctx, layers.grid, layers.crs, "f.csv", compiled=False)
    assert (got.n_read, got.n_used) == (want.n_read, want.n_used)
    np.testing.assert_array_equal(got.keys, want.keys)
    np.testing.assert_array_equal(got.lines, want.lines)
    pd.testing.assert_frame_equal(got.rejected, want.rejected)
    for name, value in vars(want.partial).items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(got.partial, name), value, err_msg=name)
        else:
            assert list(getattr(got.partial, name)) == list(value), name
    assert fastparse.parse_block(block, fmt) is not None and got.line_index is not None  # the compiled parser took it


def _write_large(path, n: int) -> tuple[int, int]:
    """A file of plain lines in the hand project's cells, with rows each check rejects; (rows, bytes)."""
    lines = ["timestamp,lat,lon,operator,technology,rsrp_dbm"]
    rng = np.random.default_rng(5)
    for k in range(n):
        row, col = int(rng.integers(0, 3)), int(rng.integers(0, 6))
        lon, lat = cell_centre_lonlat(row, col)
        lon += float(rng.uniform(-0.0004, 0.0004))
        lat += float(rng.uniform(-0.0004, 0.0004))
        tech = ["LTE", "UMTS", "no service", "GSM"][k % 4]
        dbm = "" if tech == "no service" else str(int(rng.integers(-125, -60)))
        ts = f"2026-03-0{1 + k % 5} 1{k % 10}:{k % 60:02d}:{(k * 7) % 60:02d}+07:00"
        lines.append(f"{ts},{lat:.6f},{lon:.6f},{['Viettel', 'MobiFone', '45202'][k % 3]},{tech},{dbm}")
    for k in range(10, n, 53):  # duplicate_row: rows repeated further on, in many blocks
        lines[k] = lines[k - 7]
    lines[-1] = lines[1]  # the last line too
    lines[20] = "2026-03-03 10:01:00+07:00,21.028500,105.854200,Viettel,LTE,-90"  # outside the study area
    lines[30] = lines[30].rsplit(",", 1)[0] + ",-30" if ",LTE," in lines[30] else lines[30]
    lines[40] = "2099-01-01T00:00:00Z" + lines[40][lines[40].index(","):]  # future
    data = ("\n".join(lines) + "\n").encode("ascii")
    path.write_bytes(data)
    return n, len(data)


def _planted_duplicates(n: int) -> int:
    return len(range(10, n, 53)) + 1


@pytest.mark.parametrize("workers", [1, 2])
def test_a_large_file_read_by_the_compiled_parser_gives_the_same_store(hand_project, tmp_path, monkeypatch, workers):
    """A file over the size limit, on the worker processes or one: statistics, rejected rows and keys byte for byte."""
    from covgap import config as config_mod, pipeline

    config = config_mod.load_config(hand_project)
    layers = pipeline.load_layers(config)
    src = tmp_path / "large.csv"
    _, size = _write_large(src, 3000)
    taken = []
    real = fastparse.parse_block
    by_index = []
    real_by_index = ingest._lines_by_index

    def spy(block, fmt):
        got = real(block, fmt)
        taken.append(got is not None)
        return got

    def spy_by_index(*args):
        got = real_by_index(*args)
        by_index.append(len(got))
        return got

    monkeypatch.setattr(ingest, "_lines_by_index", spy_by_index)

    results = {}
    for label, limit in (("reader", size + 1), ("compiled", size)):
        monkeypatch.setattr(fastparse, "MIN_FILE_BYTES", limit)
        if label == "compiled":  # the duplicates searched by the reading processes, by their compiled sort
            monkeypatch.setattr(ingest, "DUPLICATES_IN_WORKERS_BYTES", 0)
            monkeypatch.setattr(dedupe, "COMPILED_SORT_MIN", 0)
        monkeypatch.setattr(fastparse, "parse_block", spy)
        ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
        folder = tmp_path / label
        with ingest.Batch(layers, ctx, folder=folder, block_bytes=16 << 10, workers=workers) as batch:
            batch.add(src, "3" * 64)
            (record,) = batch.finish(keys_folder=folder / "row_keys")
        results[label] = (record, {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()})
    (one, one_files), (many, many_files) = results["reader"], results["compiled"]
    assert (many.rows_read, many.rows_used, many.rejected_by_reason) == (one.rows_read, one.rows_used, one.rejected_by_reason)
    assert one.rows_read == 3000
    assert {k: one.rejected_by_reason.get(k) for k in ("outside_study_area", "future_timestamp")} == {
        "outside_study_area": 1, "future_timestamp": 1}
    # The copies of used rows (a copy of a row rejected for its level is rejected for its level too).
    dups = one.rejected_by_reason["duplicate_row"]
    assert 40 <= dups <= _planted_duplicates(3000)
    assert many_files == one_files
    assert sum(name.startswith("row_keys/") for name in one_files) == dedupe.PARTITIONS
    if workers == 1:  # in this process: the blocks went through the compiled parser, every one taken, and
        assert taken and all(taken)  # the duplicate rows were read again by its line index
        assert sum(by_index) == dups


@SETTINGS
@given(st.lists(st.tuples(st.integers(-1, 40), st.integers(0, 2), st.integers(0, 4),
                          st.one_of(st.just(float("nan")), st.integers(1_700_000_000, 1_700_000_100).map(float)),
                          st.one_of(st.just(float("nan")), st.floats(-200, 0), st.sampled_from([-90.5, -91.5, -44.5, 1e300]))),
                min_size=0, max_size=200))
def test_compiled_group_statistics_equal_pandas_hashing(rows):
    """Groups and (group, bin) pairs in the same order, the same counts, times and bins as pandas.factorize's."""
    from covgap import cellstats
    from covgap.grid import Grid

    frame = pd.DataFrame(rows, columns=["cell", "op", "tech", "time_s", "signal_dbm"])
    frame["operator"] = pd.Categorical.from_codes(frame.pop("op"), categories=["Viettel", "MobiFone", "Vinaphone"])
    frame["technology"] = pd.Categorical.from_codes(frame.pop("tech"), categories=list(meas.TECHNOLOGIES))
    grid = Grid(x0=0.0, y0=0.0, size=100.0, nrows=10, ncols=10, crs=CRS.from_epsg(32649))
    want = cellstats.partial_stats(frame, grid)
    got = cellstats.partial_stats(frame, grid, group_stats=fastparse.compiled().group_stats)
    for name in ("cell", "operator", "technology", "n", "tmin", "tmax", "hist_group", "hist_bin", "hist_count"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        assert getattr(got, name).dtype == getattr(want, name).dtype, name
    assert (got.operators, got.technologies) == (want.operators, want.technologies)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from([108.1234567, 108.12345674, -0.0, 0.0, float("nan"), 2000.0, -5e3]),
                          st.floats(-90, 90), st.one_of(st.just(float("nan")), st.floats(-140, -44), st.just(-0.0)),
                          st.one_of(st.just(float("nan")), st.integers(0, 2 ** 33).map(float)),
                          st.integers(0, 2), st.integers(0, 4)), min_size=0, max_size=100))
def test_compiled_row_keys_equal_the_numpy_ones(rows):
    from covgap import dedupe

    frame = pd.DataFrame(rows, columns=["lon", "lat", "signal_dbm", "time_s", "op", "tech"])
    frame["operator"] = pd.Categorical.from_codes(frame.pop("op"), categories=["Viettel", "MobiFone", "Vinaphone"])
    frame["technology"] = pd.Categorical.from_codes(frame.pop("tech"), categories=list(meas.TECHNOLOGIES))
    want = dedupe.measurement_keys(frame)
    got = dedupe.measurement_keys(frame, row_keys=fastparse.compiled().row_keys)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype == np.uint64


def test_after_make_install_warms_it_a_large_file_compiles_nothing(tmp_path):
    """``make install`` runs fastparse.warm(); then a reading process loads every compiled function from
    numba's cache for the types a real block gives (pandas may hand out read-only arrays: they are made
    writable first), so no run pays a compilation (about 2.5 s a process)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    env.pop("COVGAP_NO_FASTPARSE", None)
    subprocess.run([sys.executable, "-c", "from covgap import fastparse; assert fastparse.warm()"], env=env, cwd=root,
                   check=True, timeout=300)
    script = """
import tempfile
from pathlib import Path
import numpy as np
from covgap import blocks, cellstats, config, dedupe, fastparse, ingest, measurements as meas, pipeline
cfg = config.load_config("data/sample/covgap.toml")
layers = pipeline.load_layers(cfg)
ctx = ingest.read_context(layers, cfg)
lines = [f"2026-03-0{1 + k % 5} 10:{k % 60:02d}:00+07:00,{15.09 + k % 3000 * 1e-5:.6f},{108.70 + k % 3000 * 2e-5:.6f},"
         f"{['Viettel', 'MobiFone'][k % 2]},{['LTE', 'UMTS', 'no service'][k % 3]},{'' if k % 3 == 2 else -70 - k % 50}"
         for k in range(9000)]
data = ("\\n".join(lines) + "\\n").encode()
fmt = meas.MeasurementFormat(name="generic", separator=",", lat="lat", lon="lon", signal="rsrp", technology="tech",
                             operator="op", timestamp="time", columns=("time", "lat", "lon", "op", "tech", "rsrp"))
block = blocks.Block(data, 2, 9000)
assert fastparse.parse_block(block, fmt) is not None
res = ingest.process_block(block, fmt, ctx, layers.grid, layers.crs, "f.csv", compiled=True)
assert res.n_used > 4096, res.n_used
# What a reading process does with a block's results: its statistics added, its keys spooled, later sorted.
cellstats.CellAccumulator(layers.grid).add_partial(res.partial)
dedupe.KeySpool(Path(tempfile.mkdtemp())).add(res.keys, dedupe.make_seq(0, res.lines))
assert len(dedupe.sort_keys(res.keys)) == res.n_used
module = fastparse.compiled()
names = ("parse", "group_stats", "row_keys", "locate", "accumulate", "rehash", "spool_pairs", "sort_keys")
misses = {name: sum(getattr(module, name).stats.cache_misses.values()) for name in names}
hits = {name: sum(getattr(module, name).stats.cache_hits.values()) for name in names}
assert not any(misses.values()) and all(hits.values()), (misses, hits)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


@SETTINGS
@given(st.lists(st.integers(0, 2**64 - 1), max_size=300), st.integers(0, 64), st.integers(1, 5))
def test_the_compiled_sort_of_keys_equals_numpy_s(keys, same_high_bits, repeat):
    """Whatever the keys (hashes, few distinct values, equal high bits, repeats), the same order as np.sort."""
    a = np.array(keys, dtype=np.uint64)
    if same_high_bits < 64:  # the keys of one partition share their top bits
        a = (a & np.uint64((1 << (64 - same_high_bits)) - 1)) if same_high_bits else a
    a = np.tile(a, repeat)
    np.testing.assert_array_equal(fastparse.compiled().sort_keys(a), np.sort(a))


@SETTINGS
@given(st.lists(st.lists(st.tuples(st.integers(-1, 30), st.integers(0, 2), st.integers(0, 4),
                                   st.one_of(st.just(float("nan")), st.integers(1_700_000_000, 1_700_000_100).map(float)),
                                   st.one_of(st.just(float("nan")), st.floats(-150, -30))),
                         min_size=0, max_size=60), min_size=1, max_size=6),
       st.lists(st.booleans(), min_size=6, max_size=6))
def test_the_compiled_accumulator_gives_the_statistics_of_numpy(blocks_rows, compiled_at):
    """Blocks added to a cell accumulator through the compiled hash table, through the sorted index, or some
    through each (in any order): the same statistics, groups in the same places, as numpy's alone."""
    from unittest import mock

    from covgap import cellstats
    from covgap.grid import Grid

    grid = Grid(x0=0.0, y0=0.0, size=100.0, nrows=5, ncols=6, crs=CRS.from_epsg(32649))
    operators = ["Viettel", "MobiFone", "Vinaphone"]
    parts = []
    for rows in blocks_rows:
        frame = pd.DataFrame(rows, columns=["cell", "op", "tech", "time_s", "signal_dbm"])
        frame["x"] = (frame["cell"] % 6) * 100.0 + 50.0
        frame["y"] = -(frame.pop("cell") // 6) * 100.0 - 50.0 + np.where(frame.index % 7 == 0, 1e6, 0)  # some off the grid
        frame["operator"] = pd.Categorical.from_codes(frame.pop("op"), categories=operators[::-1] if len(parts) % 2 else operators)
        frame["technology"] = pd.Categorical.from_codes(frame.pop("tech"), categories=list(meas.TECHNOLOGIES))
        parts.append(cellstats.partial_stats(frame, grid))
    module = fastparse.compiled()
    plain, mixed = cellstats.CellAccumulator(grid), cellstats.CellAccumulator(grid)
    for part, compiled in zip(parts, compiled_at):
        with mock.patch.object(fastparse, "_module", None):
            plain.add_partial(part)
        with mock.patch.object(fastparse, "_module", module if compiled else None):
            mixed.add_partial(part)
    assert mixed.size == plain.size
    np.testing.assert_array_equal(mixed._keys[:mixed.size], plain._keys[:plain.size])
    pd.testing.assert_frame_equal(mixed.to_stats(), plain.to_stats())


def test_spooled_pairs_are_those_of_numpy(tmp_path, monkeypatch):
    """KeySpool.add by the compiled partitioning: the same pairs, in the same order, in each partition."""
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 2**64, 20_000, dtype=np.uint64)
    keys[:300] = keys[300:600]  # equal keys keep their order
    seqs = rng.permutation(20_000).astype(np.uint64)
    spools = []
    for loaded in (True, False):
        monkeypatch.setattr(fastparse, "_module", fastparse.compiled() if loaded else None)
        spool = dedupe.KeySpool(tmp_path, "c" if loaded else "n")
        spool.add(keys[:15_000], seqs[:15_000])
        spool.add(keys[15_000:], seqs[15_000:])
        spools.append(spool)
    for p in range(dedupe.PARTITIONS):
        compiled, numpy_made = (np.concatenate(s._buffers[p]) for s in spools)
        assert compiled.dtype == dedupe.SPOOL_DTYPE
        np.testing.assert_array_equal(compiled, numpy_made)


def test_the_compiled_sort_of_a_partition_of_hashes():
    """A partition as dedupe sorts it: 200,000 hashes of one top, some repeated, and a crowded bucket."""
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2**58, 200_000, dtype=np.uint64) | np.uint64(37 << 58)
    a[:5000] = a[5000:10000]  # repeats
    a[10000:12000] = a[12000]  # a crowded bucket: 2,001 equal keys
    got = fastparse.compiled().sort_keys(a)
    np.testing.assert_array_equal(got, np.sort(a))
    assert got.dtype == np.uint64 and len(got) == len(a)


@pytest.mark.parametrize("where", ["sample", "java"])
def test_the_compiled_locate_gives_the_numpy_answers_bit_for_bit(monkeypatch, where):
    """Projection, cell test and boundary test in one compiled pass: the same x, y (to the bit) and inside/outside
    answers as the numpy code, for points on and near cell edges, on the boundary, outside the fast projection's
    box, and not coordinates at all."""
    from pathlib import Path
    from types import SimpleNamespace

    import shapely
    from pyproj import CRS, Transformer

    from covgap import config as config_mod, pipeline
    from covgap.grid import make_grid

    if where == "sample":
        layers = pipeline.load_layers(config_mod.load_config(Path(__file__).resolve().parents[1] / "data" / "sample"
                                                             / "covgap.toml"))
    else:  # south of the equator, UTM 49S
        crs = CRS("EPSG:32749")
        cx, cy = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(111.2, -7.4)
        area = shapely.Polygon([(cx - 9000, cy - 7000), (cx + 11000, cy - 6000), (cx + 8000, cy + 9000),
                                (cx - 10000, cy + 5000)])
        layers = SimpleNamespace(crs=crs, grid=make_grid(area.bounds, size=100.0, crs=crs), study_area=area)
    locate = ingest.StudyAreaLocator(layers)
    assert locate.fast is not None
    g = layers.grid
    rng = np.random.default_rng(11)
    n = 50_000
    offsets = rng.choice([0.0, 1e-7, -1e-7, 5e-4, -5e-4, 2e-3, -2e-3, 30.0], n)
    x = np.r_[g.x0 + rng.integers(-3, g.ncols + 3, n) * g.size + offsets,
              rng.uniform(g.x0 - 5000, g.x0 + g.ncols * g.size + 5000, n)]
    y = np.r_[g.y0 - rng.integers(-3, g.nrows + 3, n) * g.size + offsets,
              rng.uniform(g.y0 - g.nrows * g.size - 5000, g.y0 + 5000, n)]
    on = shapely.line_interpolate_point(layers.study_area.boundary, rng.uniform(0, layers.study_area.boundary.length, 3000))
    x, y = np.r_[x, shapely.get_x(on)], np.r_[y, shapely.get_y(on)]
    lon, lat = (np.asarray(a) for a in Transformer.from_crs(layers.crs, "EPSG:4326", always_xy=True).transform(x, y))
    lon = np.r_[lon, [np.nan, 200.0, 108.8, np.inf, -181.0, 0.0]]
    lat = np.r_[lat, [15.0, 15.0, -95.0, 15.0, np.nan, 0.0]]
    assert fastparse.compiled() is not None
    got = locate(lon, lat)
    monkeypatch.setattr(fastparse, "_module", None)  # the numpy code
    want = locate(lon, lat)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    inside = want[0]
    assert 0 < inside.sum() < len(inside)


def test_lines_read_again_by_a_line_index_are_those_of_the_block(tmp_path):
    """A block's lines found through every LINE_INDEX_STEP-th line start: the text lines_at gives, the
    last line of a file without its end included; a file cut short since is refused, not misread."""
    rng = np.random.default_rng(3)
    lines = [",".join(str(v) for v in rng.integers(0, 10 ** rng.integers(1, 12), 4)) for _ in range(1000)]
    data = ("\n".join(lines)).encode()  # no end on the last line
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b,c,d\n" + data)
    block = blocks.Block(data, 2, 1000, offset=8)
    starts = np.r_[0, np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1, len(data)]
    index = starts[:-1:ingest.LINE_INDEX_STEP]
    wanted = np.unique(np.r_[rng.integers(2, 1002, 200), 2, 65, 66, 1001])
    with open(path, "rb") as fh:
        got = ingest._lines_by_index(fh, path, block.ref(), len(data), index, wanted)
    assert got == meas.lines_at(block, wanted)
    assert got[-1] == lines[-1] and got[0] == lines[0] + "\n"
    path.write_bytes(b"a,b,c,d\n" + data[:-500])
    with open(path, "rb") as fh, pytest.raises(InputError, match="changed while it was being read"):
        ingest._lines_by_index(fh, path, block.ref(), len(data), index, wanted)
