"""Benchmark: reading one large CSV with the local engine and with the dask engine (1 and 2 workers).

Reads the generated CSV of N rows (default 2,000,000; benchmarks/gen.py, cached in
/tmp/covgap-bench like the other benchmarks) into a store folder (covgap.ingest.Batch:
blocks, statistics, duplicates) in a fresh subprocess per engine. For each: the reading's
wall time, and the subprocess's wall and CPU time (user + system, its children included:
the local engine's reading processes and the LocalCluster's workers) from ``os.wait4``, and
the load average before and after, since the machine may be shared. The figures in
docs/scale.md come from this script.

    .venv/bin/python benchmarks/dask_engine.py [--rows 2000000] [--repeat 1] [--seed 1] [--cache-dir DIR]

Each line ends with the rows used against the rows the generator left usable (its rows
less the planted duplicates and out-of-range levels): an engine that loses or invents rows
shows there, and the script exits with 1.
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
ENGINES = {"local": ("local", 0), "dask-1": ("dask", 1), "dask-2": ("dask", 2)}


def read_once(engine: str, csv: Path, folder: Path) -> None:
    """One reading of ``csv`` (in this process): prints the reading's wall time."""
    import dataclasses

    from covgap import dedupe, ingest, pipeline
    from covgap.config import EngineConfig, load_config

    name, workers = ENGINES[engine]
    config = load_config(SAMPLE / "covgap.toml")
    config = dataclasses.replace(config, engine=EngineConfig(name=name, workers=workers))
    layers = pipeline.load_layers(config)
    ctx = ingest.read_context(layers, config, now_s=1_790_000_000)
    folder.mkdir(parents=True)
    started = time.perf_counter()
    with ingest.Batch(layers, ctx, folder=folder, stored_keys=dedupe.StoredKeys(None), engine=config.engine) as batch:
        connected = time.perf_counter()
        record = batch.add(csv)
        batch.finish(keys_folder=folder / "row_keys")
    done = time.perf_counter()
    print(f"READ {done - started:.1f} {connected - started:.1f} {record.rows_used}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=None, help="where the generated CSVs are kept")
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--one", choices=list(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        read_once(args.one, args.csv, args.folder)
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from gen import CACHE_DIR, cached_measurements

    csv, planted = cached_measurements(args.rows, seed=args.seed, cache_dir=args.cache_dir or CACHE_DIR)
    usable = planted.rows - planted.duplicate_row - planted.dbm_out_of_range
    tmp = Path(tempfile.mkdtemp(prefix="covgap-dask-bench-"))
    failed = False
    try:
        print(f"{csv}: {csv.stat().st_size / 2**20:.0f} MiB; machine: {platform.machine()}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}")
        for rep in range(args.repeat):
            for engine in ENGINES:
                load = os.getloadavg()
                started = time.perf_counter()
                proc = subprocess.Popen([sys.executable, __file__, "--one", engine, "--csv", str(csv),
                                         "--folder", str(tmp / f"{engine}-{rep}")], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
                output = proc.stdout.read() if proc.stdout else ""
                _, status, usage = os.wait4(proc.pid, 0)
                wall = time.perf_counter() - started
                line = next((ln for ln in output.splitlines() if ln.startswith("READ ")), None)
                if line is None or os.waitstatus_to_exitcode(status):
                    print(output[-3000:])
                    failed = True
                    continue
                _, read_s, start_s, rows = line.split()
                failed |= int(rows) != usable
                print(f"{engine:7s} reading {float(read_s):6.1f} s (engine start {float(start_s):4.1f} s)  process wall "
                      f"{wall:6.1f} s  CPU {usage.ru_utime + usage.ru_stime:6.1f} s  rows used {int(rows):,} "
                      f"(usable {usable:,})  load average {load[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
