"""The Globus request budget in site.db, shared by processes and taken in grants."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balsam_mp import api, db
from balsam_mp.db import claims
from balsam_mp.db.budget import BURST, SUSTAINED, RequestBudget
from balsam_mp.errors import DatabaseFailure
from balsam_mp.transfer.ratelimit import SharedRateLimiter


@pytest.mark.engines
def test_a_version_2_database_gains_the_budget_table(site):
    """A site made before the shared budget (schema 2) opens, migrates and works."""
    api.connect()
    old = db.Job._meta.database
    old.execute_sql('DROP TABLE "request_budget"')
    old.execute_sql('ALTER TABLE "transfer_task" DROP COLUMN "cancel_requested"')
    old.execute_sql('ALTER TABLE "transfer_item" DROP COLUMN "resend"')
    old.execute_sql('ALTER TABLE "log_event" DROP COLUMN "data"')
    for column in ("submitted_at", "started_at"):
        old.execute_sql(f'ALTER TABLE "transfer_task" DROP COLUMN "{column}"')
    old.execute_sql("UPDATE meta SET value='2' WHERE key='schema_version'")
    api.close()
    api.connect()
    database = db.Job._meta.database
    assert database.execute_sql(
        "select value from meta where key='schema_version'").fetchone()[0] == str(
            db.models.SCHEMA_VERSION)
    budget = RequestBudget(site.database, "globus/test", 20, site=site.site_name)
    assert budget.take(1) == (1, 0.0)
    assert database.execute_sql("select name from request_budget").fetchall() == [
        ("globus/test",)]
    budget.close()


@pytest.mark.engines
def test_a_burst_then_the_sustained_rate(site, monkeypatch):
    monkeypatch.setattr("balsam_mp.db.budget.time.time", lambda: 5000.0)  # no refill between
    budget = RequestBudget(site.database, "globus/test", 20, site=site.site_name)
    granted, _ = budget.take(100)
    assert granted == int(BURST * 20)  # a quiet budget holds one burst
    granted, pause = budget.take(1)
    assert granted == 0 and 0 < pause <= 1 / (SUSTAINED * 20)
    other = RequestBudget(site.database, "globus/test", 20, site=site.site_name)
    assert other.take(1)[0] == 0  # a second holder (another worker) shares the bucket
    other.close()
    budget.close()


@pytest.mark.engines
def test_the_budget_keeps_todays_clock_to_the_microsecond(site, monkeypatch):
    """Epoch seconds need a double: PostgreSQL's REAL (4 bytes) rounds them to 128 s, and
    a bucket then refills a minute early or stalls a minute."""
    clock = [1_795_000_000.123456]
    monkeypatch.setattr("balsam_mp.db.budget.time.time", lambda: clock[0])
    budget = RequestBudget(site.database, "globus/test", 20, site=site.site_name)
    assert budget.take(100)[0] == int(BURST * 20)
    assert budget.take(1)[0] == 0  # the same instant refills nothing
    clock[0] += 1.001 / (SUSTAINED * 20)  # a token's refill later
    assert budget.take(1)[0] == 1
    budget.close()


def test_a_clock_set_back_does_not_stall_the_budget(site, monkeypatch):
    clock = [5000.0]
    monkeypatch.setattr("balsam_mp.db.budget.time.time", lambda: clock[0])
    budget = RequestBudget(site.database_path, "globus/test", 20)
    api.connect()
    db.Job._meta.database.execute_sql(  # last refill an hour "in the future"
        "INSERT INTO request_budget VALUES ('globus/test', 0, ?)", (clock[0] + 3600,))
    assert budget.take(1)[0] == 0  # nothing refilled, but the count restarts from now
    clock[0] += 1 / (SUSTAINED * 20)  # one token's refill later, not an hour
    assert budget.take(1)[0] == 1
    budget.close()


def _spend(path: str, name: str, per_second: float, calls: int, out) -> None:
    limiter = SharedRateLimiter(RequestBudget(path, name, per_second), per_second)
    times = []
    for _ in range(calls):
        limiter.wait()
        times.append(time.time())
    out.put((times, limiter.grants))


def _most_in_one_second(times: list[float]) -> int:
    times.sort()
    most, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_two_processes_share_one_budget_and_never_exceed_it(site):
    """Two processes spending as fast as they can: together never more than the limit in
    any one-second window (what Globus and the emulator enforce)."""
    out = multiprocessing.get_context("spawn").Queue()
    procs = [multiprocessing.get_context("spawn").Process(
        target=_spend, args=(str(site.database_path), "globus/shared", 20, 25, out))
        for _ in range(2)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    times = [t for spent, _ in results for t in spent]
    assert len(times) == 50 and _most_in_one_second(times) <= 20


def test_a_high_rate_takes_tokens_in_grants_not_one_transaction_per_request(site):
    budget = RequestBudget(site.database_path, "globus/fast", 10_000)
    limiter = SharedRateLimiter(budget, 10_000)
    for _ in range(1000):
        limiter.wait()
    assert limiter.grants <= 1000 / limiter.grant + 2 and limiter.grant == 200
    budget.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5), st.integers(1, 50)), min_size=1, max_size=30),
       st.floats(0.1, 10_000))
def test_never_more_than_a_burst_plus_the_refill(tmp_path_factory, steps, per_second):
    """Any sequence of waits and takes: what was granted never exceeds one burst plus
    what the elapsed time refilled (the clock is simulated)."""
    path = tmp_path_factory.mktemp("budget") / "site.db"
    db.connect(path, create=True).close()
    budget = RequestBudget(path, "globus/h", per_second)
    clock = [1000.0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("balsam_mp.db.budget.time.time", lambda: clock[0])
        granted = 0
        for pause, wanted in steps:
            clock[0] += pause
            got, wait = budget.take(wanted)
            assert 0 <= got <= wanted and (got or wait > 0)
            granted += got
            assert granted <= budget.capacity + (clock[0] - 1000.0) * budget.rate + 1e-6
    budget.close()


def test_recent_task_cost_is_the_median_from_claim_to_finish(site):
    api.connect()
    assert claims.recent_task_seconds() == 0.0  # no history: auto does not pace
    database = db.Job._meta.database
    for seconds, state in ([(2, "succeeded"), (3, "succeeded"),
                           (100, "failed"), (4, "succeeded")]):
        database.execute_sql(
            "INSERT INTO transfer_task (direction, location_alias, protocol, remote_address,"
            " state, item_count, label, files_transferred, files_skipped, bytes_transferred,"
            " bytes_per_second, created_at, updated_at) VALUES ('in', 'a', 'globus', 'x', ?,"
            " 1, '', 0, 0, 0, 0, ?, ?)",
            (state, "2026-01-01T00:00:00.000000Z", f"2026-01-01T00:00:{seconds:02d}.500000Z"))
    assert claims.recent_task_seconds() == pytest.approx(3.5)  # a failure is not a cost


def test_a_database_locked_too_long_is_an_error_the_workers_retry(site, monkeypatch):
    """Not a crash: the workers back off on a DatabaseFailure (a BalsamError) as for
    their own queries (a sqlite3 error would escape their loop)."""
    budget = RequestBudget(site.database_path, "globus/test", 20)
    budget.take(1)
    budget._conn.execute("PRAGMA busy_timeout = 50")
    other = sqlite3.connect(str(site.database_path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(DatabaseFailure, match="site.db: database is locked"):
            budget.take(1)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert budget.take(1) == (1, 0.0)  # and it works again once the lock is gone
    budget.close()


@pytest.mark.engines
@pytest.mark.parametrize("tokens, updated", [("-1e6", "updated"), ("1e9", "updated"),
                                             ("'abc'", "updated"), ("'NaN'", "updated"),
                                             ("5", "'later'"), ("5", "1e12")])
def test_a_bad_budget_row_is_reset_with_one_log_line(site, caplog, tokens, updated):
    """A row written by hand (or a bug): a huge debt would stall the site, a text crash
    the submitter, a clock far ahead freeze the refill. It is reset to a full bucket."""
    engine = "postgres" if site.database_url else "sqlite"
    if engine == "postgres" and "'" in tokens + updated and tokens != "'NaN'":
        pytest.skip("PostgreSQL's DOUBLE PRECISION column holds no text")
    if engine == "sqlite" and tokens == "'NaN'":
        pytest.skip("SQLite stores no NaN (it becomes NULL)")
    budget = RequestBudget(site.database, "globus/test", 20, site=site.site_name)
    assert budget.take(1) == (1, 0.0)  # the row exists
    api.connect()
    db.Job._meta.database.execute_sql(
        f"UPDATE request_budget SET tokens = {tokens}, updated = {updated}")
    with caplog.at_level("WARNING", logger="balsam_mp.db.budget"):
        granted, wait = budget.take(2)
    assert granted >= 1 and wait == 0.0
    assert [r for r in caplog.records if "out of range" in r.getMessage()]
    budget.close()
