"""Long fuzz of the measurement reader: many random files, no crash, no row lost.

    .venv/bin/python scripts/fuzz_reader.py --files 100000 [--seed 0] [--workers 2] [--max-rows 30]

Each file comes from the generator of the property test (tests/csvgen.py), seeded
by its number, and is read with covgap's reader (detect_format and
read_measurement_chunks). Prints files, accepted, refused, crashes and rows
unaccounted (both must be 0); a crashing file is kept in --keep (default
fuzz-crashes/) with its traceback, to become a case of tests/data/crash. Exit
status 1 if anything crashed or a row was unaccounted.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "coverage"))

import csvgen  # noqa: E402
from covgap import measurements  # noqa: E402,F401  (imported once, before the workers fork)


def _one(args: tuple[int, int, str, str]) -> tuple[int, str, int, str]:
    seed, max_rows, workdir, keep = args
    chooser = csvgen.RandomChooser(seed)
    name, data = csvgen.generate_file(chooser, max_rows=max_rows)
    chunk_rows = chooser.choice([3, 250_000, 250_000, 250_000])
    path = Path(workdir) / f"{seed}_{name}"
    path.write_bytes(data)
    try:
        outcome, unaccounted = csvgen.read_and_check(path, data, chunk_rows=chunk_rows)
        return seed, outcome, unaccounted, ""
    except Exception:  # a crash: keep the file and its traceback
        tb = traceback.format_exc()
        dest = Path(keep)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / path.name).write_bytes(data)
        (dest / f"{path.name}.traceback.txt").write_text(f"chunk_rows={chunk_rows}\n{tb}", encoding="utf-8")
        return seed, "crash", 0, tb.strip().splitlines()[-1]
    finally:
        path.unlink(missing_ok=True)


def _init() -> None:
    warnings.simplefilter("ignore")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0, help="number of the first file (files are seeded by number)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-rows", type=int, default=30, help="most data lines per file")
    ap.add_argument("--keep", default="fuzz-crashes", help="folder for the files that crash")
    args = ap.parse_args()
    counts: Counter[str] = Counter()
    unaccounted = 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="covgap-fuzz-") as work, mp.Pool(args.workers, initializer=_init) as pool:
        jobs = ((s, args.max_rows, work, args.keep) for s in range(args.seed, args.seed + args.files))
        for i, (seed, outcome, lost, error) in enumerate(pool.imap_unordered(_one, jobs, chunksize=50), 1):
            counts[outcome] += 1
            unaccounted += lost
            if outcome == "crash" or lost:
                print(f"file {seed}: {outcome}, {lost} rows unaccounted {error}", flush=True)
            if i % 10_000 == 0:
                print(f"... {i} files, {time.monotonic() - started:.0f} s", flush=True)
    print(f"files: {args.files}\naccepted: {counts['accepted']}\nrefused: {counts['refused']}\n"
          f"crashes: {counts['crash']}\nrows unaccounted: {unaccounted}\n"
          f"time: {time.monotonic() - started:.0f} s (seeds {args.seed}..{args.seed + args.files - 1}, "
          f"at most {args.max_rows} data lines per file)")
    return 1 if counts["crash"] or unaccounted else 0


if __name__ == "__main__":
    sys.exit(main())
