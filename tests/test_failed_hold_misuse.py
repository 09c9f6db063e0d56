"""Hostile timings around "a FAILED job stages nothing new": a job failed while its
stage-in items are in flight, whose task then fails (retried, split), must not find
them pending afterwards; they wait (awaiting_job) for the job's retry or restart."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import psutil
import pytest

from balsam_mp import api, db
from balsam_mp.api import Job, TransferItem
from balsam_mp.db import claims, refusals
from balsam_mp.states import Item, Task
from tests.conftest import wait_for
from tests.sitemoves import claim, fail_task, finish, make


def inputs(job_id: int) -> list[str]:
    return [i.state for i in TransferItem.objects.filter(job_id=job_id, direction="in")
            .order_by("id")]


def failed_jobs_waiting() -> list[int]:
    return [i.id for i in db.TransferItem.select().join(db.Job).where(
        db.Job.state == "FAILED", db.TransferItem.direction == "in",
        db.TransferItem.state == Item.PENDING)]


@pytest.mark.engines
def test_an_input_retried_after_its_job_failed_waits_for_the_job(site):
    """The user fails a job while its input is in flight; the task then fails as a
    whole (ENDPOINT_ERROR: retried with backoff). The input must not go out again for
    the FAILED job; a restart sends it."""
    [job] = make(1)
    task = claim("in")
    Job.objects.set_state(job.id, "READY", "FAILED")
    fail_task(task.task_id, "ENDPOINT_ERROR")
    assert failed_jobs_waiting() == []
    assert inputs(job.id) == [Item.AWAITING_JOB]
    Job.objects.filter(id=job.id).update(state="RESTART_READY")
    assert Job.objects.get(id=job.id).state == "READY"
    assert inputs(job.id) == [Item.PENDING]
    db.TransferItem.update(not_before=None).execute()
    finish(claim("in").task_id)
    assert Job.objects.get(id=job.id).state == "STAGED_IN"


@pytest.mark.engines
def test_a_split_half_of_a_failed_job_waits_for_the_job(site):
    """A batch of two jobs' inputs fails as a whole (split in halves) after the user
    failed one job: that job's half waits; the other job's half goes."""
    first, second = make(2)
    task = claim("in")
    Job.objects.set_state(first.id, "READY", "FAILED")
    fail_task(task.task_id, "GENERAL_ERROR")
    assert failed_jobs_waiting() == []
    assert inputs(first.id) == [Item.AWAITING_JOB]
    assert inputs(second.id) == [Item.PENDING]
    finish(claim("in").task_id)
    assert Job.objects.get(id=second.id).state == "STAGED_IN"
    assert claim("in") is None
    Job.objects.set_state(first.id, "FAILED", "READY")
    finish(claim("in").task_id)
    assert Job.objects.get(id=first.id).state == "STAGED_IN"


@pytest.mark.engines
@pytest.mark.parametrize("code", ["BAD_REQUEST", "ENDPOINT_ERROR"])
def test_a_failed_jobs_input_the_service_refused_waits_for_the_job(site, code):
    """Failed while its batch is being submitted (claimed, not yet accepted): the
    service refuses the batch (split, or retried); the failed job's input waits."""
    first, second = make(2)
    owner = claims.owner_id()
    [found] = claims.claim_batches(
        [(claims.Group("in", "laptop"), "local://", "local")], capacity=1, budget=10,
        batch_size=10, take_submission_id=lambda g: "sid-x", owner=owner, lease=60,
        deadline=db.utcnow() + dt.timedelta(hours=1))
    assert inputs(first.id) == [Item.SUBMITTING]
    Job.objects.set_state(first.id, "READY", "FAILED")
    refusals.abandon(found, code, "refused", api.current_settings().transfers)
    assert failed_jobs_waiting() == []
    assert inputs(first.id) == [Item.AWAITING_JOB]
    assert inputs(second.id) == [Item.PENDING]


