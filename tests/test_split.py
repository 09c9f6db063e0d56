"""Splitting a poisoned batch, on the real database and claim path: any batch size, any
culprits, the good items go through and each culprit ends alone within log2(batch)."""

from __future__ import annotations

import datetime as dt
import math
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balsam_mp import api, db
from balsam_mp.db import claims, outcomes
from balsam_mp.db.claims import Group
from balsam_mp.db.outcomes import Progress
from balsam_mp.site.layout import init_site

GROUP = Group("in", "laptop")


def run_until_settled(poison: set[int], batch_size: int) -> list[str]:
    """Claim, 'transfer' (a task holding a culprit fails as a whole), finish; repeat.
    Returns every submission id used."""
    policy = api.current_settings().transfers
    owner, used = claims.owner_id(), []
    deadline = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)

    def take(group: Group) -> str:
        used.append(str(uuid.uuid4()))
        return used[-1]

    while batch := claims.claim_batches([(GROUP, "", "local")], 5, 10_000, batch_size, take,
                                        owner, 60, deadline):
        claims.mark_submitted([(c, f"remote-{c.task_id}") for c in batch], owner)
        for claim in batch:
            poisoned = any(item_id in poison for item_id, *_ in claim.items)
            outcomes.finish_task(claim.task_id, Progress(
                "FAILED" if poisoned else "SUCCEEDED", None, 0, 0, 0.0,
                "STALLED" if poisoned else None, "a fault repeats"), [], policy)
    return used


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(1, 70), culprits=st.sets(st.integers(0, 69), min_size=1, max_size=3))
def test_any_batch_isolates_its_culprits_and_passes_the_rest(size, culprits):
    with tempfile.TemporaryDirectory() as tmp:
        init_site(Path(tmp) / "site")
        api.use_site(Path(tmp) / "site")
        try:
            (Path(tmp) / "site/settings.yml").write_text((Path(tmp) / "site/settings.yml")
                                                         .read_text().replace(
                "max_retries: 3", "max_retries: 0"))
            api.use_site(Path(tmp) / "site")
            api.App.sync()
            jobs = api.Job.objects.bulk_create([
                {"app": "MySim", "workdir": f"w{n}", "transfers": {
                    "input_file": f"laptop:/in/{n}.dat"}} for n in range(size)])
            items = {i.job_id: i.id for i in api.TransferItem.objects.all()}
            poison = {items[jobs[n].id] for n in culprits if n < size}
            used = run_until_settled(poison, batch_size=size)
            assert len(used) == len(set(used))  # a fresh submission id for every half
            rows = list(api.TransferItem.objects.all())
            for item in rows:
                if item.id in poison:
                    assert item.state == "error"
                    assert ("isolated after" in item.error) == (size > 1)
                    assert item.split_round <= math.ceil(math.log2(size))
                else:
                    assert (item.state, item.attempts) == ("done", 0)
            failed = {j.id for j in api.Job.objects.filter(state="FAILED")}
            assert failed == {i.job_id for i in rows if i.id in poison}
        finally:
            api.close()


@pytest.mark.engines
def test_a_version_1_database_is_migrated(site):
    api.Job.objects.bulk_create([{"app": "MySim", "workdir": "w", "transfers": {
        "input_file": "laptop:/in.dat"}}])
    database = db.Job._meta.database
    for statement in ('DROP INDEX "transfer_item_batch_key"',
                      'ALTER TABLE "transfer_item" DROP COLUMN "batch_key"',
                      'ALTER TABLE "transfer_item" DROP COLUMN "split_round"',
                      'ALTER TABLE "transfer_task" DROP COLUMN "fault_since"',
                      'ALTER TABLE "transfer_task" DROP COLUMN "cancel_requested"',
                      'ALTER TABLE "transfer_item" DROP COLUMN "resend"',
                      'ALTER TABLE "transfer_task" DROP COLUMN "submitted_at"',
                      'ALTER TABLE "transfer_task" DROP COLUMN "started_at"',
                      'ALTER TABLE "log_event" DROP COLUMN "data"',
                      "UPDATE meta SET value = '1' WHERE key = 'schema_version'"):
        database.execute_sql(statement)
    api.close()
    migrated = db.connect(site.database, site=site.site_name)
    assert migrated.execute_sql("SELECT split_round, batch_key FROM transfer_item") \
        .fetchall() == [(0, None)]
    assert migrated.execute_sql("SELECT value FROM meta WHERE key = 'schema_version'") \
        .fetchone()[0] == str(db.models.SCHEMA_VERSION)  # and on through later versions
    migrated.close()


def _open(target, site_name, start, results) -> None:
    start.wait(timeout=60)
    try:
        db.connect(target, site=site_name).close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - the test reports it
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.engines
def test_processes_opening_an_old_database_at_once_migrate_it_once(site):
    """Six processes (a site start, CLI commands, a user's script) open a version-3
    database at the same moment: one migrates it, the others wait and find it done."""
    import multiprocessing

    api.connect()
    database = db.Job._meta.database
    for statement in ('ALTER TABLE "transfer_task" DROP COLUMN "cancel_requested"',
                      'ALTER TABLE "transfer_item" DROP COLUMN "resend"',
                      'ALTER TABLE "transfer_task" DROP COLUMN "submitted_at"',
                      'ALTER TABLE "transfer_task" DROP COLUMN "started_at"',
                      'ALTER TABLE "log_event" DROP COLUMN "data"',
                      "UPDATE meta SET value = '3' WHERE key = 'schema_version'"):
        database.execute_sql(statement)
    api.close()
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(6), context.Queue()
    openers = [context.Process(target=_open, args=(site.database, site.site_name, start,
                                                   results)) for _ in range(6)]
    for opener in openers:
        opener.start()
    answers = [results.get(timeout=60) for _ in openers]
    for opener in openers:
        opener.join(timeout=30)
    assert answers == ["ok"] * 6, answers
    api.connect()
    assert db.Job._meta.database.execute_sql(
        "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == \
        str(db.models.SCHEMA_VERSION)
