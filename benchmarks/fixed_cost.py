"""Benchmark: the fixed cost of a run on the sample district, stage by stage.

Everything a run does besides reading the measurement rows: loading the layers, the
analysis, and each output (GeoPackage, GeoParquet, CSVs, GeoTIFFs, the measurement plan
and its GPX files, the display layers of the maps, the partner packages, the map pages).
Each stage runs in this process, three times (best of 3 is shown), on the results of one
run of the sample district; the measurement rows are read once, and that time is shown
for reference. The imports are timed in a fresh interpreter each time.

    .venv/bin/python benchmarks/fixed_cost.py [--runs 3] [--config data/sample/covgap.toml]

The numbers in docs/benchmark.md come from this script.
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
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORTS = "import covgap.cli, covgap.pipeline, covgap.refresh, covgap.outputs, covgap.partners, covgap.maps"


def best_of(runs: int, func: Callable[[Path], object]) -> tuple[float, object]:
    """The shortest wall time of ``runs`` calls of ``func(fresh empty folder)``, and the last result."""
    times, result = [], None
    for _ in range(runs):
        work = Path(tempfile.mkdtemp(prefix="covgap-fixed-"))
        try:
            start = time.perf_counter()
            result = func(work)
            times.append(time.perf_counter() - start)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return min(times), result


def time_imports(runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORTS], check=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--config", type=Path, default=ROOT / "data" / "sample" / "covgap.toml")
    args = parser.parse_args()
    rows: list[tuple[str, float]] = [("imports (fresh interpreter)", time_imports(args.runs))]

    from covgap import maps, measurements as meas, outputs, partners, pipeline
    from covgap.config import load_config

    config = load_config(args.config)
    start = time.perf_counter()
    layers = pipeline.load_layers(config)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    stats, report = pipeline.ingest_measurements(meas.list_measurement_files(config.inputs.measurements), layers, config)
    read_s = time.perf_counter() - start
    t, _ = best_of(args.runs, lambda _: pipeline.load_layers(config))
    rows.append(("load layers", min(t, load_s)))
    t, results = best_of(args.runs, lambda _: pipeline.analyse(layers, stats, config, report))
    rows.append(("analysis", t))

    def csvs(folder: Path) -> None:
        for name, table in {"scorecard_district.csv": results.scorecard_long,
                            "scorecard_villages.csv": outputs.village_table(results),
                            "fibre_plan.csv": outputs.fibre_plan_table(results),
                            "rejected_rows.csv": results.report.rejected}.items():
            outputs.write_csv(table, folder / name, excel=name.startswith("scorecard_"))

    stages: list[tuple[str, Callable[[Path], object]]] = [
        ("GeoPackage", lambda f: outputs.write_geopackage(results, f / outputs.GPKG_NAME)),
        ("GeoParquet", lambda f: outputs.write_geoparquet(results, f / outputs.GEOPARQUET_DIR)),
        ("CSVs (main ones)", csvs),
        ("GeoTIFFs", lambda f: outputs.write_rasters(results, f)),
        ("measurement plan + GPX", lambda f: outputs.write_measurement_plan(results, f / outputs.MEASUREMENT_PLAN_DIR)),
        ("map display layers", lambda f: maps.write_map_layers(results, f)),
        ("all outputs (write_outputs)", lambda f: outputs.write_outputs(results, f)),
        ("partner packages", lambda f: partners.write_partner_packages(results, f / "partners")),
    ]
    for label, func in stages:
        t, _ = best_of(args.runs, func)
        rows.append((label, t))
    data = maps.map_layers(results)
    t, pages = best_of(args.runs, lambda f: maps.write_maps_from_layers(data, f / "maps", lang=config.output.lang))
    rows.append((f"map pages ({len(pages)})", t))

    fixed = sum(t for label, t in rows if label not in {"GeoPackage", "GeoParquet", "CSVs (main ones)", "GeoTIFFs",
                                                        "measurement plan + GPX", "map display layers"})

    from covgap import cli

    def as_a_run(work: Path) -> None:
        """What ``covgap run`` does after reading the rows: the analysis (its layer side and half the operators' views
        in forked children; a run starts the layer side before the reading, here it starts with the analysis),
        every output into a fresh folder swapped in atomically (the partner packages by a forked child
        meanwhile), then the map pages."""
        cfg = config.replace_output(dir=work / "out", maps_dir=work / "maps", lang=None)
        res = pipeline.analyse(layers, stats, cfg, report)
        with outputs.atomic_output_dir(work / "out") as tmp:
            cli._write_products(res, tmp)
        cli._write_maps(res, cfg)

    as_run, _ = best_of(args.runs, as_a_run)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"best of {args.runs}")
    print(f"reading the measurement rows (once, not a fixed cost): {read_s:.2f} s, "
          f"{report.rows_read:,} rows")
    print()
    print("| stage | seconds |")
    print("|---|---:|")
    for label, t in rows:
        print(f"| {label} | {t:.2f} |")
    print(f"| sum: imports + load + analysis + all outputs + partners + map pages, one after another | {fixed:.2f} |")
    print(f"| **analysis + every output + map pages, as a run does them** (both cores: layer side, operator views and partner "
          f"packages in forked children; atomic swap) | **{as_run:.2f}** |")


if __name__ == "__main__":
    main()
