"""PostgreSQL connections: a site holds at most 3 (two workers and the lease holder),
busy or idle; the request budget is taken on the worker's own connection; a slot
refused for lack of room is asked for again (libpq gives such a refusal no SQLSTATE),
not a pass lost; `site status` shows the server's headroom."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from balsam_mp import api, db
from balsam_mp.db.budget import RequestBudget
from balsam_mp.db.postgres import SitePostgres, schema_of
from tests.conftest import wait_for

ON_POSTGRES = pytest.mark.parametrize("engine", ["postgres"], indirect=True)
SITE_SESSIONS = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND application_name LIKE 'balsam_mp%%'")


def probe(server, database_url: str) -> psycopg.Connection:
    """The superuser's own session on the test database (not counted as the site's)."""
    return psycopg.connect(server.url(database_url.rsplit("/", 1)[1]),
                           password=server.password, autocommit=True,
                           application_name="probe")


def staged(conn: psycopg.Connection, schema: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {schema}.job WHERE state = 'STAGED_IN'"
                        ).fetchone()[0]


@ON_POSTGRES
def test_the_budget_from_many_threads_takes_the_workers_one_connection(
        site, postgres_server, database_url):
    with probe(postgres_server, database_url) as conn:
        api.close()  # its server process leaves pg_stat_activity a moment after
        wait_for(lambda: conn.execute(SITE_SESSIONS).fetchone()[0] == 0,
                 what="the test's own session to end")
        worker = db.connect(site.database_url, site=site.site_name, role="submitter",
                            shared=True)
        budget = RequestBudget(site.database_url, "globus/test", 1000.0, site=site.site_name)
        errors: list[BaseException] = []

        def take() -> None:
            try:
                for _ in range(20):
                    budget.take(1)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=take) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert conn.execute(SITE_SESSIONS).fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                            "'balsam_mp submitter'").fetchone()[0] == 1
    budget.close()
    worker.close()


@ON_POSTGRES
def test_a_thread_never_runs_inside_the_main_threads_transaction(site):
    """The budget, taken from a send thread, waits for the worker's transaction (opened
    through the models, as the workers do) to end, then takes in its own: a rollback of
    the worker's undoes nothing of it."""
    api.close()
    worker = db.connect(site.database_url, site=site.site_name, role="poller", shared=True)
    budget = RequestBudget(site.database_url, "globus/test", 100.0, site=site.site_name)
    taken = threading.Event()
    thread = threading.Thread(target=lambda: (budget.take(1), taken.set()))
    with db.LogEvent._meta.database.atomic() as transaction:
        db.LogEvent.create(job=None, to_state="TEST", message="rolled back")
        thread.start()
        assert not taken.wait(0.3), "the thread's statements ran inside our transaction"
        transaction.rollback()
    assert taken.wait(60)  # a hang guard
    thread.join()
    assert worker.execute_sql("SELECT count(*) FROM request_budget").fetchone()[0] == 1
    assert not db.LogEvent.select().where(db.LogEvent.to_state == "TEST").exists()
    budget.close()
    worker.close()


@ON_POSTGRES
def test_a_busy_site_holds_at_most_three_connections(sitekit, postgres_server, database_url):
    kit = sitekit(transfers="  transfer_batch_size: 100\n")
    schema = schema_of(api.current_settings().site_name)
    jobs = kit.make_jobs(3000, stage_out=False)
    api.close()  # the test's own session is not the site's
    with probe(postgres_server, database_url) as conn:
        kit.start()
        peak = 0

        def done() -> bool:
            nonlocal peak
            peak = max(peak, conn.execute(SITE_SESSIONS).fetchone()[0])
            return staged(conn, schema) == len(jobs)

        wait_for(done, timeout=180, interval=0.02, what="3,000 jobs STAGED_IN")
        assert peak <= 3, f"the site held {peak} connections"
        deadline = time.monotonic() + 2  # and after the load: no more than while busy
        while time.monotonic() < deadline:
            assert conn.execute(SITE_SESSIONS).fetchone()[0] <= 3
            time.sleep(0.05)
        status = kit.balsam("site", "status").stdout
        assert "database connections: " in status and " free (" in status, status
        assert "a site needs 3" in status


@contextlib.contextmanager
def limited_role_site(tmp_path, postgres_server, limit: int) -> Iterator[tuple]:
    """A site in a database of its own, owned by a role allowed `limit` connections; all
    dropped at the end."""
    from tests.sitekit import SiteKit

    role = name = f"lim{limit}_{os.getpid()}"
    postgres_server.admin(f"CREATE ROLE {role} LOGIN PASSWORD '{postgres_server.password}' "
                          f"CONNECTION LIMIT {limit}")
    postgres_server.admin(f'CREATE DATABASE "{name}" OWNER {role} TEMPLATE template0')
    url = postgres_server.url(name).replace("balsam@", f"{role}@")
    kit = None
    try:
        kit = SiteKit(tmp_path, database_url=url)
        yield kit, url
    finally:
        if kit is not None:
            kit.close()
        postgres_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        postgres_server.admin(f"DROP ROLE IF EXISTS {role}")


def test_a_role_limited_to_three_connections_stages_every_job(tmp_path, postgres_server):
    with limited_role_site(tmp_path, postgres_server, 3) as (kit, url):
        schema = schema_of(api.current_settings().site_name)
        jobs = kit.make_jobs(1000, stage_out=False)
        api.close()  # the role's three slots are the site's
        with probe(postgres_server, url) as conn:
            kit.start()
            wait_for(lambda: staged(conn, schema) == len(jobs), timeout=90, interval=0.1,
                     what="1,000 jobs STAGED_IN with 3 connections")


def test_a_workers_connection_refused_for_lack_of_slots_is_asked_for_again(postgres_server):
    role = f"lim1_{os.getpid()}"
    postgres_server.admin(f"CREATE ROLE {role} LOGIN PASSWORD '{postgres_server.password}' "
                          "CONNECTION LIMIT 1")
    url = postgres_server.url("postgres").replace("balsam@", f"{role}@")
    try:
        taken = psycopg.connect(url, password=postgres_server.password)
        started = time.monotonic()  # before the timer: the slot frees 0.5 s after it at least
        threading.Timer(0.5, taken.close).start()  # the slot frees in half a second
        database = SitePostgres(url, "x", role="poller", shared=True)
        database.connect()  # refused at first (53300): asked for again, not an error
        assert database.execute_sql("SELECT 1").fetchone() == (1,)
        assert time.monotonic() - started >= 0.4
        database.close()
    finally:
        postgres_server.admin(f"DROP ROLE IF EXISTS {role}")