@pytest.mark.engines
def test_a_real_site_holds_a_failed_jobs_input_its_task_failed_through_a_kill(sitekit):
    """The real site and Globus emulator: two jobs' inputs in one task; the user fails
    one job; the service fails the task as a whole; the site is killed -9 and started
    again. The other job stages in; the failed job's input is never sent again until
    the user restarts it, then it lands once."""
    kit = sitekit(emulator_args=("--startup-delay", "30"))
    kit.start()
    first, second = kit.make_jobs(2, stage_out=False)
    wait_for(lambda: len(kit.accepted()) == 1, what="the batch to be accepted")
    [remote_id] = kit.emulator.tasks()
    Job.objects.set_state(first, "READY", "FAILED")
    kit.emulator.knobs(startup_delay=0.0)
    kit.emulator.fail_task(remote_id, "GENERAL_ERROR", "the endpoint broke")
    wait_for(lambda: inputs(first) == [Item.AWAITING_JOB], what="the input to be held")
    kit.wait_jobs([second], "STAGED_IN")
    victims = [psutil.Process(pid) for pid in kit.pids().values()]
    for victim in victims:  # kill -9 of the whole site at once
        victim.kill()
    psutil.wait_procs(victims, timeout=10)
    kit.start()
    sent = len(kit.accepted())
    assert failed_jobs_waiting() == [] and inputs(first) == [Item.AWAITING_JOB]
    Job.objects.filter(id=first).update(state="RESTART_READY")
    kit.wait_jobs([first], "STAGED_IN")
    assert len(kit.accepted()) == sent + 1
    kit.assert_exactly_once()


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
@pytest.mark.parametrize("code", ["ENDPOINT_ERROR", "GENERAL_ERROR"])  # retried, split
def test_a_restart_racing_the_pollers_retry_leaves_the_input_to_go(site, code):
    """PostgreSQL, writers side by side: the user's FAILED -> READY is not yet committed
    when the poller records that the input's task failed (to be retried). The poller
    must read the job's state after the user's commit: the input goes (pending), it
    is not held for a job that is READY again (stuck there for ever)."""
    from balsam_mp.db.jobs import set_jobs_state
    from tests.test_job_locks import interleave

    job, other = make(2, out=False)
    task = claim("in")
    Job.objects.set_state(job.id, "READY", "FAILED")
    interleave(lambda: set_jobs_state([job.id], "FAILED", "READY"),
               lambda: fail_task(task.task_id, code))
    assert Job.objects.get(id=job.id).state == "READY"
    assert inputs(job.id) == inputs(other.id) == [Item.PENDING]


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_a_fail_racing_the_pollers_retry_holds_the_input(site):
    """The other way round: the user's READY -> FAILED is not yet committed when the
    poller records the input's task failed: the input waits, it is not retried."""
    from balsam_mp.db.jobs import set_jobs_state
    from tests.test_job_locks import interleave

    [job] = make(1, out=False)
    task = claim("in")
    interleave(lambda: set_jobs_state([job.id], "READY", "FAILED"),
               lambda: fail_task(task.task_id, "ENDPOINT_ERROR"))
    assert Job.objects.get(id=job.id).state == "FAILED"
    assert inputs(job.id) == [Item.AWAITING_JOB]


