"""Benchmark: wall time and peak memory of `covgap demo` on the bundled sample district.

Runs the demo N times (default 3) in a fresh subprocess each, into a temporary folder,
and prints the wall time of each run and the peak resident memory of the largest
child (``getrusage(RUSAGE_CHILDREN).ru_maxrss``). The numbers in docs/benchmark.md come
from this script. Speed is measured here, not in unit tests, which are flaky on shared
machines.

    .venv/bin/python benchmarks/run_benchmark.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    covgap = Path(sys.executable).with_name("covgap")
    times = []
    for i in range(args.runs):
        work = Path(tempfile.mkdtemp(prefix="covgap-bench-"))
        try:
            start = time.perf_counter()
            subprocess.run([str(covgap), "-q", "demo", "--out", str(work / "out"), "--maps", str(work / "maps")],
                           check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
            sizes = {p.name: p.stat().st_size for p in (work / "maps").glob("*.html")}
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"run {i + 1}: {times[-1]:.2f} s")
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"covgap demo wall time: min {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s "
          f"over {len(times)} runs")
    print(f"peak RSS: {peak_mib:.0f} MiB")
    if sizes:
        print(f"maps: {len(sizes)} pages, largest {max(sizes.values()) / 1024:.0f} KiB, "
              f"total {sum(sizes.values()) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
