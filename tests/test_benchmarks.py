"""The benchmark scripts at a few thousand rows, so that they cannot rot (no timing is asserted).

The generator (benchmarks/gen.py) is checked by hand-countable facts: the planted
duplicates and bad levels are there, the same seed gives the same bytes, a cached file is
reused. The scripts run as a user runs them, in a subprocess, with their cache in tmp_path.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import gen  # noqa: E402


def _script(name: str, *args: object, timeout: int = 600) -> str:
    proc = subprocess.run([sys.executable, str(BENCH / name), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def seeds() -> gen.SeedRows:
    return gen.load_seed_rows()


def test_generated_rows_hold_what_was_planted(tmp_path, seeds):
    path = tmp_path / "m.csv"
    planted = gen.write_measurements(path, 3000, seed=5, seeds=seeds)
    rows = pd.read_csv(path)
    assert list(rows.columns) == ["lat", "lon", "rsrp_dbm", "technology", "operator", "timestamp"]
    assert len(rows) == planted.rows == 3000
    # 0.1 % duplicates and 0.05 % levels out of range, rounded: 3 and 2.
    assert (planted.duplicate_row, planted.dbm_out_of_range) == (3, 2)
    assert rows.duplicated().sum() == 3
    assert (rows["rsrp_dbm"] == gen.BAD_LEVEL_DBM).sum() == 2
    assert rows["timestamp"].iloc[0] == "2023-01-01 00:00:00+07:00"
    assert set(rows["technology"]) <= {"GSM", "UMTS", "LTE", "NR", "no service"}
    # Sample district (Tư Nghĩa, Quảng Ngãi).
    assert rows["lat"].between(14.9, 15.3).all() and rows["lon"].between(108.5, 109.0).all()


def test_same_seed_same_bytes_and_the_cache_is_reused(tmp_path, seeds):
    first, planted = gen.cached_measurements(2500, seed=3, cache_dir=tmp_path, seeds=seeds, verbose=False)
    other = gen.write_measurements(tmp_path / "again.csv", 2500, seed=3, seeds=seeds)
    assert first.read_bytes() == (tmp_path / "again.csv").read_bytes() and other == planted
    stamp = first.stat().st_mtime_ns
    again, planted_again = gen.cached_measurements(2500, seed=3, cache_dir=tmp_path, seeds=seeds, verbose=False)
    assert again == first and planted_again == planted and first.stat().st_mtime_ns == stamp
    later, _ = gen.cached_measurements(2500, seed=3, first_row=2500, cache_dir=tmp_path, seeds=seeds, verbose=False)
    assert later != first and pd.read_csv(later)["timestamp"].iloc[0] == "2023-01-01 00:41:40+07:00"


@pytest.mark.slow
def test_geopandas_workflow_script(tmp_path):
    out = _script("geopandas_workflow.py", "--rows", 3000, "--cache-dir", tmp_path)
    assert "| 3,000 |" in out and "workflow / covgap" in out and "ingest / floor" in out
    # covgap run three times, the median compared.
    runs = [float(v) for v in re.search(r"covgap run ([0-9.]+) s \(median of ([0-9.]+) / ([0-9.]+) / ([0-9.]+) s\)",
                                        out).groups()]
    assert runs[0] == sorted(runs[1:])[1]
    # covgap's reader found exactly the planted bad rows.
    assert "rejected duplicate_row 3 (planted 3), dbm_out_of_range 2 (planted 2)" in out


@pytest.mark.slow
def test_stream_large_script_checks_the_duplicates(tmp_path):
    out = _script("stream_large.py", "--rows", 4000, "--files", 2, "--mode", "ingest", "--cache-dir", tmp_path)
    assert "| 4,000 | 2 |" in out and "| 4 (4) | 2 (2) |" in out


@pytest.mark.slow
def test_refresh_large_script(tmp_path):
    out = _script("refresh_large.py", "--rows", 3000, "--share", 0.1, "--cache-dir", tmp_path)
    assert "refresh / rebuild = " in out and "rebuild: covgap run of big + new (3,300 rows)" in out
    assert "watch: refresh of new in " in out and "watch refresh / rebuild = " in out


def test_small_files_script_runs_covgap_on_a_folder_of_files(tmp_path):
    out = _script("small_files.py", "--files", 3, "--rows", 200, "--runs", 1, "--workers", 2, "--cache-dir", tmp_path)
    folder = tmp_path / "small_3x200_s1"
    assert sorted(p.name for p in folder.iterdir()) == ["phone_00000.csv", "phone_00001.csv", "phone_00002.csv"]
    assert sum(len(pd.read_csv(p)) for p in folder.iterdir()) == 600
    assert "| 3 × 200 rows |" in out


@pytest.mark.slow
def test_dask_engine_script_reads_with_each_engine(tmp_path):
    pytest.importorskip("distributed")
    out = _script("dask_engine.py", "--rows", 3000, "--cache-dir", tmp_path)
    lines = [ln for ln in out.splitlines() if "rows used" in ln]
    assert [ln.split()[0] for ln in lines] == ["local", "dask-1", "dask-2"]
    assert all("rows used 2,995 (usable 2,995)" in ln for ln in lines)  # 3 duplicates and 2 bad levels planted


@pytest.mark.slow
def test_reader_budget_script_gives_the_recorded_outputs(tmp_path):
    # The script itself fails when a budgeted run's outputs differ from the recorded run's.
    out = _script("reader_budget.py", "--rows", 3000, "--budgets", 1, "--workflow-s", 10, "--cache-dir", tmp_path)
    assert "the outputs of every budgeted run are the recorded run's, byte for byte" in out
    assert "| reader at 1 ms of CPU a block |" in out and "| covgap run (the real reader) |" in out
