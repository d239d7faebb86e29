"""The actor pool isolates failures: a job that raises or kills its worker is recorded, the rest finish."""

import os
import time

import pytest

from flows.ray_pool import ActorPool, InlinePool, PoolStalled


def _make_state():
    return {"pid": os.getpid(), "jobs_seen": 0}


def _square_or_fail(state, job):
    if job == "raise":
        raise ValueError("bad source")
    if job == "crash":
        os._exit(1)  # the worker process dies, as on a segfault or an out-of-memory kill
    if job == "hang":
        time.sleep(600)
    state["jobs_seen"] += 1
    return job * job, state["pid"], state["jobs_seen"]


def test_failures_are_recorded_and_other_jobs_finish(ray_local):
    jobs = [1, 2, "raise", 3, "crash", 4, 5, 6]
    with ActorPool(_make_state, _square_or_fail, n_actors=2) as pool:
        outcomes = {str(o.job): o for o in pool.map(jobs)}
    assert {k: o.value[0] for k, o in outcomes.items() if o.ok} == {"1": 1, "2": 4, "3": 9, "4": 16, "5": 25, "6": 36}
    assert outcomes["raise"].error.startswith("ValueError: bad source")
    assert not outcomes["crash"].ok and outcomes["crash"].error
    # State is built once per actor and reused across jobs (models load once per worker).
    assert max(o.value[2] for o in outcomes.values() if o.ok) >= 2


def test_inline_pool_has_the_same_contract():
    outcomes = list(InlinePool(_make_state, _square_or_fail).map([2, "raise", 3]))
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[2].value[2] == 2


def test_an_actor_ray_cannot_place_is_given_no_job(ray_local):
    """Right after a node is lost the cluster still counts its CPUs, so a pool may ask for an actor Ray cannot
    place: a job given to it would wait forever. The placed actors do every job instead."""
    cpus = int(ray_local.cluster_resources()["CPU"])
    with ActorPool(_make_state, _square_or_fail, n_actors=cpus + 1) as pool:
        outcomes = list(pool.map(range(6)))
    assert sorted(o.value[0] for o in outcomes) == [0, 1, 4, 9, 16, 25]


def test_jobs_fail_with_a_reason_when_no_actor_can_be_placed(ray_local):
    with ActorPool(_make_state, _square_or_fail, n_actors=1, num_cpus_per_actor=64, placement_timeout_s=1) as pool:
        outcomes = list(pool.map([1, 2]))
    assert [o.ok for o in outcomes] == [False, False]
    assert all("no Ray actor was placed in 1 s" in o.error for o in outcomes)


def test_a_stuck_job_is_an_error_not_a_hang(ray_local):
    with ActorPool(_make_state, _square_or_fail, n_actors=1, stall_timeout_s=2) as pool:
        with pytest.raises(PoolStalled, match="no job finished in 2 s"):
            list(pool.map(["hang"]))
