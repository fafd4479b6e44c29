"""What the run targets ask of the reader: ``covgap run`` with a reader of a given cost per block.

A run is reading (the blocks of a file, on the reading processes) plus everything else (the
interpreter and imports, the layers, the scan and hash of the file, the duplicates, the analysis,
every output and the maps). To know how fast a reader must be for a run to reach a target, this
script times whole ``covgap run`` processes in which the reading of a block costs a chosen amount
of CPU and everything else is covgap's own:

1. **record**: ``covgap run`` as usual, each block's result (``ingest.BlockResult``: its cell
   statistics, row keys and rejected rows) pickled into a temporary folder;
2. **budget B ms**: ``covgap run`` again in a fresh folder, where ``ingest.process_block`` loads the
   block's recorded result and then spins until B ms of CPU have passed since it began (B = 0:
   only the loading). The reading processes, the scan, the duplicates and all that follows run as
   usual on those results;
3. the outputs of every budgeted run are compared with the recorded run's (the village
   scorecard, the district's figures, the rejected rows, the two rasters): the same bytes.

It prints a table of wall and CPU seconds by budget beside the real run; with ``--workflow-s``
(the geopandas workflow's wall time on the same file, from geopandas_workflow.py) the ratio too::

    .venv/bin/python benchmarks/reader_budget.py --rows 20000000 --budgets 120 80 60 40 0 [--workflow-s 86.1]

A block is 16 MiB, about 250,000 rows of the benchmark files; the real reader spends about
105-120 ms of CPU on one alone, more in a run (two reading processes and the main one share the
two cores and their memory bandwidth).
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen import CACHE_DIR, cached_measurements  # noqa: E402
from measure import covgap_command, load, machine, measure, write_project  # noqa: E402

#: The outputs compared between the recorded run and the budgeted ones.
COMPARED = ("scorecard_villages.csv", "scorecard_district_figures.csv", "rejected_rows.csv", "cell_class.tif",
            "best_4g_rsrp_p50_dbm.tif")


def child(mode: str, budget_ms: float, results: Path, config: Path) -> None:
    """Run ``covgap -q run`` in this process with ``ingest.process_block`` replaced (record or budget)."""
    from covgap import cli, ingest

    real = ingest.process_block

    def name(block, source_file: str) -> Path:
        return results / f"{source_file}-{block.first_line}.pkl"

    def recording(block, fmt, ctx, grid, crs, source_file, path=None, *, compiled=False):
        res = real(block, fmt, ctx, grid, crs, source_file, path, compiled=compiled)
        name(block, source_file).write_bytes(pickle.dumps(res, protocol=5))
        return res

    def budgeted(block, fmt, ctx, grid, crs, source_file, path=None, *, compiled=False):
        started = time.process_time()
        res = pickle.loads(name(block, source_file).read_bytes())
        while time.process_time() - started < budget_ms / 1000:
            pass
        return res

    ingest.process_block = recording if mode == "record" else budgeted
    sys.argv = ["covgap", "-q", "run", "--config", str(config)]
    cli.main()


def run(config: Path, *args: str):
    """One ``covgap run`` (or a child of this script) in a fresh output folder next to ``config``."""
    out = config.parent / "out"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(config.parent / "maps", ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", *args, str(config)] if args else \
        [covgap_command(), "-q", "run", "--config", str(config)]
    return measure(cmd, cwd=config.parent, ok_codes=(0, 3))


def outputs_of(config: Path) -> dict[str, bytes]:
    return {name: (config.parent / "out" / name).read_bytes() for name in COMPARED}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--budgets", type=float, nargs="+", default=[120.0, 80.0, 60.0, 40.0, 0.0],
                        help="CPU milliseconds a block's reading costs, one run each")
    parser.add_argument("--workflow-s", type=float, default=None,
                        help="the geopandas workflow's wall seconds on the same file, for the ratio")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "BUDGET_MS", "RESULTS"), help=argparse.SUPPRESS)
    parser.add_argument("config", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, budget, results = args.child
        child(mode, float(budget), Path(results), args.config)
        return

    csv_path, _ = cached_measurements(args.rows, seed=args.seed, cache_dir=args.cache_dir)
    print(f"machine: {machine()}\nfile: {csv_path} ({args.rows:,} rows)", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="covgap-reader-budget-"))
    try:
        config = write_project(folder, [csv_path])
        results = folder / "blocks"
        results.mkdir()
        real = run(config)
        recorded = run(config, "record", "0", str(results))
        expected = outputs_of(config)
        blocks = len(os.listdir(results))
        if not blocks:
            raise SystemExit("no block was recorded: covgap no longer reads through ingest.process_block")
        rows = [("covgap run (the real reader)", real), ("recording run (the real reader, results pickled)", recorded)]
        for budget in args.budgets:
            m = run(config, "budget", str(budget), str(results))
            got = outputs_of(config)
            if got != expected:
                raise SystemExit(f"budget {budget:g} ms: the outputs differ from the recorded run's: "
                                 f"{[n for n in COMPARED if got[n] != expected[n]]}")
            rows.append((f"reader at {budget:g} ms of CPU a block", m))
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"\n{blocks} blocks; the outputs of every budgeted run are the recorded run's, byte for byte "
          f"({', '.join(COMPARED)}).\n")
    ratio_head = " | workflow / run" if args.workflow_s else ""
    print(f"| reading | wall | CPU | peak{ratio_head} |")
    print(f"|---|---:|---:|---:{'|---:' if args.workflow_s else ''}|")
    for label, m in rows:
        ratio = f" | {args.workflow_s / m.wall_s:.2f}×" if args.workflow_s else ""
        print(f"| {label} | {m.wall_s:.2f} s | {m.cpu_s:.1f} s | {m.peak_mib:,.0f} MiB{ratio} |")
    print(f"\nat the end: {load()}")


if __name__ == "__main__":
    main()
