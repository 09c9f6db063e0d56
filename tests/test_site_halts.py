"""A site whose database or disk breaks while it runs: it halts when its site.db is
deleted or replaced (inode changed), and a full disk is "disk full" in the workers'
logs and in `site start`, not "cannot rollback - no transaction is active"."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3

import psutil
import pytest

from balsam_mp import api
from balsam_mp.site import pidfile
from tests.conftest import wait_for
from tests.hostile_env import fill, small_tmpfs
from tests.localsite import LocalSite


@pytest.fixture
def local_site(tmp_path):
    sites = []

    def make() -> LocalSite:
        sites.append(LocalSite(tmp_path))
        return sites[-1]
    yield make
    for site in sites:
        site.close()


@pytest.mark.parametrize("how", ["replaced", "deleted", "wal-deleted"])
def test_a_running_site_halts_when_its_database_is_swapped(local_site, how):
    kit = local_site()
    api.close()  # this process uses the site no more (a held WAL would outlive the halt)
    kit.balsam("site", "start")
    supervisor = pidfile.read(kit.site).pid
    db = kit.site / "site.db"
    gone = db.with_name("site.db-wal") if how == "wal-deleted" else db
    if how == "replaced":
        shutil.copy(db, kit.site / "copy.db")
        os.replace(kit.site / "copy.db", db)
    else:
        gone.unlink()
    wait_for(lambda: not psutil.pid_exists(supervisor) or psutil.Process(supervisor)
             .status() == psutil.STATUS_ZOMBIE, what="the site to halt")
    result = kit.balsam("site", "status", check=False)
    action = next(line for line in result.stdout.splitlines()
                  if line.startswith("ACTION REQUIRED"))
    said = f"{gone} was {how.split('-')[-1]}"
    assert "the site halted at" in action and said in action, action
    assert said in (kit.site / "logs" / "supervisor.log").read_text()
    if how == "deleted":  # status can read nothing: it says why, and exits 1
        assert result.returncode == 1 and "site database missing" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    kit.balsam("site", "start")  # the owner checked the file: start clears the note
    assert "halted" not in (kit.balsam("site", "status").stdout)


def test_a_full_disk_is_called_a_full_disk_in_the_workers_logs(local_site):
    """The disk is full when the workers must write (they publish the site's settings
    at boot): their logs, `site start`, the halt note and `site status` say "disk full",
    never "cannot rollback - no transaction is active"."""
    with small_tmpfs("1m") as disk:
        kit = local_site()
        api.close()
        db = disk / "site.db"
        settings = kit.site / "settings.yml"
        shutil.move(kit.site / "site.db", db)
        settings.write_text(settings.read_text().replace(
            "# database_path: /tmp/my-site.db", f"database_path: {db}").replace(
            "  transfer_locations:\n", "  transfer_locations:\n    extra: local://\n"))
        # (a new alias: what the submitter publishes changes, so it must be written;
        # SQLite writes no page whose bytes stay the same)
        # another reader (a user's sqlite3) keeps -wal and -shm made, the WAL empty: the
        # site opens and reads, and its first commit must grow the WAL on a full disk
        with contextlib.closing(sqlite3.connect(db)) as reader:
            reader.execute("SELECT count(*) FROM job").fetchone()
            fill(disk)
            start = kit.balsam("site", "start", check=False)
        assert start.returncode == 1 and f"{db}: disk full" in start.stderr, start.stderr
        assert len(start.stderr.strip().splitlines()) == 1, start.stderr
        logs = {p.name: p.read_text() for p in (kit.site / "logs").glob("*.log")}
        workers = [name for name, text in logs.items() if f"{db}: disk full" in text]
        assert workers and set(workers) <= {"submitter.log", "poller.log"}, logs
        assert not any("cannot rollback" in text for text in logs.values())
        status = kit.balsam("site", "status", check=False)
        assert "ACTION REQUIRED: the site halted at" in status.stdout, status.stdout
        assert f"{db}: disk full" in status.stdout, status.stdout
