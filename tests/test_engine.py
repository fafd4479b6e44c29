"""The reading engine: its fast paths against the reference rules, on generated input (hypothesis).

Each fast path (pyarrow's CSV parser, pyarrow number and time casts, the grid-based
study-area test, worker processes, keys spooled to disk) must give exactly what the
slower reference gives: the line-by-line reader, pandas and the text rules, the exact
point-in-polygon test, one process, keys in memory.
"""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from covgap import blocks, cellstats, dedupe, ingest, measurements as meas
from covgap.errors import InputError
from covgap.timestamps import parse_timestamps

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: Values a column may hold: plain numbers, and everything the text rules must handle.
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
    st.integers(-200, 200).map(str),
    st.decimals(min_value=-180, max_value=180, places=6, allow_nan=False).map(str),
    st.sampled_from(["", "-", "--", "NaN", "nan", "NULL", "None", "N/A", " -95", "-95 ", "1,5", "+5", "1e3", ".5", "0x1A",
                     "١٢", "inf", "-inf", "Infinity", "1_000", "\u00a0-90", "-0", "00015.2", "1e400", "-1e-400"]),
    st.text(alphabet="0123456789.-+eE, ", max_size=8),
)


def _fmt(columns, **kw) -> meas.MeasurementFormat:
    base = dict(name="generic", separator=",", lat="lat", lon="lon", signal="rsrp", technology="technology",
                operator="operator", timestamp="timestamp", columns=tuple(columns))
    base.update(kw)
    return meas.MeasurementFormat(**base)


@SETTINGS
@given(st.lists(NUMBERS, min_size=1, max_size=30), st.booleans())
def test_numbers_by_pyarrow_equal_the_text_rules(values, decimal_comma):
    got = meas._column_to_float(pa.array(values, type=pa.string()), decimal_comma)
    want = meas._to_float(meas._clean(pd.Series(values, dtype=object)), decimal_comma)
    np.testing.assert_array_equal(np.nan_to_num(got, nan=-1e308, posinf=1e308, neginf=-1e307),
                                  np.nan_to_num(want, nan=-1e308, posinf=1e308, neginf=-1e307))


TIMES = st.one_of(
    st.integers(0, 2_000_000_000_000).map(str),
    st.datetimes(min_value=pd.Timestamp("1990-01-01").to_pydatetime(), max_value=pd.Timestamp("2040-01-01").to_pydatetime()).map(
        lambda d: d.isoformat(sep=" ")),
    st.datetimes(min_value=pd.Timestamp("1990-01-01").to_pydatetime(), max_value=pd.Timestamp("2040-01-01").to_pydatetime()).map(
        lambda d: d.isoformat() + "Z"),
    st.datetimes(min_value=pd.Timestamp("1990-01-01").to_pydatetime(), max_value=pd.Timestamp("2040-01-01").to_pydatetime()).map(
        lambda d: d.strftime("%Y-%m-%dT%H:%M:%S+07:00")),
    st.sampled_from(["2026-03-14", "2026-03-14 08:00", "2026-03-14T08", "2026.03.14_08.00.00", "14/03/2026 08:00:00",
                     "14/03/2026 08:00", "2026-02-30 10:00:00", "", "-", "yesterday", "2026-03-14T08:00:00+0700",
                     "2026-03-14T08:00:00.123456789", "1767225600.5", "2026-03-08 02:30:00", "1e9"]),
)


@SETTINGS
@given(st.lists(TIMES, min_size=1, max_size=20), st.sampled_from(["Asia/Ho_Chi_Minh", "UTC", "America/New_York"]))
def test_times_by_pyarrow_equal_the_reference_parser(values, tz):
    got, present = meas.parse_time_column(pa.array(values, type=pa.string()), tz)
    cleaned = meas._clean(pd.Series(values, dtype=object))
    want = parse_timestamps(cleaned, tz)
    np.testing.assert_array_equal(present, cleaned.notna().to_numpy())
    np.testing.assert_array_equal(np.nan_to_num(got, nan=-1.0), np.nan_to_num(want, nan=-1.0))


ROW = st.fixed_dictionaries({
    "lat": st.one_of(st.floats(14.9, 15.2).map(lambda v: f"{v:.6f}"), NUMBERS),
    "lon": st.one_of(st.floats(108.7, 108.9).map(lambda v: f"{v:.6f}"), NUMBERS),
    "rsrp": st.one_of(st.integers(-150, -30).map(str), NUMBERS),
    "technology": st.sampled_from(["LTE", "4G", "3G", "UMTS", "GSM", "NR", "no service", "", "-", "6G", "lte"]),
    "operator": st.sampled_from(["Viettel", "45204", "vina", "MobiFone", "", "Acme"]),
    "timestamp": st.one_of(st.just("1767225600"), TIMES),
})


def _line(row: dict, columns: list[str], sep: str, mess: str) -> str:
    fields = [row.get(c, "x") for c in columns]
    if mess == "blank":
        return "   "
    if mess == "short":
        fields = fields[:-1]
    if mess == "quote":
        fields[0] = f'"{fields[0]}"'
    if mess == "open_quote":
        fields[1] = '"' + fields[1]
    if mess == "trailing":
        fields.append("")
    return sep.join(fields)


