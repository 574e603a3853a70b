"""A ``dask.distributed`` client for a run: a local cluster, an existing scheduler, or batch jobs (YAML).

``--cluster`` takes one of:

* ``local``: a :class:`distributed.LocalCluster` of ``workers`` processes of one thread each (default: all
  cores) on this machine;
* a scheduler address (``tcp://host:8786``, or ``host:8786``) of a cluster started elsewhere;
* a YAML file (``.yaml`` / ``.yml``) naming a dask-jobqueue cluster: ``kind`` (``htcondor`` or ``slurm``),
  ``jobs`` (batch jobs to start; ``--workers`` overrides it) and ``cluster`` (the keyword arguments of
  :class:`dask_jobqueue.HTCondorCluster` / :class:`dask_jobqueue.SLURMCluster`: ``cores``, ``memory``,
  ``queue``, ``job_extra_directives``, ...). Examples: ``examples/cluster/``.

A worker that dies with a task is replaced (the nanny restarts it) and the task given to another worker, at most
``allowed_failures`` times (dask's ``distributed.scheduler.allowed-failures``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

JOBQUEUE_KINDS = {"htcondor": "HTCondorCluster", "slurm": "SLURMCluster"}
"""The ``kind`` of a cluster YAML file -> the dask-jobqueue class it starts."""


class ClusterError(ValueError):
    """A ``--cluster`` value or cluster YAML file that cannot be used (one line for the user)."""


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def read_cluster_file(path: str | os.PathLike) -> tuple[str, int, dict]:
    """``(kind, jobs, keyword arguments)`` of a cluster YAML file (see the module docstring).

    Raises:
        ClusterError: a missing or unreadable file, an unknown kind or key, a bad ``jobs``.
    """
    import yaml

    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ClusterError(f"{path}: cannot read the cluster file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ClusterError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(spec, dict):
        raise ClusterError(f"{path}: expected a mapping with kind, jobs and cluster")
    unknown = sorted(set(spec) - {"kind", "jobs", "cluster"})
    if unknown:
        raise ClusterError(f"{path}: unknown key(s) {', '.join(unknown)}; expected kind, jobs and cluster")
    kind = spec.get("kind")
    if kind not in JOBQUEUE_KINDS:
        raise ClusterError(f"{path}: kind {kind!r}: choose one of {', '.join(JOBQUEUE_KINDS)}")
    jobs = spec.get("jobs", 1)
    if not isinstance(jobs, int) or jobs < 1:
        raise ClusterError(f"{path}: jobs {jobs!r}: give a positive number of batch jobs")
    kwargs = spec.get("cluster") or {}
    if not isinstance(kwargs, dict):
        raise ClusterError(f"{path}: cluster must be a mapping of {JOBQUEUE_KINDS[kind]} keyword arguments")
    return kind, jobs, kwargs


def _is_address(text: str) -> bool:
    return "://" in text or (":" in text and not text.lower().endswith((".yaml", ".yml")) and not Path(text).exists())


@contextmanager
def open_client(cluster: str, *, workers: int | None = None, allowed_failures: int = 3) -> Iterator:
    """A :class:`distributed.Client` for ``cluster`` (see the module docstring), closed (and a cluster started
    here shut down) when the block ends.

    Args:
        cluster: ``local``, a scheduler address or a cluster YAML file.
        workers: local worker processes (default: all cores), or batch jobs of a YAML cluster (default: its
            ``jobs``); ignored for an address.
        allowed_failures: how often a task may lose its worker before it counts as failed (clusters started here).

    Raises:
        ClusterError: a bad value, file or worker count.
    """
    import dask
    from distributed import Client, LocalCluster

    if workers is not None and workers < 1:
        raise ClusterError(f"--workers {workers}: give at least 1")
    with ExitStack() as stack:
        stack.enter_context(dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}))
        if cluster == "local":
            n = workers or _cores()
            started = stack.enter_context(
                LocalCluster(n_workers=n, threads_per_worker=1, processes=True, silence_logs=40)
            )
            client = stack.enter_context(Client(started))
        elif cluster.lower().endswith((".yaml", ".yml")):
            import dask_jobqueue

            kind, jobs, kwargs = read_cluster_file(cluster)
            try:
                started = stack.enter_context(getattr(dask_jobqueue, JOBQUEUE_KINDS[kind])(**kwargs))
            except TypeError as err:
                raise ClusterError(f"{cluster}: {err}") from None
            started.scale(jobs=workers or jobs)
            client = stack.enter_context(Client(started))
        elif _is_address(cluster):
            try:
                client = stack.enter_context(Client(cluster, timeout="30s"))
            except OSError as err:
                raise ClusterError(f"--cluster {cluster}: no scheduler reached there ({err})") from None
        else:
            raise ClusterError(f"--cluster {cluster!r}: give local, a scheduler address (tcp://host:8786) or a "
                               "cluster YAML file")
        yield client
