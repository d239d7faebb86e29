"""`fada ingest` and dataset-refresh's ingest task: the library's ingest route (`shards.ingest`) on a pool of
Ray actors (`flows.ray_pool`) — a local Ray by default, ``RAY_ADDRESS`` to join a cluster — or, with
``workers=0``, in this process."""

from __future__ import annotations

import functools
import os

from flows.ray_pool import ActorPool, InlinePool, cluster_cpus, ensure_ray
from shards.ingest.config import IngestConfig
from shards.ingest.run import IngestReport
from shards.ingest.run import ingest as run_ingest

PLACEMENT_TIMEOUT_S = 600.0  # no actor placed this long (a cluster without free CPUs): the remaining jobs fail
STALL_TIMEOUT_S = 3600.0  # no job finished this long: the run stops with `flows.ray_pool.PoolStalled`


def ingest(
    manifest: str | os.PathLike,
    data_dir: str | os.PathLike,
    config: IngestConfig = IngestConfig(),
    *,
    workers: int | None = None,
    progress: bool = True,
    wait: float = 0.0,
    flow_run_id: str | None = None,
) -> IngestReport:
    """Ingest every new source of the manifest into ``data_dir``; safe to re-run (done sources are skipped).

    ``workers``: number of Ray actors (default: the cluster's CPUs); 0 runs everything in this process.
    ``wait``: seconds to wait for another writer of ``data_dir`` (`shards.lock.LockHeld` after that).
    ``flow_run_id``: the Prefect flow run doing it, recorded in the shards' lineage.
    """
    return run_ingest(manifest, data_dir, config, open_pool=functools.partial(open_pool, workers), progress=progress,
                      wait=wait, flow_run_id=flow_run_id)


def open_pool(workers: int | None, make_state, fn) -> ActorPool | InlinePool:
    """``workers`` Ray actors (None: one per CPU of the cluster), or this process for 0."""
    if workers == 0:
        return InlinePool(make_state, fn)
    ensure_ray()
    return ActorPool(make_state, fn, n_actors=workers or cluster_cpus(), placement_timeout_s=PLACEMENT_TIMEOUT_S,
                     stall_timeout_s=STALL_TIMEOUT_S)
