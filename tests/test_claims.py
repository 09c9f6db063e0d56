"""Claims and job moves under real concurrency, on SQLite (writers queue for one lock)
and on PostgreSQL (writers run side by side: SKIP LOCKED claims, locked job rows)."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading

import pytest

from balsam_mp import api, db, states
from balsam_mp.db import outcomes
from balsam_mp.db.claims import Group, claim_batches
from balsam_mp.db.outcomes import Progress, finish_task
from balsam_mp.states import Item, Task

pytestmark = pytest.mark.engines

TWO_INPUTS = '''
from balsam_mp.api import ApplicationDefinition


class TwoIn(ApplicationDefinition):
    transfers = {
        "a": {"required": True, "direction": "in", "local_path": "a.dat"},
        "b": {"required": True, "direction": "in", "local_path": "b.dat"},
    }
'''


ROUNDS = 400 // (4 * 7) + 2  # rounds of one claim each: enough for every item


def _claimer(target, site: str, number: int, results, start) -> None:
    """A submitter-like process: one claim a round, the rounds started together (so
    they claim side by side however the machine schedules them), until none is left."""
    db.connect(target, site=site)
    claimed = []
    counter = iter(range(10**6))
    for _ in range(ROUNDS):
        start.wait(timeout=60)  # all four start this round's claim at once
        claims = claim_batches(
            [(Group("in", "laptop"), "", "local")], capacity=1, budget=7, batch_size=7,
            take_submission_id=lambda _group: f"sid-{number}-{next(counter)}",
            owner=f"owner-{number}", lease=60,
            deadline=db.utcnow() + dt.timedelta(hours=1))
        claimed += [(c.task_id, c.submission_id, [i[0] for i in c.items]) for c in claims]
    results.put(claimed)


def test_concurrent_claimers_take_every_item_once(site):
    api.Job.objects.bulk_create([{"app": "MySim", "workdir": f"c/{n}",
                                  "transfers": {"input_file": f"laptop:/in/{n}"}}
                                 for n in range(400)])
    api.close()
    context = multiprocessing.get_context("fork")
    results, start = context.Queue(), context.Barrier(4)
    workers = [context.Process(target=_claimer,
                               args=(site.database, site.site_name, n, results, start))
               for n in range(4)]
    for worker in workers:
        worker.start()
    claimed = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    items = [i for mine in claimed for _, _, ids in mine for i in ids]
    assert len(items) == len(set(items)) == 400  # every item once, by one claimer
    sids = [sid for mine in claimed for _, sid, _ in mine]
    assert len(sids) == len(set(sids))
    assert sum(1 for mine in claimed if mine) >= 2  # they did run side by side
    api.connect()
    for mine in claimed:
        for task_id, sid, ids in mine:
            task = api.TransferTask.objects.get(id=task_id)
            assert (task.state, task.submission_id, task.item_count) == (
                Task.SUBMITTING, sid, len(ids))
            assert sorted(db.TransferItem.select(db.TransferItem.id).where(
                db.TransferItem.transfer_task == task_id,
                db.TransferItem.state == Item.SUBMITTING).scalars()) == sorted(ids)


def _in_flight_task(item_ids: list[int], name: str) -> int:
    task = db.TransferTask.create(direction="in", location_alias="laptop", protocol="local",
                                  remote_address="", state=Task.ACTIVE, submission_id=name,
                                  item_count=len(item_ids))
    db.TransferItem.update(state=Item.ACTIVE, transfer_task=task.id).where(
        db.TransferItem.id.in_(item_ids)).execute()
    return task.id


def _finish(task_id: int, barrier: threading.Barrier, errors: list, site) -> None:
    """In a thread (its own connection): the task succeeds."""
    try:
        barrier.wait(timeout=30)
        finish_task(task_id, Progress("SUCCEEDED", "SUCCEEDED", 20, 0, 0.0), [],
                    site.transfers)
    except BaseException as exc:  # noqa: BLE001 - the test reports it
        errors.append(exc)
    finally:
        db.Job._meta.database.close()  # this thread's connection


def test_two_tasks_finishing_together_move_their_shared_jobs(site, engine, monkeypatch):
    """Each job has one file in each of two tasks that finish at the same moment in two
    connections: whichever commits second must see the first's files done. On
    PostgreSQL both mark their files done before either looks at the jobs (SQLite's
    second writer cannot start before the first commits)."""
    if engine == "postgres":
        between = threading.Barrier(2)
        advance = outcomes.advance_jobs

        def advance_together(job_ids, direction, skipped=None):
            between.wait(timeout=30)
            advance(job_ids, direction, skipped)

        monkeypatch.setattr(outcomes, "advance_jobs", advance_together)
    (site.apps_path / "two_in.py").write_text(TWO_INPUTS)
    api.App.sync()
    for round_ in range(8):
        jobs = api.Job.objects.bulk_create([
            {"app": "TwoIn", "workdir": f"r{round_}/{n}",
             "transfers": {"a": f"laptop:/a/{n}", "b": f"laptop:/b/{n}"}} for n in range(20)])
        ids = [job.id for job in jobs]
        tasks = [_in_flight_task([i.id for i in api.TransferItem.objects.filter(
            job_id__in=ids, slot=slot)], f"r{round_}{slot}") for slot in "ab"]
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_finish, args=(task, barrier, errors, site))
                   for task in tasks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert api.Job.objects.filter(id__in=ids, state=states.STAGED_IN).count() == 20, \
            f"round {round_}: {[j.state for j in api.Job.objects.filter(id__in=ids)]}"