@SETTINGS
@given(st.lists(st.tuples(ROW, st.sampled_from(["", "", "", "", "blank", "short", "quote", "open_quote", "trailing"])),
                min_size=1, max_size=25),
       st.sampled_from([",", ";", "\t"]), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_pyarrow_blocks_equal_the_line_by_line_reader(rows, sep, newline, extra_column):
    """Whatever the lines, the fast path gives the rows, reasons and details of the reference reader."""
    columns = ["timestamp", "lat", "lon", "operator", "technology", "rsrp"] + (["note"] if extra_column else [])
    if sep != "," and any(any("," in str(v) for v in r.values()) for r, _ in rows):
        return  # a comma in a value of a semicolon or tab file would be a decimal comma: another format
    data = newline.join(_line(r, columns, sep, m) for r, m in rows) + newline
    block = blocks.Block(data.encode("utf-8"), 2, blocks.count_lines(data.encode("utf-8")))
    fmt = _fmt(columns, separator=sep)
    ctx = meas.ReadContext(in_study_area=lambda lon, lat: (np.asarray(lat) > 14.95) & (np.asarray(lon) < 108.85),
                           now_s=1_790_000_000)
    fast = meas.parse_block(block, fmt)
    slow = meas.parse_block(block, fmt, fast=False)
    np.testing.assert_array_equal(fast[1], slow[1])
    for c in slow[0]:
        assert fast[0][c].to_pylist() == slow[0][c].to_pylist(), c
    pd.testing.assert_frame_equal(fast[2], slow[2], check_dtype=False)
    used_f, rej_f = meas.normalise_rows(fast[0], fmt, ctx, source_file="f.csv", source_rows=fast[1])
    used_s, rej_s = meas.normalise_rows(slow[0], fmt, ctx, source_file="f.csv", source_rows=slow[1])
    pd.testing.assert_frame_equal(used_f, used_s)
    pd.testing.assert_frame_equal(rej_f, rej_s)
    # Every non-blank line is one row, used or rejected.
    assert len(used_f) + len(rej_f) + len(fast[2]) == sum(1 for _, m in rows if m != "blank")


@SETTINGS
@given(data=st.binary(min_size=0, max_size=300).map(lambda b: b.replace(b"\x00", b"")), block_bytes=st.integers(1, 64),
       max_lines=st.sampled_from([None, 1, 3]))
def test_blocks_keep_every_line_and_its_number(tmp_path_factory, data, block_bytes, max_lines):
    """Cut anywhere, blocks hold every byte after the header once, in order, with exact line numbers."""
    path = tmp_path_factory.mktemp("blocks") / "f.csv"
    path.write_bytes(b"lat,lon,rsrp\n" + data)
    fmt = _fmt(["lat", "lon", "rsrp"], technology=None, operator=None, timestamp=None)
    got = list(blocks.iter_blocks(path, fmt, block_bytes=block_bytes, max_lines=max_lines))
    assert b"".join(b.data for b in got) == data
    line = 2
    for b in got:
        assert b.first_line == line and b.n_lines == blocks.count_lines(b.data)
        assert path.read_bytes()[b.offset:b.offset + len(b.data)] == b.data
        line += b.n_lines
    text_lines = data.decode("latin-1").replace("\r\n", "\n").replace("\r", "\n")
    assert line - 2 == (text_lines.count("\n") + (0 if not text_lines or text_lines.endswith("\n") else 1))


def _exact_study_area_test(layers):
    """The reference: every point projected by pyproj and tested by shapely.contains_xy."""
    from pyproj import Transformer

    to_work = Transformer.from_crs("EPSG:4326", layers.crs, always_xy=True)

    def inside(lon, lat):
        lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        out = np.zeros(len(lon), dtype=bool)
        ok = (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
        x, y = to_work.transform(lon[ok], lat[ok])
        out[ok] = shapely.contains_xy(layers.study_area, np.asarray(x), np.asarray(y))
        return out

    return inside


@pytest.mark.parametrize("which", ["hand", "sample"])
def test_the_grid_study_area_test_equals_the_exact_one(hand_project, which):
    """Points near and on the study area's boundary (the hand-made squares, and the sample district's
    real commune outlines), and far from it: the same answer as contains_xy."""
    from pathlib import Path

    from covgap import config as config_mod, pipeline

    sample = Path(__file__).resolve().parents[1] / "data" / "sample" / "covgap.toml"
    config = config_mod.load_config(hand_project if which == "hand" else sample)
    layers = pipeline.load_layers(config)
    locate = ingest.StudyAreaLocator(layers)
    exact = _exact_study_area_test(layers)
    from pyproj import Transformer

    to_lonlat = Transformer.from_crs(layers.crs, "EPSG:4326", always_xy=True)
    rng = np.random.default_rng(1)
    boundary = layers.study_area.boundary
    on = shapely.line_interpolate_point(boundary, rng.uniform(0, boundary.length, 3000))
    x = np.r_[shapely.get_x(on) + rng.normal(0, 0.5, 3000), shapely.get_x(on)]
    y = np.r_[shapely.get_y(on) + rng.normal(0, 0.5, 3000), shapely.get_y(on)]
    minx, miny, maxx, maxy = layers.study_area.bounds
    x = np.r_[x, rng.uniform(minx - 500, maxx + 500, 5000)]
    y = np.r_[y, rng.uniform(miny - 500, maxy + 500, 5000)]
    lon, lat = to_lonlat.transform(x, y)
    lon = np.r_[lon, [np.nan, 200.0, 108.8]]
    lat = np.r_[lat, [15.0, 15.0, -95.0]]
    inside, px, py = locate(lon, lat)
    np.testing.assert_array_equal(inside, exact(lon, lat))
    np.testing.assert_array_equal(locate.inside(lon, lat), inside)
    assert 0 < inside.sum() < len(inside)
    np.testing.assert_allclose(px[:len(x)], x, atol=1e-6)


def test_the_fast_projection_gives_every_point_the_cell_and_answer_of_the_exact_one():
    """The sample's UTM grid takes the fast (polynomial) projection; points on cell edges, a
    tenth of a micrometre to two millimetres off them, and on the district's boundary get the
    cells and inside/outside answers of the exact projection. Far from its zone's meridian and on
    another datum it still follows the exact one; over a box too large for it, it is not used."""
    from dataclasses import replace
    from pathlib import Path

    from pyproj import CRS, Transformer

    from covgap import config as config_mod, pipeline

    config = config_mod.load_config(Path(__file__).resolve().parents[1] / "data" / "sample" / "covgap.toml")
    layers = pipeline.load_layers(config)
    locate = ingest.StudyAreaLocator(layers)
    assert locate.fast is not None
    g = layers.grid
    rng = np.random.default_rng(7)
    n = 60_000
    offsets = rng.choice([0.0, 1e-7, -1e-7, 1e-4, -1e-4, 9e-4, -9e-4, 2e-3, -2e-3], n)
    x = np.where(rng.random(n) < 0.5, g.x0 + rng.integers(-1, g.ncols + 2, n) * g.size + offsets,
                 rng.uniform(g.x0 - g.size, g.x0 + (g.ncols + 1) * g.size, n))
    y = np.where(rng.random(n) < 0.5, g.y0 - rng.integers(-1, g.nrows + 2, n) * g.size + offsets,
                 rng.uniform(g.y0 - (g.nrows + 1) * g.size, g.y0 + g.size, n))
    boundary = layers.study_area.boundary
    on = shapely.line_interpolate_point(boundary, rng.uniform(0, boundary.length, 5000))
    x = np.r_[x, shapely.get_x(on)]
    y = np.r_[y, shapely.get_y(on)]
    lon, lat = (np.asarray(a) for a in Transformer.from_crs(layers.crs, "EPSG:4326", always_xy=True).transform(x, y))
    inside, px, py = locate(lon, lat)
    ex, ey = (np.asarray(a) for a in locate.to_work.transform(lon, lat))
    np.testing.assert_array_equal(g.cell_of(px, py), g.cell_of(ex, ey))
    np.testing.assert_array_equal(inside, shapely.contains_xy(layers.study_area, ex, ey))
    assert 0 < inside.sum() < len(inside)
    assert np.abs(px - ex).max() < ingest.EDGE_GUARD_M / 100

    # The polynomial follows the exact projection wherever it is smooth over the box: far from the zone's
    # meridian (where PROJ's +approx is off by millimetres) and on another datum (VN-2000, a datum shift).
    far = replace(g, x0=g.x0 - 1_100_000)  # about 10° west of the zone's meridian
    vn2000 = CRS("EPSG:3405")  # VN-2000 / UTM zone 48N
    for crs, grid in ((layers.crs, far), (vn2000, g)):
        exact_t = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        found = ingest._fast_projection(crs, grid, exact_t)
        assert found is not None
        poly, (west, south, east, north) = found
        lon_r, lat_r = rng.uniform(west, east, 20_000), rng.uniform(south, north, 20_000)
        fx, fy = poly.transform(lon_r, lat_r)
        ex_r, ey_r = (np.asarray(a) for a in exact_t.transform(lon_r, lat_r))
        assert max(np.abs(fx - ex_r).max(), np.abs(fy - ey_r).max()) < ingest.EDGE_GUARD_M / 100
    # A box of some 25° by 20°: no polynomial of the degrees tried is close enough, the exact projection does it all.
    huge = replace(g, x0=g.x0 - 1_300_000, y0=g.y0 + 1_000_000, nrows=22_000, ncols=26_000)
    assert ingest._fast_projection(layers.crs, huge, locate.to_work) is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone=st.integers(1, 60), south=st.booleans(), lat=st.floats(0.5, 70.0), east_off=st.floats(-2.5, 2.5),
       width_km=st.floats(2.0, 600.0), height_km=st.floats(2.0, 600.0))
def test_the_polynomial_projection_is_used_only_where_it_follows_the_exact_one(zone, south, lat, east_off, width_km,
                                                                                height_km):
    """Any UTM zone, north or south, a box of 2 to 600 km a side up to 2.5° off the meridian: the fast
    projection is refused, or it agrees with the exact projection within a hundredth of the edge guard
    on random points of its box (not only on the lattice it was checked on)."""
    from pyproj import CRS, Transformer

    from covgap.grid import make_grid

    crs = CRS(f"EPSG:{(32700 if south else 32600) + zone}")
    to_xy = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    cx, cy = to_xy.transform(-183 + 6 * zone + east_off, -lat if south else lat)
    w, h = width_km * 500, height_km * 500
    grid = make_grid((cx - w, cy - h, cx + w, cy + h), size=100.0, crs=crs)
    found = ingest._fast_projection(crs, grid, to_xy)
    if found is None:
        return
    poly, (west, south_, east, north) = found
    rng = np.random.default_rng(zone)
    lon, lat_ = rng.uniform(west, east, 5000), rng.uniform(south_, north, 5000)
    fx, fy = poly.transform(lon, lat_)
    ex, ey = (np.asarray(a) for a in to_xy.transform(lon, lat_))
    assert max(np.abs(fx - ex).max(), np.abs(fy - ey).max()) < ingest.EDGE_GUARD_M / 100


@pytest.mark.parametrize("epsg,centre", [(32749, (111.2, -7.4)), (32633, (16.1, 48.2))])
def test_the_fast_projection_in_other_utm_zones_gives_the_exact_cells(epsg, centre):
    """A study area south of the equator (UTM 49S, Java) and one in Europe (UTM 33N): the fast projection
    is used and every point, on or near cell edges and on the area's boundary, gets the exact
    projection's cell and inside/outside answer."""
    from types import SimpleNamespace

    from pyproj import CRS, Transformer

    from covgap.grid import make_grid

    crs = CRS(f"EPSG:{epsg}")
    to_xy = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    cx, cy = to_xy.transform(*centre)
    area = shapely.Polygon([(cx - 9000, cy - 7000), (cx + 11000, cy - 6000), (cx + 8000, cy + 9000), (cx - 10000, cy + 5000)])
    grid = make_grid(area.bounds, size=100.0, crs=crs)
    locate = ingest.StudyAreaLocator(SimpleNamespace(crs=crs, grid=grid, study_area=area))
    assert locate.fast is not None
    rng = np.random.default_rng(epsg)
    n = 40_000
    offsets = rng.choice([0.0, 1e-7, -1e-7, 5e-4, -5e-4, 2e-3, -2e-3], n)
    x = np.r_[grid.x0 + rng.integers(0, grid.ncols, n) * grid.size + offsets, rng.uniform(*area.bounds[::2], n)]
    y = np.r_[grid.y0 - rng.integers(0, grid.nrows, n) * grid.size + offsets, rng.uniform(*area.bounds[1::2], n)]
    on = shapely.line_interpolate_point(area.boundary, rng.uniform(0, area.boundary.length, 4000))
    x, y = np.r_[x, shapely.get_x(on)], np.r_[y, shapely.get_y(on)]
    lon, lat = (np.asarray(a) for a in Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y))
    inside, px, py = locate(lon, lat)
    ex, ey = (np.asarray(a) for a in locate.to_work.transform(lon, lat))
    np.testing.assert_array_equal(grid.cell_of(px, py), grid.cell_of(ex, ey))
    np.testing.assert_array_equal(inside, shapely.contains_xy(area, ex, ey))
    assert 0 < inside.sum() < len(inside)


def _partitions_by(how, monkeypatch) -> dict:
    """find_duplicates' options for partitions worked on one after another, by two threads, or each by
    dedupe.partition_duplicates with the compiled sort (as the reading processes do: from files alone)."""
    if how != "compiled":
        return {"threads": how}
    from covgap import fastparse

    assert fastparse.compiled() is not None
    monkeypatch.setattr(dedupe, "COMPILED_SORT_MIN", 0)
    return {"map_partitions": lambda args: [dedupe.partition_duplicates(*a) for a in args]}


