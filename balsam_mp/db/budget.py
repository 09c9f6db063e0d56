"""The Globus request budget of one identity, shared by the site's processes.

Globus allows a user 20 requests per second and answers 429 beyond. The submitter and
the poller use the same identity, so they draw from one token bucket kept in site.db
(table request_budget): it refills at SUSTAINED x the limit per second and holds at most
BURST x the limit, so a quiet poller leaves its share to a busy submitter, and no
one-second window ever sees more than (SUSTAINED + BURST) x the limit = 95% of it (the
rest is room for requests that travel at different speeds).

A caller takes tokens in grants (transfer/ratelimit.py asks for about 20 ms' worth), so
at 20 requests/s that is one short write transaction per request, and at 10,000/s one
per 200 requests, not one per request.

On PostgreSQL the bucket is a row of the site's schema, locked FOR UPDATE while a
caller takes from it (the first caller inserts it full). A worker takes it on its own
connection, the one of its process (SitePostgres `shared`): its send and poll threads
take their turn on it, a transaction at a time, so a site holds one connection per
process however many threads send. Elsewhere (a client's `transfer cancel`) the budget
opens one of its own.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from pathlib import Path

from balsam_mp.db.failures import explain
from balsam_mp.db.models import database_proxy
from balsam_mp.db.postgres import SitePostgres

log = logging.getLogger(__name__)
DAY = 86400.0  # an `updated` further ahead than this is not a clock set back: reset
SUSTAINED = 0.75  # of the limit, refilled per second
BURST = 0.2  # of the limit, available at once after a quiet spell


class RequestBudget:
    """A token bucket named `name` in the site database `database` (a SQLite file, or a
    PostgreSQL URL and the `site` whose schema holds it): the TokenSource the transfer
    layer's SharedRateLimiter draws from."""

    def __init__(self, database: Path | str, name: str, per_second: float,
                 site: str | None = None) -> None:
        self.database, self.name, self.site = database, name, site
        self.postgres = isinstance(database, str) and database.startswith(
            ("postgresql://", "postgres://"))
        self.rate = SUSTAINED * per_second
        self.capacity = max(1.0, BURST * per_second)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pg: SitePostgres | None = None
        self._pid = 0

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # never one from before a fork
            self._conn = sqlite3.connect(str(self.database), isolation_level=None,
                                         timeout=30, check_same_thread=False)
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._pid = os.getpid()
        return self._conn

    def _refill(self, tokens: float, updated: float, now: float,
                wanted: int) -> tuple[float, int]:
        """(tokens now, tokens granted of `wanted`)."""
        # a clock set back refills nothing (and restarts the count from now);
        # one set forward refills at most a burst
        tokens = min(self.capacity, tokens + max(0.0, now - updated) * self.rate)
        return tokens, min(wanted, math.floor(tokens + 1e-9))  # float rounding

    def _checked(self, row: tuple | None, now: float) -> tuple[float, float]:
        """The stored (tokens, updated), or a full bucket as of now when there is none or
        it is out of range (written by hand, or by a bug): a negative or oversized count
        would stall or flood the site, a text would crash it. Said once in the log."""
        if row is None:
            return self.capacity, now
        tokens, updated = row
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and
                      math.isfinite(v) for v in (tokens, updated))
        if numbers and -1e-6 <= tokens <= self.capacity + 1e-6 and updated <= now + DAY:
            return tokens, updated
        log.warning("request budget %s: stored tokens=%r updated=%r are out of range "
                    "(tokens 0 to %g); reset to a full bucket", self.name, tokens, updated,
                    self.capacity)
        return self.capacity, now

    def _answer(self, tokens: float, granted: int) -> tuple[int, float]:
        return (granted, 0.0) if granted >= 1 else (0, (1.0 - tokens) / self.rate)

    def take(self, wanted: int) -> tuple[int, float]:
        """Up to `wanted` tokens: (granted, 0.0), or (0, seconds until one is there)."""
        with self._lock:
            if self.postgres:
                return self._take_postgres(wanted)
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute("SELECT tokens, updated FROM request_budget WHERE name = ?",
                                   (self.name,)).fetchone()
                now = time.time()
                tokens, updated = self._checked(row, now)
                tokens, granted = self._refill(tokens, updated, now, wanted)
                if granted < 1 and updated <= now:
                    conn.execute("ROLLBACK")  # nothing to write: the refill is recomputed
                    return self._answer(tokens, granted)
                conn.execute("INSERT INTO request_budget (name, tokens, updated) "
                             "VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                             "tokens = excluded.tokens, updated = excluded.updated",
                             (self.name, tokens - granted, now))
                conn.execute("COMMIT")
                return self._answer(tokens, granted)
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):  # e.g. locked past the busy timeout,
                    raise explain(Path(self.database), exc) from exc  # a full disk: the
                raise  # workers back off and retry, as for their own queries

    def _postgres(self) -> SitePostgres:
        """The process's shared connection to this site, else one of our own."""
        process = database_proxy.obj
        if isinstance(process, SitePostgres) and process.shared and \
                process.owner_pid == os.getpid() and process.site == self.site and \
                process.database == str(self.database):
            return process
        if self._pg is None or self._pid != os.getpid():  # never one from before a fork
            assert self.site, "a PostgreSQL budget needs its site's name"
            self._pg, self._pid = SitePostgres(str(self.database), self.site), os.getpid()
        return self._pg

    def _take_postgres(self, wanted: int) -> tuple[int, float]:
        """As on SQLite; errors (a restarted server) are peewee.OperationalError."""
        database = self._postgres()
        database.reconnect_if_broken()
        with database.atomic():
            # a row to lock: the first caller makes it full, the others wait on its lock
            database.execute_sql(
                "INSERT INTO request_budget (name, tokens, updated) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO NOTHING", (self.name, self.capacity, time.time()))
            row = database.execute_sql(
                "SELECT tokens, updated FROM request_budget WHERE name = %s FOR UPDATE",
                (self.name,)).fetchone()
            now = time.time()
            tokens, updated = self._checked(row, now)
            tokens, granted = self._refill(tokens, updated, now, wanted)
            if granted >= 1 or updated > now:
                database.execute_sql(
                    "UPDATE request_budget SET tokens = %s, updated = %s WHERE name = %s",
                    (tokens - granted, now, self.name))
        return self._answer(tokens, granted)

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        if self._pg is not None and self._pid == os.getpid():
            self._pg.close()
        self._conn = self._pg = None
