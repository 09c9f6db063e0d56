"""Read-merge-write of a job row on PostgreSQL, where writers run side by side: each
test holds a first writer's transaction open, starts a second one until it waits on a
row lock, then lets the first commit. The second must build on what the first wrote
(SQLite's writers queue for one lock, so these interleavings cannot happen there)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from balsam_mp import api, db, states
from balsam_mp.db import controls
from balsam_mp.db.bulk import lock_job_creation
from balsam_mp.db.failing import fail_job
from balsam_mp.db.jobs import write_fields
from balsam_mp.db.models import utcnow
from balsam_mp.states import Item
from tests.conftest import wait_for
from tests.test_claims import TWO_INPUTS

pytestmark = pytest.mark.parametrize("engine", ["postgres"], indirect=True)


def failed_file(item_id: int, slot: str) -> dict:
    return {"item": item_id, "slot": slot, "direction": "in", "remote": f"laptop:/{slot}",
            "local_path": f"{slot}.dat", "reason": "FILE_NOT_FOUND"}


def waiting_on_a_lock() -> bool:
    return db.Job._meta.database.execute_sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock'").fetchone()[0] > 0


def interleave(first: Callable[[], None], second: Callable[[], None]) -> None:
    """`first` runs and holds its transaction; `second` starts and waits on a lock;
    then `first` commits and `second` finishes. Each in its own connection."""
    database = db.Job._meta.database
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run(body: Callable[[], None], hold: bool) -> None:
        try:
            with database.atomic():
                body()
                if hold:
                    held.set()
                    release.wait(timeout=30)
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
        finally:
            held.set()
            database.close()  # this thread's connection

    writers = [threading.Thread(target=run, args=(first, True))]
    writers[0].start()
    assert held.wait(timeout=30)
    writers.append(threading.Thread(target=run, args=(second, False)))
    writers[1].start()
    try:
        wait_for(waiting_on_a_lock, what="the second writer to wait on a row lock")
    finally:
        release.set()
        for writer in writers:
            writer.join(timeout=30)
    assert not errors, errors


@pytest.fixture
def two_input_job(site):
    (site.apps_path / "two_in.py").write_text(TWO_INPUTS)
    api.App.sync()
    job = api.Job.objects.create(app="TwoIn", workdir="w",
                                 transfers={"a": "laptop:/a", "b": "laptop:/b"})
    items = {i.slot: i.id for i in api.TransferItem.objects.filter(job_id=job.id)}
    return job.id, items


def test_a_users_state_data_save_keeps_a_failure_the_site_writes_meanwhile(two_input_job):
    job_id, items = two_input_job
    interleave(lambda: fail_job(job_id, [failed_file(items["a"], "a")], utcnow()),
               lambda: write_fields([job_id], {}, {"note": "mine"}))
    job = db.Job.get_by_id(job_id)
    assert job.state == states.FAILED
    assert job.state_data["note"] == "mine" and job.state_data["failed_from"] == states.READY
    assert [f["slot"] for f in job.state_data["failed_files"]] == ["a"]


def test_two_failures_of_one_job_at_once_are_both_named(two_input_job):
    job_id, items = two_input_job
    interleave(lambda: fail_job(job_id, [failed_file(items["a"], "a")], utcnow()),
               lambda: fail_job(job_id, [failed_file(items["b"], "b")], utcnow()))
    job = db.Job.get_by_id(job_id)
    assert job.state == states.FAILED
    assert [f["slot"] for f in job.state_data["failed_files"]] == ["a", "b"]


def test_a_retry_racing_a_new_failure_leaves_the_job_failed(two_input_job):
    """Item a failed earlier; the user retries it while the poller fails item b: the job
    must not return to READY with b in error (it would never fail nor finish)."""
    job_id, items = two_input_job
    db.TransferItem.update(state=Item.ERROR).where(db.TransferItem.id == items["a"]).execute()
    fail_job(job_id, [failed_file(items["a"], "a")], utcnow())

    def poller_fails_b() -> None:
        db.TransferItem.update(state=Item.ERROR).where(
            db.TransferItem.id == items["b"]).execute()
        fail_job(job_id, [failed_file(items["b"], "b")], utcnow())

    interleave(poller_fails_b, lambda: controls.retry_items([items["a"]]))
    job = db.Job.get_by_id(job_id)
    assert job.state == states.FAILED, job.state_data
    assert {s: db.TransferItem.get_by_id(i).state for s, i in items.items()} == {
        "a": Item.PENDING, "b": Item.ERROR}


def test_job_creations_of_one_site_take_turns(site):
    """A creation re-checks folders another's undo may remove: it waits for the lock."""
    interleave(lock_job_creation, lambda: api.Job.objects.create(
        app="MySim", workdir="w", transfers={"input_file": "laptop:/in/w.dat"}))
    assert [job.workdir for job in api.Job.objects.all()] == [Path("w")]