@pytest.mark.parametrize("threads", [1, 2, "compiled"])
def test_duplicates_are_found_across_blocks_files_and_the_store(tmp_path, monkeypatch, threads):
    """Keys spooled to disk (a tiny memory budget) give the duplicates worked out by hand, with the
    partitions worked on one after another, by two threads, or as the reading processes do."""
    monkeypatch.setattr(dedupe, "SPOOL_MEMORY_BYTES", 16)
    rows = pd.DataFrame({"lon": [108.8, 108.8, 108.8, 108.81], "lat": [15.0, 15.0, 15.0, 15.0],
                         "signal_dbm": [-90.0, -90.0, -91.0, -90.0], "technology": ["4G"] * 4,
                         "operator": ["Viettel", "Viettel", "Viettel", "MobiFone"], "time_s": [1.0, 1.0, 1.0, 1.0]})
    keys = dedupe.measurement_keys(rows)
    assert keys[0] == keys[1] and len(set(keys.tolist())) == 3
    spool = dedupe.KeySpool(tmp_path)
    spool.add(keys[:2], dedupe.make_seq(0, np.array([2, 3])))  # file 0: lines 2, 3 (3 repeats 2)
    spool.add(keys[1:], dedupe.make_seq(1, np.array([2, 3, 4])))  # file 1: line 2 repeats file 0's line 2
    spool.add(keys[3:], dedupe.make_seq(2, np.array([9])))  # file 2, refused: ignored
    stored_dir = tmp_path / "stored"
    stored_dir.mkdir()
    dups = dedupe.find_duplicates(spool, dedupe.StoredKeys(None), drop_files={2}, new_folder=stored_dir,
                                  **_partitions_by(threads, monkeypatch))
    assert [(f, ls.tolist()) for f, ls in dedupe.split_seq(dups)] == [(0, [3]), (1, [2])]
    assert dedupe.StoredKeys(stored_dir).count() == 3
    # A later batch: the store's keys count as earlier rows.
    later = dedupe.KeySpool(tmp_path / "later")
    (tmp_path / "later").mkdir()
    later.add(keys[2:], dedupe.make_seq(0, np.array([5, 6])))
    dups = dedupe.find_duplicates(later, dedupe.StoredKeys(stored_dir), **_partitions_by(threads, monkeypatch))
    assert [(f, ls.tolist()) for f, ls in dedupe.split_seq(dups)] == [(0, [5, 6])]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**48 - 1), st.integers(0, 7)), min_size=0, max_size=300),
       st.lists(st.integers(0, 299), max_size=40), st.lists(st.integers(0, 2**64 - 1), max_size=5))
def test_the_low_bit_table_finds_exactly_the_keys_a_set_holds(pairs, picked, strangers):
    """dedupe._members against numpy's isin: keys sharing their low 16 bits (high bits differ),
    picked from the keys themselves and strangers, a set crowded past the table's limit or not."""
    keys = np.array([(high << 16) | (low * 4099) for high, low in pairs], dtype=np.uint64)
    few = np.unique(np.concatenate([keys[[i for i in picked if i < len(keys)]], np.array(strangers, dtype=np.uint64)]))
    expected = np.isin(keys, few)
    assert np.array_equal(dedupe._members(keys, few), expected)
    crowded = np.unique(np.concatenate([few, np.arange(5000, dtype=np.uint64) * np.uint64(7919)]))
    assert np.array_equal(dedupe._members(keys, crowded), np.isin(keys, crowded))


def test_a_large_file_beside_small_ones_has_its_duplicates_read_again_by_every_worker(hand_project, tmp_path,
                                                                                      monkeypatch):
    """A batch of the hand rows three times over (57 duplicates, in many blocks) and a small file of
    four rows the first file holds already: the large file holds more than half the duplicates, so
    both reading processes read some of its blocks again; the small one is a task of its own. The
    store is byte for byte that of one process."""
    from conftest import hand_csv_lines

    config, layers = _hand_layers(hand_project)
    hand = hand_csv_lines()
    thrice = tmp_path / "thrice.csv"
    thrice.write_text("\n".join([hand[0]] + hand[1:] * 3) + "\n", encoding="utf-8")
    small = tmp_path / "small.csv"
    small.write_text("\n".join([hand[0], *hand[1:4], hand[1]]) + "\n", encoding="utf-8")
    by_blocks = []
    real = ingest.Batch._take_out_by_blocks
    monkeypatch.setattr(ingest.Batch, "_take_out_by_blocks", lambda self, taken, parts, results: (
        by_blocks.append((taken.path.name, [len(p) for p in parts])), real(self, taken, parts, results))[1])
    stores, records = {}, {}
    for workers in (1, 2):
        folder = tmp_path / f"store{workers}"
        ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
        with ingest.Batch(layers, ctx, folder=folder, chunk_rows=2, workers=workers) as batch:
            batch.add(thrice, "3" * 64)
            batch.add(small, "4" * 64)
            records[workers] = batch.finish(keys_folder=folder / "row_keys")
        stores[workers] = {q.relative_to(folder).as_posix(): q.read_bytes() for q in folder.rglob("*") if q.is_file()}
    assert stores[1] == stores[2]
    big, little = records[2]
    assert (big.rows_used, big.rejected_by_reason["duplicate_row"]) == (27, 57)
    assert (little.rows_used, little.rejected_by_reason["duplicate_row"]) == (0, 4)
    assert len(by_blocks) == 1 and by_blocks[0][0] == "thrice.csv" and len(by_blocks[0][1]) == 2
    assert sum(by_blocks[0][1]) == 57


def test_subtracting_statistics_takes_out_exactly_those_rows():
    from covgap.grid import make_grid
    from pyproj import CRS

    grid = make_grid((0, 0, 300, 100), size=100, crs=CRS.from_epsg(32649))
    rows = pd.DataFrame({"x": [50.0, 50, 50, 150], "y": [50.0, 50, 50, 50], "signal_dbm": [-90.0, -90, -100, -80],
                         "technology": ["4G"] * 4, "operator": ["Viettel"] * 4, "time_s": [1.0, 2, 3, 4]})
    whole = cellstats.aggregate_to_cells(rows, grid)
    minus = cellstats.aggregate_to_cells(rows.iloc[[1, 3]], grid)
    left = cellstats.subtract_stats(whole, minus)
    assert left[["cell", "n_samples"]].values.tolist() == [[0, 2]]
    assert left["h-90"].tolist() == [1] and left["h-100"].tolist() == [1] and left["h-80"].tolist() == [0]
    with pytest.raises(ValueError):
        cellstats.subtract_stats(minus, whole)


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_give_the_same_store_as_one_process(hand_project, tmp_path, workers):
    """Blocks of two lines read by worker processes: statistics, rejected rows and row keys byte for byte."""
    from covgap import config as config_mod, pipeline

    config = config_mod.load_config(hand_project)
    layers = pipeline.load_layers(config)
    src = hand_project.parent / "measurements" / "hand.csv"
    results = {}
    for label, kw in (("one", dict(workers=1)), ("many", dict(workers=workers, chunk_rows=2))):
        ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
        folder = tmp_path / label
        record, _ = ingest.ingest_file(src, layers, ctx, sha256="2" * 64, folder=folder, **kw)
        results[label] = (record, {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()})
    (one, one_files), (many, many_files) = results["one"], results["many"]
    assert (many.rows_read, many.rows_used, many.rejected_by_reason) == (one.rows_read, one.rows_used, one.rejected_by_reason)
    assert one.rejected_by_reason.get("duplicate_row") == 1
    assert many_files == one_files


@pytest.mark.parametrize("workers,newline,quoted", [(1, "\n", False), (2, "\n", False), (2, "\r\n", False),
                                                    (2, "\n", True)])
