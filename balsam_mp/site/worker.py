"""What the submitter and the poller share: initialize() / loop() / shutdown().

Signal handlers only set flags; the loop acts on them between steps. A worker whose
initialize() fails exits with BOOT_FAILURE so the supervisor halts instead of
respawning it forever.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from pathlib import Path

import peewee

from balsam_mp import db
from balsam_mp.errors import BalsamError
from balsam_mp.settings import Settings
from balsam_mp.site import crashes, pidfile

BOOT_FAILURE = 3
CRASHED = 1
FIRST_TICK = 0.002  # seconds between cheap checks for new work, right after some work...
IDLE_TICK = 0.05  # ...growing to this while nothing happens


def ready_file(settings: Settings, name: str) -> Path:
    """Written by a worker once it has booted: `site start` waits for both."""
    folder = settings.site_path / ".run"
    folder.mkdir(exist_ok=True)
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

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            self.initialize()
        except Exception as exc:
            self.log.error("%s failed to start: %s", self.name, exc)
            if not isinstance(exc, BalsamError):
                self.log.error("%s", traceback.format_exc())
            return BOOT_FAILURE
        ready_file(self.settings, self.name).write_text(str(os.getpid()))
        self.log.info("%s started", self.name)
        try:
            self.loop()
        except Exception as exc:  # a bug or an unforeseen failure: say what, then die
            self.log.exception("%s crashed", self.name)
            crashes.write_note(self.settings, self.name, exc)
            return CRASHED
        finally:
            self.shutdown()
        self.log.info("%s stopped", self.name)
        return 0

    def initialize(self) -> None:
        self.database = db.connect(self.settings.database, site=self.settings.site_name,
                                   synchronous=self.synchronous)
        self.database.listen()

    @property
    def running(self) -> bool:
        """Neither asked to stop nor orphaned (a killed supervisor's workers leave too)."""
        return not self.stopping and os.getppid() == self.parent_pid

    def loop(self) -> None:
        while self.running:
            try:
                busy = self.step()
                self._error_backoff = 0.0
                if not busy:
                    self.idle()  # waits on the database too (LISTEN on PostgreSQL)
            except (BalsamError, peewee.OperationalError, peewee.InterfaceError) as exc:
                self._error_backoff = min(30.0, max(0.5, self._error_backoff * 2))
                self.log.warning("%s: %s; retrying in %.1fs", self.name, exc, self._error_backoff)
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
        while self.running and time.monotonic() < deadline:
            # SQLite: one PRAGMA data_version, then a nap; PostgreSQL: LISTEN's wait
            if self.database.wait_for_change(min(tick, max(0.0, deadline - time.monotonic()))):
                return True
            tick = min(tick * 1.5, IDLE_TICK)
        return False

    def _reconnect(self) -> None:
        """A lost server connection (PostgreSQL restarted) is opened anew; the next
        step's error says so if that fails too."""
        try:
            self.database.reconnect_if_broken()
        except peewee.OperationalError as exc:
            self.log.warning("%s: cannot reconnect to the database: %s", self.name, exc)

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.running and time.monotonic() < deadline:
            time.sleep(min(IDLE_TICK, deadline - time.monotonic()))

    def shutdown(self) -> None:
        if self.database is not None:
            self.database.close()
