"""Chunked jobs on Dask: a run cut into chunks (a seed range or an input file -> one output file), submitted to a
``dask.distributed`` cluster (a local one, an existing scheduler, or HTCondor / SLURM batch jobs through
dask-jobqueue), retried where a chunk fails or its worker dies, resumed without redoing finished chunks.

This stage knows nothing of what a chunk computes: the chunk functions live in their stages
(:func:`caloforge.data.production.simulate_sample_chunk`, :func:`caloforge.engine.chunks.simulate_gun_chunk`)
and the command composes them (``caloforge.cli.jobs``).
"""

from caloforge.jobs.cluster import ClusterError, open_client
from caloforge.jobs.runner import Chunk, ChunksFailedError, RunReport, run_chunks

__all__ = ["Chunk", "ChunksFailedError", "ClusterError", "RunReport", "open_client", "run_chunks"]
