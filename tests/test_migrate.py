"""`balsam site migrate --database-url URL`: a SQLite site moves into PostgreSQL, with
everything in flight, and what it refuses leaves the SQLite site as it was."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from balsam_mp import api, db
from balsam_mp.db import transplant
from balsam_mp.db.postgres import SitePostgres
from balsam_mp.site import pidfile
from balsam_mp.site.layout import init_site
from tests.conftest import REMOTE_EP, wait_for


@pytest.fixture
def target(empty_database):
    return empty_database


def balsam(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, BALSAM_SITE_PATH=str(site))
    env.pop("BALSAM_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "balsam_mp", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def sqlite_site(tmp_path: Path, jobs: int = 3) -> Path:
    """A stopped SQLite site with `jobs` jobs (one input each, from `remote`)."""
    site = init_site(tmp_path / "site", "moving").site_path
    text = (site / "settings.yml").read_text()
    (site / "settings.yml").write_text(text.replace(
        "    laptop: local://\n", f"    remote: globus://{REMOTE_EP}\n"))
    api.use_site(site)
    api.App.sync()
    api.Job.objects.bulk_create([{"app": "MySim", "workdir": f"w/{n}",
                                  "transfers": {"input_file": f"remote:/in/{n}.dat"}}
                                 for n in range(jobs)])
    api.close()
    return site


def table_rows(database: Path) -> dict[str, list[tuple]]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                for table in ("app", "job", "transfer_item", "transfer_task", "log_event",
                              "request_budget", "meta")}


def test_a_site_moves_with_every_row_and_column(tmp_path, target):
    site = sqlite_site(tmp_path)
    with contextlib.closing(sqlite3.connect(site / "site.db", isolation_level=None)) as conn:
        # a claim, a budget, a cancel, a resend
        conn.execute("INSERT INTO transfer_task (id, direction, location_alias, "
                     "remote_address, protocol, state, submission_id, owner, lease_expires, "
                     "label, item_count, files_transferred, files_skipped, "
                     "bytes_transferred, bytes_per_second, created_at, updated_at, "
                     "cancel_requested) VALUES (7, 'in', 'remote', 'x', 'globus', "
                     "'submitting', 'sub-7', '1:1.0', '2999-01-01T00:00:00.000000Z', '', 1, "
                     "0, 0, 0, 0.0, '2026-01-01T00:00:00.000000Z', "
                     "'2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:01.000000Z')")
        conn.execute("UPDATE transfer_item SET state = 'submitting', transfer_task_id = 7, "
                     "resend = 1 WHERE id = 1")
        conn.execute("INSERT INTO request_budget VALUES ('globus:me', 2.5, 1234.5)")
    before = table_rows(site / "site.db")

    moved = balsam(site, "site", "migrate", "--database-url", target)
    assert moved.returncode == 0, moved.stderr
    assert "into schema site_moving" in moved.stdout and "job 3" in moved.stdout
    assert "claims of the stopped site's processes released: 1" in moved.stdout
    assert "tasks still submitting: 1" in moved.stdout
    [backup] = list(site.glob("site.db.migrated-*"))
    assert f"kept as a backup: {backup}" in moved.stdout
    assert not (site / "site.db").exists() and table_rows(backup) == before  # only read
    text = (site / "settings.yml").read_text()
    assert f'database_url: "{target}"' in text and "# database_url: postgresql://" in text
    assert "# Trusted location aliases" in text  # the comments stay

    settings = api.use_site(site)
    assert settings.database_url == target
    api.connect()
    database = db.TransferTask._meta.database
    for model in transplant.COPIED:  # every row, every column (leases aside, below)
        columns = ", ".join(f'"{f.column_name}"' for f in model._meta.sorted_fields
                            if f.column_name != "lease_expires")
        query = f"SELECT {columns} FROM {model._meta.table_name} ORDER BY 1"
        with contextlib.closing(sqlite3.connect(backup)) as conn:
            assert database.execute_sql(query).fetchall() == conn.execute(query).fetchall()
    task = db.TransferTask.get_by_id(7)
    assert (task.state, task.submission_id, task.owner) == ("submitting", "sub-7", "1:1.0")
    assert task.lease_expires < db.models.utcnow()  # the dead owner's claim is over
    assert task.cancel_requested is not None
    item = db.TransferItem.get_by_id(1)
    assert item.resend is True and item.transfer_task_id == 7
    assert database.execute_sql("SELECT tokens, updated FROM request_budget").fetchall() == \
        [(2.5, 1234.5)]
    assert db.LogEvent.select().count() == len(before["log_event"]) > 0
    # ids go on past the copied ones
    [job] = api.Job.objects.bulk_create([{"app": "MySim", "workdir": "w/new",
                                          "transfers": {"input_file": "remote:/in/n.dat"}}])
    assert job.id == 4
    api.close()


def test_a_running_site_is_refused(tmp_path, target):
    site = sqlite_site(tmp_path)
    assert balsam(site, "site", "start").returncode == 0
    try:
        refused = balsam(site, "site", "migrate", "--database-url", target)
        assert refused.returncode == 1 and "is running (pid" in refused.stderr
        assert "stop it first" in refused.stderr
    finally:
        assert balsam(site, "site", "stop").returncode == 0
    assert (site / "site.db").exists() and "database_url:" not in \
        (site / "settings.yml").read_text().replace("# database_url:", "")


def unchanged(site: Path, settings_text: str, partial: bool = False) -> None:
    """The SQLite site is as it was, and works (a killed migrate left its partial
    settings file: `partial`)."""
    assert (site / "settings.yml").read_text() == settings_text
    assert not list(site.glob("site.db.migrated-*"))
    assert bool(list(site.glob(".settings.yml*"))) == partial
    listed = balsam(site, "job", "ls")
    assert listed.returncode == 0 and "w/2" in listed.stdout, listed.stderr


@pytest.mark.parametrize("url, message", [
    ("postgresql://balsam@127.0.0.1:1/nowhere", "cannot connect to PostgreSQL"),
    ("postgresql://balsam:S3cret@127.0.0.1:1/nowhere", "carries a password"),
    ("mysql://balsam@127.0.0.1/db", "is not a postgresql:// URL"),
])
def test_a_bad_url_or_an_unreachable_server_leaves_the_sqlite_site(tmp_path, url, message):
    site = sqlite_site(tmp_path)
    text = (site / "settings.yml").read_text()
    refused = balsam(site, "site", "migrate", "--database-url", url)
    assert refused.returncode == 1 and message in refused.stderr, refused.stderr
    assert "S3cret" not in refused.stderr + refused.stdout
    unchanged(site, text)


def test_a_schema_that_holds_a_site_or_rows_is_refused(tmp_path, target):
    site = sqlite_site(tmp_path)
    text = (site / "settings.yml").read_text()
    init_site(tmp_path / "other", "moving", database_url=target)  # the name is taken there
    refused = balsam(site, "site", "migrate", "--database-url", target)
    assert refused.returncode == 1
    assert "schema site_moving already holds site 'moving'" in refused.stderr
    unchanged(site, text)

    database = SitePostgres(target, "moving")
    database.execute_sql("DROP SCHEMA site_moving CASCADE")
    database.execute_sql("CREATE SCHEMA site_moving")  # an administrator's, with a table
    database.execute_sql("CREATE TABLE site_moving.notes (line text)")
    database.execute_sql("INSERT INTO site_moving.notes VALUES ('mine')")
    database.close()
    refused = balsam(site, "site", "migrate", "--database-url", target)
    assert refused.returncode == 1
    assert "schema site_moving already has rows in table notes" in refused.stderr
    unchanged(site, text)


def test_a_row_count_mismatch_rolls_everything_back(tmp_path, target):
    """An administrator's empty schema whose log_event table quietly drops a row on insert
    (a trigger): the counts differ, nothing stays on PostgreSQL, SQLite is untouched."""
    site = sqlite_site(tmp_path)
    text = (site / "settings.yml").read_text()
    database = SitePostgres(target, "moving")
    database.execute_sql("CREATE SCHEMA site_moving")
    db.models.database_proxy.initialize(database)
    database.create_tables([db.App, db.Job, db.TransferTask, db.TransferItem, db.LogEvent])
    database.execute_sql(
        "CREATE FUNCTION site_moving.drop_one() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF NEW.id = 2 THEN RETURN NULL; END IF; RETURN NEW; END $$")
    database.execute_sql("CREATE TRIGGER drop_one BEFORE INSERT ON site_moving.log_event "
                         "FOR EACH ROW EXECUTE FUNCTION site_moving.drop_one()")

    refused = balsam(site, "site", "migrate", "--database-url", target)
    assert refused.returncode == 1
    events = len(table_rows(site / "site.db")["log_event"])
    assert "row counts differ" in refused.stderr and \
        f"log_event: {events} in SQLite, {events - 1} in PostgreSQL" in refused.stderr, \
        refused.stderr
    tables = {name for (name,) in database.execute_sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'site_moving'")}
    assert tables == {"app", "job", "transfer_task", "transfer_item", "log_event"}  # as it was
    assert database.execute_sql("SELECT count(*) FROM site_moving.job").fetchone()[0] == 0
    database.close()
    unchanged(site, text)


def test_a_site_on_postgresql_already_is_refused(tmp_path, target):
    site = init_site(tmp_path / "site", "pg", database_url=target).site_path
    refused = balsam(site, "site", "migrate", "--database-url", target)
    assert refused.returncode == 1 and "on PostgreSQL already" in refused.stderr


def test_a_lingering_worker_or_a_held_lock_is_refused(tmp_path, target):
    """A worker that outlives its killed supervisor, or a supervisor whose pidfile is
    gone (it holds the site's lock): nothing moves while either runs."""
    site = sqlite_site(tmp_path)
    text = (site / "settings.yml").read_text()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (site / "site.pid").write_text(json.dumps({
            "host": pidfile.hostname(), "pid": os.getpid(), "create_time": 1.0,  # not us
            "workers": {"submitter": sleeper.pid}}))
        refused = balsam(site, "site", "migrate", "--database-url", target)
        assert refused.returncode == 1
        assert f"its submitter (pid {sleeper.pid}) still runs" in refused.stderr
    finally:
        sleeper.kill()
        sleeper.wait()
    (site / ".run").mkdir(mode=0o700, exist_ok=True)
    with open(site / ".run" / "supervisor.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        refused = balsam(site, "site", "migrate", "--database-url", target)
    assert refused.returncode == 1 and "holds its lock" in refused.stderr
    (site / "site.pid").unlink()
    unchanged(site, text)


def test_database_path_elsewhere_and_a_null_database_url(tmp_path, target):
    site = sqlite_site(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (site / "site.db").rename(tmp_path / "elsewhere" / "my.db")
    settings_file = site / "settings.yml"
    settings_file.write_text(settings_file.read_text().replace(
        "site_permissions: private\n", "site_permissions: private\n"
        "database_path: ../elsewhere/my.db\ndatabase_url: null  # not yet\n"))
    moved = balsam(site, "site", "migrate", "--database-url", target)
    assert moved.returncode == 0, moved.stderr
    [backup] = (tmp_path / "elsewhere").glob("my.db.migrated-*")
    assert f"kept as a backup: {backup}" in moved.stdout
    text = settings_file.read_text()
    assert f'\ndatabase_url: "{target}"\n' in text and "null" not in text.split("logging")[0]
    assert api.use_site(site).database_url == target
    assert api.Job.objects.count() == 3


def test_a_migrate_killed_mid_copy_leaves_nothing_and_can_run_again(tmp_path, target):
    site = sqlite_site(tmp_path, jobs=10_000)
    text = (site / "settings.yml").read_text()
    env = dict(os.environ, BALSAM_SITE_PATH=str(site))
    env.pop("BALSAM_DATABASE_URL", None)
    migrating = subprocess.Popen([sys.executable, "-m", "balsam_mp", "site", "migrate",
                                  "--database-url", target], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watcher = SitePostgres(target, "moving")
    try:
        wait_for(lambda: watcher.execute_sql(
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'COPY %%'").fetchone(),
            timeout=60, interval=0.005, what="the copy to run")
        migrating.kill()
        migrating.wait()
        wait_for(lambda: not watcher.execute_sql(
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'COPY %%' AND pid <> "
            "pg_backend_pid()").fetchone(), what="the server to end the killed session")
        assert not watcher.execute_sql("SELECT 1 FROM pg_namespace WHERE nspname = "
                                       "'site_moving'").fetchone()  # rolled back
    finally:
        watcher.close()
        if migrating.poll() is None:
            migrating.kill()
            migrating.wait()
    unchanged(site, text, partial=True)
    moved = balsam(site, "site", "migrate", "--database-url", target)
    assert moved.returncode == 0 and "job 10000," in moved.stdout, moved.stderr
    assert not list(site.glob(".settings.yml.migrate.*"))


def test_an_environment_that_names_another_database_is_refused(tmp_path, target):
    """$BALSAM_DATABASE_URL would override the new settings.yml: it must agree."""
    site = sqlite_site(tmp_path)
    text = (site / "settings.yml").read_text()
    env = dict(os.environ, BALSAM_SITE_PATH=str(site),
               BALSAM_DATABASE_URL="postgresql://other@127.0.0.1:1/elsewhere")
    refused = subprocess.run([sys.executable, "-m", "balsam_mp", "site", "migrate",
                              "--database-url", target], env=env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 1
    assert "$BALSAM_DATABASE_URL names another database" in refused.stderr, refused.stderr
    unchanged(site, text)
    env["BALSAM_DATABASE_URL"] = target  # the same: fine
    moved = subprocess.run([sys.executable, "-m", "balsam_mp", "site", "migrate",
                            "--database-url", target], env=env, capture_output=True,
                           text=True, timeout=60)
    assert moved.returncode == 0 and "job 3," in moved.stdout, moved.stderr
