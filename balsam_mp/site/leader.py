"""One active supervisor per site across login nodes (PostgreSQL only): the site's lease.

The same site may be started on two login nodes against one database: the supervisor
whose lease holder holds the site's *lease* runs the workers, the others wait on
standby. The lease is one row of the site's own schema (`lease`), so only roles with
rights on that schema can take it or keep the site from running. Its times come from
the database server's clock (`now()`), never from the hosts'.

- The active holder renews the lease every RENEW_EVERY seconds; a lease not renewed for
  LEASE_SECONDS has expired. A lease whose holder's server session has ended (its host
  was killed, or stopped cleanly and released it) is free at once.
- A standby tries every TRY_EVERY seconds to take a free or expired lease, adding one to
  its epoch. So a frozen host (SIGSTOP, a hung mount: its session stays open) is
  replaced within LEASE_SECONDS + TRY_EVERY.
- The workers are armed with the epoch their holder took (db/fence.py): each of their
  transactions checks it first, so once another host has the lease the old workers
  write nothing, and the old holder, at its next renewal, steps its supervisor down.
  Submission ids keep a send interrupted by the freeze exactly-once, as after a crash.

The supervisor opens no database connection (it forks workers), so the lease is held by
a small child process, the *holder*, with one connection of its own. It says on a pipe
when it took the lease and, while on standby, who holds it. During a database outage it
backs off (BACKOFF_FIRST doubling to BACKOFF_MAX), logs one line when the database is
lost and one when it is back, and records since when it is unreachable for `site
status` (pidfile.write_outage). SQLite sites have no holder: one machine, and the
supervisor's file lock (supervisor.py) keeps a second supervisor out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time

import peewee

from balsam_mp import db
from balsam_mp.errors import BalsamError, first_line
from balsam_mp.settings import Settings
from balsam_mp.site import lease, pidfile
from balsam_mp.site.lease import LEASE_SECONDS

RENEW_EVERY = 2.0  # seconds between the active holder's renewals
TRY_EVERY = 0.25  # seconds between a standby's tries to take the lease
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30.0  # seconds between tries while the database is out
LOST = 5  # the holder's exit code when another host took its lease
STOP_WAIT = 5.0  # seconds a stopping holder gets to release the lease
# the server drops the session of a host that vanished after about 5 + 3 x 2 s; a
# statement waits at most 1 s for the lease row (a worker's transaction holds it briefly)
SESSION = ("SET tcp_keepalives_idle = 5", "SET tcp_keepalives_interval = 2",
           "SET tcp_keepalives_count = 3", "SET lock_timeout = '1s'")
_FAILURES = (peewee.OperationalError, peewee.InterfaceError, peewee.DatabaseError,
             BalsamError)


def _lock_busy(exc: Exception) -> bool:
    """lock_timeout ran out (SQLSTATE 55P03): the row is busy, the database is not out."""
    return getattr(exc.args[0] if exc.args else None, "sqlstate", None) == "55P03"


class Leadership:
    """The supervisor's side: fork the holder, learn from it whether we lead."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = 0
        self.held = False
        self.epoch: int | None = None  # the lease epoch our workers are armed with
        self.standby = "waiting for the site lease"  # why not active, for the pidfile
        self._pipe = -1
        self._buffer = b""
        self.next_start = 0.0

    def start(self, in_child=lambda: None) -> None:
        """Fork the holder; `in_child` runs first in it (closes what it must not keep)."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                in_child()
                os.close(read)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # until Holder handles it
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                db.allow_connections()  # a new process: it opens its own connection
                code = Holder(self.settings, write).run()
            except Exception:
                logging.getLogger("balsam_mp.supervisor").exception("site lease holder failed")
            finally:
                os._exit(code)
        os.close(write)
        os.set_blocking(read, False)
        self.pid, self._pipe, self.held, self._buffer = pid, read, False, b""

    def poll(self) -> bool:
        """Read what the holder said; True if it changed what we are (active, or who
        holds the lease while we wait)."""
        changed = False
        while self._pipe >= 0:
            try:
                chunk = os.read(self._pipe, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            message = json.loads(line)
            if "epoch" in message:
                self.held, self.epoch, changed = True, message["epoch"], True
            elif message.get("standby") != self.standby:
                self.standby, changed = message["standby"], True
        return changed

    def step_down(self) -> None:
        """A worker found the lease taken: lead no more (the holder learns it too)."""
        self.held, self.epoch = False, None
        self.standby = "another host took the site lease"

    def exited(self) -> bool:
        """The holder died (reaped by the caller): the lease, if it had it, is gone."""
        was_held = self.held
        os.close(self._pipe)
        self.pid, self._pipe, self.held, self.epoch = 0, -1, False, None
        self.next_start = time.monotonic() + 1.0
        return was_held

    def stop(self) -> None:
        """SIGTERM: the holder releases the lease (a standby takes it at once); one stuck
        on a server that does not answer is killed after STOP_WAIT (its lease expires)."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
                deadline = time.monotonic() + STOP_WAIT
                while not os.waitpid(self.pid, os.WNOHANG)[0]:
                    if time.monotonic() > deadline:
                        os.kill(self.pid, signal.SIGKILL)
                        os.waitpid(self.pid, 0)
                        break
                    time.sleep(0.02)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0
        if self._pipe >= 0:
            os.close(self._pipe)
            self._pipe = -1


