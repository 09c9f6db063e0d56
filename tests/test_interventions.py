"""When a user steps in while work is in flight, through the db-layer functions the
workers call (no network): each run's result is that run's, a FAILED job's unsent
result is held, a retry goes back where its items hold the job, a cancel is final, and
a delete re-checks its filter under lock. End to end: tests/test_interventions_e2e.py."""

from __future__ import annotations

import pytest

from balsam_mp import api, db, itemmoves
from balsam_mp.api import Job, TransferItem
from balsam_mp.db import cancels, controls, outcomes, refusals
from balsam_mp.site import controls as site_controls
from balsam_mp.states import Item, Task
from balsam_mp.transfer.base import TaskStatus, TransferBackend
from tests.sitemoves import claim, fail_task, finish, make, stage

RUN_AGAIN = ("FAILED", "RESTART_READY", "RUNNING", "RUN_DONE", "POSTPROCESSED")


def walk(job_id: int, *path: str) -> None:
    """The user's moves, one after the other (as an app's run would make them)."""
    for before, after in zip((Job.objects.get(id=job_id).state, *path), path, strict=False):
        Job.objects.set_state(job_id, before, after)


def item(job_id: int, direction: str) -> TransferItem:
    [found] = TransferItem.objects.filter(job_id=job_id, direction=direction)
    return found


def staged_in_job() -> int:
    [job] = make(1)
    stage("in")
    assert Job.objects.get(id=job.id).state == "STAGED_IN"
    return job.id


@pytest.mark.engines
def test_a_failed_jobs_unsent_result_is_held_and_its_rerun_is_sent(site):
    """Case 2: POSTPROCESSED then FAILED by the user: the pending stage-out is not sent.
    The rerun's POSTPROCESSED sends it, and the job finishes on that send only."""
    job = staged_in_job()
    walk(job, "POSTPROCESSED", "FAILED")
    assert item(job, "out").state == Item.AWAITING_JOB
    assert claim("out") is None  # nothing of a failed run goes out
    walk(job, "RESTART_READY", "RUNNING", "RUN_DONE", "POSTPROCESSED")
    assert item(job, "out").state == Item.PENDING
    finish(claim("out").task_id)
    assert Job.objects.get(id=job).state == "JOB_FINISHED"


@pytest.mark.engines
def test_a_result_sent_before_a_rerun_is_sent_again(site):
    """The stage-out finished while the job was FAILED (done): the rerun's POSTPROCESSED
    makes it pending again, so run 2's file goes out too."""
    job = staged_in_job()
    walk(job, "POSTPROCESSED")
    task = claim("out")
    walk(job, "FAILED")  # in flight: it finishes, as what it is
    finish(task.task_id)
    assert item(job, "out").state == Item.DONE
    assert Job.objects.get(id=job).state == "FAILED"
    walk(job, *RUN_AGAIN[1:])
    assert Job.objects.get(id=job).state == "POSTPROCESSED"  # not straight to JOB_FINISHED
    assert item(job, "out").state == Item.PENDING
    finish(claim("out").task_id)
    assert Job.objects.get(id=job).state == "JOB_FINISHED"


@pytest.mark.engines
@pytest.mark.parametrize("outcome", ["succeeds", "fails"])
def test_a_result_in_flight_at_a_rerun_goes_out_again_when_its_task_ends(site, outcome):
    """The rule for a stage-out in flight when its job enters POSTPROCESSED again: it
    carries the older run's file, so whatever its task does, it goes out again after."""
    job = staged_in_job()
    walk(job, "POSTPROCESSED")
    task = claim("out")
    walk(job, *RUN_AGAIN)  # FAILED, restarted, POSTPROCESSED: all while in flight
    (finish if outcome == "succeeds" else fail_task)(task.task_id)
    again = item(job, "out")
    assert again.state == Item.PENDING and again.attempts == 0
    assert Job.objects.get(id=job).state == "POSTPROCESSED"
    finish(claim("out").task_id)
    assert Job.objects.get(id=job).state == "JOB_FINISHED"
    messages = [e.message for e in db.LogEvent.select().where(
        db.LogEvent.transfer_item == again.id)]
    assert any("ran again while it was in flight" in m for m in messages)


@pytest.mark.engines
def test_a_rerun_that_fails_again_keeps_the_sent_result_as_it_is(site):
    """FAILED a second time while the first result is still in flight: that send is a
    finished result again (done), not one to resend; the next run sends its own."""
    job = staged_in_job()
    walk(job, "POSTPROCESSED")
    task = claim("out")
    walk(job, *RUN_AGAIN, "FAILED")
    finish(task.task_id)
    assert item(job, "out").state == Item.DONE
    assert claim("out") is None


