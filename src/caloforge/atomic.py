"""Atomic file writing: a file appears whole under its name, or not at all.

Every writer of caloforge (sample files, checkpoints, CSV logs, ONNX exports, reports, hits files) writes
to ``<name>.partial`` beside the target and renames it over the target only when it finished; a failure or
an interruption removes the ``.partial`` file and leaves the target as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def partial_path(path: str | os.PathLike) -> Path:
    """The temporary name ``<path>.partial`` that :func:`atomic_path` writes to."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Give a temporary path to write to; it replaces ``path`` when the block ends without an exception.

    On an exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is left as it
    was. The block may copy ``path`` to the temporary file first to extend it.
    """
    target = Path(path)
    tmp = partial_path(target)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
