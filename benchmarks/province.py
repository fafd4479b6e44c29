"""Benchmark: `covgap run` on a province-sized study area with few measured cells.

Builds the test area on demand (nothing of it is in git) from the sample district
(data/sample/): its 4 communes (2025), 194 villages and fibre routes, scaled by
``--scale`` (linear, around the district's centre) and tiled ``--tiles`` times (columns ×
rows), in UTM 49N. With the defaults (6 × 4 tiles, scale 1.73) that is 96 communes, 4,656
villages and ~14,800 km² of communes (a province after the 2025 merger: Quảng Ngãi with
Kon Tum is ~14,800 km² and 96 communes). Each village is given as a point (a disc of
300 m in the run, ``[inputs] village_point_radius_m``): villages are where people live, a
small part of a province's area. The sample's six measurement files are used as they
are: they fall on the first tile (a few communes), so almost every cell is unmeasured.

Then runs ``covgap -q run`` in a fresh subprocess and reports its wall time, its peak RSS
(``os.wait4``) and the size of the map pages (with the shared files of ``maps/assets/``).

    .venv/bin/python benchmarks/province.py [--folder DIR] [--tiles 6x4] [--scale 1.73] [--cell 100]

Without ``--folder`` everything goes to a temporary folder that is deleted at the end;
with it the inputs are written there (and reused if already made) and the outputs kept
(``DIR/out``, ``DIR/maps``). The numbers in docs/benchmark.md come from this script.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
UTM = "EPSG:32649"

CONFIG = """\
# A province-sized test area made by benchmarks/province.py from the sample district.
[study]
name = "Province test ({tiles} tiles of the sample)"
crs = "EPSG:32649"
timezone = "Asia/Ho_Chi_Minh"

[inputs]
villages = "villages.geojson"
fibre = "fibre_routes.geojson"
measurements = ["{measurements}"]
communes = {{ commune_2025 = "communes_2025.geojson" }}

[grid]
cell_size_m = {cell}

[report]
level = "commune_2025"

[output]
dir = "out"
maps_dir = "maps"
lang = "vi"
"""


def make_inputs(folder: Path, *, cols: int, rows: int, scale: float, cell: float) -> None:
    """Write the tiled layers and covgap.toml into ``folder``."""
    import geopandas as gpd
    import pandas as pd
    import shapely.affinity

    communes = gpd.read_file(SAMPLE / "communes_2025.geojson").to_crs(UTM)
    minx, miny, maxx, maxy = communes.total_bounds
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    width, height = (maxx - minx) * scale, (maxy - miny) * scale
    layers = {name: gpd.read_file(SAMPLE / f"{name}.geojson").to_crs(UTM)
              for name in ("communes_2025", "villages", "fibre_routes")}
    tiles: dict[str, list[gpd.GeoDataFrame]] = {name: [] for name in layers}
    for j in range(rows):
        for i in range(cols):
            k = j * cols + i

            def move(geom, dx=i * width, dy=-j * height):
                return shapely.affinity.translate(shapely.affinity.scale(geom, scale, scale, origin=(cx, cy)), dx, dy)

            suffix = "" if k == 0 else f" {k}"
            for name, layer in layers.items():
                part = layer.copy()
                part["geometry"] = part.geometry.apply(move)
                for col in ("commune_id", "village_id", "route_id"):
                    if col in part:
                        part[col] = part[col].astype(str) + (f"-{k}" if k else "")
                if name == "communes_2025":
                    part["name"] = part["name"] + suffix
                    part = part.drop(columns=[c for c in ("centre_lon", "centre_lat") if c in part])
                if name == "villages":  # a point each (a disc of 300 m in the run): settled places, not the whole area
                    part["commune_2025"] = part["commune_2025"] + suffix
                    part["geometry"] = part.geometry.representative_point()
                    part = part.drop(columns=["commune"])
                tiles[name].append(part)
    for name, parts in tiles.items():
        frame = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=UTM)
        frame.to_crs(4326).to_file(folder / f"{name}.geojson", driver="GeoJSON")
    (folder / "covgap.toml").write_text(CONFIG.format(tiles=cols * rows, cell=cell,
                                                      measurements=(SAMPLE / "measurements").as_posix()),
                                        encoding="utf-8")


def run(folder: Path) -> tuple[float, float]:
    """``covgap -q run`` in ``folder``: wall time (s) and peak RSS (MiB) of the child."""
    covgap = Path(sys.executable).with_name("covgap")
    start = time.perf_counter()
    proc = subprocess.Popen([str(covgap), "-q", "run", "--config", "covgap.toml", "--overwrite"], cwd=folder,
                            stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise SystemExit(f"covgap run failed with status {os.waitstatus_to_exitcode(status)}")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None, help="Make (or reuse) the inputs here and keep the outputs.")
    parser.add_argument("--tiles", default="6x4", help="Columns x rows of sample districts (default 6x4: 96 communes).")
    parser.add_argument("--scale", type=float, default=1.73, help="Linear scale of each tile (default 1.73).")
    parser.add_argument("--cell", type=float, default=100.0, help="Cell size in metres (default 100).")
    args = parser.parse_args()
    cols, rows = (int(v) for v in args.tiles.lower().split("x"))
    folder = args.folder or Path(tempfile.mkdtemp(prefix="covgap-province-"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "covgap.toml").is_file():
            start = time.perf_counter()
            make_inputs(folder, cols=cols, rows=rows, scale=args.scale, cell=args.cell)
            print(f"inputs made in {time.perf_counter() - start:.1f} s: {folder}")
        import geopandas as gpd

        communes = gpd.read_file(folder / "communes_2025.geojson").to_crs(UTM)
        n_villages = len(gpd.read_file(folder / "villages.geojson"))
        print(f"study area: {len(communes)} communes, {n_villages} villages, {communes.area.sum() / 1e6:,.0f} km², "
              f"cells of {args.cell:g} m")
        elapsed, peak = run(folder)
        pages = sorted((folder / "maps").glob("*.html"))
        sizes = [p.stat().st_size for p in pages]
        shared = [p for p in (folder / "maps" / "assets").glob("*") if p.is_file()]  # [output] map_assets = shared
        every = sum(sizes) + sum(p.stat().st_size for p in shared)
        commune_sizes = [n for p, n in zip(pages, sizes) if p.name != "index.html"] or [0]
        outputs = sum(p.stat().st_size for p in (folder / "out").rglob("*") if p.is_file())
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"covgap run: {elapsed:.1f} s, peak RSS {peak:,.0f} MiB")
        print(f"maps: {len(pages)} pages and {len(shared)} shared files, {every / 2**20:.1f} MiB ({every / 1e6:.1f} MB) "
              f"in all, largest page {max(sizes, default=0) / 2**20:.1f} MiB "
              f"({pages[sizes.index(max(sizes))].name if sizes else '-'}), commune pages "
              f"{min(commune_sizes) / 1024:.0f}–{max(commune_sizes) / 1024:.0f} KiB")
        print(f"output folder: {outputs / 2**20:.1f} MiB")
    finally:
        if args.folder is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
