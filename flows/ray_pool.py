"""Ray wiring: start or join a cluster, and run jobs on a pool of long-lived actors.

``ray.init()`` starts a local Ray by default; ``RAY_ADDRESS`` joins an existing cluster. Actors hold what is
expensive to load (detector models) for their whole life, so models load once per worker, not per clip.
A job that raises is returned as a failure record; an actor that dies (a crash, or its node lost) is replaced
and its job recorded as failed; the other jobs go on. An actor (first or replacement) gets jobs only once Ray
has placed it: when a lost node took its CPUs along, the live actors finish the jobs instead of waiting for
capacity that may never come back, and timeouts turn a pool that cannot go on into an error, never a hang.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator


@dataclass(frozen=True)
class JobOutcome:
    job: Any
    value: Any = None
    error: str | None = None  # "<ExceptionType>: message" when the job failed

    @property
    def ok(self) -> bool:
        return self.error is None


def ensure_ray(num_cpus: int | None = None) -> None:
    """Connect to ``RAY_ADDRESS`` when set (``auto`` on a cluster node), else start a new local Ray on
    127.0.0.1 — never silently joining some other Ray already running on the machine (once per process).

    A local Ray listens on loopback only (GCS, raylet, workers, the dashboard agent) and starts no dashboard:
    Ray turns a node address of 127.0.0.1 into the machine's network address unless multi-node clusters are
    off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which Ray reads when imported, hence also set on its
    constants module when Ray was imported before this call). Ray 2.60 turns token authentication on for a
    new local cluster (token in ``~/.ray/auth_token``) and warns that it did on every start; that one warning
    is silenced, the authentication stays.
    """
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        from ray._private import ray_constants

        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray_constants.ENABLE_RAY_CLUSTER = False
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=256 * 1024**2,
            _node_ip_address="127.0.0.1",
        )


def cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class _Runner:
    """Actor body: builds the worker state once, then runs jobs through ``fn(state, job)``."""

    def __init__(self, make_state: Callable[[], Any], fn: Callable[[Any, Any], Any]):
        self.state = make_state()
        self.fn = fn

    def ready(self) -> bool:
        return True

    def run(self, job: Any) -> tuple[Any, str | None]:
        try:
            return self.fn(self.state, job), None
        except Exception as exc:  # a bad job is recorded, never fatal to the pool
            return None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"


class PoolStalled(RuntimeError):
    """No actor could be placed, or no job finished, within the pool's timeouts: a clear error, not a hang."""


class ActorPool:
    """``n_actors`` Ray actors, each running ``fn(state, job)`` with its own ``state = make_state()``.

    ``map`` yields outcomes as jobs finish (completion order). An actor gets jobs only once Ray has placed it
    and its state is built (``ready``): the cluster may count CPUs it no longer has (a node lost moments ago
    still counts until Ray marks it dead), and a job given to an actor that is never placed would wait forever.
    When no actor is placed for ``placement_timeout_s``, the remaining jobs fail with that reason; when no job
    finishes for ``stall_timeout_s`` (None: no limit), ``map`` raises `PoolStalled`. Use as a context manager;
    ``close`` kills the actors.
    """

    def __init__(self, make_state: Callable[[], Any], fn: Callable[[Any, Any], Any], *, n_actors: int,
                 num_cpus_per_actor: float = 1.0, placement_timeout_s: float = 600.0, stall_timeout_s: float | None = None):
        import ray

        self._ray = ray
        self._actor_cls = ray.remote(num_cpus=num_cpus_per_actor, max_restarts=0)(_Runner)
        self._make_state, self._fn = make_state, fn
        self.placement_timeout_s, self.stall_timeout_s = placement_timeout_s, stall_timeout_s
        self._idle: list = []  # placed, with their state built
        self._starting = {actor.ready.remote(): actor for actor in (self._new_actor() for _ in range(max(1, n_actors)))}

    def _new_actor(self):
        return self._actor_cls.remote(self._make_state, self._fn)

    def map(self, jobs: Iterable[Any]) -> Iterator[JobOutcome]:
        ray = self._ray
        pending_jobs = list(jobs)[::-1]
        running: dict[Any, tuple[Any, Any]] = {}
        starting = self._starting  # ready() ref → actor not placed yet
        last_progress = time.monotonic()
        while pending_jobs or running:
            while self._idle and pending_jobs:
                actor, job = self._idle.pop(), pending_jobs.pop()
                running[actor.run.remote(job)] = (actor, job)
            waited = time.monotonic() - last_progress
            if not running and (not starting or waited >= self.placement_timeout_s):  # nothing can run the rest
                why = ("no Ray actor could be started" if not starting else
                       f"no Ray actor was placed in {self.placement_timeout_s:g} s (cluster resources: {ray.available_resources()})")
                for job in pending_jobs[::-1]:
                    yield JobOutcome(job, None, f"RuntimeError: {why}")
                return
            limit = self.placement_timeout_s if not running else self.stall_timeout_s
            done, _ = ray.wait([*running, *starting], num_returns=1, timeout=None if limit is None else max(0.0, limit - waited))
            if not done:
                if running:
                    raise PoolStalled(f"no job finished in {self.stall_timeout_s:g} s ({len(running)} running, "
                                      f"{len(pending_jobs)} waiting, {len(starting)} actor(s) not placed)")
                continue  # the placement timeout is handled above
            if done[0] in starting:
                actor = starting.pop(done[0])
                try:
                    ray.get(done[0])
                    self._idle.append(actor)
                    last_progress = time.monotonic()
                except ray.exceptions.RayError:
                    pass  # it died while starting; the others go on
                continue
            last_progress = time.monotonic()
            actor, job = running.pop(done[0])
            try:
                value, error = ray.get(done[0])
                self._idle.append(actor)
            except ray.exceptions.RayError as exc:  # the actor died (crash, out of memory, node lost): replace it
                value, error = None, f"{type(exc).__name__}: {exc}"
                replacement = self._new_actor()
                starting[replacement.ready.remote()] = replacement
            yield JobOutcome(job, value, error)

    def close(self) -> None:
        for actor in self._idle + list(self._starting.values()):
            self._ray.kill(actor)
        self._idle, self._starting = [], {}

    def __enter__(self) -> "ActorPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InlinePool:
    """The same contract in this process, without Ray (debugging, benchmarks, ``--workers 0``)."""

    def __init__(self, make_state: Callable[[], Any], fn: Callable[[Any, Any], Any]):
        self._runner = _Runner(make_state, fn)

    def map(self, jobs: Iterable[Any]) -> Iterator[JobOutcome]:
        for job in jobs:
            value, error = self._runner.run(job)
            yield JobOutcome(job, value, error)

    def close(self) -> None:
        pass

    def __enter__(self) -> "InlinePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