class Holder:
    """In the holder process: take the lease, keep it, say so; ride out outages."""

    def __init__(self, settings: Settings, pipe: int) -> None:
        self.settings = settings
        self.pipe = pipe
        self.log = logging.getLogger("balsam_mp.supervisor")
        self.supervisor = os.getppid()
        self.database: db.connection.Database | None = None
        self.epoch: int | None = None
        self.standby: str | None = None  # what we last said while waiting
        self.outage_since: float | None = None
        self.backoff = 0.0
        self.stopping = False
        signal.signal(signal.SIGTERM, self._stop)

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def run(self) -> int:
        try:
            while not self.stopping and os.getppid() == self.supervisor:
                try:
                    self.connect()
                    if self.epoch is None:
                        self.take()
                    elif not self.renew():
                        return LOST
                    self.reachable()
                    pause = TRY_EVERY if self.epoch is None else RENEW_EVERY
                except _FAILURES as exc:
                    # the lease row held by a worker's transaction: try again soon
                    pause = TRY_EVERY if _lock_busy(exc) else self.unreachable(exc)
                self.sleep(pause)
            self.release()
            return 0
        finally:
            pidfile.clear_outage(self.settings.site_path)
            if self.database is not None:
                self.database.close()

    def connect(self) -> None:
        if self.database is not None:
            return
        # named in pg_stat_activity as the site's, not as a client's session
        self.database = db.connect(self.settings.database_url, site=self.settings.site_name,
                                   role="lease holder")
        for statement in SESSION:
            self.database.execute_sql(statement)
        self.database.execute_sql(lease.ENSURE)

    def take(self) -> None:
        row = self.database.execute_sql(lease.TAKE, {
            "host": pidfile.hostname(), "pid": self.supervisor, "ttl": LEASE_SECONDS}).fetchone()
        if row is not None:
            self.epoch = row[0]
            self.say({"epoch": self.epoch})
            return
        current = lease.read(self.database)
        standby = f"{current['host']} (pid {current['pid']}) holds the site lease" \
            if current and current["live"] else "waiting for the site lease"
        if standby != self.standby:  # one line per host that leads while we wait
            self.log.info("on standby: %s", lease.describe(current))
            self.standby = standby
            self.say({"standby": standby})

    def renew(self) -> bool:
        """Renew our lease; False (said in one line) if another host took it."""
        if self.database.execute_sql(lease.RENEW, {"ttl": LEASE_SECONDS,
                                                   "epoch": self.epoch}).rowcount:
            return True
        current = lease.read(self.database)
        who = f"{current['host']} (pid {current['pid']}, epoch {current['epoch']})" \
            if current else "another host"
        self.log.warning("lost the site lease (epoch %d) to %s: stopping the workers, on "
                         "standby", self.epoch, who)
        self.epoch = None
        return False

    def unreachable(self, exc: Exception) -> float:
        """One line when the database is lost; the next pause (backing off)."""
        if self.outage_since is None:
            self.outage_since = time.time()
            first = first_line(exc)
            self.log.warning("site lease: database unreachable (%s); retrying every %g s "
                             "up to %g s", first, BACKOFF_FIRST, BACKOFF_MAX)
            with contextlib.suppress(OSError):
                pidfile.write_outage(self.settings.site_path, self.outage_since, first)
        if self.database is not None:
            with contextlib.suppress(Exception):
                self.database.close()
            self.database = None
        self.backoff = min(BACKOFF_MAX, max(BACKOFF_FIRST, self.backoff * 2))
        return self.backoff

    def reachable(self) -> None:
        if self.outage_since is not None:
            self.log.info("site lease: database reachable again after %.0f s (%s)",
                          time.time() - self.outage_since,
                          f"holding the lease, epoch {self.epoch}" if self.epoch is not None
                          else "on standby")
            pidfile.clear_outage(self.settings.site_path)
        self.outage_since, self.backoff = None, 0.0

    def release(self) -> None:
        """A clean stop frees the lease at once, so a standby need not wait it out."""
        if self.epoch is None or self.database is None:
            return
        with contextlib.suppress(*_FAILURES):
            self.database.execute_sql(lease.RELEASE, (self.epoch,))

    def say(self, message: dict) -> None:
        os.write(self.pipe, json.dumps(message).encode() + b"\n")

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and os.getppid() == self.supervisor:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.1, left))
