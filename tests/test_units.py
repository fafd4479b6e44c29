"""Unit tests of the building blocks: timestamps, operators, histograms, merging, config."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from pyproj import CRS

from covgap import cellstats, measurements as meas
from covgap.config import describe_config, load_config, Config
from covgap.errors import ConfigError
from covgap.grid import make_grid


def test_timestamps_of_many_shapes():
    raw = pd.Series([
        "2026-03-14T09:21:05+07:00",  # ISO with offset
        "2026-03-14T02:21:05Z",  # UTC
        "2026-03-14 09:21:05",  # naive → Asia/Ho_Chi_Minh
        "2026.03.14_09.21.05",  # G-NetTrack
        "14/03/2026 09:21:05",  # day first
        "1773454865",  # Unix seconds
        "1773454865000",  # Unix milliseconds
        None,
        "yesterday",
    ])
    out = meas.parse_timestamps(raw, "Asia/Ho_Chi_Minh")
    # 2026-03-14T02:21:05Z = 1773454865 (checked with `date -d 2026-03-14T02:21:05Z +%s`)
    assert out[:7].tolist() == [1773454865.0] * 7
    assert np.isnan(out[7]) and np.isnan(out[8])


def test_operators_from_names_and_codes():
    raw = pd.Series(["Viettel", "45204", "452-02", "mobifone", "VNPT", "5", None, "Acme Tel"])
    assert meas.normalise_operator(raw, "unknown").tolist() == [
        "Viettel", "Viettel", "VNPT-VinaPhone", "MobiFone", "VNPT-VinaPhone", "Vietnamobile", "unknown", "Acme Tel"]


def test_histogram_percentiles_by_hand():
    h = np.zeros((3, cellstats.NBINS), dtype=np.int64)
    for v in (-100, -110, -120):
        h[0, v - cellstats.DBM_MIN] += 1
    for v in (-100, -110):
        h[1, v - cellstats.DBM_MIN] += 1
    assert cellstats.hist_percentile(h, 0.5)[:2].tolist() == [-110.0, -110.0]
    assert cellstats.hist_percentile(h, 0.1)[0] == -120.0
    assert np.isnan(cellstats.hist_percentile(h, 0.5)[2])


def _rows(n, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.uniform(0, 1000, n), "y": rng.uniform(0, 1000, n),
        "signal_dbm": rng.integers(-140, -44, n).astype(float),
        "technology": rng.choice(["4G", "3G"], n), "operator": rng.choice(["A", "B"], n),
        "time_s": rng.uniform(1.7e9, 1.8e9, n),
    })


def _reference_stats(rows, grid):
    """An independent, all-at-once computation of the cell statistics (pandas factorize and
    numpy bincount) to check the library's streaming accumulator against."""
    cell = grid.cell_of(rows["x"].to_numpy(), rows["y"].to_numpy())
    keep = cell >= 0
    frame = pd.DataFrame({"cell": cell[keep], "operator": rows["operator"].to_numpy(dtype=object)[keep],
                          "technology": rows["technology"].to_numpy(dtype=object)[keep]})
    codes, uniques = pd.MultiIndex.from_frame(frame).factorize()
    ngroups = len(uniques)
    sig = rows["signal_dbm"].to_numpy(dtype=float)[keep]
    has = np.isfinite(sig)
    bins = np.clip(np.rint(sig[has]), cellstats.DBM_MIN, cellstats.DBM_MAX).astype(np.int64) - cellstats.DBM_MIN
    hist = np.bincount(codes[has] * cellstats.NBINS + bins, minlength=ngroups * cellstats.NBINS)
    t = pd.Series(rows["time_s"].to_numpy(dtype=float)[keep])
    keys = uniques.to_frame(index=False)
    keys.columns = cellstats.KEY_COLUMNS
    out = pd.concat([
        keys,
        pd.DataFrame({"n_samples": np.bincount(codes, minlength=ngroups),
                      "t_first_s": t.groupby(codes).min().reindex(range(ngroups)).to_numpy(),
                      "t_last_s": t.groupby(codes).max().reindex(range(ngroups)).to_numpy()}),
        pd.DataFrame(hist.reshape(ngroups, cellstats.NBINS), columns=cellstats.HIST_COLUMNS),
    ], axis=1)
    return cellstats.sort_stats(out)


