"""10⁸ rows streamed: wall time and peak RSS of ``covgap run`` (or the ingest alone), duplicates checked.

Issue 11's target: 10⁸ rows read with a peak RSS of at most 1 GiB, duplicate detection
included. The rows are written ON DISK as ``--files`` files (default 10 × 10⁷ rows, about
6.7 GB of CSV) in /tmp/covgap-bench by benchmarks/gen.py, which plants 0.1 % exact
duplicates and 0.05 % out-of-range levels; files already there with the right size and
seed are reused (writing all ten takes about two minutes). Then, in a fresh subprocess
whose own peak RSS is read with ``os.wait4``:

- ``--mode run`` (default): ``covgap -q run`` on the sample district with these files,
  every output written; the counts come from its measurement_files.csv;
- ``--mode ingest``: ``pipeline.ingest_measurements`` alone (benchmarks/stages.py).

It prints the time of the whole process, the peak RSS against 1 GiB, and the rejected counts of
``duplicate_row`` and ``dbm_out_of_range`` beside what was planted; it exits with 1 when
they differ (a reader that misses or invents duplicates)::

    .venv/bin/python benchmarks/stream_large.py [--rows 100000000] [--files 10] [--mode run|ingest]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen import CACHE_DIR, Planted, cached_measurements, load_seed_rows  # noqa: E402
from measure import GIB, Measurement, load, machine, run_covgap, run_stage, write_project  # noqa: E402

PLANTED_REASONS = ("duplicate_row", "dbm_out_of_range")


def generate(rows: int, files: int, *, seed: int, cache_dir: Path) -> tuple[list[Path], list[Planted]]:
    """``files`` files of consecutive rows (the last one takes the remainder), cached."""
    if rows < files or files < 1:
        raise SystemExit(f"--rows ({rows}) must be at least --files ({files}), and --files at least 1")
    per_file = rows // files
    seeds = load_seed_rows()
    paths, planted = [], []
    for k in range(files):
        n = per_file if k < files - 1 else rows - per_file * (files - 1)
        path, p = cached_measurements(n, seed=seed, first_row=k * per_file, cache_dir=cache_dir, seeds=seeds)
        paths.append(path)
        planted.append(p)
    return paths, planted


def counts_of_run(out_dir: Path) -> dict[str, int]:
    """Rows read, used, rejected and rejected by planted reason, from a run's measurement_files.csv."""
    import pandas as pd

    report = pd.read_csv(out_dir / "measurement_files.csv")
    taken = report[report["status"] == "taken"]
    return {c: int(taken[c].sum()) for c in ("rows_read", "rows_used", "rows_rejected", *PLANTED_REASONS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--files", type=int, default=10, help="number of files the rows are split into")
    parser.add_argument("--mode", choices=["run", "ingest"], default="run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="where the generated CSVs are kept")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    started = time.monotonic()
    paths, planted = generate(args.rows, args.files, seed=args.seed, cache_dir=args.cache_dir)
    size = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} files, {args.rows:,} rows, {size / 2**30:.2f} GiB of CSV, ready in "
          f"{time.monotonic() - started:.0f} s", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="covgap-stream-"))
    try:
        config = write_project(folder, paths)
        m: Measurement
        if args.mode == "run":
            m = run_covgap(config)
            counts = counts_of_run(folder / "out")
        else:
            m = run_stage("ingest", config)
            result = m.last_json()
            counts = {c: int(result[c]) for c in ("rows_read", "rows_used", "rows_rejected")}
            counts.update({r: int(result["reasons"].get(r, 0)) for r in PLANTED_REASONS})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    expected = {r: sum(getattr(p, r) for p in planted) for r in PLANTED_REASONS}
    label = "covgap run" if args.mode == "run" else "ingest + aggregate"
    verdict = "met" if m.peak_rss <= GIB else "not met"
    print(f"\n| rows | files | CSV | {label} wall / CPU | rows/s | peak RSS | ≤ 1 GiB | duplicate_row (planted) "
          "| dbm_out_of_range (planted) |")
    print("|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    print(f"| {args.rows:,} | {len(paths)} | {size / 2**30:.2f} GiB | {m.wall_s:,.1f} s / {m.cpu_s:,.1f} s "
          f"| {args.rows / m.wall_s:,.0f} "
          f"| {m.peak_mib:,.0f} MiB | {verdict} | {counts['duplicate_row']:,} ({expected['duplicate_row']:,}) "
          f"| {counts['dbm_out_of_range']:,} ({expected['dbm_out_of_range']:,}) |")
    print(f"\nrows read {counts['rows_read']:,}, used {counts['rows_used']:,}, rejected {counts['rows_rejected']:,}")
    if args.mode == "ingest":
        print(f"the ingest stage alone (without the interpreter's start and the layers, {result['layers_s']:.1f} s): "
              f"{result['seconds']:,.1f} s, {result['cpu_s']:,.1f} s CPU")
    print(f"at the end: {load()}")
    wrong = [r for r in PLANTED_REASONS if counts[r] != expected[r]]
    if counts["rows_read"] != args.rows:
        wrong.append("rows_read")
    if wrong:
        print(f"MISMATCH: {', '.join(wrong)} differ from what was generated", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
