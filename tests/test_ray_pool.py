"""The actor pool isolates failures: a job that raises or kills its worker is recorded, the rest finish."""

import os

from flows.ray_pool import ActorPool, InlinePool


def _make_state():
    return {"pid": os.getpid(), "jobs_seen": 0}


def _square_or_fail(state, job):
    if job == "raise":
        raise ValueError("bad source")
    if job == "crash":
        os._exit(1)  # the worker process dies, as on a segfault or an out-of-memory kill
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
