"""Run one function in a forked child process while this one does other work: the second core.

Two uses. A run's outputs are independent files written into the same temporary folder;
the partner packages (shapefiles, GeoPackages, zips) are written by a forked child while
the main process writes the other outputs. And the analysis has two independent sides:
the fibre figures and the fibre plan (which never depend on the measurements) are worked
out by a forked child while the main process works out the signal side
(:func:`covgap.pipeline.analyse`).

Fork shares the inputs without pickling them. The child sends back the function's value
(pickled: keep it small) or, if it failed, the error's message and traceback: an error
covgap raises on purpose (:class:`~covgap.errors.CovgapError`) stays a one-line message;
anything else is raised as a :class:`ForkedError` with the child's traceback.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
import traceback
from collections.abc import Callable
from typing import Any, cast

from covgap.errors import CovgapError

log = logging.getLogger(__name__)


class ForkedError(RuntimeError):
    """A function run in a forked child failed for a reason other than bad input (a bug)."""

    def __init__(self, message: str, trace: str):
        super().__init__(message)
        self.trace = trace


def _child(fn: Callable[..., Any], args: tuple, outbox, parent: int | None) -> None:
    import signal

    if parent is not None:
        end_with_parent(parent)
    # The queue's reading end, inherited by fork, is the parent's alone: were the parent gone, a large value
    # would otherwise fill the pipe with no one to read it, and this process wait at its exit for ever.
    outbox._reader.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's: it stops this one (Forked.cancel)
    signal.signal(signal.SIGTERM, _stopped)  # Forked.cancel: end as an error does, stopping this child's own children
    try:
        try:
            value = fn(*args)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # fn is done: a stop now simply ends this process
        outbox.put(("ok", value, "", ""))
    except _Stopped:
        return
    except BaseException as err:  # everything goes back to the parent, which decides
        kind = "covgap" if isinstance(err, CovgapError) else type(err).__name__
        outbox.put(("error", kind, str(err), traceback.format_exc()))


def parent_to_end_with() -> int | None:
    """This process's id, for a child it forks now to end with it (:func:`end_with_parent`); None when this is not the
    main thread: Linux ends the child when the *thread* that forked it ends."""
    return os.getpid() if threading.current_thread() is threading.main_thread() else None


def end_with_parent(parent: int) -> None:
    """Ask Linux to end this process when its parent ends (``PR_SET_PDEATHSIG``): a main process killed
    outright (SIGKILL, the out-of-memory killer) leaves no helper behind, writing into a temporary folder
    no one will use. Elsewhere, or if the call fails, nothing (the closed queue end above still lets the
    child end once its work is done). ``parent``: :func:`parent_to_end_with`, in the parent."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:  # 1: PR_SET_PDEATHSIG
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent ended before the request: end now
        os._exit(1)


class _Stopped(BaseException):
    """A child stopped by its parent (SIGTERM from :meth:`Forked.cancel`)."""


def _stopped(signum, frame) -> None:
    raise _Stopped()


class Forked:
    """``fn(*args)`` running in a forked child; :meth:`result` waits for it, returns its value or raises its error.

    With ``inline=True`` (one core, or no ``fork`` on this platform) nothing is forked and
    :meth:`result` calls ``fn(*args)`` itself. With ``with_children=True`` the child may fork
    children of its own (it is not daemonic, so use it as a context manager). Used as a
    context manager, the child is stopped when the block ends without its result (an error,
    or Ctrl-C, in the work done meanwhile: the child's work is abandoned with it)::

        with Forked(fibre_side, layers) as other:
            signal = signal_side(layers)
            fibre = other.result()
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, inline: bool = False, with_children: bool = False):
        self._fn, self._args = fn, args
        self._proc: Any = None
        self._collected = False
        if inline or multiprocessing.current_process().daemon:  # a daemonic process may not have children
            return
        try:
            ctx = multiprocessing.get_context("fork")
        except ValueError:  # no fork on this platform: run it in :meth:`result`
            return
        self._outbox = ctx.Queue()
        # Daemonic (ended with this process if it is never waited for), unless ``with_children``: a daemonic process
        # may not start processes of its own (fn then runs its own Forked inline).
        parent = parent_to_end_with()
        self._proc = ctx.Process(target=_child, args=(fn, args, self._outbox, parent), daemon=not with_children,
                                 name=f"covgap-{getattr(fn, '__name__', 'child')}")
        self._proc.start()
        # This process only reads the queue: with its end closed, a child that dies in the middle of sending
        # ends the queue (EOFError in :meth:`result`) instead of leaving a message that never completes.
        cast(Any, self._outbox)._writer.close()

    @property
    def forked(self) -> bool:
        """Whether ``fn`` runs in a child (else :meth:`result` runs it here)."""
        return self._proc is not None

    def __enter__(self) -> Forked:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._collected:  # the block ended without the child's result: an error or Ctrl-C meanwhile
            self.cancel()

    def result(self) -> Any:
        if self._proc is None:
            return self._fn(*self._args)
        while True:
            try:
                status, value, message, trace = self._outbox.get(timeout=0.5)
                break
            except (queue.Empty, EOFError, OSError) as err:
                if not isinstance(err, queue.Empty):  # the queue ended: the child is gone, or going
                    self._proc.join()
                if not self._proc.is_alive():
                    raise ForkedError(f"the process running {getattr(self._fn, '__name__', 'a part of the run')} ended unexpectedly "
                                      f"(exit code {self._proc.exitcode}; killed, or out of memory?)", "") from None
        self._proc.join()
        self._collected = True  # the child is done (not before: Ctrl-C while waiting must still stop it)
        if status == "ok":
            return value
        kind = value
        if kind == "covgap":
            raise CovgapError(message)
        log.debug("the child process failed:\n%s", trace)
        raise ForkedError(f"{kind}: {message}", trace)

    def cancel(self) -> None:
        """Stop the child (the main process failed: its work is abandoned with the temporary folder)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()  # the child stops its own children first (SIGTERM ends fn: see _child)
            self._proc.join(timeout=CANCEL_WAIT_S)
            if self._proc.is_alive():  # stuck in a long call that does not return to Python: ended outright
                self._proc.kill()
                self._proc.join()


#: Seconds a stopped child has to stop its own children before it is killed outright.
CANCEL_WAIT_S = 5.0
