"""The one family of errors covgap raises on bad input or configuration.

Every message says what is wrong, where (file, row, column) and how to fix it,
so that the command line can print it as one line without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np


def plain(value) -> str:
    """A value as a message shows it: numpy scalars as the Python value they hold.

    ``plain(np.float64("nan"))`` is ``nan`` and ``plain(np.str_("a"))`` is ``'a'``, where
    ``repr`` gives ``np.float64(nan)`` and ``np.str_('a')`` (numpy 2).
    """
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


class CovgapError(Exception):
    """Base class of every error covgap raises deliberately."""


class ConfigError(CovgapError):
    """The configuration file is missing, unreadable or has a bad value."""


class InputError(CovgapError):
    """An input layer or file cannot be used.

    Parameters
    ----------
    path
        The file the problems were found in.
    problems
        Every problem found, each one sentence naming the column or row, what was
        found and what was expected. Readers collect them all and raise once.
    counts
        Optional number of problems found per kind, when ``problems`` shows only
        the first few of each (see :class:`ProblemCollector`); the message then
        starts with the total and the count per kind.
    """

    def __init__(self, path: str | Path, problems: Iterable[str], *, counts: Mapping[str, int] | None = None):
        self.path = Path(path)
        self.problems = list(problems)
        self.counts = dict(counts) if counts else {}
        if not self.problems:
            raise ValueError("InputError needs at least one problem")
        total = sum(self.counts.values()) if self.counts else len(self.problems)
        if total == 1:
            message = f"{self.path}: {self.problems[0]}"
        elif self.counts:
            kinds = ", ".join(f"{n} × {kind}" for kind, n in self.counts.items())
            listed = "; ".join(f"({i}) {p}" for i, p in enumerate(self.problems, 1))
            more = total - len(self.problems)
            message = (f"{self.path}: {total} problems ({kinds}); "
                       f"{'first ' + str(len(self.problems)) if more else 'they are'}: {listed}")
        else:
            listed = "; ".join(f"({i}) {p}" for i, p in enumerate(self.problems, 1))
            message = f"{self.path}: {total} problems: {listed}"
        super().__init__(message)


class ProblemCollector:
    """Every problem found in one file, counted by kind, raised once as an :class:`InputError`.

    ``add(kind, detail)`` counts every problem and keeps the first ``per_kind`` of
    each kind for the message (at most ``shown`` in all), so a layer with 100 bad
    rows gives one line that still says how many there are of each kind.
    """

    def __init__(self, path: str | Path, *, per_kind: int = 2, shown: int = 6):
        self.path = Path(path)
        self.per_kind = per_kind
        self.shown = shown
        self.counts: dict[str, int] = {}
        self.details: list[str] = []

    def add(self, kind: str, detail: str) -> None:
        """Count one problem of ``kind``; ``detail`` names the row or column, the value and the fix."""
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        if n < self.per_kind and len(self.details) < self.shown:
            self.details.append(detail)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def raise_if_any(self) -> None:
        """Raise one :class:`InputError` listing the counts and the first problems, if any was added."""
        if self.counts:
            raise InputError(self.path, self.details, counts=self.counts)


class OutputError(CovgapError):
    """An output cannot be written (folder not writable, another run holds the lock)."""


class EngineError(CovgapError):
    """The reading engine cannot start: Dask not installed, scheduler out of reach (docs/scale.md)."""
