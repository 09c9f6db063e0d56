"""The site's lease on PostgreSQL: a frozen leader is replaced and, once it wakes, writes
nothing; a role without rights on the site's schema cannot hold the site; `site status`
names the active host wherever it runs, and says since when the database is out.
Two "hosts" are two supervisors on this machine, told apart by $BALSAM_HOSTNAME."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time

import psutil
import pytest

from balsam_mp import api, db, states
from balsam_mp.db.postgres import schema_of
from balsam_mp.site.leader import BACKOFF_MAX, TRY_EVERY
from balsam_mp.site.lease import LEASE_SECONDS
from balsam_mp.site.pidfile import HOST_ENV
from tests.conftest import wait_for
from tests.test_standby import booted, host_pidfile

BOOT = 15.0  # a bound on the new leader's boot on a loaded machine, not a measure


def hosts(kit) -> tuple[dict, dict]:
    return tuple(dict(kit.env, **{HOST_ENV: name}) for name in ("login1", "login2"))


def signal_host(kit, host: str, signum: int) -> list[psutil.Process]:
    """Send `signum` to the supervisor of `host` and everything under it, at once."""
    supervisor = psutil.Process(host_pidfile(kit, host)["pid"])
    processes = [supervisor, *supervisor.children(recursive=True)]
    for process in processes:
        process.send_signal(signum)
    return processes


def written(kit) -> tuple:
    """What the site's tables and the service hold: unchanged if no one wrote."""
    row = db.Job._meta.database.execute_sql(
        "SELECT (SELECT count(*) FROM transfer_item), (SELECT max(updated_at) FROM "
        "transfer_item), (SELECT count(*) FROM transfer_task), (SELECT max(updated_at) FROM "
        "transfer_task), (SELECT count(*) FROM log_event), (SELECT max(updated_at) FROM "
        "job)").fetchone()
    return tuple(row), len(kit.accepted()), len(kit.emulator.tasks())


def status_text(kit, env: dict) -> str:
    return kit.balsam("site", "status", env=env, check=False).stdout


