"""One active supervisor per site across login nodes (PostgreSQL only).

The same site may be started on two login nodes against one database: the supervisor
that holds the site's advisory lock runs the workers, the others wait on standby. The
lock lives in a PostgreSQL session, so it goes away with the process that holds it:
when every process of the active host is killed (or the host dies: the session asks
the server to probe the connection every few seconds), a standby gets the lock within
about a second and starts its workers; leases and submission ids make the takeover
exactly-once, as after a restart on one host.

The supervisor opens no database connection (it forks workers), so the lock is held by
a small child process, the *holder*: it connects, waits for the lock, says so on a pipe,
then checks once in a while that its session (and so the lock) and its supervisor are
still there. A holder that dies costs the supervisor its workers at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time

from balsam_mp import db
from balsam_mp.settings import Settings

TRY_EVERY = 0.25  # seconds between tries for the lock while on standby
CHECK_EVERY = 0.5  # seconds between checks that the holder's session is alive
# the server drops the session of a host that vanished after about 5 + 3 x 2 s
KEEPALIVE = ("SET tcp_keepalives_idle = 5", "SET tcp_keepalives_interval = 2",
             "SET tcp_keepalives_count = 3")


def lock_key(site_name: str) -> int:
    """The site's advisory lock: a signed 64-bit number from its name."""
    digest = hashlib.sha256(f"balsam_mp site {site_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_held(site_name: str) -> bool:
    """Whether some session holds the site's lock: an active supervisor, wherever it runs
    (for `site status` from a machine without the site directory)."""
    unsigned = lock_key(site_name) & 0xFFFF_FFFF_FFFF_FFFF  # as pg_locks shows its halves
    return db.Job._meta.database.execute_sql(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND classid = %s::oid AND objid = %s::oid AND objsubid = 1)",
        (unsigned >> 32, unsigned & 0xFFFF_FFFF)).fetchone()[0]


class Leadership:
    """The supervisor's side: fork the holder, learn when it holds the lock."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log = logging.getLogger("balsam_mp.supervisor")
        self.pid = 0
        self.held = False
        self._pipe = -1
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
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                db.allow_connections()  # a new process: it opens its own connection
                code = hold(self.settings, write)
            except Exception:
                logging.getLogger("balsam_mp.supervisor").exception("site lock holder failed")
            finally:
                os._exit(code)
        os.close(write)
        os.set_blocking(read, False)
        self.pid, self._pipe, self.held = pid, read, False

    def poll(self) -> bool:
        """True once the holder has the lock (it says so once, on the pipe)."""
        if not self.held and self._pipe >= 0:
            try:
                self.held = os.read(self._pipe, 1) == b"L"
            except BlockingIOError:
                pass
        return self.held

    def exited(self) -> bool:
        """The holder died (reaped by the caller): the lock, if it had it, is gone."""
        was_held = self.held
        os.close(self._pipe)
        self.pid, self._pipe, self.held = 0, -1, False
        self.next_start = time.monotonic() + 1.0
        return was_held

    def stop(self) -> None:
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0
        if self._pipe >= 0:
            os.close(self._pipe)
            self._pipe = -1


def hold(settings: Settings, pipe: int) -> int:
    """In the holder: wait for the site's lock, report it, keep it while the supervisor
    lives. Returns when the supervisor is gone; raises when the session is lost."""
    supervisor = os.getppid()
    database = db.connect(settings.database_url, site=settings.site_name)
    for statement in KEEPALIVE:
        database.execute_sql(statement)
    key = lock_key(settings.site_name)
    while not database.execute_sql("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
        if os.getppid() != supervisor:
            return 0
        time.sleep(TRY_EVERY)
    os.write(pipe, b"L")
    while os.getppid() == supervisor:
        database.execute_sql("SELECT 1")  # raises if the session, and the lock, are gone
        time.sleep(CHECK_EVERY)
    return 0