def test_a_retry_of_an_input_held_for_its_failed_job_says_how_to_release_it(site):
    """A careless user retries the held input itself: refused, changing nothing, with
    the way out (restart the job), not only "not in state error"."""
    from balsam_mp.db import controls

    [job] = make(1, out=False)
    Job.objects.set_state(job.id, "READY", "FAILED")
    [held] = TransferItem.objects.filter(job_id=job.id)
    with pytest.raises(api.ValidationError) as refused:
        controls.retry_items([held.id])
    message = str(refused.value)
    assert f"job {job.id}" in message and "FAILED" in message, message
    assert f"balsam job modify {job.id} -s RESTART_READY" in message, message
    assert inputs(job.id) == [Item.AWAITING_JOB]
    command = message.split("`")[1].split()[1:]  # the command the message gives
    done = subprocess.run([sys.executable, "-m", "balsam_mp", *command],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert Job.objects.get(id=job.id).state == "READY"
    assert inputs(job.id) == [Item.PENDING]


def test_a_restarted_jobs_held_input_gets_its_retries_afresh(site):
    """An input that spent its retries on a flaky endpoint, then was held when the user
    failed its job: the restart stages it in again with retries afresh (as `transfer
    retry` gives a failed item), not failing the job on its first hiccup."""
    [job] = make(1, out=False)
    for _ in range(site.transfers.max_retries):
        db.TransferItem.update(not_before=None).execute()
        fail_task(claim("in").task_id, "ENDPOINT_ERROR")
    assert inputs(job.id) == [Item.PENDING]  # retries spent: the next failure is final
    Job.objects.set_state(job.id, "READY", "FAILED")
    Job.objects.filter(id=job.id).update(state="RESTART_READY")
    assert Job.objects.get(id=job.id).state == "READY"
    db.TransferItem.update(not_before=None).execute()
    fail_task(claim("in").task_id, "ENDPOINT_ERROR")
    assert Job.objects.get(id=job.id).state == "READY"  # retried, not failed
    assert inputs(job.id) == [Item.PENDING]


@pytest.mark.engines
def test_a_failed_jobs_result_whose_task_failed_waits_for_its_next_postprocessed(site):
    """The stage-out side: a result in flight when the user fails the job, whose task
    then fails (to be retried), waits for the job's next POSTPROCESSED."""
    from tests.sitemoves import stage

    [job] = make(1)
    stage("in")
    Job.objects.set_state(job.id, "STAGED_IN", "POSTPROCESSED")
    task = claim("out")
    Job.objects.set_state(job.id, "POSTPROCESSED", "FAILED")
    fail_task(task.task_id, "ENDPOINT_ERROR")
    [result] = TransferItem.objects.filter(job_id=job.id, direction="out")
    assert result.state == Item.AWAITING_JOB
    assert claim("out") is None
    for before, after in (("FAILED", "RESTART_READY"), ("RESTART_READY", "POSTPROCESSED")):
        Job.objects.set_state(job.id, before, after)
    finish(claim("out").task_id)
    assert Job.objects.get(id=job.id).state == "JOB_FINISHED"


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_a_job_another_session_holds_defers_the_pollers_failure_not_waits(site):
    """A user's idle session holds a job's row: the poller's pass neither waits on it
    nor guesses its state. Nothing is written (the task stays in flight) and the next
    poll, once the session lets go, records the end."""
    import threading

    from balsam_mp.db import outcomes

    [job] = make(1, out=False)
    task = claim("in")
    database = db.Job._meta.database
    held, release = threading.Event(), threading.Event()

    def idle_session() -> None:
        with database.atomic():
            db.Job.select().where(db.Job.id == job.id).for_update().execute()
            held.set()
            release.wait(timeout=30)
        database.close()

    holder = threading.Thread(target=idle_session)
    holder.start()
    try:
        assert held.wait(timeout=30)
        progress = outcomes.Progress("FAILED", None, 0, 0, 0.0, "ENDPOINT_ERROR", "broken")
        policy = api.current_settings().transfers
        finished = outcomes.finish_task(task.task_id, progress, [], policy, skip_locked=True)
        assert finished.deferred
        assert db.TransferTask.get_by_id(task.task_id).state == Task.ACTIVE
        assert inputs(job.id) == [Item.ACTIVE]
    finally:
        release.set()
        holder.join(timeout=30)
    finished = outcomes.finish_task(task.task_id, progress, [], policy, skip_locked=True)
    assert not finished.deferred and inputs(job.id) == [Item.PENDING]  # retried
