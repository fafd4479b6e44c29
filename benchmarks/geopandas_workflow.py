"""The plain geopandas workflow a GIS analyst would write by hand, and covgap, on the same CSV.

What the analyst does (issue "A fast engine"): read the CSV with pandas; ``points_from_xy``;
project to the UTM zone; build a 100 m fishnet of polygons over the study area; ``sjoin``
points to cells; per cell the median RSRP per operator, then the best operator's median;
cells below −115 dBm are dead; dissolve the dead cells; overlay with the villages. No row
checks, no outputs beyond the dead-zone figures.

Both run on the same generated CSV (points over the sample district, as in
benchmarks/refresh_large.py), each in a fresh subprocess whose peak RSS is read with
``os.wait4``; the script prints one table with the ratios measured in this run::

    .venv/bin/python benchmarks/geopandas_workflow.py [--rows 1000000 5000000]

``--only-workflow CSV`` runs the workflow alone on a given file (what the subprocess does).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
sys.path.insert(0, str(ROOT / "benchmarks"))


def workflow(csv_path: Path) -> dict:
    """The analyst's workflow; returns its figures (dead cells, dead area, villages touched)."""
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import shapely

    started = time.monotonic()
    rows = pd.read_csv(csv_path)
    points = gpd.GeoDataFrame(rows, geometry=gpd.points_from_xy(rows["lon"], rows["lat"]), crs=4326)
    communes = gpd.read_file(SAMPLE / "communes_2025.geojson")
    utm = communes.estimate_utm_crs()
    points = points.to_crs(utm)
    area = communes.to_crs(utm).union_all()
    # 100 m fishnet over the study area.
    minx, miny, maxx, maxy = area.bounds
    xs = np.arange(np.floor(minx / 100) * 100, maxx, 100.0)
    ys = np.arange(np.floor(miny / 100) * 100, maxy, 100.0)
    gx, gy = np.meshgrid(xs, ys)
    boxes = shapely.box(gx.ravel(), gy.ravel(), gx.ravel() + 100, gy.ravel() + 100)
    grid = gpd.GeoDataFrame({"cell": np.arange(len(boxes))}, geometry=boxes, crs=utm)
    grid = grid[grid.intersects(area)]
    joined = gpd.sjoin(points, grid, how="inner", predicate="within")
    per_op = joined.groupby(["cell", "operator"])["rsrp"].median().reset_index()
    best = per_op.groupby("cell")["rsrp"].max()
    dead = grid[grid["cell"].isin(best.index[best < -115])]
    zones = dead.dissolve().explode(index_parts=False) if len(dead) else dead
    villages = gpd.read_file(SAMPLE / "villages.geojson").to_crs(utm)
    touched = gpd.overlay(villages, zones, how="intersection") if len(zones) else villages.iloc[0:0]
    return {"seconds": time.monotonic() - started, "rows": len(rows), "cells": int(len(best)),
            "dead_cells": int((best < -115).sum()), "dead_km2": float(dead.area.sum() / 1e6),
            "villages_touched": int(touched["village_id"].nunique()) if len(touched) else 0}


def _measure(cmd: list[str], cwd: Path | None = None) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of a subprocess, and its stdout."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return wall, usage.ru_maxrss / 1024, out


def _covgap_project(folder: Path, csv_path: Path) -> Path:
    """A covgap.toml for the sample district (default thresholds) whose measurements are only ``csv_path``."""
    sample = SAMPLE.as_posix()
    path = folder / "covgap.toml"
    path.write_text(f"""[study]
name = "benchmark"

[inputs]
villages = "{sample}/villages.geojson"
fibre = "{sample}/fibre_routes.geojson"
population = "{sample}/settlement_density_100m.tif"
communes = {{ commune_2025 = "{sample}/communes_2025.geojson" }}
measurements = ["{csv_path.as_posix()}"]

[report]
level = "commune_2025"

[output]
dir = "{(folder / 'out').as_posix()}"
maps_dir = "{(folder / 'maps').as_posix()}"
""", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--only-workflow", type=Path, default=None)
    args = parser.parse_args()
    if args.only_workflow:
        import json

        print(json.dumps(workflow(args.only_workflow)))
        return
    import json

    import geopandas as gpd

    from refresh_large import write_big_csv

    area = gpd.read_file(SAMPLE / "communes_2025.geojson").union_all()
    print("| rows | geopandas workflow s | peak MiB | covgap run s | peak MiB | ratio (workflow / covgap) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            csv_path = folder / "big.csv"
            write_big_csv(csv_path, n, area)
            w_wall, w_rss, w_out = _measure([sys.executable, __file__, "--only-workflow", str(csv_path)])
            figures = json.loads(w_out.strip().splitlines()[-1])
            config = _covgap_project(folder, csv_path)
            covgap = Path(sys.executable).with_name("covgap")
            c_wall, c_rss, _ = _measure([str(covgap), "-q", "run", "--config", str(config)])
            print(f"| {n:,} | {w_wall:.1f} | {w_rss:.0f} | {c_wall:.1f} | {c_rss:.0f} | {w_wall / c_wall:.2f} |",
                  flush=True)
            print(f"<!-- workflow figures: {figures} -->", flush=True)


if __name__ == "__main__":
    main()
