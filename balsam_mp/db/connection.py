"""One database connection per process, opened after any fork: SQLite (a file, the
default) or PostgreSQL (`database_url`, see postgres.py).

A connection that crosses a fork shares file locks and buffers with its parent and
corrupts the database in ways that surface much later. Two guards make that impossible
by accident:

- a process that is about to fork calls `forbid_connections()`; any later `connect()`
  in it raises;
- a connection inherited through a fork refuses to run a query in the child.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import peewee

from balsam_mp.db import sql_sqlite
from balsam_mp.db.failures import create_file, explain, present
from balsam_mp.db.models import Meta, database_proxy
from balsam_mp.db.postgres import SitePostgres, open_postgres
from balsam_mp.db.schema import create_schema, migrate
from balsam_mp.dburl import SCHEME, display_url, hide_secrets
from balsam_mp.errors import BalsamError, DatabaseFailure, ForkSafetyError, first_line

_forbidden_reason: str | None = None
_FAILURES = (peewee.OperationalError, peewee.DatabaseError)
BUSY_TIMEOUT = 30.0  # seconds a writer waits for the lock before it gives up


class SiteDatabase(peewee.SqliteDatabase):
    """SqliteDatabase that remembers the process that opened it."""

    dialect = sql_sqlite

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.owner_pid = os.getpid()
        self._data_version = -1

    def cursor(self, *args, **kwargs):
        if os.getpid() != self.owner_pid:
            raise ForkSafetyError(
                f"database connection opened in pid {self.owner_pid} used in pid "
                f"{os.getpid()}: open a new one after fork"
            )
        return super().cursor(*args, **kwargs)

    def begin(self, lock_type: str | None = None) -> None:
        """BEGIN IMMEDIATE, waiting for the write lock in steps of a fraction of a ms.

        SQLite's own busy handler sleeps 1, 2, 5, 10... ms, so a writer that finds the
        lock taken for 4 ms waits 8; between two workers trading the lock hundreds of
        times a second that idles both. This retries sooner, for as long in total."""
        deadline, pause = time.monotonic() + BUSY_TIMEOUT, 0.0002
        statement = f"BEGIN {lock_type or self._lock_type}"
        try:
            cursor = self.cursor()
            cursor.execute("PRAGMA busy_timeout = 0")
            try:
                while True:
                    try:
                        cursor.execute(statement)
                        return
                    except sqlite3.OperationalError as exc:
                        if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or \
                                time.monotonic() > deadline:
                            raise
                    time.sleep(pause)
                    pause = min(pause * 1.5, 0.005)
            finally:
                cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        except sqlite3.Error as exc:
            raise explain(Path(self.database), exc) from exc

    # A failed file or disk reaches every caller as one DatabaseFailure naming the file
    # and the cause; constraint and programming errors stay peewee's.
    def connect(self, reuse_if_open: bool = False) -> bool:
        try:
            return super().connect(reuse_if_open)
        except _FAILURES as exc:
            self.raise_failure(exc)
            raise

    def _execute_cursor(self, sql, params, **options):
        try:
            return super()._execute_cursor(sql, params, **options)
        except _FAILURES as exc:
            self.raise_failure(exc)
            raise

    def commit(self) -> None:
        try:
            super().commit()
        except _FAILURES as exc:
            self.raise_failure(exc)
            raise

    def rollback(self) -> None:
        conn = self._state.conn
        if conn is not None and not conn.in_transaction:
            # SQLite already rolled back (a full disk, an I/O error): raising "cannot
            # rollback - no transaction is active" would hide the error that did it
            return
        try:
            super().rollback()
        except _FAILURES as exc:
            self.raise_failure(exc)
            raise

    def raise_failure(self, exc: Exception) -> None:
        """Raise the DatabaseFailure for a failed file or disk (else return)."""
        if type(exc) in _FAILURES:  # not IntegrityError and friends: the caller's to handle
            raise explain(Path(self.database), exc) from exc

    def install_schema_hooks(self) -> None:
        """Nothing to install: workers poll PRAGMA data_version."""

    def listen(self) -> None:
        self._data_version = self.execute_sql("PRAGMA data_version").fetchone()[0]

    def wait_for_change(self, timeout: float) -> bool:
        """True when another connection committed since we last looked (PRAGMA
        data_version, one tiny query); else sleep `timeout` and say False."""
        version = self.execute_sql("PRAGMA data_version").fetchone()[0]
        changed, self._data_version = version != self._data_version, version
        if not changed:
            time.sleep(timeout)
        return changed

    def reconnect_if_broken(self) -> None:
        """A file does not go away as a server connection does."""


Database = SiteDatabase | SitePostgres


def is_database_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(SCHEME)


def forbid_connections(reason: str) -> None:
    """Make every later connect() in this process raise (the supervisor, before fork)."""
    global _forbidden_reason
    _forbidden_reason = reason


def allow_connections() -> None:
    """In a freshly forked worker: this process may open its own connection."""
    global _forbidden_reason
    _forbidden_reason = None


def connect(target: Path | str, *, site: str | None = None, synchronous: str = "NORMAL",
            create: bool = False, file_mode: int = 0o600, role: str = "client",
            shared: bool = False) -> Database:
    """Open the site database for this process and bind the models to it: a SQLite file
    (one site), or a postgresql:// URL and the `site` whose schema to use (`create` then
    makes the schema and its tables unless they exist). A new SQLite file gets
    `file_mode`, and SQLite gives its -wal and -shm files the mode of the database.
    PostgreSQL: `role` names the session (application_name `balsam_mp ROLE`); a
    `shared` connection serves every thread of the process (a worker's, see
    SitePostgres)."""
    if _forbidden_reason is not None:
        raise ForkSafetyError(f"no database connection allowed here: {_forbidden_reason}")
    if is_database_url(target):
        database = open_postgres(str(target), site, role=role, shared=shared)
        database_proxy.initialize(database)
        try:
            if create and not database.table_exists(Meta._meta.table_name):
                database.create_site_schema()
                create_schema(database)
            else:
                migrate(database)  # refuses a name that maps to another site's schema
                if create:  # a second directory would republish the site's paths
                    raise BalsamError(
                        f"{display_url(str(target))}: site {site!r} already exists in this "
                        f"database (schema {database.schema}); choose another --name, or "
                        "use its directory (two login nodes share one)")
        except peewee.ProgrammingError as exc:  # e.g. no CREATE right on the database
            database.close()
            first = first_line(exc)
            raise BalsamError(f"{display_url(str(target))}: site {site!r}: "
                              f"{hide_secrets(first, str(target))}") from None
        except BaseException:
            database.close()
            raise
        return database
    db_path = Path(target)
    if not create and not present(db_path):
        raise DatabaseFailure(f"{db_path}: site database missing (deleted or moved?); "
                              "restore it, or run `balsam site init`")
    if create:
        create_file(db_path, file_mode)
    db = SiteDatabase(
        str(db_path),
        lock_type="IMMEDIATE",  # every atomic() is BEGIN IMMEDIATE: no deferred upgrade
        returning_clause=True,  # UPDATE ... RETURNING (SQLite 3.35+): a CAS that says who moved
        pragmas={
            "journal_mode": "wal",
            "synchronous": synchronous,
            "busy_timeout": int(BUSY_TIMEOUT * 1000),
            "foreign_keys": 1,
            "cache_size": -16_000,
        },
        timeout=30,
    )
    database_proxy.initialize(db)
    db.connect()
    if create:
        create_schema(db)
    else:
        migrate(db)
    return db
