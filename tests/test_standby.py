"""A site on two login nodes against one PostgreSQL database: one active, one on
standby that takes over when every process of the active one is killed with SIGKILL.
The two "hosts" are two supervisors on this machine, told apart by $BALSAM_HOSTNAME."""

from __future__ import annotations

import collections
import json
import os
import signal
import time

import psutil
import pytest

from balsam_mp import api, db, states
from balsam_mp.site.pidfile import HOST_ENV
from tests.conftest import wait_for


def host_pidfile(kit, host: str) -> dict:
    path = kit.site / f"site.{host}.pid"
    return json.loads(path.read_text()) if path.exists() else {}


def kill_host(kit, host: str) -> tuple[float, list[psutil.Process]]:
    """SIGKILL the supervisor of `host` and everything under it, at once; returns when."""
    supervisor = psutil.Process(host_pidfile(kit, host)["pid"])
    victims = [supervisor, *supervisor.children(recursive=True)]
    for process in victims:
        process.send_signal(signal.SIGKILL)
    return time.monotonic(), victims


def gone(processes: list[psutil.Process]) -> bool:
    """Every one has exited, a zombie too: orphans are init's to reap, which in a
    container may take seconds (psutil.wait_procs counts a zombie as running)."""
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


def booted(kit, host: str) -> bool:
    """Both workers of `host` run and have booted (their ready files name them)."""
    workers = host_pidfile(kit, host).get("workers") or {}
    ready = {name: kit.site / ".run" / f"{name}.{host}.ready" for name in workers}
    return len(workers) == 2 and all(
        path.exists() and path.read_text() == str(workers[name])
        for name, path in ready.items())


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_the_standby_takes_over_after_sigkill_and_sends_nothing_twice(sitekit):
    kit = sitekit(emulator_args=("--startup-delay", "0.2"),
                  transfers="  transfer_batch_size: 10\n  claim_lease: 5\n")
    jobs = kit.make_jobs(300, stage_out=False)
    login1, login2 = (dict(kit.env, **{HOST_ENV: name}) for name in ("login1", "login2"))
    assert "started (pid" in kit.start(env=login1).stdout
    wait_for(lambda: host_pidfile(kit, "login1").get("workers"), what="login1's workers")
    standby = kit.start(env=login2).stdout
    assert "started on standby" in standby and "login1 (pid" in standby
    status = json.loads(kit.balsam("site", "status", "--format", "json", env=login2).stdout)
    assert status["running"] and status["standby"] and status["workers"] == {}
    wait_for(lambda: len(kit.accepted()) >= 3, what="work in flight on login1")

    assert not host_pidfile(kit, "login2").get("workers")
    database = db.Job._meta.database
    # login1's lease expires no sooner than this (server clock): it renews, never shortens
    expiry, = database.execute_sql("SELECT expires_at FROM lease").fetchone()
    killed, victims = kill_host(kit, "login1")
    assert len(victims) == 4  # supervisor, submitter, poller, lock holder

    def taken() -> tuple | None:  # (login2 holds it, took it before login1's expired):
        # it took the lease no later than it last renewed it
        row = database.execute_sql("SELECT host = 'login2', renewed_at < %s FROM lease",
                                   (expiry,)).fetchone()
        return row if row[0] else None
    # the server's clock says the lease was free at once (its holder's session ended),
    # however long a loaded machine takes to look or to boot the new workers
    assert wait_for(taken, timeout=60, what="login2 to take the lease")[1], \
        "login2 waited for login1's lease to expire"
    wait_for(lambda: booted(kit, "login2"), timeout=60, what="login2's workers")
    takeover = time.monotonic() - killed
    wait_for(lambda: gone(victims), timeout=60, what="all of login1 to be gone")
    kit.wait_jobs(jobs, states.STAGED_IN, timeout=120)

    moved = kit.assert_exactly_once()
    assert len(moved) == 300, "a file was not sent"
    for job in api.Job.objects.filter(id__in=jobs):
        assert (kit.site / "data" / job.workdir / "input.dat").exists()
    log = (kit.site / "logs" / "supervisor.log").read_text()
    assert "holds the site lease" in log
    print(f"\nstandby takeover: {takeover:.2f}s after SIGKILL of login1")
    assert kit.balsam("site", "stop", env=login2).returncode == 0
    assert not (kit.site / "site.login2.pid").exists()
    assert os.environ.get(HOST_ENV) is None


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_two_sites_on_one_database_never_see_each_others_work(database_url, tmp_path):
    """Same app name, same workdirs, one database: each site stages its own jobs only."""
    from tests.sitekit import SiteKit

    kits = {}
    try:
        for name in ("alpha", "beta"):
            (tmp_path / name).mkdir()
            kits[name] = SiteKit(tmp_path / name, database_url=database_url, name=name)
        jobs = {}
        for name, kit in kits.items():
            api.use_site(kit.site)
            jobs[name] = kit.make_jobs(40 if name == "alpha" else 25, stage_out=False)
        assert jobs["alpha"][:25] == jobs["beta"]  # ids and workdirs overlap
        for kit in kits.values():
            kit.start()
        for name, kit in kits.items():
            api.use_site(kit.site)
            kit.wait_jobs(jobs[name], states.STAGED_IN)
            assert api.Job.objects.count() == len(jobs[name])
            assert sum(len(s["items"]) for s in kit.accepted()) == len(jobs[name])
            status = json.loads(kit.balsam("site", "status", "--format", "json").stdout)
            assert status["site"] == name and status["items"] == [
                {"direction": "in", "state": "done", "count": len(jobs[name])}]
        alpha, beta = kits["alpha"], kits["beta"]
        listed = json.loads(alpha.balsam("job", "ls", "--all-sites", "--format", "json").stdout)
        assert collections.Counter(row["site"] for row in listed) == {"alpha": 40, "beta": 25}
        items = json.loads(beta.balsam("transfer", "ls", "--all-sites", "--format",
                                       "json").stdout)
        assert collections.Counter((r["site"], r["state"]) for r in items) == {
            ("alpha", "done"): 40, ("beta", "done"): 25}
        # another site of the same database, from inside alpha's directory
        other = json.loads(alpha.balsam("--site-name", "beta", "job", "ls", "--format",
                                        "json").stdout)
        assert sorted(row["id"] for row in other) == sorted(jobs["beta"])
        beta.balsam("site", "stop")

        def statuses():
            return [(r["site"], r["active"], r["items"]) for r in json.loads(alpha.balsam(
                "site", "status", "--all-sites", "--format", "json").stdout)]
        wait_for(lambda: statuses() == [  # the server ends the lock's session at once
            ("alpha", True, [{"direction": "in", "state": "done", "count": 40}]),
            ("beta", False, [{"direction": "in", "state": "done", "count": 25}])],
            timeout=60, what="alpha active, beta stopped")  # a status is a process start
        assert "the PostgreSQL database, every site in it:" in alpha.balsam(
            "site", "status").stdout
        text = alpha.balsam("site", "status", "--all-sites").stdout
        assert "site alpha: active" in text and "site beta: not running" in text
    finally:
        for kit in kits.values():
            kit.close()


