"""Chaos: thousands of jobs staged in and out while the emulator fails 5% of calls, drops
connections, and a random site process is killed with SIGKILL every 1-2 seconds.

At the end every job is JOB_FINISHED, every file is on disk exactly once, no submission
id named two tasks, and no file was in two successful tasks.
scripts/chaos runs the same test bigger (BALSAM_CHAOS_JOBS). The PostgreSQL run is
shorter (BALSAM_CHAOS_JOBS_POSTGRES, 1,500 jobs and 10 kills by default): the claims,
leases and compare-and-sets it exercises are the same whatever the number of jobs.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import time

import psutil
import pytest

from balsam_mp import api, states
from balsam_mp.site import pidfile
from tests.conftest import wait_for

SIZES = {"sqlite": (int(os.environ.get("BALSAM_CHAOS_JOBS", "5000")), 15),
         "postgres": (int(os.environ.get("BALSAM_CHAOS_JOBS_POSTGRES", "1500")), 10)}
TIME_LIMIT = float(os.environ.get("BALSAM_CHAOS_SECONDS", "400"))


@pytest.mark.engines
def test_chaos(sitekit, engine):
    jobs, min_kills = SIZES[engine]
    kit = sitekit(emulator_args=("--seed", "2026"),
                  transfers="  max_retries: 20\n  retry_backoff: 0.5\n  claim_lease: 5\n"
                  "  transfer_batch_size: auto\n")  # the default, under fire
    kit.emulator.fault("*", status=503, code="ServiceUnavailable", probability=0.05)
    kit.emulator.fault("*", drop=True, probability=0.01)
    kit.make_jobs(jobs)
    kit.start()
    chaos = random.Random(2026)
    kills: collections.Counter[str] = collections.Counter()
    next_kill = time.monotonic() + chaos.uniform(1, 2)
    deadline = time.monotonic() + TIME_LIMIT
    while True:
        finished = api.Job.objects.filter(state=states.JOB_FINISHED).count()
        # a supervisor killed at least once: which role each kill picks depends on how
        # many draws the timing of the run made, so a short run could miss it
        if finished == jobs and sum(kills.values()) >= min_kills and kills["supervisor"]:
            break
        assert time.monotonic() < deadline, f"chaos did not settle: {kit.states()}, {kills}"
        assert api.Job.objects.filter(state=states.FAILED).count() == 0, kit.states()
        staged = [j.id for j in api.Job.objects.filter(state=states.STAGED_IN)]
        if staged:
            kit.run_apps(staged)
        if time.monotonic() >= next_kill:
            victim = kill_one(kit, chaos)
            if victim:
                kills[victim] += 1
            next_kill = time.monotonic() + chaos.uniform(1, 2)
        time.sleep(0.1)

    assert sum(kills.values()) >= min_kills and kills["supervisor"] >= 1
    for job in api.Job.objects.all():
        name = f"job{job.workdir.parts[1]}"
        assert (kit.site / "data" / job.workdir / "input.dat").read_text() == f"input of {name}"
        assert (kit.remote / "out" / f"{name}.dat").read_text() == f"output of {job.workdir}"
    assert len(list((kit.remote / "out").iterdir())) == jobs
    assert not list(kit.site.rglob(".*partial*")) and not list(kit.remote.rglob(".*partial*"))

    records = kit.emulator.submissions()
    moved = kit.assert_exactly_once()
    assert sum(moved.values()) == 2 * jobs
    print(f"\nchaos: {jobs} jobs, kills {dict(kills)}, {len(records)} submissions "
          f"({sum(r['duplicate'] for r in records)} duplicates answered with the original), "
          f"faults injected {kit.emulator.stats()['injected']}")


def kill_one(kit, chaos: random.Random) -> str | None:
    """SIGKILL a random site process; if it was the supervisor, start the site again.
    Returns who was killed (None if the site was between restarts)."""
    info = pidfile.read(kit.site)
    if info is None or not info.alive() or not info.workers or len(info.workers) < 2:
        return None
    role = chaos.choice(["supervisor", "submitter", "poller"])
    pid = info.pid if role == "supervisor" else info.workers[role]
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return None
    if role == "supervisor":
        wait_for(lambda: not any(_alive(p) for p in info.workers.values()), timeout=60,
                 what="the orphaned workers to leave on their own")
        kit.start()
    return role


def _alive(pid: int) -> bool:
    """Running: a zombie has left (its reaper, init, may take seconds in a container)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
