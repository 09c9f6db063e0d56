"""No deadlock reaches a user: two processes' bulk updates and deletes of the same jobs
(tags vs state, state vs state, update vs delete) run side by side, repeatedly, and
every one of them goes through. Writers lock jobs in id order; a deadlock or
serialization failure that happens all the same is retried (db/retry.py)."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from balsam_mp import api, db
from balsam_mp.db.retry import retry_transaction
from balsam_mp.states import Item

ON_POSTGRES = pytest.mark.parametrize("engine", ["postgres"], indirect=True)
ROUNDS = 30


def race_jobs(count: int = 2000) -> list[int]:
    """Jobs in STAGED_IN (every state the races use may follow), with their rows in an
    order other than their ids' (PostgreSQL writes an updated row elsewhere)."""
    made = api.Job.objects.bulk_create([
        {"app": "MySim", "workdir": f"race/{n}", "tags": {"race": "yes"},
         "transfers": {"input_file": f"laptop:/tmp/race/{n}.dat"}} for n in range(count)])
    ids = [job.id for job in made]
    db.TransferItem.update(state=Item.DONE).execute()  # as if staged in: STAGED_IN may follow
    api.Job.objects.filter(id__in=ids).update(state="STAGED_IN")
    shuffled = ids[:]
    random.Random(23).shuffle(shuffled)
    for job_id in shuffled[: count // 2]:  # scatter half of them through the table
        api.Job.objects.filter(id=job_id).update(parameters={"moved": "1"})
    return ids


@ON_POSTGRES
@pytest.mark.parametrize("first, second", [("tags", "state"), ("state", "state"),
                                           ("params", "delete"), ("tags", "delete")])
def test_two_processes_bulk_writing_the_same_jobs_never_see_a_deadlock(site, first, second):
    ids = race_jobs()
    env = dict(os.environ, BALSAM_SITE_PATH=str(site.site_path))
    sides = [subprocess.Popen([sys.executable, "-m", "tests.pg_race", kind, str(ROUNDS)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for kind in (first, second)]
    results = [side.communicate(timeout=300) for side in sides]
    for side, (out, err) in zip(sides, results, strict=True):
        assert side.returncode == 0, f"{' '.join(side.args[3:])}: {err[-2000:]}"
        assert "deadlock" not in out + err
    assert api.Job.objects.filter(id__in=ids).count() == len(ids)


@ON_POSTGRES
def test_a_deadlock_is_retried_a_bounded_number_of_times(site):
    """A transaction that meets a deadlock every time gives up after its tries; one that
    meets it once goes through, its body run again whole."""
    database = api.site.database()
    calls = []

    def body(fail_times: int):
        def run():
            calls.append(1)
            if len(calls) <= fail_times:
                database.execute_sql("DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = "
                                     "'40P01'; END $$")
            return "done"
        return run

    assert retry_transaction(database, body(1)) == "done" and len(calls) == 2
    calls.clear()
    with pytest.raises(db.postgres.peewee.OperationalError):
        retry_transaction(database, body(100))
    assert len(calls) == 5