def two_hosts_busy(sitekit, jobs: int) -> tuple:
    """login1 active with work in flight at Globus, login2 started on standby: the kit,
    the jobs, login1's and login2's environments, and what login2's start said."""
    kit = sitekit(emulator_args=("--startup-delay", "0.2"),
                  transfers="  transfer_batch_size: 10\n  claim_lease: 5\n")
    made = kit.make_jobs(jobs, stage_out=False)
    login1, login2 = hosts(kit)
    kit.start(env=login1)
    wait_for(lambda: booted(kit, "login1"), what="login1's workers")
    said = kit.start(env=login2).stdout
    wait_for(lambda: len(kit.accepted()) >= 3, what="work in flight on login1")
    return kit, made, login1, login2, said


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_a_frozen_leader_is_replaced_then_writes_nothing_and_stands_by(sitekit):
    kit, jobs, login1, login2, said = two_hosts_busy(sitekit, 200)
    assert "started on standby" in said

    frozen = signal_host(kit, "login1", signal.SIGSTOP)  # a hung mount: sessions stay open
    try:
        frozen_at = time.monotonic()
        assert len(frozen) == 4  # supervisor, submitter, poller, lease holder
        wait_for(lambda: booted(kit, "login2"), timeout=LEASE_SECONDS + TRY_EVERY + BOOT,
                 interval=0.05, what="login2 to take over from the frozen login1")
        takeover = time.monotonic() - frozen_at
        later = kit.make_jobs(20, prefix="later", stage_out=False)
        kit.wait_jobs(jobs + later, states.STAGED_IN, timeout=120)
        before = written(kit)
    finally:
        for process in frozen:
            process.send_signal(signal.SIGCONT)
    log = kit.site / "logs" / "supervisor.log"
    wait_for(lambda: "lost the site lease (epoch 1) to login2" in log.read_text(),
             what="login1 to find its lease gone")
    wait_for(lambda: not psutil.wait_procs(frozen[1:], timeout=0)[1],
             what="login1's workers and lease holder to exit")
    wait_for(lambda: host_pidfile(kit, "login1").get("standby"), what="login1 on standby")
    assert not host_pidfile(kit, "login1")["workers"] and frozen[0].is_running()
    assert written(kit) == before, "the woken leader wrote"
    kit.assert_exactly_once()
    assert "on standby (pid" in status_text(kit, login1)
    assert "login2 (pid" in status_text(kit, login1)
    print(f"\ntakeover after SIGSTOP: {takeover:.2f} s (lease {LEASE_SECONDS:g} s)")


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_running_workers_whose_lease_moved_stop_before_writing(sitekit):
    """Only the lease holder hangs: the workers run on, find the lease moved at their
    next transaction, and stop; their supervisor stands by before the holder wakes."""
    kit, jobs, login1, login2, _ = two_hosts_busy(sitekit, 300)
    info = host_pidfile(kit, "login1")
    workers = set(info["workers"].values())
    holder, = (p for p in psutil.Process(info["pid"]).children() if p.pid not in workers)
    holder.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: booted(kit, "login2"), timeout=LEASE_SECONDS + TRY_EVERY + BOOT,
                 what="login2 to take over")
        later = kit.make_jobs(50, prefix="later", stage_out=False)  # woken by their NOTIFY
        wait_for(lambda: host_pidfile(kit, "login1").get("standby"), timeout=60,
                 what="login1's workers fenced, login1 on standby")
        assert not host_pidfile(kit, "login1")["workers"]
    finally:
        holder.send_signal(signal.SIGCONT)
    logs = kit.site / "logs"
    fenced = [line for name in ("submitter.log", "poller.log")
              for line in (logs / name).read_text().splitlines() if "without writing" in line]
    assert fenced and any(f" {pid} " in fenced[0] for pid in workers)
    assert "moved to login2" in fenced[0]
    wait_for(lambda: "lost the site lease (epoch 1)" in (logs / "supervisor.log").read_text(),
             what="the woken holder to say so")
    kit.wait_jobs(jobs + later, states.STAGED_IN, timeout=120)
    kit.assert_exactly_once()


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_a_role_without_rights_on_the_schema_cannot_hold_the_site(sitekit, postgres_server,
                                                                   database_url):
    import psycopg

    kit = sitekit()
    jobs = kit.make_jobs(3, stage_out=False)
    name = api.current_settings().site_name
    role = f"stranger_{os.getpid()}"
    postgres_server.admin(f"CREATE ROLE {role} LOGIN PASSWORD 'not-the-site'")
    try:
        with psycopg.connect(database_url.replace("balsam@", f"{role}@"),
                             password="not-the-site", autocommit=True) as stranger:
            # the advisory lock that used to decide who runs the site
            digest = hashlib.sha256(f"balsam_mp site {name}".encode()).digest()
            key = int.from_bytes(digest[:8], "big", signed=True)
            assert stranger.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
            for statement in ("UPDATE {}.lease SET epoch = epoch + 1, expires_at = 1e12",
                              "SELECT * FROM {}.lease FOR SHARE"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    stranger.execute(statement.format(schema_of(name)))
            # nor the one that job creations of a site used to take turns on
            stranger.execute("SELECT pg_advisory_lock(hashtext(%s), 0)", (schema_of(name),))
            made: list[list[int]] = []
            creating = threading.Thread(target=lambda: made.append(
                kit.make_jobs(2, prefix="more", stage_out=False)), daemon=True)
            creating.start()
            creating.join(timeout=20)
            assert made, "a stranger's advisory lock held up job creation"
            text = kit.balsam("site", "status", "--all-sites").stdout
            assert f"site {name}: not running (no host has held the site lease yet)" in text
            started = kit.start().stdout
            assert "started (pid" in started and "standby" not in started
            kit.wait_jobs(jobs + made[0], states.STAGED_IN)
            text = kit.balsam("site", "status", "--all-sites").stdout
            assert f"site {name}: active on " in text
            kit.balsam("site", "stop")
            reports = json.loads(kit.balsam("site", "status", "--all-sites", "--format",
                                            "json").stdout)
            assert [(r["active"], r["lease"]["live"]) for r in reports] == [(False, False)]
    finally:
        postgres_server.admin(f"DROP ROLE {role}")


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_status_on_a_host_that_is_not_the_active_one_names_the_active_host(sitekit):
    kit = sitekit()
    login1, login2 = hosts(kit)
    kit.start(env=login1)
    wait_for(lambda: booted(kit, "login1"), what="login1's workers")
    pid1 = host_pidfile(kit, "login1")["pid"]
    assert (f"site site: not running on this host (login2); active on login1 (pid {pid1}), "
            "lease renewed ") in status_text(kit, login2)
    report = json.loads(kit.balsam("site", "status", "--format", "json", env=login2).stdout)
    assert not report["running"] and report["lease"]["host"] == "login1"
    assert report["lease"]["live"] and report["lease"]["renewed_s_ago"] < LEASE_SECONDS

    kit.start(env=login2)
    assert f"on standby (pid {host_pidfile(kit, 'login2')['pid']} on login2): login1 (pid " \
        f"{pid1}) holds the site lease, renewed " in status_text(kit, login2)
    # login2's holder held still: the lease as login1's stop leaves it, not yet taken
    holder, = psutil.Process(host_pidfile(kit, "login2")["pid"]).children()
    holder.send_signal(signal.SIGSTOP)
    try:
        kit.balsam("site", "stop", env=login1)  # it releases the lease: no wait for expiry
        released = db.Job._meta.database.execute_sql(
            "SELECT backend_pid IS NULL AND epoch = 1 FROM lease").fetchone()[0]
    finally:
        holder.send_signal(signal.SIGCONT)
    assert released, "login1's stop left its lease to expire"
    wait_for(lambda: booted(kit, "login2"), timeout=TRY_EVERY + BOOT, what="login2")
    pid2 = host_pidfile(kit, "login2")["pid"]
    assert f"not running on this host (login1); active on login2 (pid {pid2})" in \
        status_text(kit, login1)
    kit.balsam("site", "stop", env=login2)
    assert (f"site site: not running (the site lease of login2 (pid {pid2}) is free, last "
            "renewed ") in status_text(kit, login1)


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_a_database_outage_is_said_once_and_status_says_since_when(sitekit, postgres_server):
    kit = sitekit()
    first = kit.make_jobs(3, prefix="before", stage_out=False)
    kit.start()
    kit.wait_jobs(first, states.STAGED_IN)
    api.close()
    logs = kit.site / "logs"

    def lines() -> int:
        return sum(len(f.read_text().splitlines()) for f in logs.glob("*.log"))

    postgres_server.halt()
    try:
        def unreachable():
            result = kit.balsam("site", "status", check=False)
            return "database unreachable since" in result.stderr and result
        status = wait_for(unreachable, timeout=60, interval=0.5, what="status to say so")
        assert status.returncode != 0 and "site site: running (pid" in status.stdout
        before, window = lines(), time.monotonic() + 10
        while time.monotonic() < window:  # a measurement over 10 s, not a wait
            time.sleep(0.5)
        grown = lines() - before
        text = "".join(f.read_text() for f in logs.glob("*.log"))
        assert grown <= 20, f"{grown} log lines in 10 s of outage"  # backing off: few
        assert "Traceback" not in text
        assert text.count("site lease: database unreachable") == 1
    finally:
        postgres_server.resume()
    log = logs / "supervisor.log"
    wait_for(lambda: "site lease: database reachable again after" in log.read_text(),
             timeout=BACKOFF_MAX + 30, what="the lease holder to reconnect")  # its last pause
    assert log.read_text().count("holds the site lease") == 1  # active throughout
    wait_for(lambda: kit.balsam("site", "status", check=False).returncode == 0,
             what="status to read the database again")
    print(f"\nlog lines in 10 s of outage: {grown}")