def test_merging_partial_statistics_equals_aggregating_all_rows():
    grid = make_grid((0, 0, 1000, 1000), size=100, crs=CRS.from_epsg(32649))
    a, b = _rows(500, 1), _rows(700, 2)
    merged = cellstats.merge_stats(cellstats.aggregate_to_cells(a, grid), cellstats.aggregate_to_cells(b, grid))
    whole = _reference_stats(pd.concat([a, b], ignore_index=True), grid)
    pd.testing.assert_frame_equal(merged, whole, check_dtype=False)
    assert merged["n_samples"].sum() == 1200
    assert merged[cellstats.HIST_COLUMNS].to_numpy().sum() == 1200


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=1, max_size=6), st.integers(0, 2**16), st.booleans())
def test_merging_many_parts_equals_aggregating_all_rows(sizes, seed, repeat_a_part):
    """Any number of parts (some empty, groups shared between parts, times missing in some rows) merge
    into the statistics of all their rows at once (the independent reference); also when one part holds
    a group twice (two parts concatenated unmerged)."""
    grid = make_grid((0, 0, 300, 300), size=100, crs=CRS.from_epsg(32649))  # 9 cells: parts share groups
    rows = [_rows(k, seed + i).assign(x=lambda f: f["x"] * 0.3, y=lambda f: f["y"] * 0.3) for i, k in enumerate(sizes)]
    for r in rows:
        r.loc[r.index % 7 == 3, "time_s"] = np.nan
    parts = [cellstats.aggregate_to_cells(r, grid) for r in rows]
    if repeat_a_part:
        parts[0] = pd.concat([parts[0], parts[-1]], ignore_index=True)  # group rows twice in one part
        rows.append(rows[-1])
    merged = cellstats.merge_stats(*parts)
    whole = _reference_stats(pd.concat(rows, ignore_index=True), grid)
    if whole.empty:
        assert merged.empty
        return
    pd.testing.assert_frame_equal(merged, whole, check_dtype=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**40), st.sampled_from(["Viettel", "MobiFone", "", None]),
                          st.sampled_from(["4G", "3G", "2G"])), min_size=1, max_size=60))
def test_statistics_keys_are_numbered_as_multiindex_factorize_numbers_them(keys):
    """cellstats._factorize_keys (each column factorized, the codes combined) numbers the groups and finds their
    first rows as pd.MultiIndex.factorize does; a missing key (None) takes the general way."""
    frame = pd.DataFrame(keys, columns=cellstats.KEY_COLUMNS)
    codes, first = cellstats._factorize_keys(frame)
    expected, uniques = pd.MultiIndex.from_frame(frame).factorize()
    np.testing.assert_array_equal(codes, expected)
    assert len(first) == len(uniques)
    assert [tuple(frame.iloc[i]) for i in first.tolist()] == [tuple(frame.iloc[i]) for i in
                                                              [int(np.flatnonzero(expected == g)[0]) for g in range(len(uniques))]]


def test_grid_binning_by_arithmetic_matches_polygons():
    import shapely

    grid = make_grid((0, 0, 1000, 500), size=100, crs=CRS.from_epsg(32649))
    rows = _rows(300, 3)
    rows = rows[rows["y"] < 500]
    cells = grid.cell_of(rows["x"].to_numpy(), rows["y"].to_numpy())
    boxes = grid.cell_boxes(cells)
    assert shapely.contains_xy(boxes, rows["x"].to_numpy(), rows["y"].to_numpy()).all()


def test_config_lists_every_problem(tmp_path):
    p = tmp_path / "covgap.toml"
    p.write_text('[signal]\ncovered_dbm = "high"\nmin_sampels = 3\n[report]\nlevel = "district"\n[inputs]\ncommunes = {commune = "c.geojson"}\n')
    with pytest.raises(ConfigError) as err:
        load_config(p)
    msg = str(err.value)
    assert "covered_dbm" in msg and "must be a number" in msg
    assert "unknown key 'min_sampels'" in msg
    assert "level = 'district'" in msg


