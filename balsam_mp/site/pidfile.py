"""The site's pidfile: host, pid and process create time, written atomically.

The create time tells a live supervisor from an unrelated process that reused its pid;
the host tells a site running on another login node (shared file system) from a dead one.

A site on PostgreSQL may run on several login nodes at once (one active, the others on
standby, see leader.py): each host then keeps its own `site.<host>.pid`, found first.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from balsam_mp import permissions
from balsam_mp.errors import ValidationError

PIDFILE = "site.pid"
HOST_ENV = "BALSAM_HOSTNAME"  # the name this login node goes by (default: its hostname)


# Every file named after it must fit in NAME_MAX (255 bytes): the longest is the partial
# file permissions.write_file writes first, ".submitter.<host>.ready.<pid>" (host + 25);
# 200 leaves room for longer worker names.
HOST_MAX = 200
HOST_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{HOST_MAX - 1}}}")  # names files


def hostname() -> str:
    given = os.environ.get(HOST_ENV)
    if not given:
        return socket.gethostname()
    if not HOST_NAME.fullmatch(given) or ".." in given:
        raise ValidationError(f"${HOST_ENV}={given!r} is not a host name (letters, digits, "
                              f"'.', '-' and '_', at most {HOST_MAX}, no '..'); it names this "
                              "host's pidfile")
    return given


def host_tag(per_host: bool) -> str:
    """'.<host>' in the names of a host's own runtime files when a site may run on
    several hosts (database_url set), else ''."""
    return f".{hostname()}" if per_host else ""


@dataclass(frozen=True)
class PidInfo:
    host: str
    pid: int
    create_time: float
    workers: dict[str, int] | None = None
    # worker -> {"last_error", "crash_looping", "next_try" (epoch seconds)} of dead workers
    down: dict[str, dict] | None = None
    standby: str | None = None  # on standby: why (another host holds the site)
    damaged: bool = False  # the file could not be read

    @property
    def here(self) -> bool:
        return self.host == hostname()

    def alive(self) -> bool:
        """True if this exact process (not a pid reuse) is running on this host."""
        if not self.here:
            return False
        try:
            process = psutil.Process(self.pid)
            return process.create_time() == self.create_time and \
                process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def path_of(site_path: Path, per_host: bool | None = None) -> Path:
    """This host's own pidfile if it has one (or `per_host`), else the site's."""
    own = site_path / f"site{host_tag(True)}.pid"
    if per_host or (per_host is None and own.exists()):
        return own
    return site_path / PIDFILE


def write(site_path: Path, workers: dict[str, int] | None = None,
          down: dict[str, dict] | None = None, per_host: bool = False,
          standby: str | None = None, mode: int = 0o600) -> PidInfo:
    me = psutil.Process()
    info = PidInfo(hostname(), me.pid, me.create_time(), workers, down, standby)
    target = path_of(site_path, per_host)
    permissions.write_file(target, json.dumps(asdict(info)), mode)
    return info


def read(site_path: Path) -> PidInfo | None:
    try:
        data = json.loads(path_of(site_path).read_text())
        return PidInfo(data["host"], int(data["pid"]), float(data["create_time"]),
                       data.get("workers"), data.get("down"), data.get("standby"))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # damaged (it is written by rename, so never half-written by us): a stale file of
        # this host; the supervisor's lock still keeps a second supervisor from running
        return PidInfo(hostname(), 0, 0.0, damaged=True)


def remove(site_path: Path, pid: int | None = None) -> None:
    """Remove the pidfile; with `pid`, only if it still names that process."""
    current = read(site_path)
    if current is not None and (pid is None or current.pid == pid):
        path_of(site_path).unlink(missing_ok=True)


# Since when this host's lease holder cannot reach the database (PostgreSQL): `site
# status` says so while it cannot ask the database itself.
def _outage_path(site_path: Path) -> Path:
    return site_path / ".run" / f"outage{host_tag(True)}.json"


def write_outage(site_path: Path, since: float, error: str) -> None:
    permissions.make_folder(site_path / ".run", permissions.RUNTIME.folder)
    permissions.write_file(_outage_path(site_path), json.dumps(
        {"since": since, "error": error}), permissions.RUNTIME.file)


def read_outage(site_path: Path) -> dict | None:
    """{"since": epoch seconds, "error": its first line}, or None."""
    try:
        data = json.loads(_outage_path(site_path).read_text())
        return {"since": float(data["since"]), "error": str(data["error"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clear_outage(site_path: Path) -> None:
    _outage_path(site_path).unlink(missing_ok=True)
