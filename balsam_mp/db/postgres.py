"""The site database on PostgreSQL (`database_url`): connection, schema hooks, wake-ups.

Writers do not queue for one lock as on SQLite: transactions run side by side in READ
COMMITTED, claims lock the rows they take (`FOR UPDATE SKIP LOCKED`) and every state
change stays a compare-and-set. A commit that touches jobs, items or tasks sends a
NOTIFY, which a waiting worker receives at once (SQLite's workers poll
`PRAGMA data_version` instead).
"""

from __future__ import annotations

import os
import time
import urllib.parse

import peewee

from balsam_mp.db import sql_postgres
from balsam_mp.errors import BalsamError, ForkSafetyError

CHANNEL = "balsam_changes"
WATCHED_TABLES = ("job", "transfer_item", "transfer_task")
_NOTIFY_FUNCTION = f"""
    CREATE OR REPLACE FUNCTION balsam_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('{CHANNEL}', ''); RETURN NULL; END $$"""
_NOTIFY_TRIGGER = """
    CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE ON "{table}"
    FOR EACH STATEMENT EXECUTE FUNCTION balsam_notify()"""
MISSING_DRIVER = ("database_url names a PostgreSQL database but its driver is not "
                  "installed: pip install 'balsam_mp[postgres]' (psycopg 3)")


def display_url(url: str) -> str:
    """The URL as shown in messages: never with a password (settings refuse one anyway)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


class SitePostgres(peewee.PostgresqlDatabase):
    """PostgresqlDatabase that remembers the process that opened it."""

    dialect = sql_postgres

    def __init__(self, url: str, **kwargs) -> None:
        super().__init__(url, prefer_psycopg3=True, application_name="balsam_mp",
                         connect_timeout=10, **kwargs)
        self.owner_pid = os.getpid()
        self._listening = False

    def cursor(self, *args, **kwargs):
        if os.getpid() != self.owner_pid:
            raise ForkSafetyError(
                f"database connection opened in pid {self.owner_pid} used in pid "
                f"{os.getpid()}: open a new one after fork")
        return super().cursor(*args, **kwargs)

    def begin(self, lock_type: str | None = None) -> None:
        """atomic() writes in READ COMMITTED; atomic("DEFERRED") (a reader that wants one
        snapshot for many queries, as `site status`) gets REPEATABLE READ."""
        statement = "BEGIN ISOLATION LEVEL REPEATABLE READ" if lock_type == "DEFERRED" \
            else "BEGIN"
        with peewee.__exception_wrapper__:
            self.cursor().execute(statement)

    def _initialize_connection(self, conn) -> None:
        if self._listening:  # a reconnect listens again
            conn.execute(f"LISTEN {CHANNEL}")

    def install_schema_hooks(self) -> None:
        """Triggers that NOTIFY the workers of every commit to the watched tables."""
        self.execute_sql(_NOTIFY_FUNCTION)
        for table in WATCHED_TABLES:
            self.execute_sql(f'DROP TRIGGER IF EXISTS {table}_notify ON "{table}"')
            self.execute_sql(_NOTIFY_TRIGGER.format(table=table))

    def listen(self) -> None:
        self._listening = True
        self.connection().execute(f"LISTEN {CHANNEL}")

    def wait_for_change(self, timeout: float) -> bool:
        """True once another session commits to the watched tables, False after
        `timeout` (our own commits do not count, as with PRAGMA data_version)."""
        conn = self.connection()
        mine = conn.info.backend_pid
        deadline = time.monotonic() + timeout
        with peewee.__exception_wrapper__:
            for note in conn.notifies(timeout=max(0.0, deadline - time.monotonic())):
                if note.pid != mine:
                    return True
                if time.monotonic() >= deadline:
                    break
        return False

    def reconnect_if_broken(self) -> None:
        """After a lost connection (server restart, network), open a new one."""
        if not self.is_closed() and not self.is_connection_usable():
            self.close()
        if self.is_closed():
            self.connect()


def open_postgres(url: str) -> SitePostgres:
    try:
        import psycopg  # noqa: F401 - only to say clearly that the extra is missing
    except ImportError:
        raise BalsamError(MISSING_DRIVER) from None
    database = SitePostgres(url)
    try:
        database.connect()
    except peewee.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BalsamError(f"{display_url(url)}: cannot connect to PostgreSQL: {first}") from None
    return database