def test_config_reference_documents_every_field():
    import dataclasses

    doc = describe_config()
    for section in ("study", "inputs", "grid", "signal", "dead_zones", "villages", "fibre", "report", "output"):
        cls = type(getattr(Config(), section))
        for f in dataclasses.fields(cls):
            assert f.metadata["doc"] and f.metadata["source"]
            assert f"`{f.name}`" in doc


def test_config_reference_is_current():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    assert path.read_text(encoding="utf-8") == describe_config(), "regenerate with: covgap config-doc > docs/configuration.md"


@pytest.mark.parametrize("compiled", [False, True])
def test_streaming_accumulator_equals_aggregating_all_rows_at_once(monkeypatch, compiled):
    """cellstats.CellAccumulator (chunk by chunk, in place; groups found by its sorted index, or by the compiled
    hash table of a process that has loaded covgap.fastkernel) against the independent reference (all rows)."""
    from covgap import fastparse
    from covgap.cellstats import CellAccumulator

    monkeypatch.setattr(fastparse, "_module", fastparse.compiled() if compiled else None)
    assert (fastparse.loaded() is not None) == compiled

    grid = make_grid((0, 0, 1000, 1000), size=100, crs=CRS.from_epsg(32649))
    rows = _rows(2000, 4)
    rows.loc[::7, "signal_dbm"] = np.nan  # 2G/3G rows without a level count in n_samples only
    rows.loc[::11, "time_s"] = np.nan
    acc = CellAccumulator(grid)
    for start in range(0, len(rows), 300):
        acc.add(rows.iloc[start:start + 300])
    whole = _reference_stats(rows, grid)
    pd.testing.assert_frame_equal(acc.to_stats(), whole, check_dtype=False)


def test_names_fold_vietnamese_and_never_make_a_path():
    from covgap import names

    assert names.ascii_fold("Nghĩa Điền, Đông Á") == "Nghia Dien, Dong A"
    assert names.slugify("Xã Nghĩa Điền", lower=True) == "xa-nghia-dien"
    assert names.slugify("../..", default="x") == "x"
    assert names.slugify("Viettel/..", keep="A-Za-z0-9_-", sep="_") == "Viettel"
    assert names.slugify("VNPT-VinaPhone", sep="", max_len=8).upper() == "VNPTVINA"
    assert names.slugify("Đông Á", keep="A-Za-z0-9_-", sep="_") == "Dong_A"


def test_core_functions_name_the_argument_they_cannot_use():
    import geopandas as gpd
    import pandas as pd
    import shapely
    from pyproj import CRS

    from covgap import fibre, villages
    from covgap.grid import Grid

    grid = Grid(x0=0.0, y0=100.0, size=100.0, nrows=1, ncols=1, crs=CRS.from_epsg(32649))
    with pytest.raises(TypeError, match="'villages' must be a GeoDataFrame, got DataFrame"):
        villages.village_pieces(pd.DataFrame({"households": [1]}), grid)
    in_degrees = gpd.GeoDataFrame({"households": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
    with pytest.raises(ValueError, match=r"'villages' is in EPSG:4326, not the working CRS EPSG:32649; .*to_crs\(\)"):
        villages.village_pieces(in_degrees, grid)
    utm = in_degrees.set_crs(32649, allow_override=True)
    with pytest.raises(ValueError, match="'fibre' lacks the column"):
        fibre.compute_fibre_indicators(utm, gpd.GeoDataFrame(geometry=[], crs=32649),
                                       gpd.GeoDataFrame(geometry=[], crs=32649), drop_distance_m=100, goal_share=0.8)


def test_the_main_entry_points_are_importable_from_covgap():
    import subprocess
    import sys

    import covgap
    from covgap import pipeline

    assert covgap.run_pipeline is pipeline.run_pipeline and covgap.Results is pipeline.Results
    assert set(covgap.__all__) >= {"load_config", "run_pipeline", "analyse", "write_maps", "CellClass"}
    with pytest.raises(AttributeError):
        covgap.no_such_thing  # noqa: B018
    # `import covgap` alone loads none of the heavy libraries (the CLI's --help stays fast).
    code = "import sys, covgap; print('geopandas' in sys.modules, 'pandas' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False False"
