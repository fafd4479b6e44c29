"""Benchmark: wall time and peak memory of `covgap refresh` with a large measurement file.

Generates a generic CSV of N rows (default 5,000,000) with points spread uniformly over the
sample district, in a temporary folder that is deleted at the end.
Then, each in a fresh subprocess whose own peak RSS is read with ``os.wait4``:

1. ``covgap refresh`` of the sample district's measurement files (builds the store);
2. ``covgap refresh big.csv`` (the large file);
3. ``covgap refresh small.csv`` (1,000 new rows: merges with the stored total, does not re-read big.csv);
4. ``covgap refresh big.csv`` again (skipped: hashing only).

The numbers in docs/refresh.md come from this script.

    .venv/bin/python benchmarks/refresh_large.py [--rows 5000000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


def write_big_csv(path: Path, rows: int, area, *, seed: int = 7) -> None:
    """A generic CSV (timestamp,lat,lon,operator,technology,rsrp), written in blocks of 500,000 rows.

    Points are uniform inside ``area`` (a WGS84 polygon: the district), so almost every
    row is used; the RSRP tails beyond −140/−44 dBm give a few rejected rows.
    """
    import shapely

    rng = np.random.default_rng(seed)
    minx, miny, maxx, maxy = area.bounds
    shapely.prepare(area)
    operators = np.array(["Viettel", "VinaPhone", "MobiFone", "Vietnamobile"])
    techs = np.array(["LTE", "LTE", "LTE", "UMTS", "NR"])
    t0 = 1_767_225_600  # 2026-01-01
    block = 500_000
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("timestamp,lat,lon,operator,technology,rsrp\n")
        for start in range(0, rows, block):
            n = min(block, rows - start)
            lon, lat = np.empty(0), np.empty(0)
            while len(lon) < n:
                x, y = rng.uniform(minx, maxx, 2 * n), rng.uniform(miny, maxy, 2 * n)
                keep = shapely.contains_xy(area, x, y)
                lon, lat = np.r_[lon, x[keep]], np.r_[lat, y[keep]]
            frame = pd.DataFrame({
                "timestamp": t0 + start + np.arange(n),  # Unix seconds, distinct: no duplicates
                "lat": np.round(lat[:n], 6),
                "lon": np.round(lon[:n], 6),
                "operator": operators[rng.integers(0, len(operators), n)],
                "technology": techs[rng.integers(0, len(techs), n)],
                "rsrp": np.round(rng.normal(-100, 12, n)).astype(int),
            })
            frame.to_csv(fh, header=False, index=False, lineterminator="\n")


def timed(cmd: list[str], cwd: Path) -> dict:
    """Run a command; wall time, peak RSS (MiB) of that process, exit status, last lines of output."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    return {"wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 0),
            "exit": os.waitstatus_to_exitcode(status), "output": output}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    covgap = Path(sys.executable).with_name("covgap")
    import geopandas as gpd

    area = gpd.read_file(SAMPLE / "communes_2025.geojson").to_crs("EPSG:4326").union_all().buffer(-0.0005)
    tmp = Path(tempfile.mkdtemp(prefix="covgap-refresh-bench-"))
    try:
        toml = (SAMPLE / "covgap.toml").read_text(encoding="utf-8")
        for name in ("villages.geojson", "fibre_routes.geojson", "population_2020.tif", "communes_2019.geojson",
                     "communes_2025.geojson"):
            toml = toml.replace(f'"{name}"', json.dumps(str(SAMPLE / name)))
        toml = toml.replace('["measurements"]', json.dumps([str(SAMPLE / "measurements")]))
        toml = toml.replace('"../../out"', '"out"').replace('"../../maps"', '"maps"')
        (tmp / "covgap.toml").write_text(toml, encoding="utf-8")
        big = tmp / "big.csv"
        t = time.perf_counter()
        write_big_csv(big, args.rows, area)
        print(f"generated {big.name}: {args.rows:,} rows, {big.stat().st_size / 2**20:.0f} MiB "
              f"in {time.perf_counter() - t:.0f} s")
        small = tmp / "small.csv"
        write_big_csv(small, 1000, area, seed=11)
        small.write_text(small.read_text().replace("\n1767", "\n1777"))  # other times: not duplicates of big.csv
        steps = [
            ("refresh sample district (6 files)", []),
            (f"refresh big.csv ({args.rows:,} rows)", [str(big)]),
            ("refresh small.csv (1,000 rows) on top", [str(small)]),
            ("refresh big.csv again (skipped)", [str(big)]),
        ]
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
        for label, files in steps:
            r = timed([str(covgap), "refresh", "--config", "covgap.toml", *files], tmp)
            print(f"{label:45s} wall {r['wall_s']:7.1f} s   peak RSS {r['peak_rss_mib']:6.0f} MiB   exit {r['exit']}")
            if r["exit"] not in (0, 3):
                print(r["output"][-3000:])
            else:
                for line in r["output"].splitlines():
                    if line.startswith(("Files:", "Rows of these", "Store:")):
                        print("    " + line)
        store = tmp / "out" / "store"
        size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
        print(f"store size: {size / 2**20:.1f} MiB")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
