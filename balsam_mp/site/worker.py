"""What the submitter and the poller share: initialize() / loop() / shutdown().

Signal handlers only set flags; the loop acts on them between steps. A worker whose
initialize() fails exits with BOOT_FAILURE so the supervisor halts instead of
respawning it forever; on PostgreSQL a lost or refused connection is not such a failure
(the server restarts, or a session is ended): the worker exits as crashed and is
started again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import traceback
from pathlib import Path

import peewee

from balsam_mp import db, permissions
from balsam_mp.db.fence import Fenced
from balsam_mp.errors import BalsamError, DatabaseUnreachable, first_line, one_line
from balsam_mp.settings import Settings
from balsam_mp.site import crashes, pidfile

BOOT_FAILURE = 3
CRASHED = 1
DATABASE_GONE = 4  # site.db was deleted or replaced under us: the site halts
FENCED = 5  # another host took the site's lease: this one stops, its supervisor stands by
_PASSING = (peewee.OperationalError, peewee.InterfaceError, DatabaseUnreachable)
FILE_CHECK_PERIOD = 0.5  # seconds between checks that site.db is still the file we opened
FIRST_TICK = 0.002  # seconds between cheap checks for new work, right after some work...
IDLE_TICK = 0.05  # ...growing to this while nothing happens


def ready_file(settings: Settings, name: str) -> Path:
    """Written by a worker once it has booted: `site start` waits for both."""
    folder = permissions.make_folder(settings.site_path / ".run", permissions.RUNTIME.folder)
    return folder / f"{name}{pidfile.host_tag(bool(settings.database_url))}.ready"


class Worker:
    name = "worker"
    synchronous = "NORMAL"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log = logging.getLogger(f"balsam_mp.{self.name}")
        self.stopping = False
        self.database: db.connection.Database | None = None
        self._error_backoff = 0.0
        self.parent_pid = os.getppid()
        self._db_file: tuple[int, int] | None = None  # (st_dev, st_ino) of site.db
        self._next_file_check = 0.0

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            self.initialize()
        except Fenced as exc:
            return self.fenced(exc)
        except Exception as exc:
            if self.settings.database_url and isinstance(exc, _PASSING):
                # the server went away as we booted (a restart, pg_terminate_backend): the
                # database was there for the lease a moment ago, so a restart, not a halt
                self.log.warning("%s could not start, the database connection failed: %s; "
                                 "starting again", self.name, first_line(exc))
                return CRASHED
            self.log.error("%s failed to start: %s", self.name, exc)
            if not isinstance(exc, BalsamError):
                self.log.error("%s", traceback.format_exc())
            with contextlib.suppress(OSError):  # for `site start` and `site status` to say
                what = str(exc) if isinstance(exc, BalsamError) else \
                    traceback.format_exception_only(type(exc), exc)[-1].strip()
                crashes.write_halt(self.settings, f"{self.name} failed to start: {what}")
            return BOOT_FAILURE
        permissions.write_file(ready_file(self.settings, self.name), str(os.getpid()),
                               permissions.RUNTIME.file)
        self.log.info("%s started", self.name)
        try:
            self.loop()
            gone = self.database_gone()
            if gone:
                self.log.error("%s: halting the site: %s", self.name, gone)
                crashes.write_halt(self.settings, gone)
                return DATABASE_GONE
        except Fenced as exc:
            return self.fenced(exc)
        except Exception as exc:  # a bug or an unforeseen failure: say what, then die
            self.log.exception("%s crashed", self.name)
            crashes.write_note(self.settings, self.name, exc)
            return CRASHED
        finally:
            self.shutdown()
        self.log.info("%s stopped", self.name)
        return 0

    def fenced(self, exc: Fenced) -> int:
        self.log.warning("%s: %s; stopping without writing", self.name, exc)
        return FENCED

    def initialize(self) -> None:
        # on PostgreSQL the one connection of this process: the request budget, taken
        # from the send and poll threads, uses it too (db/budget.py)
        self.database = db.connect(self.settings.database, site=self.settings.site_name,
                                   synchronous=self.synchronous, role=self.name, shared=True)
        self.database.listen()
        if hasattr(self.database, "as_worker"):  # PostgreSQL: never wait long on a lock
            self.database.as_worker()
        if self.settings.database_file is not None:
            info = os.stat(self.settings.database_file)
            self._db_file = (info.st_dev, info.st_ino)

    @property
    def running(self) -> bool:
        """Neither asked to stop nor orphaned (a killed supervisor's workers leave too)."""
        return not self.stopping and os.getppid() == self.parent_pid

    def database_gone(self) -> str | None:
        """Why site.db is no longer the file this worker opened (deleted, or replaced by
        another file: its inode changed), or None. Writing on would go to a file no one
        else sees, or next to another process's."""
        if self._db_file is None:
            return None
        path = self.settings.database_file
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return (f"{path} was deleted while the site ran; restore it (from a backup) "
                    "and run `balsam site start`")
        except OSError:  # e.g. a folder made unreadable: the next query says so
            return None
        if (info.st_dev, info.st_ino) != self._db_file:
            return (f"{path} was replaced by another file (inode {self._db_file[1]} -> "
                    f"{info.st_ino}) while the site ran; check which file is right, then run "
                    "`balsam site start`")
        wal = path.with_name(path.name + "-wal")  # exists while any connection is open
        try:
            os.stat(wal)
        except FileNotFoundError:
            return (f"{wal} was deleted while the site ran (the commits only in it are "
                    "lost); run `balsam site start`")
        except OSError:
            pass
        return None

    def loop(self) -> None:
        while self.running:
            now = time.monotonic()
            if now >= self._next_file_check:
                self._next_file_check = now + FILE_CHECK_PERIOD
                if self.database_gone():
                    return
            try:
                busy = self.step()
                self._error_backoff = 0.0
                if not busy:
                    self.idle()  # waits on the database too (LISTEN on PostgreSQL)
            except (BalsamError, peewee.OperationalError, peewee.InterfaceError) as exc:
                self._error_backoff = min(30.0, max(0.5, self._error_backoff * 2))
                self.log.warning("%s: %s; retrying in %.1fs", self.name, one_line(exc),
                                 self._error_backoff)
                self.sleep(self._error_backoff)
                self._reconnect()
        if not self.stopping:
            self.log.warning("%s: supervisor %d is gone; exiting", self.name, self.parent_pid)

    def step(self) -> bool:
        """One pass; returns True if there may be more work right away."""
        raise NotImplementedError

    def idle(self) -> None:
        self.wait_for_change(self.settings.transfers.service_period)

    def wait_for_change(self, timeout: float) -> bool:
        """Wait until another process commits to the database (True) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        tick = FIRST_TICK
        while self.running:
            left = deadline - time.monotonic()  # one clock read decides and sizes the wait
            if left <= 0:
                return False
            # SQLite: one PRAGMA data_version, then a nap; PostgreSQL: LISTEN's wait
            if self.database.wait_for_change(min(tick, left)):
                return True
            tick = min(tick * 1.5, IDLE_TICK)
        return False

    def _reconnect(self) -> None:
        """A lost server connection (PostgreSQL restarted) is opened anew; the next
        step's error says so if that fails too."""
        try:
            self.database.reconnect_if_broken()
        except peewee.OperationalError as exc:
            self.log.warning("%s: cannot reconnect to the database: %s", self.name,
                             one_line(exc))

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.running:
            # one clock read both decides and sizes the nap: with two, the second could
            # be past the deadline and time.sleep() refuses a negative length
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(IDLE_TICK, left))

    def shutdown(self) -> None:
        if self.database is not None:
            self.database.close()
