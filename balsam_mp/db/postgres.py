"""The site database on PostgreSQL (`database_url`): connection, schema hooks, wake-ups.

Writers do not queue for one lock as on SQLite: transactions run side by side in READ
COMMITTED, claims lock the rows they take (`FOR UPDATE SKIP LOCKED`) and every state
change stays a compare-and-set. A commit that touches jobs, items or tasks sends a
NOTIFY, which a waiting worker receives at once (SQLite's workers poll
`PRAGMA data_version` instead).

One database holds many sites: each site's tables live in a schema of its own, named
after the site (`site_polaris`), which every connection of that site puts first on its
search_path. Rows of two sites never meet, their app names and workdirs may overlap, and
every statement stays the same unqualified SQL as on SQLite.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import threading
import time

import peewee

from balsam_mp.db import fence, sql_postgres
from balsam_mp.dburl import check_database_url, display_url, hide_secrets
from balsam_mp.errors import BalsamError, DatabaseUnreachable, ForkSafetyError, first_line

WATCHED_TABLES = ("job", "transfer_item", "transfer_task")
_NOTIFY_FUNCTION = """
    CREATE OR REPLACE FUNCTION balsam_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('{channel}', ''); RETURN NULL; END $$"""
_NOTIFY_TRIGGER = """
    CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE ON "{table}"
    FOR EACH STATEMENT EXECUTE FUNCTION balsam_notify()"""
# The claim reads pending items of one (direction, alias), oldest job first: an index of
# the pending items alone keeps that a short walk. The foreign key's own index on job_id
# goes: with statistics from when every item was pending, the planner walked it through
# every item already done (30 ms per claim at 100,000 items); (job_id, direction) serves
# the lookups by job.
_PENDING_INDEX = ("""
    CREATE INDEX IF NOT EXISTS transfer_item_pending ON transfer_item
    (direction, location_alias, job_id) WHERE state = 'pending'""",
                  "DROP INDEX IF EXISTS transfer_item_job_id",
                  # items change state several times each: vacuum and analyze early, or
                  # the claim walks the index entries of items long claimed
                  "ALTER TABLE transfer_item SET (autovacuum_vacuum_scale_factor = 0.02, "
                  "autovacuum_analyze_scale_factor = 0.02)")
# A worker's connection refused (no slot left: max_connections, a role's or database's
# CONNECTION LIMIT) is asked for again with a short backoff, for up to this many seconds.
# libpq reports no SQLSTATE for a refused connection (psycopg's sqlstate is None, see
# psycopg issue #242), and messages are not parsed: so every refusal is asked for again,
# which costs a worker nothing (it would retry at its next pass anyway).
SLOTS_WAIT = 10.0
MISSING_DRIVER = ("database_url names a PostgreSQL database but its driver is not "
                  "installed: pip install 'balsam_mp[postgres]' (psycopg 3)")


def schema_of(site_name: str) -> str:
    """The schema of a site: `site_` and its name in lower case, other characters as _
    (two names that map to one schema are told apart by the name stored in it)."""
    return "site_" + re.sub(r"[^a-z0-9_]", "_", site_name.lower())[:50]


class SitePostgres(peewee.PostgresqlDatabase):
    """PostgresqlDatabase that remembers the process that opened it.

    `role` names the connection in pg_stat_activity (`balsam_mp submitter`). A
    `shared` connection (a worker's) is the one connection of its process: its threads
    (the request budget taken from a sender or poll thread) use it in turn, each
    transaction whole under `lock`, so no statement of one thread ever runs inside
    another's transaction. A client's connection stays one per thread (peewee's)."""

    dialect = sql_postgres

    def __init__(self, url: str, site: str, role: str = "client", shared: bool = False,
                 **kwargs) -> None:
        self.schema = schema_of(site)
        super().__init__(url, prefer_psycopg3=True, application_name=f"balsam_mp {role}"[:63],
                         connect_timeout=10, options=f"-c search_path={self.schema}",
                         prepare_threshold=None, thread_safe=not shared,
                         **kwargs)
        self.shared = shared
        # peewee's own connect/close lock (a no-op when not thread_safe) becomes ours
        self.lock: contextlib.AbstractContextManager = threading.RLock() if shared \
            else contextlib.nullcontext()
        if shared:
            self._lock = self.lock
        self.site = site
        self.channel = f"balsam_{self.schema}"
        self.owner_pid = os.getpid()
        self._listening = False
        self._worker = False

    def as_worker(self) -> None:
        """This connection is a worker's: its statements wait on a lock at most
        WORKER_LOCK_TIMEOUT (again after a reconnect), so no session holds the site."""
        self._worker = True
        self.execute_sql(sql_postgres.WORKER_LOCK_TIMEOUT)

    def cursor(self, *args, **kwargs):
        if os.getpid() != self.owner_pid:
            raise ForkSafetyError(
                f"database connection opened in pid {self.owner_pid} used in pid "
                f"{os.getpid()}: open a new one after fork")
        return super().cursor(*args, **kwargs)

    @contextlib.contextmanager
    def atomic(self, *args, **kwargs):
        """peewee's atomic(), the whole of it under the connection's lock when shared."""
        with self.lock, super().atomic(*args, **kwargs) as transaction:
            yield transaction

    def execute_sql(self, sql, params=None):
        with self.lock:  # outside a transaction: between two of another thread's
            return super().execute_sql(sql, params)

    def _connect(self):
        """A worker's connection refused is asked for again with a short backoff, for up
        to SLOTS_WAIT (within its pass): a slot frees as soon as another session (a
        `site status`, a client) ends. A client's refusal is said at once."""
        deadline, pause = time.monotonic() + SLOTS_WAIT, 0.05
        while True:
            try:
                return super()._connect()
            except Exception as exc:
                import psycopg  # only on PostgreSQL: the driver is an extra

                if not self.shared or not isinstance(exc, psycopg.OperationalError) or \
                        time.monotonic() > deadline:
                    raise
            time.sleep(pause * random.uniform(0.5, 1.0))  # jitter: sites do not march
            pause = min(pause * 2, 1.0)

    def begin(self, lock_type: str | None = None) -> None:
        """atomic() writes in READ COMMITTED; atomic("DEFERRED") (a reader that wants one
        snapshot for many queries, as `site status`) gets REPEATABLE READ."""
        statement = "BEGIN ISOLATION LEVEL REPEATABLE READ" if lock_type == "DEFERRED" \
            else "BEGIN"
        with peewee.__exception_wrapper__:
            self.cursor().execute(statement)
        if lock_type != "DEFERRED":  # a worker writes only while its host holds the lease
            fence.check(self)

    def _initialize_connection(self, conn) -> None:
        if self._listening:  # a reconnect listens again
            conn.execute(f"LISTEN {self.channel}")
        if self._worker:
            conn.execute(sql_postgres.WORKER_LOCK_TIMEOUT)

    def create_site_schema(self) -> None:
        """The site's schema, where create_tables() then puts its tables. One that an
        administrator made (owned by this role) is used as it is: PostgreSQL checks the
        database's CREATE right before it looks for the schema, even with IF NOT EXISTS."""
        if not self.execute_sql("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname "
                                "= %s)", (self.schema,)).fetchone()[0]:
            self.execute_sql(f'CREATE SCHEMA "{self.schema}"')

    def install_schema_hooks(self) -> None:
        """Triggers that NOTIFY the site's workers of every commit to the watched tables."""
        for statement in _PENDING_INDEX:
            self.execute_sql(statement)
        self.execute_sql(_NOTIFY_FUNCTION.format(channel=self.channel))
        for table in WATCHED_TABLES:
            self.execute_sql(f'DROP TRIGGER IF EXISTS {table}_notify ON "{table}"')
            self.execute_sql(_NOTIFY_TRIGGER.format(table=table))

    def listen(self) -> None:
        self._listening = True
        with self.lock:
            self.connection().execute(f"LISTEN {self.channel}")

    def wait_for_change(self, timeout: float) -> bool:
        """True once another session commits to the watched tables, False after
        `timeout` (our own commits do not count, as with PRAGMA data_version)."""
        conn = self.connection()
        mine = conn.info.backend_pid
        deadline = time.monotonic() + timeout
        with self.lock, peewee.__exception_wrapper__:  # a worker's wait is a tick long
            for note in conn.notifies(timeout=max(0.0, deadline - time.monotonic())):
                if note.pid != mine:
                    return True
                if time.monotonic() >= deadline:
                    break
        return False

    def raise_failure(self, exc: Exception) -> None:
        """A server's errors stay peewee's: the workers reconnect on them."""

    def reconnect_if_broken(self) -> None:
        """After a lost connection (server restart, network), open a new one."""
        with self.lock:
            if not self.is_closed() and not self.is_connection_usable():
                self.close()
            if self.is_closed():
                self.connect()


def open_postgres(url: str, site: str | None, role: str = "client",
                  shared: bool = False) -> SitePostgres:
    try:
        import psycopg  # noqa: F401 - only to say clearly that the extra is missing
    except ImportError:
        raise BalsamError(MISSING_DRIVER) from None
    if not site:
        raise BalsamError(f"{display_url(url)}: a PostgreSQL database holds many sites; "
                          "name one (site_name in settings.yml, or site= / "
                          "$BALSAM_SITE_NAME for a client)")
    check_database_url(url, "database_url")  # a password never reaches the driver
    database = SitePostgres(url, site, role=role, shared=shared)
    try:
        database.connect()
    except (peewee.DatabaseError, peewee.InterfaceError) as exc:  # e.g. a bad URI parameter
        first = first_line(exc)
        raise DatabaseUnreachable(f"{display_url(url)}: cannot connect to PostgreSQL: "
                                  f"{hide_secrets(first, url)}") from None
    return database


# every schema that holds a site's tables (its meta table names the site)
_SITE_SCHEMAS = """
    SELECT n.nspname FROM pg_namespace AS n JOIN pg_class AS c ON c.relnamespace = n.oid
    WHERE c.relname = 'meta' AND c.relkind = 'r' AND starts_with(n.nspname, 'site_')
    ORDER BY n.nspname"""


def site_names(url: str) -> list[str]:
    """The names of the sites in the database at `url`, sorted."""
    database = open_postgres(url, site="(listing)")  # the queries name their schemas
    try:
        found = []
        for (schema,) in database.execute_sql(_SITE_SCHEMAS).fetchall():
            quoted = '"' + schema.replace('"', '""') + '"'  # a name read from the server
            try:
                with database.atomic():
                    row = database.execute_sql(f"SELECT value FROM {quoted}.meta WHERE "
                                               "key = %s", ("site_name",)).fetchone()
            except peewee.ProgrammingError:  # a site this role may not read: not listed
                continue
            if row is not None:
                found.append(row[0])
        return sorted(found)
    finally:
        database.close()


# Slots: what max_connections leaves to ordinary roles once superuser_reserved_connections
# (and PostgreSQL 16's reserved_connections) are set aside, and the role's own limit
_CONNECTIONS = """
    SELECT current_setting('max_connections')::int,
        current_setting('superuser_reserved_connections')::int
            + coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0),
        (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
        r.rolname, r.rolconnlimit,
        (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND usename = r.rolname)
    FROM pg_roles AS r WHERE r.rolname = current_user"""


def connection_headroom(database: SitePostgres) -> dict:
    """The server's connections: in use, its limit, reserved, free for an ordinary role,
    and this role's limit (-1: none) and use. A site holds 3 (two workers, a leader)."""
    most, reserved, used, role, limit, mine = database.execute_sql(_CONNECTIONS).fetchone()
    free = max(0, most - reserved - used)
    if limit >= 0:
        free = min(free, max(0, limit - mine))
    return {"max_connections": most, "reserved": reserved, "in_use": used, "free": free,
            "role": role, "role_limit": limit, "role_in_use": mine}
