"""Measuring a benchmark step: each in a fresh subprocess, its wall time and its own peak RSS (``os.wait4``).

Also the covgap project every benchmark runs: the sample district's layers with the
generated measurement files (:func:`write_project`), and the child steps that are not a
covgap command (:data:`STAGES`: ``benchmarks/stages.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
STAGES = Path(__file__).resolve().with_name("stages.py")
GIB = 2**30


@dataclass(frozen=True)
class Measurement:
    """One subprocess: wall and CPU seconds, peak RSS in bytes, exit code, stdout and stderr.

    ``cpu_s`` (user + system time of the child and its threads) barely moves when other
    processes share the CPUs, while ``wall_s`` does: on a loaded machine compare CPU times.
    """

    wall_s: float
    cpu_s: float
    peak_rss: int
    exit_code: int
    stdout: str
    stderr: str = field(repr=False)

    @property
    def peak_mib(self) -> float:
        return self.peak_rss / 2**20

    def last_json(self) -> dict:
        """The last line of stdout read as JSON (what a stage prints)."""
        return json.loads(self.stdout.strip().splitlines()[-1])


def measure(cmd: list[str], *, cwd: Path | None = None, ok_codes: tuple[int, ...] = (0,)) -> Measurement:
    """Run ``cmd`` to its end; its wall time and its peak resident memory (``ru_maxrss`` of that child alone).

    Raises
    ------
    SystemExit
        The command ended with a code not in ``ok_codes``; its last output is shown.
    """
    started = time.monotonic()
    with open(os.devnull, "rb") as stdin:
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Drain both pipes without reaping the child (communicate() would), so that wait4 gets its rusage.
        out, err = _drain(proc)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    if code not in ok_codes:
        raise SystemExit(f"{' '.join(map(str, cmd))} exited with {code}:\n{err[-3000:]}{out[-2000:]}")
    return Measurement(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, peak_rss=usage.ru_maxrss * 1024, exit_code=code, stdout=out, stderr=err)


def _drain(proc: subprocess.Popen) -> tuple[str, str]:
    """Read stdout and stderr to their end without reaping the child (so that ``os.wait4`` can)."""
    import threading

    chunks: dict[str, str] = {}

    def read(name: str, stream) -> None:
        chunks[name] = stream.read()

    threads = [threading.Thread(target=read, args=(name, stream))
               for name, stream in (("out", proc.stdout), ("err", proc.stderr))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return chunks["out"], chunks["err"]


def covgap_command() -> str:
    """The ``covgap`` script of the running interpreter's environment."""
    return str(Path(sys.executable).with_name("covgap"))


def write_project(folder: Path, measurements: list[Path], *, name: str = "covgap.toml") -> Path:
    """A covgap.toml for the sample district (default thresholds) whose measurements are only ``measurements``.

    Outputs go to ``folder/out`` and ``folder/maps``.
    """
    sample = SAMPLE.as_posix()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    listed = ", ".join(json.dumps(p.as_posix()) for p in measurements)
    path.write_text(f"""[study]
name = "benchmark"

[inputs]
villages = "{sample}/villages.geojson"
fibre = "{sample}/fibre_routes.geojson"
population = "{sample}/settlement_density_100m.tif"
communes = {{ commune_2025 = "{sample}/communes_2025.geojson" }}
measurements = [{listed}]

[report]
level = "commune_2025"

[output]
dir = "{(folder / 'out').as_posix()}"
maps_dir = "{(folder / 'maps').as_posix()}"
""", encoding="utf-8")
    return path


def warm_page_cache(*paths: Path) -> None:
    """Read files once, so the step measured next finds them in the page cache as the others did.

    The geopandas workflow holds about 12 GiB at 2·10⁷ rows: it pushes the measurement file out of the
    page cache, and whatever runs after it would read from disk what the steps before it read from
    memory. Every step of a comparison starts from the same warm cache.
    """
    for path in paths:
        with open(path, "rb") as fh:
            while fh.read(16 << 20):
                pass


def run_covgap(config: Path) -> Measurement:
    """``covgap -q run --config CONFIG`` (exit 3, 'targets not met', is a normal end)."""
    return measure([covgap_command(), "-q", "run", "--config", str(config)], cwd=config.parent, ok_codes=(0, 3))


def run_stage(stage: str, *args: str | Path) -> Measurement:
    """``python benchmarks/stages.py STAGE ARGS``: a reading stage alone, in a fresh interpreter."""
    return measure([sys.executable, str(STAGES), stage, *map(str, args)])


def machine() -> str:
    """One line: architecture, CPUs, memory, Python, and the load average now (see :func:`load`)."""
    import platform

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {mem:.0f} GiB, Python {platform.python_version()}; {load()}"


def load() -> str:
    """The load average (1, 5 and 15 minutes) against the CPUs: above the CPU count, other work shared them.

    Printed at the start and end of every benchmark: a figure taken while other processes
    ran is slower than the machine is, and the ratios of one run are fair only if the load
    stayed the same.
    """
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} CPUs"
