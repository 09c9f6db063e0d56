"""Writes through the API: dirty-tracking save, compare-and-set state changes, update,
delete; none reverts what the site wrote or skips its work (real SQLite site database;
the site's moves through the workers' db functions)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from balsam_mp import db, states
from balsam_mp.api import EventLog, Job, TransferItem
from balsam_mp.db import failing
from balsam_mp.db.results import Failure
from balsam_mp.errors import BalsamError, StateConflict, ValidationError
from tests.sitemoves import claim, finish, make, stage


def test_a_write_lock_that_never_comes_is_a_balsam_error(site, monkeypatch):
    from balsam_mp.db import connection

    job = make(1)[0]
    monkeypatch.setattr(connection, "BUSY_TIMEOUT", 0.1)
    other = sqlite3.connect(str(site.database_path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        job.tags = {"n": "x"}
        with pytest.raises(BalsamError, match="site.db: database is locked"):
            job.save()
        with pytest.raises(BalsamError, match="site.db: database is locked"):
            Job.objects.all().update(state="FAILED")
    finally:
        other.execute("ROLLBACK")
        other.close()
    job.save()
    assert Job.objects.get(id=job.id).tags == {"n": "x"}


def test_a_stale_save_never_reverts_what_the_site_wrote(site):
    job = make(1)[0]
    stale = Job.objects.get(id=job.id)
    stage("in")  # the site: READY -> STAGED_IN
    stale.tags = {"n": "changed"}
    stale.save()
    fresh = Job.objects.get(id=job.id)
    assert (fresh.state, fresh.tags) == (states.STAGED_IN, {"n": "changed"})
    assert stale.state == states.STAGED_IN  # save() re-read it


def test_a_stale_state_change_is_a_conflict_naming_job_expected_found(site):
    job = make(1)[0]
    stale = Job.objects.get(id=job.id)
    stage("in")
    stale.state, stale.tags = states.FAILED, {"n": "x"}
    with pytest.raises(StateConflict, match=f"job {job.id}: expected state READY, found STAGED_IN"):
        stale.save()
    assert Job.objects.get(id=job.id).tags == {"n": "0"}  # nothing of the save was written
    stale.refresh_from_db()
    assert (stale.state, stale.tags) == (states.STAGED_IN, {"n": "0"})


def test_postprocessed_by_save_releases_stage_out_and_logs(site):
    job = make(1)[0]
    stage("in")
    job.refresh_from_db()
    job.state = "POSTPROCESSED"
    job.save()
    assert TransferItem.objects.get(job_id=job.id, direction="out").state == "pending"
    stage("out")
    job.refresh_from_db()
    assert job.state == states.JOB_FINISHED
    assert [e.to_state for e in job.events.order_by("id")] == [
        "READY", "STAGED_IN", "POSTPROCESSED", "STAGED_OUT", "JOB_FINISHED"]
    job.state = "RESTART_READY"
    with pytest.raises(ValidationError, match="JOB_FINISHED is final"):
        job.save()


@pytest.mark.parametrize("target, message", [
    ("BOGUS", "'BOGUS' is not a job state"),
    ("STAGED_IN", "stage-in items are not done"),
    ("JOB_FINISHED", "cannot move from READY to JOB_FINISHED"),
    ("POSTPROCESSED", "cannot move from READY to POSTPROCESSED"),
])
def test_skipping_the_sites_work_is_refused(site, target, message):
    job = make(1)[0]
    job.state = target
    with pytest.raises(ValidationError, match=message):
        job.save()
    with pytest.raises(ValidationError, match=message):
        Job.objects.filter(id=job.id).update(state=target)
    assert Job.objects.get(id=job.id).state == states.READY


def test_update_moves_each_job_all_or_none(site):
    jobs = make(3)
    stage("in")
    moved = Job.objects.filter(id=[jobs[0].id, jobs[1].id]).update(state="RUNNING")
    assert sorted(j.state for j in moved) == ["RUNNING", "RUNNING"]
    with pytest.raises(ValidationError, match=f"job {jobs[0].id}: cannot move from RUNNING"):
        Job.objects.all().update(state="STAGED_OUT")  # the site's move: refused
    assert Job.objects.get(id=jobs[2].id).state == "STAGED_IN"  # rolled back
    Job.objects.filter(id=jobs[1].id).update(state="FAILED")
    with pytest.raises(ValidationError, match=f"job {jobs[1].id}: cannot move from FAILED"):
        Job.objects.all().update(state="RUN_DONE")  # one compare-and-set per state read
    assert [j.state for j in Job.objects.order_by("id")] == ["RUNNING", "FAILED", "STAGED_IN"]
    with pytest.raises(ValidationError, match="workdir cannot be changed"):
        Job.objects.all().update(workdir="elsewhere")
    with pytest.raises(ValidationError, match="no writable field 'colour'"):
        Job.objects.all().update(colour="red")
    with pytest.raises(ValidationError, match="cannot be updated"):
        TransferItem.objects.all().update(state="done")


def test_state_data_is_merged_so_the_sites_keys_survive(site):
    job = make(1)[0]
    stale = Job.objects.get(id=job.id)
    task = claim("in")
    finish(task.task_id, failed_items=(TransferItem.objects.get(job_id=job.id,
                                                                direction="in").id,))
    stale.state_data["note"] = "mine"
    stale.save()
    data = Job.objects.get(id=job.id).state_data
    assert data["note"] == "mine" and data["failed_from"] == "READY" and data["failed_files"]


def test_a_job_with_failed_items_moves_only_through_documented_paths(site):
    job = make(1)[0]
    item = TransferItem.objects.get(job_id=job.id, direction="in")
    finish(claim("in").task_id, failed_items=(item.id,))
    job.refresh_from_db()
    assert job.state == states.FAILED
    job.state = "READY"
    with pytest.raises(ValidationError, match=f"balsam transfer retry {item.id}"):
        job.save()


def test_fields_that_are_fixed_once_a_job_exists(site):
    job = make(1)[0]
    for name, value in (("workdir", Path("x")), ("transfers", {"input_file": "laptop:/q"})):
        other = Job.objects.get(id=job.id)
        setattr(other, name, value)
        with pytest.raises(ValidationError, match=f"{name} cannot be changed"):
            other.save()
    bad = Job.objects.get(id=job.id)
    bad.tags = {"k": float("nan")}
    with pytest.raises(ValidationError, match="not a number a tag can hold"):
        bad.save()
    item = TransferItem.objects.get(job_id=job.id, direction="in")
    item.state = "done"
    with pytest.raises(ValidationError, match="the site moves transfer items"):
        item.save()


def test_delete_is_refused_while_items_are_in_flight(site):
    jobs = make(2)
    task = claim("in", limit=1)  # the first job's input is in flight
    with pytest.raises(ValidationError, match=f"job {jobs[0].id}: .* in flight in task "
                                              f"{task.task_id}; cancel it first"):
        jobs[0].delete()
    with pytest.raises(ValidationError, match="in flight"):
        Job.objects.all().delete()
    assert Job.objects.count() == 2
    jobs[1].delete()
    assert jobs[1].id is None and Job.objects.count() == 1
    assert TransferItem.objects.count() == 2 and EventLog.objects.filter(job_id=jobs[0].id)
    finish(task.task_id)
    assert Job.objects.filter(id=jobs[0].id).delete() == 1
    assert TransferItem.objects.count() == 0


def test_a_late_failure_never_moves_a_finished_job(site):
    job = make(1, out=False)[0]
    stage("in")
    Job.objects.set_state(job.id, "STAGED_IN", "POSTPROCESSED")
    assert Job.objects.get(id=job.id).state == states.JOB_FINISHED
    item = TransferItem.objects.get(job_id=job.id)
    with db.Job._meta.database.atomic():
        failing.fail_items([Failure(item.id, "FILE_NOT_FOUND", "late")],
                           site.transfers)
    assert Job.objects.get(id=job.id).state == states.JOB_FINISHED