def test_a_file_repeating_its_rows_keeps_the_statistics_of_one_copy(hand_project, tmp_path, monkeypatch, workers,
                                                                     newline, quoted):
    """The hand file's rows three times over: exactly the rows of one copy are used, every other copy of a
    used row or of its planted duplicate is a duplicate (3 × (27 + 1) − 27 = 57), and the statistics are
    byte for byte those of the hand file alone, whether the duplicates are parsed again 2 lines at a time
    or all at once, by one process or by two (each half the blocks); with CRLF line ends and quoted fields too."""
    from conftest import hand_csv_lines

    config, layers = _hand_layers(hand_project)
    hand = hand_csv_lines()
    if quoted:  # quoted fields: those blocks are split line by line, when read and when read again
        hand = [line.replace(",Viettel,", ',"Viettel",') for line in hand]
    once = tmp_path / "once.csv"
    once.write_bytes((newline.join(hand) + newline).encode("utf-8"))
    thrice = tmp_path / "thrice.csv"
    thrice.write_bytes((newline.join([hand[0]] + hand[1:] * 3) + newline).encode("utf-8"))

    def read(path, label, workers=workers):
        ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
        folder = tmp_path / label
        record, _ = ingest.ingest_file(path, layers, ctx, sha256="2" * 64, folder=folder, workers=workers, chunk_rows=2)
        return record, {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    by_blocks = []  # with two processes, the duplicates (in many blocks) are read again by both
    real = ingest.Batch._take_out_by_blocks
    monkeypatch.setattr(ingest.Batch, "_take_out_by_blocks", lambda self, taken, parts, results: (
        by_blocks.append([len(p) for p in parts]), real(self, taken, parts, results))[1])
    _, in_one_process = read(thrice, "reference", workers=1)
    one, one_files = read(once, "once")
    assert (one.rows_used, one.rejected_by_reason["duplicate_row"]) == (27, 1)
    stored = {}
    for take_out_lines in (2, ingest.TAKE_OUT_LINES):
        monkeypatch.setattr(ingest, "TAKE_OUT_LINES", take_out_lines)
        three, stored[take_out_lines] = read(thrice, f"thrice{take_out_lines}")
        assert three.rows_read == 3 * one.rows_read and three.rows_used == 27
        assert three.rejected_by_reason["duplicate_row"] == 57
        assert {r: n for r, n in three.rejected_by_reason.items() if r != "duplicate_row"} == \
            {r: 3 * n for r, n in one.rejected_by_reason.items() if r != "duplicate_row"}
        assert {k: v for k, v in stored[take_out_lines].items() if k.startswith("stats/")} == \
            {k: v for k, v in one_files.items() if k.startswith("stats/")}
    assert stored[2] == stored[ingest.TAKE_OUT_LINES] == in_one_process  # rejected rows too, line numbers and all
    assert (len(by_blocks), sum(map(sum, by_blocks))) == ((2, 114) if workers == 2 else (0, 0))


def test_a_reading_process_that_dies_refuses_its_file_and_does_not_hang(hand_project, monkeypatch):
    """A worker killed mid-file (here: it exits on the block from line 11): an error for that file, no hang."""
    import os

    from covgap import config as config_mod, pipeline

    config = config_mod.load_config(hand_project)
    layers = pipeline.load_layers(config)
    real = ingest.process_block

    def dies(block, *args, **kw):
        if block.first_line >= 11 and os.getpid() != parent:
            os._exit(9)
        return real(block, *args, **kw)

    parent = os.getpid()
    monkeypatch.setattr(ingest, "process_block", dies)
    ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
    src = hand_project.parent / "measurements" / "hand.csv"
    with ingest.Batch(layers, ctx, chunk_rows=2, workers=2) as batch:
        with pytest.raises(RuntimeError, match="reading process ended unexpectedly"):
            batch.add(src, "3" * 64)


def _writes(path):
    path.write_text("written by the child", encoding="utf-8")


def _refuses(path):
    from covgap.errors import OutputError

    raise OutputError(f"{path}: cannot write here")


def _fails(path):
    raise ZeroDivisionError("a bug")


def test_forked_writer_reports_success_and_errors(tmp_path):
    from covgap.errors import CovgapError
    from covgap.forked import Forked, ForkedError

    Forked(_writes, tmp_path / "a.txt").result()
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "written by the child"
    with pytest.raises(CovgapError, match="cannot write here"):
        Forked(_refuses, tmp_path / "b").result()
    with pytest.raises(ForkedError, match="ZeroDivisionError: a bug") as err:
        Forked(_fails, tmp_path / "c").result()
    assert "Traceback" in err.value.trace and "_fails" in err.value.trace


def _frame_of(n):
    return pd.DataFrame({"n": np.arange(n), "square": np.arange(n) ** 2})


def test_forked_child_returns_its_value_and_inline_runs_here():
    import os

    from covgap.forked import Forked

    pd.testing.assert_frame_equal(Forked(_frame_of, 5).result(), _frame_of(5))
    assert Forked(os.getpid).result() != os.getpid()  # it ran in another process
    assert Forked(os.getpid, inline=True).result() == os.getpid()


_KILLED_PARENT = """
import sys, time
from covgap.forked import Forked

def big(seconds):
    time.sleep(seconds)
    return "x" * 1_000_000  # more than a pipe holds: sent only while the parent reads

child = Forked(big, float(sys.argv[1]))
print(child._proc.pid, flush=True)
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    """The process has ended (or is a zombie no one has reaped yet)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            return any(line.split()[1] == "Z" for line in fh if line.startswith("State:"))
    except FileNotFoundError:
        return True


def _outlives_its_parent(script: str, *args: str, settle_s: float) -> bool:
    """Run ``script`` (which prints the pid of a process it starts), kill it outright after ``settle_s``, and say
    whether that process is still there 10 s later (it is then killed here)."""
    import signal
    import subprocess
    import time

    parent = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        time.sleep(settle_s)
        assert not _gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _gone(child):
            return False
        os.kill(child, signal.SIGKILL)
        return True
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG")
@pytest.mark.parametrize("work_s", [0.0, 30.0])
def test_a_forked_helper_ends_when_its_parent_is_killed_outright(work_s):
    """A run killed with SIGKILL (or by the out-of-memory killer) leaves no helper process behind: neither one
    still working (30 s of work) nor one done with a value larger than the pipe holds, which would wait for
    a reader for ever (covgap.forked._child)."""
    # (after 1 s the child has its value and is sending it, or is at work)
    assert not _outlives_its_parent(_KILLED_PARENT, str(work_s), settle_s=1.0), "the helper outlived its parent"


_KILLED_READER_PARENT = """
import sys, tempfile, time
from pathlib import Path
from covgap import ingest

ingest._TASKS["big"] = lambda: (lambda *args, **opts: "x" * 2_000_000)  # a reply larger than a pipe holds
workers = ingest._Workers(1, None, None, None, Path(tempfile.mkdtemp()))
print(workers.procs[0].pid, flush=True)
workers.put(0, ("big", 0, (), {}))
time.sleep(120)  # never reads the reply
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and PR_SET_PDEATHSIG")
def test_a_reading_process_ends_when_the_main_process_is_killed_outright():
    """A reading process whose reply is larger than a pipe holds, its main process killed outright, ends (it had
    waited for ever at its exit for the reply to be read: covgap.ingest._worker_main)."""
    assert not _outlives_its_parent(_KILLED_READER_PARENT, settle_s=1.5), "the reading process outlived the main process"


def _sleeps(seconds):
    import time

    time.sleep(seconds)
    return "slept"


def test_forked_block_stops_the_child_when_the_work_beside_it_fails():
    """As a context manager: an error in the work done meanwhile stops the child at once (it would sleep
    for a minute); after its result the child is waited for, not stopped; an inline one never starts."""
    import time

    from covgap.forked import Forked

    started = time.monotonic()
    with pytest.raises(ZeroDivisionError):
        with Forked(_sleeps, 60) as child:
            proc = child._proc
            assert proc.is_alive()
            raise ZeroDivisionError("the work beside the child failed")
    assert not proc.is_alive() and proc.exitcode is not None and time.monotonic() - started < 30
    with Forked(_sleeps, 0.1) as child:
        assert child.result() == "slept"
    assert child._proc.exitcode == 0
    with Forked(_sleeps, 0, inline=True) as child:
        assert child._proc is None


def _dies_in_the_middle_of_sending(fn, args, outbox, parent=None) -> None:
    """A forked child killed while it sends its value: the start of a message, never its end."""
    import os
    import struct

    os.write(outbox._writer.fileno(), struct.pack("!i", 1000) + b"only ten b")
    os._exit(9)


def test_forked_child_killed_in_the_middle_of_sending_is_an_error_not_a_wait(monkeypatch):
    """The parent reads the message's first bytes; the rest never comes. With the queue's writing end still open
    in the parent, it waited for the rest forever; now the end of the queue says the child is gone."""
    import threading

    from covgap import forked

    monkeypatch.setattr(forked, "_child", _dies_in_the_middle_of_sending)
    outcome: list[BaseException] = []

    def wait_for_it() -> None:
        try:
            forked.Forked(_sleeps, 0).result()
        except BaseException as err:
            outcome.append(err)

    thread = threading.Thread(target=wait_for_it, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "still waiting for the rest of the message"
    (err,) = outcome
    assert isinstance(err, forked.ForkedError) and "ended unexpectedly (exit code 9" in str(err)


def _sleeps_after_saying_who(path):
    import os
    import time

    path.write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(60)


def _with_a_child_of_its_own(path):
    from covgap.forked import Forked

    with Forked(_sleeps_after_saying_who, path) as inner:
        return inner.result()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_stopped_child_stops_its_own_children_quietly(tmp_path, capfd):
    """A child that may fork (with_children: the early layer side, whose passed areas use two processes) is
    stopped with the work beside it; its own child is stopped with it, not left to finish, and no traceback shows."""
    import time

    from covgap.forked import Forked

    pid_file = tmp_path / "grandchild"
    with pytest.raises(ZeroDivisionError):
        with Forked(_with_a_child_of_its_own, pid_file, with_children=True) as outer:
            deadline = time.monotonic() + 30
            while not pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            raise ZeroDivisionError("the work beside the child failed")
    assert not outer._proc.is_alive()
    grandchild = int(pid_file.read_text(encoding="utf-8"))
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    assert "Traceback" not in capfd.readouterr().err


def _deaf_to_stops():
    import signal
    import time

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as a child stuck in a long C call, which never sees the stop
    time.sleep(60)


def test_a_child_that_does_not_stop_is_killed(monkeypatch):
    """Forked.cancel gives a stopped child CANCEL_WAIT_S to end (and stop its own children), then kills it."""
    import time

    from covgap import forked

    monkeypatch.setattr(forked, "CANCEL_WAIT_S", 0.5)
    started = time.monotonic()
    with pytest.raises(ZeroDivisionError):
        with forked.Forked(_deaf_to_stops) as child:
            time.sleep(0.3)
            raise ZeroDivisionError("the work beside the child failed")
    assert not child._proc.is_alive() and child._proc.exitcode == -9 and time.monotonic() - started < 10


def test_analysis_in_two_processes_equals_one():
    """The fibre side and the needs-measurement areas worked out by a forked child (two cores) give
    the same results as everything in this process (``[engine] workers = 1``)."""
    import dataclasses
    from pathlib import Path

    from covgap import config as config_mod, pipeline

    sample_config = config_mod.load_config(Path(__file__).resolve().parents[1] / "data" / "sample" / "covgap.toml")
    layers = pipeline.load_layers(sample_config)
    files = meas.list_measurement_files(sample_config.inputs.measurements)
    stats, report = pipeline.ingest_measurements(files, layers, sample_config)
    one = dataclasses.replace(sample_config, engine=dataclasses.replace(sample_config.engine, workers=1))
    assert pipeline.one_process(one) and not pipeline.one_process(dataclasses.replace(
        sample_config, engine=dataclasses.replace(sample_config.engine, workers=2)))
    two = dataclasses.replace(one, engine=dataclasses.replace(one.engine, workers=2))
    a = pipeline.analyse(layers, stats, one, report)
    b = pipeline.analyse(layers, stats, two, report)
    with pipeline.start_layer_side(layers, two) as early:  # as run and refresh do: started before the reading
        assert early._proc is not None and early._proc.is_alive()
        c = pipeline.analyse(layers, stats, two, report, early=early)
    for other in (b, c):
        pd.testing.assert_frame_equal(a.villages, other.villages)
        pd.testing.assert_frame_equal(a.communes, other.communes)
        pd.testing.assert_frame_equal(a.zones, other.zones)
        pd.testing.assert_frame_equal(a.operator_zones, other.operator_zones)
        assert list(a.per_operator) == list(other.per_operator)
        for op, view in a.per_operator.items():
            np.testing.assert_array_equal(view.classes, other.per_operator[op].classes)
            pd.testing.assert_frame_equal(view.villages, other.per_operator[op].villages)
            for kind, (zones, figures) in view.zones.items():
                pd.testing.assert_frame_equal(zones, other.per_operator[op].zones[kind][0])
                pd.testing.assert_frame_equal(figures, other.per_operator[op].zones[kind][1])
        pd.testing.assert_frame_equal(a.needs_measurement, other.needs_measurement)
        pd.testing.assert_frame_equal(a.fibre_plan.spurs, other.fibre_plan.spurs)
        pd.testing.assert_frame_equal(a.fibre_plan.units, other.fibre_plan.units)
        pd.testing.assert_frame_equal(a.measurement_plan.waypoints, other.measurement_plan.waypoints)
        pd.testing.assert_frame_equal(a.scorecard_long, other.scorecard_long)
    assert len(a.needs_measurement) > 50 and a.fibre_plan.units["spurs"].iloc[0] > 0
    assert len(a.operator_zones) and len(a.per_operator) >= 3 and len(a.measurement_plan.waypoints)


def test_large_file_path_scans_blocks_and_workers_read_them(tmp_path):
    """A plain file of many blocks (the sample's G-NetTrack log cut in 8 KiB blocks): the main process
    only finds line ends, two reading processes read the bytes; the store equals one process's, byte for byte."""
    from pathlib import Path

    from covgap import config as config_mod, pipeline

    sample = Path(__file__).resolve().parents[1] / "data" / "sample"
    config = config_mod.load_config(sample / "covgap.toml")
    layers = pipeline.load_layers(config)
    src = sample / "measurements" / "gnettrack_vtl_2026-04-18.txt"
    fmt = meas.detect_format(src)
    refs = list(blocks.scan_plain(src, fmt, block_bytes=1 << 13))
    whole = list(blocks.iter_blocks(src, fmt, block_bytes=1 << 30))
    assert len(refs) > 4 and b"".join(blocks.read_ref(src, r, n).data for r, n in refs) == whole[0].data
    assert [r.first_line for r, _ in refs] == list(np.cumsum([2] + [r.n_lines for r, _ in refs])[:-1])
    assert sum(r.n_lines for r, _ in refs) == whole[0].n_lines
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    files = {}
    # Given its SHA-256, or (two processes) hashed by the scan of its blocks as they are read.
    for label, workers, known in (("one", 1, sha), ("two", 2, sha), ("hashed by the scan", 2, None)):
        ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
        folder = tmp_path / label
        with ingest.Batch(layers, ctx, folder=folder, block_bytes=1 << 13, workers=workers) as batch:
            batch.add(src, known)
            (record,) = batch.finish(keys_folder=folder / "row_keys")
        files[label] = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        assert record.rows_used > 500 and record.rows_rejected > 0 and record.sha256 == sha
    assert files["one"] == files["two"] == files["hashed by the scan"]
    assert any(name.startswith(f"rejected/{sha[:12]}_") for name in files["one"])

    # The scan hashes a header and a byte-order mark too.
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + src.read_bytes())
    hasher = hashlib.sha256()
    bom_fmt = meas.detect_format(bom)
    assert bom_fmt.encoding == "utf-8-sig"
    assert sum(n for _, n in blocks.scan_plain(bom, bom_fmt, block_bytes=1 << 13, hasher=hasher)) == len(src.read_bytes()) - len(
        src.read_bytes().split(b"\n", 1)[0]) - 1
    assert hasher.hexdigest() == hashlib.sha256(bom.read_bytes()).hexdigest()


def test_a_file_hashed_while_read_and_refused_leaves_no_rejected_rows(hand_project, tmp_path):
    """Every row of a large file outside the study area: refused (no usable row); the rejected
    rows it wrote under a temporary name, before its SHA-256 was known, are gone."""
    from covgap import config as config_mod, pipeline

    config = config_mod.load_config(hand_project)
    layers = pipeline.load_layers(config)
    far = tmp_path / "far.csv"
    far.write_text("lat,lon,rsrp_dbm,technology,operator,timestamp\n"
                   + "".join(f"1.{i:05d},100.5,-90,LTE,Viettel,{1767225600 + i}\n" for i in range(2000)))
    folder = tmp_path / "store"
    with ingest.Batch(layers, ingest.read_context(layers, config), folder=folder, block_bytes=1 << 13, workers=2) as batch:
        with pytest.raises(InputError, match="no usable row|outside"):
            batch.add(far)
        batch.finish(keys_folder=folder / "row_keys")
    assert not [p for p in folder.rglob("*") if p.is_file() and "rejected" in p.parts]


def _slowed(target: str, seconds: float) -> str:
    """Script lines that make ``covgap.<module>.<function>`` wait ``seconds`` before it works (forked children
    inherit it): so a test can interrupt or kill a process while that function runs."""
    module, name = target.split(".")
    return (f"import time\nfrom covgap import {module}\n_real_{name} = {module}.{name}\n"
            f"def _slow_{name}(*args, **kw):\n    time.sleep({seconds})\n    return _real_{name}(*args, **kw)\n"
            f"{module}.{name} = _slow_{name}\n")


def _ctrl_c(script: str, *args: object, ready: str, after: float, cwd=None, check=None):
    """Run ``script`` (``python -c``) in a session of its own, wait for its line ``ready`` and ``after`` seconds more,
    call ``check(proc)`` if given, then send Ctrl-C (SIGINT) to its whole process group, as a terminal does:
    ``(proc, stdout, stderr)`` once it has ended."""
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=cwd,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout is not None and proc.stdout.readline().strip() == ready
    time.sleep(after)
    if check is not None:
        check(proc)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc, out, err


_INTERRUPTED_READ = """
import multiprocessing, sys
from covgap import config as config_mod, ingest, pipeline
config = config_mod.load_config(sys.argv[1])
layers = pipeline.load_layers(config)
""" + _slowed("ingest.process_block", 0.3) + """
ctx = ingest.read_context(layers, config)
try:
    with ingest.Batch(layers, ctx, chunk_rows=2, workers=2) as batch:
        print("reading", flush=True)
        batch.add(sys.argv[2], "5" * 64)
    print("finished before the interruption", flush=True)
except KeyboardInterrupt:
    print(f"interrupted; reading processes left: {len(multiprocessing.active_children())}", flush=True)
"""


def test_ctrl_c_while_workers_read_stops_them_without_a_traceback(hand_project):
    """Ctrl-C reaches the whole process group: the workers ignore it, the main process stops and joins them."""
    src = hand_project.parent / "measurements" / "hand.csv"
    _, out, err = _ctrl_c(_INTERRUPTED_READ, hand_project, src, ready="reading", after=1.0)
    assert "interrupted; reading processes left: 0" in out, (out, err)
    assert "Traceback" not in err, err


def test_store_total_merges_in_groups_the_same_as_at_once(tmp_path, monkeypatch):
    """Many files' statistics merge a group at a time (given or read from the store): the same total."""
    from covgap import refresh, store as store_mod
    from covgap.grid import make_grid
    from pyproj import CRS

    grid = make_grid((0, 0, 500, 100), size=100, crs=CRS.from_epsg(32649))
    parts = []
    for k in range(5):
        rows = pd.DataFrame({"x": [50.0 + 100 * (k % 3), 150.0], "y": [50.0, 50.0], "signal_dbm": [-90.0 - k, -100.0],
                             "technology": ["4G", "3G"], "operator": ["Viettel", "MobiFone"], "time_s": [float(k), 10.0]})
        parts.append(cellstats.aggregate_to_cells(rows, grid))
    path = tmp_path / "s.parquet"
    store_mod._write_parquet(parts[2], path)
    at_once = cellstats.merge_stats(*parts)
    monkeypatch.setattr(refresh, "MERGE_ROWS", 3)
    grouped = refresh._merged_total(cellstats.empty_stats(), [parts[0], parts[1], path, parts[3], parts[4]])
    pd.testing.assert_frame_equal(grouped, at_once)
    assert int(at_once["n_samples"].sum()) == 10


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.one_of(st.just(float("nan")), st.integers(-120, -50).map(float))),
                max_size=40))
