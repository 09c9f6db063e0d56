"""The lease's fence and expiry on PostgreSQL, statement by statement (the site's
processes: test_leadership.py): a write after a takeover is refused, a takeover waits
for a fenced transaction and the server ends a frozen one, and a server restart frees
no lease at once."""

from __future__ import annotations

import time

import pytest

from balsam_mp import api, db
from balsam_mp.db import fence
from balsam_mp.db.fence import Fenced
from balsam_mp.db.postgres import schema_of
from balsam_mp.site import lease
from balsam_mp.site.lease import LEASE_SECONDS
from tests.conftest import wait_for

JOB = {"app": "MySim", "workdir": "w", "transfers": {"input_file": "laptop:/in.dat"}}


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_the_fence_refuses_a_write_once_another_host_took_the_lease(site):
    api.Job.objects.count()  # connects
    database = db.Job._meta.database
    database.execute_sql(lease.ENSURE)

    def take(host: str) -> int | None:
        row = database.execute_sql(lease.TAKE, {"host": host, "pid": 1, "ttl": 60}).fetchone()
        return row and row[0]

    epoch = take("login1")
    assert take("login2") is None  # held, unexpired, its session open
    fence.arm(epoch)
    try:
        api.Job.objects.bulk_create([JOB])
        database.execute_sql("UPDATE lease SET expires_at = 0")  # as if login1 froze
        assert take("login2") == epoch + 1
        with pytest.raises(Fenced, match=r"moved to login2 \(pid 1, epoch 2\)"):
            api.Job.objects.bulk_create([dict(JOB, workdir="w2")])
    finally:
        fence.arm(None)
    assert api.Job.objects.count() == 1


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_a_takeover_waits_for_a_fenced_transaction_and_ends_a_frozen_one(site,
                                                                         database_url):
    """A write that passed the fence commits before the epoch moves; a transaction left
    open (its process frozen) is ended by the server well within the lease."""
    import psycopg

    api.Job.objects.count()
    database = db.Job._meta.database
    database.execute_sql(lease.ENSURE)
    epoch = database.execute_sql(lease.TAKE, {"host": "login1", "pid": 1, "ttl": 0}) \
        .fetchone()[0]  # expired at once: free for the other host
    other = psycopg.connect(database_url, autocommit=True,
                            options=f"-c search_path={schema_of(site.site_name)}")
    other.execute("SET lock_timeout = '200ms'")
    fence.arm(epoch)
    try:
        transaction = database.atomic()
        transaction.__enter__()  # the fence checked; the lease row held FOR SHARE
        idle, = database.execute_sql("SELECT setting::float / 1000 FROM pg_settings WHERE "
                                     "name = 'idle_in_transaction_session_timeout'").fetchone()
        assert 0 < idle < LEASE_SECONDS  # what the fence set: the server ends it in time
        began = time.monotonic()  # the server's idle clock starts after the statement below
        api.Job.objects.bulk_create([JOB])
        with pytest.raises(psycopg.errors.LockNotAvailable):
            other.execute(lease.TAKE, {"host": "login2", "pid": 2, "ttl": 60})

        def taken() -> bool:
            try:
                return other.execute(lease.TAKE, {"host": "login2", "pid": 2,
                                                  "ttl": 60}).fetchone() is not None
            except psycopg.errors.LockNotAvailable:
                return False
        wait_for(taken, timeout=60, interval=0.2, what="the takeover")
        waited = time.monotonic() - began
        assert waited > idle - 1, "the takeover did not wait for the fenced transaction"
        print(f"\ntakeover {waited:.1f} s after the last statement (idle timeout {idle:g} s)")
        with pytest.raises(Exception):  # noqa: B017 - the server ended this session
            transaction.__exit__(None, None, None)
    finally:
        fence.arm(None)
        other.close()
    database.close()
    assert api.Job.objects.count() == 0  # the frozen transaction's job was never written


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_after_a_server_restart_the_holder_gets_the_lease_time_to_come_back(site,
                                                                           postgres_server):
    """Every session ends with a restart: that frees no lease at once (its holder is
    reconnecting); a lease renewed before the start is free LEASE_SECONDS after it."""
    api.Job.objects.count()
    database = db.Job._meta.database
    database.execute_sql("SET synchronous_commit = on")  # the test server's default is off
    database.execute_sql(lease.ENSURE)
    take = {"host": "login2", "pid": 2, "ttl": LEASE_SECONDS}
    assert database.execute_sql(lease.TAKE, dict(take, host="login1")).fetchone() == (1,)
    postgres_server.restart()
    api.close()
    api.Job.objects.count()
    database = db.Job._meta.database
    with database.atomic():  # one now() for the three: however long we took to get here
        started = database.execute_sql(
            "SELECT extract(epoch FROM now() - pg_postmaster_start_time())").fetchone()[0]
        assert float(started) < LEASE_SECONDS, "the server took too long to start"
        assert database.execute_sql(lease.TAKE, take).fetchone() is None
        assert lease.read(database)["live"]
    wait_for(lambda: database.execute_sql(lease.TAKE, take).fetchone(),
             timeout=60, interval=0.2, what="the lease free after the grace")
    assert lease.read(database) | {"renewed_s_ago": 0} == {
        "epoch": 2, "host": "login2", "pid": 2, "renewed_s_ago": 0, "live": True}
