"""Atomic file writing: a file appears whole under its name, or not at all, also when the program is stopped.

Every writer of caloforge (sample files, checkpoints, CSV logs, ONNX exports, reports, hits files) writes
to ``<name>.partial`` beside the target and renames it over the target only when it finished; a failure or
an interruption removes the ``.partial`` file and leaves the target as it was. A ``.partial`` file that is
there when a write begins was left by a run that was killed (SIGKILL, a crash of the machine): it is named
on stderr and replaced, unless a running process has it open (another run writing the same file), which is
an error.

Stop requests: :func:`install_signal_handlers` (called by the ``caloforge`` command) makes SIGINT, SIGTERM
and SIGHUP raise :class:`Interrupted` (a ``KeyboardInterrupt``) in the main thread and remembers the
signal. Python drops an exception raised while it runs a finaliser or a weakref callback (``Exception
ignored in ...``); the remembered signal is raised again by :func:`raise_if_stopped`, which long loops call
and which :func:`atomic_path` calls before it renames, so that a stop request is never lost and never lets
a file be completed after it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_SUFFIX = ".partial"
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
"""The signals that stop the ``caloforge`` command cleanly (exit status 128 + the signal's number)."""

_log = logging.getLogger(__name__)
_stop_signal: int | None = None


class Interrupted(KeyboardInterrupt):
    """A stop request by a signal (SIGINT, SIGTERM, SIGHUP); ``signum`` is its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_signal() -> int | None:
    """The first stop signal received since :func:`install_signal_handlers`, or None."""
    return _stop_signal


def raise_if_stopped() -> None:
    """Raise :class:`Interrupted` if a stop signal was received (even one whose first exception was lost)."""
    if _stop_signal is not None:
        raise Interrupted(_stop_signal)


def _on_stop_signal(signum: int, frame) -> None:
    global _stop_signal
    if _stop_signal is None:
        _stop_signal = signum
    raise Interrupted(signum)


def _unraisable_hook(args) -> None:
    """Stay silent about a stop request lost in a finaliser: :func:`raise_if_stopped` raises it again."""
    if not isinstance(args.exc_value, Interrupted):
        _previous_unraisable_hook(args)


_previous_unraisable_hook = sys.unraisablehook


def install_signal_handlers() -> None:
    """Make the stop signals raise :class:`Interrupted` in the main thread (call it from the main thread).

    A signal that is ignored when the program starts (SIGINT of a background job, SIGHUP under ``nohup``)
    stays ignored.
    """
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_stop_signal)
    global _previous_unraisable_hook
    if sys.unraisablehook is not _unraisable_hook:
        _previous_unraisable_hook, sys.unraisablehook = sys.unraisablehook, _unraisable_hook


class PartialFileBusyError(ValueError):
    """The ``.partial`` file of an output is open in a running process: another run writes the same file."""


def _processes_holding(path: Path) -> list[int]:
    """The processes that have ``path`` open (Linux: from /proc; only those this user may inspect; elsewhere
    none, and a ``.partial`` file is always taken as stale)."""
    target = os.path.realpath(path)
    pids = []
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return []
    for pid in entries:
        try:
            fds = list(os.scandir(f"/proc/{pid}/fd"))
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd.path) == target:
                    pids.append(int(pid))
                    break
            except OSError:
                continue
    return pids


def partial_path(path: str | os.PathLike) -> Path:
    """The temporary name ``<path>.partial`` that :func:`atomic_path` writes to."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Give a temporary path to write to; it replaces ``path`` when the block ends without an exception.

    On an exception (KeyboardInterrupt included), or when a stop signal was received, the temporary file
    is removed and ``path`` is left as it was. The block may copy ``path`` to the temporary file first to
    extend it. A temporary file from an earlier run that was killed is removed first (with a line on
    stderr).

    Raises:
        PartialFileBusyError: a running process has the temporary file open.
    """
    target = Path(path)
    tmp = partial_path(target)
    if tmp.exists():
        holders = _processes_holding(tmp)
        if holders:
            raise PartialFileBusyError(
                f"{tmp} is being written by process {holders[0]} (another run writing {target.name}?): "
                "let it finish or stop it first"
            )
        _log.warning("removing stale %s from an earlier run that was killed", tmp)
        tmp.unlink()
    try:
        yield tmp
        raise_if_stopped()
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