def test_two_site_names_that_share_a_schema_are_refused(postgres_server, tmp_path):
    from balsam_mp.errors import BalsamError
    from balsam_mp.site.layout import init_site

    url = postgres_server.create_database("clash")
    init_site(tmp_path / "one", "My-Site", database_url=url)
    with pytest.raises(BalsamError, match="schema site_my_site belongs to site 'My-Site'"):
        init_site(tmp_path / "two", "my_site", database_url=url)
    api.close()
    postgres_server.drop_database("clash")


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_the_site_rides_out_a_database_restart(sitekit, postgres_server):
    """Every session is cut (the server restarts): the workers reconnect, the lease holder
    renews the lease it still holds (one line each way), and work created afterwards
    is staged."""
    kit = sitekit()
    first = kit.make_jobs(5, prefix="before", stage_out=False)
    kit.start()
    kit.wait_jobs(first, states.STAGED_IN)
    postgres_server.restart()
    api.close()  # our own session was cut too
    later = kit.make_jobs(5, prefix="after", stage_out=False)
    kit.wait_jobs(later, states.STAGED_IN, timeout=60)
    supervisor_log = kit.site / "logs" / "supervisor.log"
    # the workers may be back before the holder's next renewal finds the outage
    wait_for(lambda: "database reachable again after" in supervisor_log.read_text(),
             timeout=30, what="the lease holder to say the database is back")
    log = supervisor_log.read_text()
    assert "site lease: database unreachable" in log and "holding the lease, epoch 1" in log
    assert log.count("holds the site lease") == 1  # the workers were never stopped
