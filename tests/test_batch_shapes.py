"""`transfer_batch_size: auto` and the shared request budget, end to end: the site as
processes, the emulator as a process over HTTP, the real globus-sdk."""

from __future__ import annotations

import math
import shutil
import time

from hypothesis import given
from hypothesis import strategies as st

from balsam_mp import api, states
from balsam_mp.db.models import TransferTask
from balsam_mp.site.batching import GLOBUS_ACTIVE_TASKS, auto_batch_size, slots
from tests.conftest import wait_for
from tests.sitekit import PACED

AUTO = "  transfer_batch_size: auto\n"  # the default (SiteKit's base fixes 100)


@given(st.integers(0, 100_000), st.integers(1, 1000))
def test_auto_spreads_what_is_due_evenly_over_the_free_slots(due, free):
    size = auto_batch_size(due, free)
    assert size >= 1
    assert math.ceil(due / size) <= free  # every due item fits in the free slots...
    assert size == 1 or math.ceil(due / (size - 1)) > free  # ...and none smaller would


def test_slots_are_globus_active_limit_only_where_globus_is_used():
    assert slots(5, {"globus"}) == slots(5, {"globus", "local"}) == GLOBUS_ACTIVE_TASKS
    assert slots(2, {"globus"}) == 2 and slots(5, {"local"}) == 5


def sizes(kit) -> list[int]:
    return [len(s["items"]) for s in kit.accepted()]


def test_a_backlog_goes_out_as_one_task_per_globus_slot(sitekit):
    kit = sitekit(emulator_args=("--startup-delay", "0.3"), transfers=AUTO)
    jobs = kit.make_jobs(300, stage_out=False)
    kit.start()
    kit.wait_jobs(jobs, states.STAGED_IN)
    assert sorted(sizes(kit)) == [100, 100, 100]  # 300 due, 3 slots free: one start-up each
    assert max(s["unfinished_before"] for s in kit.accepted()) <= 2  # none left "Queued"
    counts = kit.emulator.counts()
    assert counts["submit_transfer"] == 3
    assert counts["submission_id"] <= 3 + 3  # the ids used, and one per slot fetched ahead


def test_the_same_backlog_at_an_explicit_batch_size(sitekit):
    kit = sitekit(emulator_args=("--startup-delay", "0.3"),
                  transfers="  transfer_batch_size: 70\n")
    jobs = kit.make_jobs(300, stage_out=False)
    kit.start()
    kit.wait_jobs(jobs, states.STAGED_IN)
    assert sorted(sizes(kit)) == [20, 70, 70, 70, 70]  # Balsam's meaning: at most 70
    assert kit.emulator.counts()["submit_transfer"] == 5


def test_a_trickle_goes_out_at_once_in_small_batches(sitekit):
    kit = sitekit(emulator_args=("--startup-delay", "2"), transfers=AUTO)
    kit.start()
    first = []
    for n in range(GLOBUS_ACTIVE_TASKS):  # one job at a time, slots free: each goes alone
        first += kit.make_jobs(1, prefix=f"t{n}-", stage_out=False)
        wait_for(lambda n=n: len(kit.accepted()) == n + 1, what=f"task {n + 1} submitted")
    assert sizes(kit) == [1] * GLOBUS_ACTIVE_TASKS
    later = kit.make_jobs(5, prefix="late", stage_out=False)  # every slot is busy: they wait
    kit.wait_jobs(first + later, states.STAGED_IN)
    accepted = kit.accepted()
    assert sum(sizes(kit)[GLOBUS_ACTIVE_TASKS:]) == 5
    assert len(accepted) - GLOBUS_ACTIVE_TASKS <= GLOBUS_ACTIVE_TASKS  # gathered, not 5 tasks
    assert max(s["unfinished_before"] for s in accepted) <= GLOBUS_ACTIVE_TASKS - 1


def test_both_workers_busy_never_draw_a_429_from_the_enforced_limit(sitekit):
    """Stage-in and stage-out at batch size 1 (a request-hungry site): the submitter and
    the poller share 10 requests/s, the emulator enforces Globus' 20/s per identity (half:
    room for a loaded machine that holds requests and delivers them at once; see PACED in
    sitekit.py)."""
    kit = sitekit(emulator_args=("--profile", "realistic", "--startup-delay", "0.2"),
                  transfers="  transfer_batch_size: 1\n" + PACED)
    jobs = kit.make_jobs(20)
    kit.start()
    kit.wait_jobs(jobs[:10], states.STAGED_IN, timeout=60)
    kit.run_apps(jobs[:10])  # stage-outs start while stage-ins still go on
    kit.wait_jobs(jobs[10:], states.STAGED_IN, timeout=60)
    kit.run_apps(jobs[10:])
    kit.wait_jobs(jobs, states.JOB_FINISHED, timeout=120)
    counts = kit.emulator.counts()
    # both were busy, taking turns: a stage-out goes once a poll saw its stage-in end, and
    # a poll sees it end (how many polls that takes is the machine's timing)
    assert counts["submit_transfer"] == 40 and counts["task_list"] >= 2
    assert kit.emulator.stats()["injected"].get("rate_limited", 0) == 0


def test_a_stream_starts_its_tasks_one_by_one_while_others_run(sitekit):
    """Paced: while tasks are in flight, each pass claims one task, so no two tasks share
    a claim (their created_at), and the slots free one by one."""
    kit = sitekit(emulator_args=("--startup-delay", "1"), transfers=AUTO)
    # however slowly this machine makes the stream, it meets a task in flight and busy
    # slots: a first task faults at Globus (a folder where its input goes) until the
    # end, and Globus runs only it until the stream has come
    kit.emulator.knobs(max_active=1, fault_retry=0.2)
    [anchor] = kit.make_jobs(1, prefix="anchor", stage_out=False)
    in_the_way = kit.site / "data" / "anchor" / "0" / "input.dat"
    (in_the_way / "x").mkdir(parents=True)
    kit.start()
    wait_for(lambda: any(t["faults"] for t in kit.emulator.tasks().values()),
             what="the first task to fault")
    jobs = []
    for n in range(24):  # ~6 jobs/s for 4 s: a stream that keeps every slot busy
        jobs += kit.make_jobs(1, prefix=f"s{n}-", stage_out=False)
        time.sleep(0.16)  # the stream's pace, not a wait for a state
    kit.emulator.knobs(max_active=3)
    kit.wait_jobs(jobs, states.STAGED_IN)
    claims = [t.created_at for t in TransferTask.select(TransferTask.created_at)]
    assert len(claims) == len(set(claims)) and len(claims) < len(jobs)
    shutil.rmtree(in_the_way)
    kit.wait_jobs([anchor], states.STAGED_IN)
    assert max(s["unfinished_before"] for s in kit.accepted()) <= GLOBUS_ACTIVE_TASKS - 1


def test_a_backlog_arriving_while_a_task_runs_is_spread_over_the_free_slots(sitekit):
    kit = sitekit(transfers=AUTO)
    kit.emulator.knobs(max_active=0)  # Globus keeps every task: the first holds its slot
    kit.start()
    first = kit.make_jobs(1, prefix="first", stage_out=False)
    wait_for(lambda: len(kit.accepted()) == 1, what="the first task")
    backlog = kit.make_jobs(200, prefix="b", stage_out=False)  # one slot busy, two free
    wait_for(lambda: api.TransferItem.objects.filter(state="active").count() == 201,
             what="the backlog claimed")
    kit.emulator.knobs(max_active=3)
    kit.wait_jobs(first + backlog, states.STAGED_IN)
    assert sizes(kit) == [1, 100, 100]  # one claim at a time, each for its share
