"""The database rules: WAL, schema version, fork guards, compare-and-set.

Those marked `engines` run on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest

from balsam_mp import api, db
from balsam_mp.db import connection, schema
from balsam_mp.errors import BalsamError, ForkSafetyError


def test_wal_immediate_and_schema_version(site):
    api.connect()
    database = db.Job._meta.database
    assert database.execute_sql("pragma journal_mode").fetchone()[0] == "wal"
    assert database.execute_sql(
        "select value from meta where key='schema_version'").fetchone()[0] == str(
        db.models.SCHEMA_VERSION)
    names = "select name from sqlite_master where type=?"
    tables = {r[0] for r in database.execute_sql(names, ("table",))}
    assert {"app", "job", "transfer_item", "transfer_task", "log_event"} <= tables
    indexes = {r[0] for r in database.execute_sql(names, ("index",))}
    assert any("transfer_item_state" in name for name in indexes)


@pytest.mark.engines
def test_a_newer_schema_is_refused(site):
    api.connect()
    db.Job._meta.database.execute_sql("update meta set value='99' where key='schema_version'")
    api.close()
    with pytest.raises(BalsamError, match="schema version 99 is newer"):
        db.connect(site.database, site=site.site_name)


@pytest.mark.engines
def test_forbidden_process_cannot_open_a_connection(site, monkeypatch):
    monkeypatch.setattr(connection, "_forbidden_reason", None)
    db.forbid_connections("supervisor forks workers")
    with pytest.raises(ForkSafetyError, match="supervisor forks workers"):
        db.connect(site.database, site=site.site_name)


@pytest.mark.engines
def test_a_connection_inherited_through_fork_refuses_to_run(site):
    api.connect()
    api.Job.objects.count()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the inherited connection must refuse
        try:
            db.Job.select().count()
            os.write(write, b"ran")
        except ForkSafetyError:
            os.write(write, b"refused")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"refused"
    assert api.Job.objects.count() == 0  # the parent's connection still works


@pytest.mark.engines
def test_an_older_schema_is_migrated_through_the_hook(site, monkeypatch):
    api.connect()
    latest = db.models.SCHEMA_VERSION
    db.Job._meta.database.execute_sql(
        f"update meta set value='{latest - 1}' where key='schema_version'")
    api.close()
    ran = []
    monkeypatch.setitem(schema.MIGRATIONS, latest, lambda database: ran.append(database))
    database = db.connect(site.database, site=site.site_name)
    assert len(ran) == 1
    version = database.execute_sql("select value from meta where key='schema_version'")
    assert version.fetchone()[0] == str(latest)
    database.close()


def test_a_writer_waits_for_the_lock_then_proceeds(site):
    api.connect()
    other = sqlite3.connect(str(site.database_path), isolation_level=None,
                            check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock...
    threading.Timer(0.3, other.execute, args=("COMMIT",)).start()  # ...for 0.3 s
    api.Job.objects.bulk_create([{"app": "MySim", "workdir": "w",
                                  "transfers": {"input_file": "laptop:/in.dat"}}])
    assert api.Job.objects.count() == 1
    other.close()