def test_group_lower_median_equals_the_per_group_reference(pairs):
    """The zone figures' vectorised lower median of finite values per group, against sorting each group alone."""
    from covgap.deadzones import _group_lower_median

    group = np.array([g for g, _ in pairs], dtype=np.int64)
    values = np.array([v for _, v in pairs], dtype=float)
    got = _group_lower_median(values, group, 5)
    for g in range(5):
        finite = sorted(v for gg, v in pairs if gg == g and v == v)
        expected = finite[(len(finite) - 1) // 2] if finite else None
        assert (np.isnan(got[g]) if expected is None else got[g] == expected)


@pytest.mark.parametrize("threads", [1, 2, "compiled"])
def test_refreshes_add_key_runs_and_merge_them_past_the_limit(tmp_path, monkeypatch, threads):
    """Each batch adds its new keys as one sorted run per partition (earlier files hard-linked); a key in any
    run is a duplicate; past MAX_RUNS a partition's runs are merged into one file with the same keys."""
    monkeypatch.setattr(dedupe, "MAX_RUNS", 3)
    rng = np.random.default_rng(7)
    stored = dedupe.StoredKeys(None)
    everything = np.empty(0, dtype=np.uint64)
    for batch in range(5):
        keys = rng.integers(0, 2**64, 500, dtype=np.uint64)  # spread over the 64 partitions
        repeat = everything[:20]  # 20 keys of earlier batches come again: duplicates
        batch_keys = np.concatenate([keys, repeat])
        spool = dedupe.KeySpool(tmp_path / f"spool{batch}")
        (tmp_path / f"spool{batch}").mkdir()
        spool.add(batch_keys, dedupe.make_seq(0, np.arange(len(batch_keys))))
        new = tmp_path / f"keys{batch}"
        dups = dedupe.find_duplicates(spool, stored, new_folder=new, **_partitions_by(threads, monkeypatch))
        assert [(f, lines.tolist()) for f, lines in dedupe.split_seq(dups)] == (
            [(0, list(range(500, 500 + len(repeat))))] if len(repeat) else [])
        everything = np.concatenate([everything, keys])
        stored = dedupe.StoredKeys(new)
        assert stored.count() == len(everything)
        files = [len(stored.files(p)) for p in range(dedupe.PARTITIONS)]
        assert max(files) <= 3 and max(files) == min(files) == [1, 2, 3, 1, 2][batch]
        for p in range(dedupe.PARTITIONS):
            mine = np.sort(everything[(everything >> np.uint64(58)) == p])
            np.testing.assert_array_equal(stored.partition(p), mine)
    first = dedupe.StoredKeys(tmp_path / "keys0").files(5)[0]
    assert (tmp_path / "keys1" / first.name).stat().st_ino == first.stat().st_ino  # linked, not copied


_INTERRUPTED_ANALYSIS = """
import multiprocessing, sys, time
from covgap import config as config_mod, measurements as meas, pipeline
config = config_mod.load_config(sys.argv[1])
layers = pipeline.load_layers(config)
stats, report = pipeline.ingest_measurements(meas.list_measurement_files(config.inputs.measurements), layers, config)
# the forked child is still working when Ctrl-C comes
""" + _slowed("pipeline.layer_side", 30) + """
try:
    print("analysing", flush=True)
    pipeline.analyse(layers, stats, config, report)
    print("finished before the interruption", flush=True)
except KeyboardInterrupt:
    time.sleep(0.2)
    print(f"interrupted; processes left: {len(multiprocessing.active_children())}", flush=True)
"""


def test_ctrl_c_during_the_analysis_stops_its_forked_child(hand_project):
    """Ctrl-C while the forked child works out the layer side (pieces, fibre): the child ignores it, the main
    process stops it."""
    _, out, err = _ctrl_c(_INTERRUPTED_ANALYSIS, hand_project, ready="analysing", after=1.5)
    assert "interrupted; processes left: 0" in out, (out, err)
    assert "Traceback" not in err, err


# --------------------------------------------------------------------------- many small files on the workers
def _hand_layers(hand_project):
    from covgap import config as config_mod, pipeline

    config = config_mod.load_config(hand_project)
    return config, pipeline.load_layers(config)


def _small_files(folder, draw_kind, draw_lines, hand_lines, n_files):
    """Files of a batch: subsets of the hand-worked rows (so rows repeat across files), and bad files."""
    import gzip

    header, rows = hand_lines[0], hand_lines[1:]
    paths = []
    for k in range(n_files):
        kind = draw_kind()
        path = folder / f"f{k:02d}.csv"
        if kind == "rows":
            path.write_text("\n".join([header] + [rows[i] for i in draw_lines()]) + "\n", encoding="utf-8")
        elif kind == "gzip":
            path = path.with_suffix(".csv.gz")
            path.write_bytes(gzip.compress(("\n".join([header] + [rows[i] for i in draw_lines()]) + "\n").encode()))
        elif kind == "copy" and paths:  # the same bytes as an earlier file: skipped by its hash
            path.write_bytes(paths[-1].read_bytes())
            path = path.with_name(path.stem + "_copy" + "".join(paths[-1].suffixes))
            path.write_bytes(paths[-1].read_bytes())
        elif kind == "random":  # the reader's fuzz generator: any format, encoding, compression, broken lines
            import csvgen

            name, raw = csvgen.generate_file(csvgen.RandomChooser(draw_lines()[0] * 1000 + k), max_rows=20)
            path = folder / f"f{k:02d}_random_{name}"
            path.write_bytes(raw)
        elif kind == "garbage":
            path.write_bytes(bytes(range(256)) * 3)
        elif kind == "utf16":
            path.write_text("\n".join([header] + rows[:5]) + "\n", encoding="utf-16")
        elif kind == "header":
            path.write_text(header + "\n", encoding="utf-8")
        elif kind == "rejected":  # every row rejected: no usable row
            path.write_text("\n".join([header] + rows[-6:]) + "\n", encoding="utf-8")
        else:
            path.write_bytes(b"")
        paths.append(path)
    return sorted(set(paths))


def _read_small_batch(files, layers, ctx, folder, workers, keys_dir=None, vanish=()):
    """refresh._ingest_batch of ``files``: per-file outcomes as plain values and the bytes of every store file."""
    from dataclasses import asdict

    from covgap import refresh
    from covgap.store import Store

    store = Store(fingerprint={}, keys_dir=keys_dir)
    folder.mkdir(parents=True)
    outcomes = refresh._ingest_batch(list(files), store, layers, ctx, folder=folder, progress=None, chunk_rows=None,
                                     workers=workers)
    plain = [(o.path.name, o.sha256, o.status, o.message, asdict(o.record) if o.record else None,
              None if o.stats is None else o.stats.to_dict("list")) for o in outcomes]
    stored = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return plain, stored


KINDS = ["rows"] * 6 + ["gzip", "copy", "random", "random", "garbage", "utf16", "header", "rejected", "empty"]


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_small_files_on_two_workers_equal_one_process(hand_project, data):
    """Many small files, some bad, rows repeated across files and against the store: read by two worker processes
    (a file each) or by one process, the outcomes, the records, the statistics and the store's files are the same bytes."""
    import gzip
    import tempfile
    from pathlib import Path

    from conftest import hand_csv_lines

    config, layers = _hand_layers(hand_project)
    hand = hand_csv_lines()
    n_rows = len(hand) - 1
    lines = st.lists(st.integers(0, n_rows - 1), min_size=1, max_size=12)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "old").mkdir()
        (tmp / "new").mkdir()
        old = _small_files(tmp / "old", lambda: "rows", lambda: data.draw(lines), hand, data.draw(st.integers(1, 3)))
        new = _small_files(tmp / "new", lambda: data.draw(st.sampled_from(KINDS)), lambda: data.draw(lines), hand,
                           data.draw(st.integers(2, 14)))
        results = {}
        for workers in (1, 2):
            ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
            first = _read_small_batch(old, layers, ctx, tmp / f"first{workers}", workers)
            keys = tmp / f"first{workers}" / "row_keys"
            second = _read_small_batch(new, layers, ctx, tmp / f"second{workers}", workers, keys_dir=keys)
            results[workers] = (first, second)
        assert results[2] == results[1]
        outcomes = results[1][1][0]
        assert [o[0] for o in outcomes] == [p.name for p in new]  # in file order, every file answered
        for _, _, status, message, record, _ in outcomes:
            if status == "taken":
                assert record["rows_read"] == record["rows_used"] + record["rows_rejected"] > 0
            else:
                assert message
        # Every good row is used once, by the first file to bring it: duplicates across files and against the store.
        good = set(hand[1:29])

        def good_rows(plain, paths) -> set[str]:
            by_name, found = {p.name: p for p in paths}, set()
            for name, _, status, _, _, _ in plain:
                if status == "taken" and "_random_" not in name:  # (a random file holds no hand-worked row)
                    raw = by_name[name].read_bytes()
                    raw = gzip.decompress(raw) if name.endswith(".gz") else raw
                    text = raw.decode("utf-16" if raw.startswith(b"\xff\xfe") else "utf-8")
                    found |= good & set(text.splitlines()[1:])
            return found

        def used(plain) -> int:
            return sum(o[4]["rows_used"] for o in plain if o[2] == "taken")

        (first_plain, _), (second_plain, _) = results[1]
        in_first = good_rows(first_plain, old)
        assert used(first_plain) == len(in_first)
        assert used(second_plain) == len(good_rows(second_plain, new) - in_first)


