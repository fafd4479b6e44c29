"""``covgap watch``: refresh the outputs whenever new measurement files arrive (docs/refresh.md, "Watching a folder").

One process stays up: its imports, the layers and the analysis' layer side (what needs no
measurement: village pieces, road graph, fibre figures and plan) are loaded once, so each
refresh is the reading of the new files, the analysis and the outputs only. A refresh is
``covgap refresh`` of the files that came in (the same code, :func:`covgap.cli._execute`),
under the same output lock, with the same atomic swap of the output folder.

A file is taken in once it has stopped changing: its size and modification time the same
for ``settle`` seconds (a file still being copied in is not read half-written). Files that
were there when watching began and had not changed for ``settle`` seconds are taken at once
(those already in the store are skipped by their SHA-256, as by ``refresh``). A file taken,
skipped or refused is looked at again only when it changes. When the configuration file or
a layer changes, both are loaded again before the next refresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from covgap.errors import CovgapError

P = TypeVar("P")

#: The files beside a shapefile that hold its attributes, index and CRS (an edit may change only them).
SHAPEFILE_SIDECARS = (".dbf", ".shx", ".prj", ".cpg")


@dataclass
class _Seen:
    state: tuple[int, int]  # size, modification time (ns)
    since: float  # when this state was first seen (monotonic clock)
    settled: bool = False  # unchanged for the settle time (or old when watching began)
    done: bool = False  # taken in, skipped or refused in this state


class FileWatch:
    """Which files are new or changed and have stopped changing (see the module's docstring).

    ``clock``: a monotonic clock (seconds); ``wall``: the time files' modification times are
    compared with at the first look.
    """

    def __init__(self, settle_s: float, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.settle_s = settle_s
        self._clock, self._wall = clock, wall
        self._files: dict[Path, _Seen] = {}
        self._looked = False

    def ready(self, paths: Iterable[Path]) -> list[Path]:
        """Of ``paths``, those to take in now, in the order given; files no longer there are forgotten."""
        now, first = self._clock(), not self._looked
        self._looked = True
        files: dict[Path, _Seen] = {}
        for path in paths:
            try:
                st = Path(path).stat()
            except OSError:  # gone since it was listed
                continue
            state = (st.st_size, st.st_mtime_ns)
            seen = self._files.get(path)
            if seen is None or seen.state != state:
                old = first and self._wall() - st.st_mtime_ns / 1e9 >= self.settle_s
                seen = _Seen(state, now, settled=old)
            if not seen.settled and now - seen.since >= self.settle_s:
                seen.settled = True
            files[path] = seen
        self._files = files
        return [p for p, s in files.items() if s.settled and not s.done]

    def done(self, paths: Iterable[Path]) -> None:
        """These files were taken in, skipped or refused: not again until they change."""
        for path in paths:
            if path in self._files:
                self._files[path].done = True


def inputs_state(paths: Iterable[Path]) -> tuple:
    """Size and modification time of each path (and of a shapefile's sidecar files): what says that the
    configuration or a layer changed. A missing file is part of the state too."""
    out: list[tuple[str, int | None, int | None]] = []
    for path in paths:
        path = Path(path)
        for p in [path] + ([path.with_suffix(s) for s in SHAPEFILE_SIDECARS] if path.suffix.lower() == ".shp" else []):
            try:
                st = p.stat()
                out.append((str(p), st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((str(p), None, None))
    return tuple(out)


def watch(*, inputs: Callable[[], tuple], prepare: Callable[[], P], files: Callable[[P], list[Path]],
          refresh: Callable[[P, list[Path]], object], echo: Callable[[str], None], every_s: float, settle_s: float,
          sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
          wall: Callable[[], float] = time.time, cycles: int | None = None) -> None:
    """Look for new files every ``every_s`` seconds and refresh with those that are ready, until Ctrl-C
    (or ``cycles`` looks, for tests).

    ``inputs()``: the state of the configuration and layers (:func:`inputs_state`); when it changes,
    ``prepare()`` loads them again and gives what ``files`` and ``refresh`` work with. ``files(prepared)``:
    the measurement files; ``refresh(prepared, paths)``: takes them in and rewrites the outputs. An
    error covgap explains (a layer that cannot be read, the outputs locked by another run) is shown
    once and tried again at the next look; the files stay waiting.
    """
    watcher = FileWatch(settle_s, clock=clock, wall=wall)
    prepared: P | None = None
    state: tuple | None = None
    last_error = ""
    looks = 0
    while cycles is None or looks < cycles:
        looks += 1
        try:
            now_state = inputs()
            if now_state != state:
                if state is not None:
                    echo("The configuration or a layer changed: loading them again.")
                state, prepared = now_state, None
                prepared = prepare()
            if prepared is not None:
                ready = watcher.ready(files(prepared))
                if ready:
                    refresh(prepared, ready)
                    watcher.done(ready)
                last_error = ""
        except CovgapError as err:
            if str(err) != last_error:  # shown once, not at every look
                echo(f"Error: {err}")
            last_error = str(err)
        if cycles is None or looks < cycles:
            sleep(every_s)