@pytest.mark.engines
def test_a_retry_of_a_stage_out_goes_back_to_postprocessed(site):
    """Case 5a: a user FAILs a POSTPROCESSED job and its stage-out then fails: the retry
    puts it back in POSTPROCESSED (not READY, where it would stay for ever)."""
    job = staged_in_job()
    walk(job, "POSTPROCESSED")
    task = claim("out")
    walk(job, "FAILED")
    finish(task.task_id, (item(job, "out").id,), "FILE_NOT_FOUND")
    assert item(job, "out").state == Item.ERROR
    with db.Job._meta.database.atomic():
        controls.retry_items(None)
    assert Job.objects.get(id=job).state == "POSTPROCESSED"
    assert item(job, "out").state == Item.PENDING
    finish(claim("out").task_id)
    assert Job.objects.get(id=job).state == "JOB_FINISHED"


@pytest.mark.engines
def test_a_retry_of_a_stage_in_goes_back_to_ready_and_holds_the_stage_out(site):
    [job] = make(1)
    task = claim("in")
    finish(task.task_id, (item(job.id, "in").id,), "FILE_NOT_FOUND")
    assert Job.objects.get(id=job.id).state == "FAILED"
    with db.Job._meta.database.atomic():
        controls.retry_items(None)
    assert Job.objects.get(id=job.id).state == "READY"
    assert item(job.id, "in").state == Item.PENDING
    assert item(job.id, "out").state == Item.AWAITING_JOB  # its job has not run yet


@pytest.mark.engines
@pytest.mark.parametrize("ended_as", ["CANCELED", "RUNNER_LOST", "EXPIRED"])
def test_whatever_ends_a_cancelled_task_its_items_end_cancelled(site, ended_as):
    """Case 4a: once a user's cancel is recorded, a task that fails for any reason (the
    service's cancel, a killed local runner) fails its items for good: no retry."""
    jobs = make(2)
    task = claim("in")
    cancels.request_cancel(task.task_id)
    fail_task(task.task_id, ended_as)
    for job in jobs:
        found = item(job.id, "in")
        assert found.state == Item.ERROR and "cancelled" in found.error
        assert Job.objects.get(id=job.id).state == "FAILED"
    assert claim("in") is None  # never sent again by itself


@pytest.mark.engines
def test_a_cancelled_task_that_had_finished_keeps_its_outcome(site):
    """Case 4b: the service says the task completed before the cancel: done stays done."""
    [job] = make(1)
    task = claim("in")
    cancels.request_cancel(task.task_id)
    progress = outcomes.Progress("SUCCEEDED", None, 1, 1, 1.0)
    outcomes.finish_task(task.task_id, progress, [], api.current_settings().transfers,
                         itemmoves.CANCEL)
    assert item(job.id, "in").state == Item.DONE
    assert Job.objects.get(id=job.id).state == "STAGED_IN"
    assert db.TransferTask.get_by_id(task.task_id).state == Task.SUCCEEDED


@pytest.mark.engines
def test_a_batch_refused_when_the_cancel_resends_it_ends_cancelled(site):
    """A `submitting` task whose resend the service refuses for good made no task: its
    items end cancelled at once, without a split or a retry."""
    make(3)
    [found] = db.claims.claim_batches(
        [(db.claims.Group("in", "laptop"), "local://", "local")], 1, 10, 10,
        lambda group: "sid-refused", db.claims.owner_id(), 60,
        db.utcnow())
    cancels.request_cancel(found.task_id)
    finished = cancels.refused(found.task_id, "BAD_REQUEST", "bad path",
                               api.current_settings().transfers)
    assert finished.failed == 3 and not finished.halves
    states = {i.state for i in TransferItem.objects.all() if i.direction == "in"}
    assert states == {Item.ERROR}


def test_the_table_names_every_move_its_writers_make():
    assert itemmoves.sources("item", itemmoves.RETRY, Item.PENDING) == (Item.ERROR,)
    assert not itemmoves.allowed("item", itemmoves.DELETE, Item.ACTIVE, "deleted")
    assert not itemmoves.allowed("task", itemmoves.POLLER, Task.SUBMITTING, Task.FAILED)
    with pytest.raises(db.claims.StateConflict):
        itemmoves.sources("item", itemmoves.RETRY, Item.DONE)


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_a_delete_re_checks_its_filter_once_the_jobs_are_locked(site):
    """Case 5b: the poller moves 10 READY jobs to STAGED_IN between the delete's read
    of `state="READY"` and its write: the delete, waiting on their row locks, asks its
    filter again and deletes none of them."""
    from tests.test_job_locks import interleave

    jobs = [job.id for job in make(10)]
    deleted: list[int] = []
    interleave(lambda: db.Job.update(state="STAGED_IN").where(
                   db.Job.id.in_(jobs)).execute(),
               lambda: deleted.append(Job.objects.filter(state="READY").delete()))
    assert deleted == [0]
    assert Job.objects.filter(id__in=jobs, state="STAGED_IN").count() == 10