def test_small_files_with_on_rejected_in_file_order(hand_project, tmp_path):
    """Batch.add_files with a rejected-rows callback and no store: the same calls in the same order, the same
    records, duplicates across files found and the earliest row kept, on one process or two."""
    from conftest import hand_csv_lines

    config, layers = _hand_layers(hand_project)
    hand = hand_csv_lines()
    files = []
    for k in range(9):  # each file: the first row (a duplicate after the first file) and three of its own
        rows = [hand[1]] + hand[2 + 3 * (k % 8):5 + 3 * (k % 8)] + ([hand[-1]] if k % 3 == 0 else [])
        path = tmp_path / f"p{k}.csv"
        path.write_text("\n".join([hand[0]] + rows) + "\n", encoding="utf-8")
        files.append(path)
    (tmp_path / "p4.csv").write_bytes(b"\xff\xfe\x00garbage")
    got = {}
    for workers in (1, 2):
        calls: list[pd.DataFrame] = []
        ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
        with ingest.Batch(layers, ctx, on_rejected=calls.append, workers=workers) as batch:
            answers = list(batch.add_files((p, str(k) * 64) for k, p in enumerate(files)))
            records = batch.finish()
        got[workers] = ([(p.name, type(a).__name__, str(a) if isinstance(a, Exception) else None) for p, a in answers],
                        [vars(r) for r in records], pd.concat(calls, ignore_index=True))
    assert got[2][0] == got[1][0] and got[2][1] == got[1][1]
    pd.testing.assert_frame_equal(got[2][2], got[1][2])
    answers, records, rejected = got[1]
    assert [a[1] for a in answers] == ["FileRecord"] * 4 + ["InputError"] + ["FileRecord"] * 4
    dups = rejected[rejected["reason"] == "duplicate_row"]
    # the first row of p0 is kept; that row in every later file taken is a duplicate (line 2), and p8 repeats p0's rows
    assert sorted(dups["source_file"].tolist()) == sorted([f"p{k}.csv" for k in range(1, 9) if k != 4] + ["p8.csv"] * 3)
    assert set(dups.loc[dups["source_file"] != "p8.csv", "source_row"]) == {2}
    assert records[0]["rows_rejected"] == 1 and records[0]["rejected_by_reason"] == {"unparseable_coordinate": 1}


