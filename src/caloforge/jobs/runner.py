"""Run the chunks of a job: skip those whose output exists, submit the rest, retry, and name the failures.

A chunk is one call ``func(output, *args) -> events`` that writes one file, atomically (``caloforge.atomic``): a
file that exists is a finished chunk, so a run that was stopped or killed resumes by running again, without redoing
finished chunks and without duplicates. Without a client the chunks run one after the other in this process; with
one they are submitted to its cluster with ``retries`` (a chunk that raises is run again) and the cluster's
``allowed-failures`` (a chunk whose worker dies is given to another worker). A chunk that fails every time is
named in :attr:`RunReport.failed`; the other chunks are kept. A job whose size is known only from its results
(Geant4 chunks until enough events are accepted) adds chunks as others finish (``then``), in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from caloforge.atomic import raise_if_stopped


@dataclass(frozen=True)
class Chunk:
    """One chunk of a job.

    Attributes:
        name: how the chunk is named in messages (e.g. ``chunk_00012``).
        output: the file the chunk writes; its existence marks the chunk finished.
        args: the chunk function's arguments after ``output`` (picklable).
        events: the events the chunk is expected to give (the progress bar's total; 0: not known).
    """

    name: str
    output: Path
    args: tuple = ()
    events: int = 0


@dataclass
class RunReport:
    """What a run of chunks did: chunks done now, skipped (their output existed), failed (name -> error)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    events: int = 0
    seconds: float = 0.0
    dashboard: str | None = None

    @property
    def events_per_s(self) -> float:
        return self.events / max(self.seconds, 1e-9)


class ChunksFailedError(ValueError):
    """Chunks failed every try: they are named, the chunks that finished are kept, and running the same command
    again retries the failed ones."""

    def __init__(self, failed: dict[str, str], *, kept: int, folder: str | Path) -> None:
        self.failed = dict(failed)
        names = "; ".join(f"{name} ({error})" for name, error in failed.items())
        super().__init__(f"{len(failed)} chunk(s) failed every try: {names}. The {kept} finished chunk(s) are kept "
                         f"in {folder}; run the same command again to retry the failed ones")


def _error_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def run_chunks(
    func: Callable[..., int],
    chunks: Sequence[Chunk],
    *,
    client: Any = None,
    retries: int = 2,
    progress: bool = True,
    desc: str = "chunks",
    then: Callable[[Chunk, int], Sequence[Chunk]] | None = None,
    per_chunk: str | None = None,
) -> RunReport:
    """Run ``func(chunk.output, *chunk.args)`` for every chunk whose output does not exist yet.

    Args:
        func: the chunk function (module level, so that workers can import it); returns the events it wrote.
        chunks: the chunks, in order (names unique).
        client: a :class:`distributed.Client`, or None to run the chunks here, one after the other.
        retries: extra tries of a chunk that raises (Dask's ``retries``; here too without a client).
        progress: one progress bar over all chunks, in events (events per second shown).
        desc: the progress bar's label.
        per_chunk: what a chunk is (e.g. ``file``), to have the progress bar count chunks, the events written so
            far beside it (for chunks whose events are not known before they run, such as whole input files);
            None: it counts events.
        then: called here (not on a worker) with each chunk done now and the events it wrote, as soon as it is
            done; the chunks it returns (names unique among all) are run in the same call, submitted at once, and
            counted in the same progress bar. Not called for skipped or failed chunks.

    Raises:
        caloforge.atomic.Interrupted: a stop signal (the chunks in flight are cancelled; finished ones kept).
    """
    report = RunReport(dashboard=getattr(client, "dashboard_link", None) if client is not None else None)
    todo = _not_done(chunks, report)
    t0 = time.perf_counter()

    def size(some: Sequence[Chunk]) -> int:
        """What ``some`` chunks add to the progress bar's total."""
        return len(some) if per_chunk else sum(c.events for c in some)

    with tqdm(total=size(todo) or None, unit=per_chunk or "evt", disable=not progress, desc=desc, smoothing=0.1) as bar:

        def finished(chunk: Chunk, n: int) -> list[Chunk]:
            """Count a chunk done now; the chunks that ``then`` adds (their expected events added to the bar)."""
            report.done.append(chunk.name)
            report.events += n
            bar.update(1 if per_chunk else n)
            if per_chunk:
                bar.set_postfix_str(f"{report.events:,} events", refresh=False)
            more = _not_done(then(chunk, n), report) if then is not None else []
            if more:
                bar.total = (bar.total or 0) + size(more)
                bar.refresh()
            return more

        if client is None:
            queue = list(todo)
            for chunk in queue:  # grows while it is walked: the chunks that ``then`` adds run after the others
                raise_if_stopped()
                for attempt in range(retries + 1):
                    try:
                        n = func(str(chunk.output), *chunk.args)
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except Exception as err:  # a failed chunk is named at the end; the others go on
                        if attempt == retries:
                            report.failed[chunk.name] = _error_line(err)
                        continue
                    queue.extend(finished(chunk, n))
                    break
        else:
            _run_on_client(func, todo, client, retries, report, finished)
    report.seconds = time.perf_counter() - t0
    return report


def _not_done(chunks: Sequence[Chunk], report: RunReport) -> list[Chunk]:
    """The chunks whose output does not exist yet; the others are counted skipped in ``report``."""
    todo = []
    for chunk in chunks:
        if Path(chunk.output).exists():
            report.skipped.append(chunk.name)
        else:
            todo.append(chunk)
    return todo


def _run_on_client(func: Callable[..., int], todo: Sequence[Chunk], client: Any, retries: int, report: RunReport,
                   finished: Callable[[Chunk, int], list[Chunk]]) -> None:
    """Submit ``todo`` to ``client`` and collect the results as they come, submitting the chunks that ``finished``
    adds at once (see :func:`run_chunks`)."""
    from distributed import as_completed

    def submit(c: Chunk) -> Any:
        return client.submit(func, str(c.output), *c.args, key=f"{c.name}-{c.output}", retries=retries, pure=False)

    futures = {submit(c): c for c in todo}
    results = as_completed(futures)
    try:
        for future in results:
            raise_if_stopped()
            chunk = futures[future]
            if future.status == "error":
                report.failed[chunk.name] = _error_line(future.exception())
                continue
            for more in finished(chunk, int(future.result())):
                new = submit(more)
                futures[new] = more
                results.add(new)
    except BaseException:
        client.cancel(list(futures))
        raise
