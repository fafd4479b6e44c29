"""The one family of errors covgap raises on bad input or configuration.

Every message says what is wrong, where (file, row, column) and how to fix it,
so that the command line can print it as one line without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
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
    """

    def __init__(self, path: str | Path, problems: Iterable[str]):
        self.path = Path(path)
        self.problems = list(problems)
        if not self.problems:
            raise ValueError("InputError needs at least one problem")
        if len(self.problems) == 1:
            message = f"{self.path}: {self.problems[0]}"
        else:
            listed = "; ".join(f"({i}) {p}" for i, p in enumerate(self.problems, 1))
            message = f"{self.path}: {len(self.problems)} problems: {listed}"
        super().__init__(message)


class OutputError(CovgapError):
    """An output cannot be written (folder not writable, another run holds the lock)."""
