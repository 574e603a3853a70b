"""Checks of the ``caloforge`` command's outputs, made before any work starts.

A command that would compute for minutes and then find that it cannot write its result instead stops at
once with one line naming the output and the reason (exit code 2, through ``_user_errors``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class OutputNotWritableError(ValueError):
    """An output cannot be written: its folder is missing, is a file, or takes no new files."""


def check_writable(path: str | os.PathLike, *, folder: bool = False) -> Path:
    """Check that ``path`` can be written; returns it as a Path.

    ``folder=False``: ``path`` is a file; its folder must exist and take new files (the file itself may
    exist: whether to replace or extend it is the command's decision). ``folder=True``: ``path`` is a folder
    that exists, or is made by the command with its missing parents; the nearest existing one must take new
    files. The test creates and removes an empty probe file there, so that it also holds for root (whom the
    permission bits do not stop) and on read-only file systems.

    Raises:
        OutputNotWritableError: one line naming ``path`` and the reason.
    """
    target = Path(path)
    try:
        where = _nearest_folder(target, folder)
    except OSError as err:  # a folder on the way that may not be looked into
        raise OutputNotWritableError(f"{target}: cannot write there ({err.strerror}: {err.filename})") from None
    if not folder and where != target.parent:
        raise OutputNotWritableError(f"{target}: cannot write there, folder {target.parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".probe", dir=where)
    except OSError as err:
        raise OutputNotWritableError(f"{target}: cannot write in folder {where} ({err.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    return target


def _nearest_folder(target: Path, folder: bool) -> Path:
    """The folder that receives ``target`` (``folder``: the nearest existing one of ``target`` and its parents)."""
    if folder and target.exists() and not target.is_dir():
        raise OutputNotWritableError(f"{target}: exists and is not a folder")
    if not folder and target.is_dir():
        raise OutputNotWritableError(f"{target}: is a folder, give a file name")
    where = target if folder else target.parent
    while not where.is_dir():  # up to the nearest existing folder
        if where.exists():
            raise OutputNotWritableError(f"{target}: cannot write there, {where} is a file, not a folder")
        where = where.parent
    return where