@pytest.mark.engines
@pytest.mark.parametrize("ends", ["FILE_NOT_FOUND", "cancelled", "split"])
def test_an_earlier_runs_result_that_fails_never_fails_the_new_run(site, ends):
    """Run 1's stage-out is in flight when the job is FAILED and restarted (RUNNING, run
    2 writing its output). That transfer then fails (a file error, the user's cancel, a
    batch split): the item waits for run 2's POSTPROCESSED, the running job is left
    alone, and nothing of the half-written run 2 leaves before it."""
    jobs = [job.id for job in make(2 if ends == "split" else 1)]
    stage("in")
    for job in jobs:
        walk(job, "POSTPROCESSED")
    task = claim("out")
    for job in jobs:
        walk(job, "FAILED", "RESTART_READY", "RUNNING")
    if ends == "FILE_NOT_FOUND":
        finish(task.task_id, (item(jobs[0], "out").id,), "FILE_NOT_FOUND")
    elif ends == "cancelled":
        cancels.request_cancel(task.task_id)
        fail_task(task.task_id, "CANCELED")
    else:
        fail_task(task.task_id, "BAD_REQUEST")  # a batch of 2 failed as a whole: a split
    for job in jobs:
        assert Job.objects.get(id=job).state == "RUNNING"
        assert item(job, "out").state == Item.AWAITING_JOB
    assert claim("out") is None
    walk(jobs[0], "RUN_DONE", "POSTPROCESSED")
    finish(claim("out").task_id)
    assert Job.objects.get(id=jobs[0]).state == "JOB_FINISHED"


@pytest.mark.engines
def test_a_cancelled_batch_the_service_refuses_on_resend_is_not_split(site):
    """The submitter's resend of a batch the user cancelled is refused as bad: its items
    end cancelled, in no half sent again."""
    make(2)
    [found] = db.claims.claim_batches(
        [(db.claims.Group("in", "laptop"), "local://", "local")], 1, 10, 10,
        lambda group: "sid-cancelled", db.claims.owner_id(), 60, db.utcnow())
    cancels.request_cancel(found.task_id)
    finished = refusals.abandon(found, "BAD_REQUEST", "bad path",
                                api.current_settings().transfers)
    assert not finished.halves and finished.failed == 2
    assert {i.state for i in TransferItem.objects.all() if i.direction == "in"} == {Item.ERROR}
    assert claim("in") is None


class _ServiceThatEndsFirst(TransferBackend):
    """The service ends the task as the cancel arrives, and the site's poller records
    that end before the cancel's own poll sees it (the race a killed local runner
    makes). Only the service is stood in for: the database and the cancel are real."""

    def __init__(self, ended_as: str) -> None:
        self.ended_as = ended_as

    def get_submission_id(self) -> str:
        raise AssertionError("a task already submitted is not sent again")

    def submit(self, *args, **kwargs):
        raise AssertionError("a task already submitted is not sent again")

    def cancel(self, task_id: str) -> None:
        local_id = int(task_id.removeprefix("remote-"))
        code = "CANCELED" if self.ended_as == "FAILED" else None
        progress = outcomes.Progress(self.ended_as, None, 0, 0, 0.0, code, "ended")
        outcomes.finish_task(local_id, progress, [], api.current_settings().transfers)

    def poll(self, task_ids: list[str]) -> dict[str, TaskStatus]:
        return {t: TaskStatus(t, self.ended_as) for t in task_ids}

    def failures(self, task_id: str, direction: str) -> list:
        return []


@pytest.mark.engines
@pytest.mark.parametrize("ended_as", ["FAILED", "SUCCEEDED"])
def test_a_cancel_the_poller_recorded_first_still_says_what_became_of_it(
        site, monkeypatch, ended_as):
    """Whichever of the poller and the cancel records the task's end, the user's output
    says what became of it: cancelled (its items error "cancelled"), or finished."""
    jobs = make(2)
    task = claim("in")
    monkeypatch.setattr(site_controls, "follow_task",
                        lambda *args: _ServiceThatEndsFirst(ended_as))
    [line], failed = site_controls.cancel(site, [str(task.task_id)])
    assert failed == 0
    states = {item(job.id, "in").state for job in jobs}
    if ended_as == "FAILED":
        assert "cancelled" in line and "recorded its end first" in line, line
        assert states == {Item.ERROR}
        assert all("cancelled" in item(job.id, "in").error for job in jobs)
    else:
        assert "had already finished" in line, line
        assert states == {Item.DONE}
