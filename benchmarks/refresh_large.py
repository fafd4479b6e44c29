"""Refresh against rebuild: a 1 % file taken into a large store, and ``covgap run`` of every file.

Issue 11's target: refreshing a store of 2·10⁷ rows with a new file of 1 % of that (200,000
rows) takes at most 10 % of the full rebuild. Both files come from benchmarks/gen.py (cached
in /tmp/covgap-bench; the new file's times follow the big one's, so it holds no duplicate of
it beyond its own planted ones). On the sample district's layers, each step a fresh process
whose own peak RSS is read with ``os.wait4``:

1. ``covgap refresh`` with ``[inputs] measurements = [big]``: builds the store (setup, timed too);
2. ``covgap refresh new.csv``: the refresh measured (big is not re-read);
3. ``covgap refresh new.csv`` again: skipped by its SHA-256 (hashing only);
4. ``covgap run`` of big and new in another folder: the full rebuild;
5. ``covgap watch`` of a folder holding big (read at its start), into which new is put: the refresh
   as watch does it, in its own process (imports, layers and layer side loaded once; the time it
   prints for the refresh, from the file ready to the maps written).

It prints a markdown table and the ratio refresh / rebuild::

    .venv/bin/python benchmarks/refresh_large.py [--rows 20000000] [--share 0.01] [--seed 1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen import CACHE_DIR, cached_measurements, load_seed_rows  # noqa: E402
from measure import (  # noqa: E402
    Measurement,
    covgap_command,
    load,
    machine,
    measure,
    run_covgap,
    warm_page_cache,
    write_project,
)

TARGET_SHARE = 0.10


def refresh(config: Path, *files: Path) -> Measurement:
    """``covgap refresh --config CONFIG FILES`` (exit 3, 'targets not met', is a normal end)."""
    return measure([covgap_command(), "refresh", "--config", str(config), *map(str, files)], cwd=config.parent,
                   ok_codes=(0, 3))


def watch_refresh(folder: Path, big: Path, new: Path, *, timeout_s: float = 600) -> float:
    """``covgap watch`` of a folder holding ``big`` (taken in at the start), then ``new`` put in: the seconds
    the watching process says the refresh of ``new`` took (after the file had settled)."""
    import os
    import re
    import signal
    import subprocess
    import time

    inbox = folder / "in"
    inbox.mkdir(parents=True)
    os.symlink(big, inbox / big.name)
    config = write_project(folder, [inbox])
    log = folder / "watch.log"
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen([covgap_command(), "-q", "watch", "--config", str(config), "--every", "0.2",
                                 "--settle", "0.5"], cwd=folder, stdout=fh, stderr=subprocess.STDOUT, text=True)
    done = re.compile(r"refreshed in ([0-9.]+) s")
    end = time.monotonic() + timeout_s

    def refreshed(count: int, what: str) -> list[str]:
        """The times of the first ``count`` refreshes watch reported, once it has reported them."""
        while len(times := done.findall(log.read_text(encoding="utf-8"))) < count:
            if proc.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"covgap watch did not take {what} in:\n{log.read_text(encoding='utf-8')[-3000:]}")
            time.sleep(0.2)
        return times

    try:
        refreshed(1, "big")
        os.symlink(new, inbox / new.name)
        return float(refreshed(2, "new")[1])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def summary(m: Measurement) -> str:
    """The lines of covgap's own report that say what it took in."""
    return "\n".join("    " + line for line in m.stdout.splitlines() if line.startswith(("Files:", "Rows of these", "Store:")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000, help="rows of the file that builds the store")
    parser.add_argument("--share", type=float, default=0.01, help="size of the new file, as a share of --rows")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR, help="where the generated CSVs are kept")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders (outputs and store)")
    args = parser.parse_args()
    new_rows = max(1, round(args.rows * args.share))
    print(f"machine: {machine()}", flush=True)
    seeds = load_seed_rows()
    big, _ = cached_measurements(args.rows, seed=args.seed, cache_dir=args.cache_dir, seeds=seeds)
    new, _ = cached_measurements(new_rows, seed=args.seed, first_row=args.rows, cache_dir=args.cache_dir, seeds=seeds)
    tmp = Path(tempfile.mkdtemp(prefix="covgap-refresh-bench-"))
    try:
        store_config = write_project(tmp / "refresh", [big])
        steps = [
            (f"build the store: refresh of big ({args.rows:,} rows)", lambda: refresh(store_config)),
            (f"**refresh new ({new_rows:,} rows) onto the store**", lambda: refresh(store_config, new)),
            ("refresh new again (skipped by its hash)", lambda: refresh(store_config, new)),
            (f"**rebuild: covgap run of big + new ({args.rows + new_rows:,} rows)**",
             lambda: run_covgap(write_project(tmp / "rebuild", [big, new]))),
        ]
        results = []
        for label, step in steps:
            warm_page_cache(big, new)  # the same start for every step (measure.warm_page_cache)
            m = step()
            results.append((label, m))
            print(f"{label}: {m.wall_s:.1f} s ({m.cpu_s:.1f} s CPU), peak {m.peak_mib:,.0f} MiB", flush=True)
            if summary(m):
                print(summary(m), flush=True)
        watched = watch_refresh(tmp / "watch", big, new)
        print(f"watch: refresh of new in {watched:.2f} s (in the watching process)", flush=True)
        store = tmp / "refresh" / "out" / "store"
        store_mib = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 2**20
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\n| step | wall | CPU | peak RSS |")
    print("|---|---:|---:|---:|")
    for label, m in results:
        print(f"| {label} | {m.wall_s:.1f} s | {m.cpu_s:.1f} s | {m.peak_mib:,.0f} MiB |")
    refreshed, rebuilt = results[1][1], results[3][1]
    ratio = refreshed.wall_s / rebuilt.wall_s
    print(f"\nrefresh / rebuild = {ratio:.1%} wall, {refreshed.cpu_s / rebuilt.cpu_s:.1%} CPU "
          f"(target ≤ {TARGET_SHARE:.0%} wall: {'met' if ratio <= TARGET_SHARE else 'not met'}); store {store_mib:,.1f} MiB")
    print(f"watch refresh / rebuild = {watched / rebuilt.wall_s:.1%} wall ({watched:.2f} s: covgap watch, one "
          "process that keeps its imports, layers and layer side)")
    print(f"at the end: {load()}")


if __name__ == "__main__":
    main()
