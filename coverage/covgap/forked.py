"""Run one function in a forked child process while this one does other work: the second core for output writing.

A run's outputs are independent files written into the same temporary folder; the
partner packages (shapefiles, GeoPackages, zips) are written by a forked child while the
main process writes the other outputs. Fork shares the results without pickling them.
The child sends back only whether it succeeded, and if not, the error's message and
traceback: an error covgap raises on purpose (:class:`~covgap.errors.CovgapError`) stays
a one-line message; anything else is raised as a :class:`ForkedError` with the child's
traceback.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import traceback
from collections.abc import Callable
from typing import Any

from covgap.errors import CovgapError

log = logging.getLogger(__name__)


class ForkedError(RuntimeError):
    """A function run in a forked child failed for a reason other than bad input (a bug)."""

    def __init__(self, message: str, trace: str):
        super().__init__(message)
        self.trace = trace


def _child(fn: Callable[..., Any], args: tuple, outbox) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's: it stops this one (Forked.cancel)
    try:
        fn(*args)
        outbox.put(("ok", "", "", ""))
    except BaseException as err:  # everything goes back to the parent, which decides
        kind = "covgap" if isinstance(err, CovgapError) else type(err).__name__
        outbox.put(("error", kind, str(err), traceback.format_exc()))


class Forked:
    """``fn(*args)`` running in a forked child; :meth:`result` waits for it and raises its error."""

    def __init__(self, fn: Callable[..., Any], *args: Any):
        self._fn, self._args = fn, args
        try:
            ctx = multiprocessing.get_context("fork")
        except ValueError:  # no fork on this platform: run it in :meth:`result`
            self._proc = None
            return
        self._outbox = ctx.Queue()
        self._proc = ctx.Process(target=_child, args=(fn, args, self._outbox), daemon=True, name="covgap-writer")
        self._proc.start()

    def result(self) -> None:
        if self._proc is None:
            self._fn(*self._args)
            return
        while True:
            try:
                status, kind, message, trace = self._outbox.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._proc.is_alive():
                    raise ForkedError(f"the process writing {getattr(self._fn, '__name__', 'outputs')} ended unexpectedly "
                                      f"(exit code {self._proc.exitcode}; killed, or out of memory?)", "") from None
        self._proc.join()
        if status == "ok":
            return
        if kind == "covgap":
            raise CovgapError(message)
        log.debug("the child process failed:\n%s", trace)
        raise ForkedError(f"{kind}: {message}", trace)

    def cancel(self) -> None:
        """Stop the child (the main process failed: its work is abandoned with the temporary folder)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join()
