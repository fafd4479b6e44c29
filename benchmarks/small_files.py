"""Many small files: ``covgap run`` of a folder of N generated files of M rows each (phone exports).

The files come from benchmarks/gen.py's generator (file ``k`` holds rows ``k × M`` to
``(k + 1) × M − 1`` of the seed's stream, so files share no row beyond the planted
duplicates), cached in /tmp/covgap-bench/small_<N>x<M>_s<seed>/. Each run is a fresh
``covgap -q run`` process on the sample district's layers; its wall and CPU time (the
reading processes included) and its own peak RSS are printed as a markdown row::

    .venv/bin/python benchmarks/small_files.py [--files 200] [--rows 1000] [--runs 3] [--workers N] [--cache-dir DIR]

``--workers`` sets ``[engine] workers`` (default: the engine's own default, the cores available).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen import CACHE_DIR, load_seed_rows, write_measurements  # noqa: E402
from measure import load, machine, run_covgap, write_project  # noqa: E402


def small_files(files: int, rows: int, *, seed: int = 1, cache_dir: Path = CACHE_DIR) -> Path:
    """The folder of ``files`` generated files of ``rows`` rows, written only if not cached already."""
    folder = cache_dir / f"small_{files}x{rows}_s{seed}"
    done = folder.with_name(folder.name + ".complete")
    if done.is_file():
        return folder
    seeds = load_seed_rows()
    for k in range(files):
        write_measurements(folder / f"phone_{k:05d}.csv", rows, seed=seed, first_row=k * rows, seeds=seeds)
    done.write_text("", encoding="utf-8")
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    args = ap.parse_args()
    folder = small_files(args.files, args.rows, seed=args.seed, cache_dir=args.cache_dir)
    print(f"{machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="covgap-small-") as tmp:
        config = write_project(Path(tmp), [folder])
        if args.workers is not None:
            with open(config, "a", encoding="utf-8") as fh:
                fh.write(f"\n[engine]\nworkers = {args.workers}\n")
        runs = [run_covgap(config) for _ in range(args.runs)]
    wall = statistics.median(r.wall_s for r in runs)
    cpu = statistics.median(r.cpu_s for r in runs)
    rss = max(r.peak_mib for r in runs)
    print(f"| {args.files} × {args.rows:,} rows | {wall:.2f} s (min {min(r.wall_s for r in runs):.2f}) | "
          f"{cpu:.2f} s | {rss:.0f} MiB |")
    print(load())


if __name__ == "__main__":
    main()
