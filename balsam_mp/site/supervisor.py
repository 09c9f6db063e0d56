"""The supervisor: forks the submitter and the poller, restarts them, stops them.

Modelled on gunicorn's arbiter: children are reaped with waitpid(WNOHANG); one that dies
is restarted with backoff and its death (exit code or signal) is logged; one that fails
at boot halts the supervisor. The supervisor never opens the database: workers open
their own after the fork. SIGTERM/SIGINT stop the site; SIGHUP restarts the workers
with freshly loaded settings (`balsam site sync`). On PostgreSQL it runs its workers
only while its lease holder holds the site's lease (leader.py), armed with the lease's
epoch (db/fence.py): else it is on standby.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
from dataclasses import dataclass, field

from balsam_mp import db, permissions, settings
from balsam_mp.db import fence
from balsam_mp.settings import Settings
from balsam_mp.site import pidfile, syncs
from balsam_mp.site.crashes import RestartPolicy, read_halt, read_note, record_death
from balsam_mp.site.leader import LOST, Leadership
from balsam_mp.site.logs import configure_logging
from balsam_mp.site.poller import Poller
from balsam_mp.site.submitter import Submitter
from balsam_mp.site.worker import BOOT_FAILURE, DATABASE_GONE, FENCED, Worker, ready_file

WORKERS: dict[str, type[Worker]] = {"submitter": Submitter, "poller": Poller}
STOP_TIMEOUT = 20.0  # seconds workers get to finish their step before SIGKILL


@dataclass
class Child:
    name: str
    pid: int = 0
    started: float = 0.0
    restart_at: float = 0.0  # time.monotonic() of the next start
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    last_death: str | None = None  # how it last died, with its exception's last line


class HaltError(Exception):
    pass


class Supervisor:
    def __init__(self, site_settings: Settings) -> None:
        self.settings = site_settings
        self.log = logging.getLogger("balsam_mp.supervisor")
        self.children = {name: Child(name) for name in WORKERS}
        self.stopping = False
        self.reload = False
        self.per_host = bool(site_settings.database_url)  # may run on several hosts
        self.leader = Leadership(site_settings) if self.per_host else None

    # -- lifecycle ------------------------------------------------------------------

    def run(self) -> int:
        try:
            self.initialize()
        except HaltError as exc:
            self.log.error("not starting: %s", exc)
            return 1
        try:
            self.loop()
            return 0
        except HaltError as exc:
            self.log.error("halting: %s", exc)
            return 1
        except Exception:  # a bug: say where before the workers are stopped
            self.log.exception("supervisor crashed")
            return 1
        finally:
            self.shutdown()

    def initialize(self) -> None:
        self.hold_site_lock()
        db.forbid_connections("the supervisor forks workers; only they open the database")
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._reload)
        for name in WORKERS:  # `site start` waits for fresh ones (ours, not a rival's)
            ready_file(self.settings, name).unlink(missing_ok=True)
        if self.leader is not None:  # the workers start once the holder has the lock
            self.leader.start(in_child=self.lock_file.close)
            self.write_pidfile()
        else:
            pidfile.write(self.settings.site_path, mode=self.settings.modes.file)
            for child in self.children.values():
                self.spawn(child)
        self.log.info("site %s started (pid %d)", self.settings.site_name, os.getpid())

    def hold_site_lock(self) -> None:
        """One supervisor per site, even if two `site start` race past the pidfile check."""
        folder = permissions.make_folder(self.settings.site_path / ".run",
                                         permissions.RUNTIME.folder)
        name = f"supervisor{pidfile.host_tag(self.per_host)}.lock"
        # only we may open it: whoever can open a lock file can flock it
        self.lock_file = os.fdopen(permissions.open_file(
            folder / name, os.O_WRONLY, permissions.RUNTIME.file), "w")  # held until we exit
        try:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HaltError("another supervisor already runs this site") from None

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def _reload(self, *_: object) -> None:
        self.reload = True

    def loop(self) -> None:
        while not self.stopping:
            self.reap()
            if self.reload:
                self.reload = False
                self.restart_all()
            now = time.monotonic()
            if self.active():
                for child in self.children.values():
                    if child.pid == 0 and now >= child.restart_at:
                        self.spawn(child)
            time.sleep(0.05)

    def active(self) -> bool:
        """May the workers run here? Always on SQLite; on PostgreSQL while our holder
        has the site's lease (a standby starts a holder again after one dies)."""
        if self.leader is None:
            return True
        if self.leader.pid == 0 and time.monotonic() >= self.leader.next_start:
            self.leader.start(in_child=self.lock_file.close)
        if self.leader.poll():
            if self.leader.held:
                self.log.info("%s holds the site lease of %s (epoch %d): starting the "
                              "workers", pidfile.hostname(), self.settings.site_name,
                              self.leader.epoch)
            self.write_pidfile()
        return self.leader.held

    def shutdown(self) -> None:
        self.stop_children()
        if self.leader is not None:
            self.leader.stop()  # after the workers: the lease goes last
        pidfile.remove(self.settings.site_path, os.getpid())
        self.log.info("site stopped")

    # -- children -------------------------------------------------------------------

    def spawn(self, child: Child) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: fresh signal handlers, own log, own database
            code = 1
            try:
                self.lock_file.close()  # the lock is the supervisor's alone
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                db.allow_connections()  # a new process: it opens its own connection
                fence.arm(self.leader.epoch if self.leader else None)
                configure_logging(self.settings, child.name)
                code = WORKERS[child.name](self.settings).run()
            finally:
                os._exit(code)
        child.pid, child.started = pid, time.monotonic()
        self.write_pidfile()
        self.log.info("started %s (pid %d)", child.name, pid)

    def write_pidfile(self) -> None:
        """The pidfile names the running workers and says why any other one is down."""
        running = {name: c.pid for name, c in self.children.items() if c.pid}
        down = {name: {"last_error": c.last_death, "crash_looping": c.policy.crash_looping,
                       "next_try": time.time() + max(0.0, c.restart_at - time.monotonic())}
                for name, c in self.children.items() if not c.pid and not self.stopping}
        standby = None
        if self.leader is not None and not self.leader.held:
            standby = self.leader.standby
            down = {}
        pidfile.write(self.settings.site_path, running, down, self.per_host, standby,
                      self.settings.modes.file)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.leader is not None and pid == self.leader.pid:
                self.on_holder_exit(status)
                continue
            child = next((c for c in self.children.values() if c.pid == pid), None)
            if child is None:
                continue
            self.on_exit(child, status)

    def on_exit(self, child: Child, status: int) -> None:
        error = read_note(self.settings, child.name, child.pid)
        how = describe_exit(status) + (f": {error}" if error else "")
        child.pid, child.last_death = 0, f"{child.name} {how}"
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == BOOT_FAILURE:
            raise HaltError(f"{child.name} failed at boot ({how}); see its log in "
                            f"{self.settings.logs_path}")
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == DATABASE_GONE:
            raise HaltError(read_halt(self.settings.site_path) or
                            f"{child.name} found the site database gone")
        if self.stopping:
            return
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == FENCED and self.leader:
            # before our holder noticed (it will, at its next renewal, and say to whom)
            self.log.warning("%s found the site lease taken by another host: stopping the "
                             "workers, on standby", child.name)
            self.leader.step_down()
            self.stop_children()
            self.write_pidfile()
            return
        now = time.monotonic()  # one reading: the death's time, its life and the restart
        delay = child.policy.after_death(now - child.started, now)
        child.restart_at = now + delay
        self.write_pidfile()
        record_death(self.settings, child.last_death)
        if child.policy.crash_looping:
            self.log.error("%s; crash-looping: next try in %.0fs (see %s)", child.last_death,
                           delay, self.settings.logs_path / f"{child.name}.log")
        else:
            self.log.warning("%s; restarting in %.1fs", child.last_death, delay)

    def on_holder_exit(self, status: int) -> None:
        lost = os.WIFEXITED(status) and os.WEXITSTATUS(status) == LOST  # it said why
        if self.leader.exited() and not self.stopping:
            if not lost:
                self.log.error("the site lease holder %s: stopping the workers, on standby",
                               describe_exit(status))
        if not self.stopping:  # whoever found the lease gone first, no worker stays
            self.stop_children()
            self.write_pidfile()

    def restart_all(self) -> None:
        """Load the settings and boot the workers with them in a child first (syncs.py);
        only if that works, replace both workers (nothing in flight is lost)."""
        site_path = self.settings.site_path
        try:
            new = settings.load(site_path)
            refusal = syncs.boot_check(new, in_child=self.lock_file.close)
        except Exception as exc:  # a bad file leaves the running workers alone
            refusal = str(exc)
        if refusal:
            self.log.error("sync refused, keeping the running workers: %s", refusal)
            syncs.write_result(site_path, False, refusal)
            return
        self.settings = new
        self.log.info("settings reloaded; restarting workers")
        syncs.write_result(site_path, True, f"restarting the workers of pid {os.getpid()}")
        self.stop_children()
        for child in self.children.values():  # a sync is a fresh start, crash loops too
            child.policy.reset()
            child.restart_at, child.last_death = 0.0, None

    def stop_children(self) -> None:
        running = {c.pid: c for c in self.children.values() if c.pid}
        for pid in running:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while running and time.monotonic() < deadline:
            for pid in list(running):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    self.log.info("%s %s", running.pop(pid).name, describe_exit(status))
            time.sleep(0.02)
        for pid, child in running.items():
            self.log.warning("%s did not stop in %.0fs; killing it", child.name, STOP_TIMEOUT)
            _signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for child in self.children.values():
            child.pid = 0


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.WEXITSTATUS(status)}"


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