def test_a_batch_of_one_small_file_is_read_here_without_worker_processes(hand_project, tmp_path, monkeypatch):
    """A refresh of the one file that came in: read in this process (no process to start, no result to send
    back), with the record and rejected rows one process gives; two small files still go to the workers."""
    from conftest import hand_csv_lines

    config, layers = _hand_layers(hand_project)
    hand = hand_csv_lines()
    one = tmp_path / "one.csv"
    one.write_text("\n".join(hand + [hand[1]]) + "\n", encoding="utf-8")  # its first row again at the end
    other = tmp_path / "other.csv"
    other.write_text("\n".join(hand[:3]) + "\n", encoding="utf-8")
    started: list[int] = []
    real = ingest._Workers.__init__

    def counted(self, *args, **kwargs):
        started.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(ingest._Workers, "__init__", counted)
    ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
    got = {}
    for workers in (1, 2):
        calls: list[pd.DataFrame] = []
        with ingest.Batch(layers, ctx, on_rejected=calls.append, workers=workers) as batch:
            answers = list(batch.add_files([(one, None)]))
            records = batch.finish()
        assert [(p, type(a)) for p, a in answers] == [(one, ingest.FileRecord)]
        got[workers] = (vars(records[0]), pd.concat(calls, ignore_index=True))
    assert started == []
    assert got[2][0] == got[1][0]
    pd.testing.assert_frame_equal(got[2][1], got[1][1])
    plain = tmp_path / "plain.csv"  # the same file without the repeated row: one duplicate fewer
    plain.write_text("\n".join(hand) + "\n", encoding="utf-8")
    with ingest.Batch(layers, ctx, workers=1) as batch:
        batch.add(plain)
        (before,) = batch.finish()
    assert got[2][0]["rejected_by_reason"]["duplicate_row"] == before.rejected_by_reason.get("duplicate_row", 0) + 1
    assert got[2][0]["rows_used"] == before.rows_used and got[2][0]["rows_read"] == before.rows_read + 1
    with ingest.Batch(layers, ctx, workers=2) as batch:
        assert [p for p, _ in batch.add_files([(one, None), (other, None)])] == [one, other]
    assert started == [1]


def _ten_small_files(folder):
    """f00.csv … f09.csv: two of the hand-worked rows each."""
    from conftest import hand_csv_lines

    hand = hand_csv_lines()
    files = []
    for k in range(10):
        path = folder / f"f{k:02d}.csv"
        path.write_text("\n".join([hand[0]] + hand[1 + 2 * k:3 + 2 * k]) + "\n", encoding="utf-8")
        files.append(path)
    return files


def _answers_after(seconds, *_context):
    import time

    time.sleep(seconds)
    return f"slept {seconds}"


def _answers_at_once(*_context):
    return "at once"


def test_tasks_of_two_kinds_answered_out_of_order_all_arrive(hand_project, monkeypatch):
    """Tasks 0 and 2 go to one worker, task 1 to the other; task 1 is slow, so task 2's answer (another kind)
    arrives first. It used to be dropped for not being of the awaited task's kind, and the batch waited for ever
    (a `make benchmark` rebuild of a large file with duplicates and a small one hung on it)."""
    import threading

    config, layers = _hand_layers(hand_project)
    monkeypatch.setitem(ingest._TASKS, "slow", lambda: _answers_after)
    monkeypatch.setitem(ingest._TASKS, "quick", lambda: _answers_at_once)
    ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
    got: list = []

    def run() -> None:
        with ingest.Batch(layers, ctx, workers=2) as batch:
            got.extend(batch._run_in_workers([("slow", (0.0,), {}), ("slow", (1.5,), {}), ("quick", (), {})]))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive(), "still waiting for the answer that came first"
    assert got == ["slept 0.0", "slept 1.5", "at once"]


def test_a_worker_that_dies_on_a_small_file_refuses_that_file_and_the_others_go_on(hand_project, tmp_path, monkeypatch):
    """The process reading f03 is killed: f03 is refused as an internal error; the files it held after f03 are read
    by the other process, the files after them by new processes; the batch finishes; the files taken have the
    records one process gives. (A file before f03 may be refused too: its answer may still have been in the
    killed process's sending thread.)"""
    import os
    import time

    config, layers = _hand_layers(hand_project)
    files = _ten_small_files(tmp_path)
    real = ingest.read_whole_file
    parent = os.getpid()

    def dies(path, *args, **kw):
        if path.name == "f03.csv" and os.getpid() != parent:
            time.sleep(0.5)  # long enough for the batch to give this process the files after f03
            os._exit(9)
        return real(path, *args, **kw)

    ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
    with ingest.Batch(layers, ctx, workers=1) as batch:
        one = {p.name: vars(a) for p, a in batch.add_files((p, str(k % 10) * 64) for k, p in enumerate(files))}
    monkeypatch.setattr(ingest, "read_whole_file", dies)
    with ingest.Batch(layers, ctx, workers=2) as batch:
        answers = list(batch.add_files((p, str(k % 10) * 64) for k, p in enumerate(files)))
        records = batch.finish()
    assert [p.name for p, _ in answers] == [p.name for p in files]
    died = [p.name for p, a in answers if isinstance(a, Exception)]
    assert died[-1] == "f03.csv" and len(died) <= 2 and died[0] in ("f01.csv", "f02.csv", "f03.csv")
    assert all("reading process ended unexpectedly" in str(a) for _, a in answers if isinstance(a, Exception))
    assert [vars(r) for r in records] == [one[p.name] for p, a in answers if not isinstance(a, Exception)]


def test_a_worker_killed_while_it_sends_stops_only_itself(hand_project, tmp_path, monkeypatch):
    """The process reading f03 is killed while it holds the lock of the queue it answers on (killed in the middle
    of sending): the other worker's answers still arrive, f03 is refused, the files it held after f03 are read
    by others, the batch ends. With one queue shared by every worker, the lock was never released and the batch
    waited forever (the suite hung on it once)."""
    import os
    import threading


    config, layers = _hand_layers(hand_project)
    files = _ten_small_files(tmp_path)
    real_main, real_read = ingest._worker_main, ingest.read_whole_file
    parent = os.getpid()
    own: dict[str, object] = {}

    def worker_main(inbox, outboxes, ctx, grid, crs, spool_dir, wid, *rest):
        own["outbox"] = outboxes[wid]  # (in the worker process: its own queue)
        return real_main(inbox, outboxes, ctx, grid, crs, spool_dir, wid, *rest)

    def killed_while_sending(path, *args, **kw):
        if path.name == "f03.csv" and os.getpid() != parent:
            own["outbox"]._wlock.acquire()  # type: ignore[attr-defined]  # as a send in progress holds it
            os._exit(9)
        return real_read(path, *args, **kw)

    monkeypatch.setattr(ingest, "_worker_main", worker_main)
    monkeypatch.setattr(ingest, "read_whole_file", killed_while_sending)
    ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
    got: dict[str, list] = {}

    def run() -> None:
        with ingest.Batch(layers, ctx, workers=2) as batch:
            got["answers"] = list(batch.add_files((p, str(k % 10) * 64) for k, p in enumerate(files)))
            got["records"] = batch.finish()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the batch is still waiting for the answers of the killed worker's partner"
    answers = got["answers"]
    assert [p.name for p, _ in answers] == [p.name for p in files]
    died = [p.name for p, a in answers if isinstance(a, Exception)]
    assert died[-1] == "f03.csv" and len(died) <= 2 and died[0] in ("f01.csv", "f02.csv", "f03.csv")
    assert len(got["records"]) == 10 - len(died)


