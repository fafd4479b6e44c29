"""The reading stages measured beside ``covgap run``, each run alone in a fresh interpreter by the benchmarks.

``parse-floor CSV``
    A single-threaded ``pyarrow.csv.read_csv`` of the file: every column, default type
    inference (``ReadOptions(use_threads=False)``). No reader of this CSV can be much
    faster on one core; covgap's ingest is compared with it.
``ingest CONFIG``
    covgap's reading alone, through the library: ``covgap.pipeline.load_layers(config)``
    (timed apart), then ``covgap.pipeline.ingest_measurements(files, layers, config)``:
    every row parsed, checked, deduplicated and aggregated into cell statistics. No
    analysis, no outputs.

Each prints one JSON line on stdout: the wall and CPU seconds of the stage itself (without
the interpreter's start and imports) and its counts::

    .venv/bin/python benchmarks/stages.py parse-floor /tmp/covgap-bench/measurements_1000000_s1_r0.csv
    .venv/bin/python benchmarks/stages.py ingest covgap.toml
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def parse_floor(csv_path: Path) -> dict:
    """Seconds of a single-threaded pyarrow read of the whole file, and its rows and columns."""
    import pyarrow.csv as pacsv

    started, cpu = time.perf_counter(), time.process_time()
    table = pacsv.read_csv(csv_path, read_options=pacsv.ReadOptions(use_threads=False))
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return {"stage": "parse_floor", "seconds": seconds, "cpu_s": cpu_s, "rows": table.num_rows,
            "columns": {f.name: str(f.type) for f in table.schema}}


def ingest(config_path: Path) -> dict:
    """Seconds of covgap's layers and of its ingest + aggregate, and what the ingest counted."""
    from covgap import measurements as meas, pipeline
    from covgap.config import load_config

    config = load_config(config_path)
    started = time.perf_counter()
    layers = pipeline.load_layers(config)
    layers_s = time.perf_counter() - started
    files = meas.list_measurement_files(config.inputs.measurements)
    started, cpu = time.perf_counter(), time.process_time()
    stats, report = pipeline.ingest_measurements(files, layers, config)
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return {"stage": "ingest", "seconds": seconds, "cpu_s": cpu_s, "layers_s": layers_s, "files": len(files),
            "rows_read": report.rows_read, "rows_used": report.rows_used, "rows_rejected": report.rows_rejected,
            "reasons": report.reason_counts(), "cell_statistics": len(stats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="stage", required=True)
    sub.add_parser("parse-floor", help="single-threaded pyarrow read_csv").add_argument("csv", type=Path)
    sub.add_parser("ingest", help="covgap's ingest + aggregate alone").add_argument("config", type=Path)
    args = parser.parse_args()
    result = parse_floor(args.csv) if args.stage == "parse-floor" else ingest(args.config)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