def test_a_file_that_vanishes_or_hits_a_bug_is_refused_alone_with_the_reason_one_process_gives(hand_project, tmp_path,
                                                                                               monkeypatch):
    """f02 is deleted between hashing and reading, f04 hits a bug in the reader: each refused with the same
    message on two worker processes as on one, the others taken; the store the same bytes."""
    from covgap import outputs

    from conftest import hand_csv_lines

    config, layers = _hand_layers(hand_project)
    hand = hand_csv_lines()
    real_hash, real_block = outputs.sha256_file, ingest.process_block

    def hash_then_vanish(path):
        digest = real_hash(path)
        if path.name == "f02.csv":
            path.unlink()
        return digest

    def bug(block, fmt, ctx, grid, crs, source_file, path=None, **kw):
        if source_file == "f04.csv":
            raise ZeroDivisionError("a bug")
        return real_block(block, fmt, ctx, grid, crs, source_file, path, **kw)

    monkeypatch.setattr(outputs, "sha256_file", hash_then_vanish)
    monkeypatch.setattr(ingest, "process_block", bug)
    got = {}
    for workers in (1, 2):
        folder = tmp_path / f"in{workers}"
        folder.mkdir()
        files = []
        for k in range(6):
            path = folder / f"f{k:02d}.csv"
            path.write_text("\n".join([hand[0]] + hand[1 + 3 * k:4 + 3 * k] + hand[-2:]) + "\n", encoding="utf-8")
            files.append(path)
        ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
        plain, stored = _read_small_batch(files, layers, ctx, tmp_path / f"store{workers}", workers)
        got[workers] = ([(o[0], o[2], o[3].replace(str(folder), "IN"), o[4] and {**o[4], "path": ""}) for o in plain],
                        stored)
    assert got[2] == got[1]
    outcomes = got[1][0]
    assert [(name, status) for name, status, _, _ in outcomes] == [
        ("f00.csv", "taken"), ("f01.csv", "taken"), ("f02.csv", "refused"), ("f03.csv", "taken"), ("f04.csv", "refused"),
        ("f05.csv", "taken")]
    assert outcomes[2][2] == "IN/f02.csv: cannot be read: [Errno 2] No such file or directory: 'IN/f02.csv'"
    assert outcomes[4][2].startswith("IN/f04.csv: internal_error: ZeroDivisionError: a bug")
    assert [o[3]["rows_read"] for o in outcomes if o[3]] == [5, 5, 5, 5]


_INTERRUPTED_RUN = """
import sys
from covgap import cli
""" + _slowed("ingest.read_whole_file", 0.3) + """
print("starting", flush=True)
cli.main(["-q", "run", "--config", sys.argv[1]])
"""


def _session_processes(sid: int) -> list[int]:
    """Processes still alive in session ``sid`` (from /proc: field 6 of stat is the session)."""
    import os
    from pathlib import Path

    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z" and int(stat.parent.name) != os.getpid():
            alive.append(int(stat.parent.name))
    return alive


def test_ctrl_c_while_workers_read_small_files_one_line_exit_130_no_process_left(hand_project):
    """`covgap run` of 40 small files read by the worker processes, Ctrl-C to the whole process group mid-batch:
    one line on stderr, exit status 130, no traceback, no process left, the output folder not made."""
    import time

    from conftest import hand_csv_lines

    hand = hand_csv_lines()
    folder = hand_project.parent / "measurements"
    for k in range(40):
        (folder / f"phone_{k:02d}.csv").write_text("\n".join([hand[0], hand[1 + k % 27]]) + "\n", encoding="utf-8")
    with open(hand_project, "a", encoding="utf-8") as fh:
        fh.write("\n[engine]\nworkers = 2\n")

    def workers_reading(proc):
        assert len(_session_processes(proc.pid)) >= 3, "the workers should be reading"

    # after 3 s: layers loaded, the workers reading (40 files × 0.3 s on two processes)
    proc, out, err = _ctrl_c(_INTERRUPTED_RUN, hand_project, ready="starting", after=3.0, cwd=hand_project.parent,
                             check=workers_reading)
    assert proc.returncode == 130, (out, err)
    assert err.strip() == "Interrupted; the previous outputs are unchanged.", err
    deadline = time.monotonic() + 10
    while _session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _session_processes(proc.pid) == []
    out_dir = hand_project.parent / "out"
    assert not out_dir.exists() or not any(out_dir.iterdir())


_KILLED_MAIN = """
import sys, time
from pathlib import Path
from covgap import config as config_mod, ingest, pipeline
config = config_mod.load_config(sys.argv[1])
layers = pipeline.load_layers(config)
""" + _slowed("ingest.read_whole_file", 0.5) + """
ctx = ingest.read_context(layers, config)
files = sorted(Path(sys.argv[2]).glob("*.csv"))
with ingest.Batch(layers, ctx, workers=2) as batch:
    for k, (path, _) in enumerate(batch.add_files((p, None) for p in files)):
        if k == 0:
            print(" ".join(str(p.pid) for p in batch._pool.procs), flush=True)
"""


def test_worker_processes_end_when_the_main_process_is_killed(hand_project):
    """SIGKILL to the main process mid-batch (no chance to stop its workers): they notice and end within seconds."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import hand_csv_lines

    hand = hand_csv_lines()
    folder = hand_project.parent / "measurements"
    for k in range(30):
        (folder / f"phone_{k:02d}.csv").write_text("\n".join([hand[0], hand[1 + k % 27]]) + "\n", encoding="utf-8")
    tmp = hand_project.parent / "tmp"  # killed outright, it cannot remove its temporary folder: keep it here
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_MAIN, str(hand_project), str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp)})
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2
    proc.kill()
    proc.wait(timeout=30)

    deadline = time.monotonic() + 15
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if _alive(p)]
    for p in left:  # do not leave them behind if the test fails
        os.kill(p, signal.SIGKILL)
    assert left == []


@pytest.mark.parametrize("workers", [1, 2])
def test_statistics_beyond_the_memory_budget_go_to_the_store_with_the_same_bytes(hand_project, tmp_path, monkeypatch,
                                                                               workers):
    """A batch keeps at most KEEP_STATS_TOTAL_ROWS rows of statistics in memory; past it each file's statistics
    are written when it is taken in (and rewritten when its duplicates are taken out): the store's files are the
    same bytes as with everything kept in memory, and none is kept."""
    from conftest import hand_csv_lines

    from covgap import store as store_mod

    config, layers = _hand_layers(hand_project)
    hand = hand_csv_lines()
    files = _small_files(tmp_path, lambda: "rows", iter([[0, 1, 2, 3], [2, 3, 4, 5], [6, 7], [1, 8, 9]]).__next__,
                         hand, 4)
    results = {}
    for budget in (10**9, 0):
        monkeypatch.setattr(ingest, "KEEP_STATS_TOTAL_ROWS", budget)
        ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
        plain, stored = _read_small_batch(files, layers, ctx, tmp_path / f"store{budget}", workers)
        results[budget] = (plain, stored)
    (kept_plain, kept_store), (budget_plain, budget_store) = results[10**9], results[0]
    assert budget_store.keys() == kept_store.keys() and any(name.startswith("stats/") for name in kept_store)
    for name in kept_store:
        if name.startswith("stats/"):  # the same statistics (written from memory, or read back and rewritten)
            pd.testing.assert_frame_equal(store_mod.read_stats(tmp_path / f"store{10**9}" / name),
                                          store_mod.read_stats(tmp_path / "store0" / name))
        else:
            assert budget_store[name] == kept_store[name], name
    assert [p[:5] for p in budget_plain] == [p[:5] for p in kept_plain]
    assert all(p[5] is None for p in budget_plain) and all(p[5] is not None for p in kept_plain)
    assert sum(p[4]["rejected_by_reason"].get("duplicate_row", 0) for p in kept_plain) == 3  # rows 1, 2, 3 again


def test_one_worker_keeps_the_whole_run_in_one_process(hand_project, tmp_path, monkeypatch):
    """``[engine] workers = 1``: `covgap run` reads, analyses and writes every output (partner packages included)
    without starting any process."""
    import multiprocessing.process

    from click.testing import CliRunner

    from covgap import cli

    with open(hand_project, "a", encoding="utf-8") as fh:
        fh.write("\n[engine]\nworkers = 1\n")

    def no_process(self):
        raise AssertionError(f"a process was started: {self.name}")

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", no_process)
    res = CliRunner().invoke(cli.main, ["run", "--config", str(hand_project), "--out", str(tmp_path / "out"),
                                        "--maps", str(tmp_path / "maps")])
    assert res.exit_code in (0, 3), res.output
    assert (tmp_path / "out" / "partners").is_dir() and any((tmp_path / "maps").glob("*.html"))
