"""A broken database or disk gets one line naming the file and the cause, and a non-zero
exit, from every command; the API raises a BalsamError. Each case is the real condition:
another user (`nobody`: root bypasses permissions) for permission denied, a small tmpfs
for a full or read-only disk. Without root those cases are skipped, saying why."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from balsam_mp import api
from balsam_mp.errors import BalsamError, DatabaseFailure, DiskFull
from balsam_mp.site import pidfile, service
from balsam_mp.site.layout import init_site
from tests.hostile_env import (
    as_user,
    balsam_as_nobody,
    fill,
    give_to_nobody,
    nobody_ids,
    open_folder,
    small_tmpfs,
)

JOB = ("job", "create", "--app", "MySim", "--workdir", "w1", "-s",
       "input_file=laptop:/in/a.dat")
READS = [("site", "status"), ("job", "ls"), ("transfer", "ls"), ("transfer", "retry", "1"),
         ("transfer", "cancel", "1")]
WRITES = [JOB, ("app", "sync"), ("site", "sync"), ("site", "start")]
EVERY = READS + WRITES


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Path, Path], contextlib.AbstractContextManager]  # (site, db) -> ctx
    commands: list[tuple[str, ...]]
    cause: str  # what each command's one line says, after the file's name
    as_nobody: bool = False


@contextlib.contextmanager
def chmod(path: Path, mode: int) -> Iterator[None]:
    old = path.stat().st_mode
    path.chmod(mode)
    try:
        yield
    finally:
        path.chmod(old)


def unreadable(site: Path, db: Path):
    return chmod(db, 0o000)


def read_only_file(site: Path, db: Path):
    return chmod(db, 0o400)


def read_only_folder(site: Path, db: Path):
    return chmod(db.parent, 0o500)


@contextlib.contextmanager
def corrupt_header(site: Path, db: Path) -> Iterator[None]:
    with open(db, "r+b") as file:
        file.write(b"this is no sqlite file at all!!!")
    yield


@contextlib.contextmanager
def truncated(site: Path, db: Path) -> Iterator[None]:
    os.truncate(db, 4096 * 3)  # pages the schema points at are gone
    yield


@contextlib.contextmanager
def missing(site: Path, db: Path) -> Iterator[None]:
    db.unlink()
    yield


@contextlib.contextmanager
def wal_deleted(site: Path, db: Path) -> Iterator[None]:
    """Another process holds commits in the WAL; someone deletes the WAL file."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
         "c.execute('PRAGMA wal_autocheckpoint=0')\n"
         "c.execute(\"INSERT INTO meta (key, value) VALUES ('held', 'x')\")\n"
         "print('held', flush=True)\nsys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        db.with_name(db.name + "-wal").unlink()
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


@contextlib.contextmanager
def read_only_fs(site: Path, db: Path) -> Iterator[None]:
    subprocess.run(["mount", "-o", "remount,ro", str(db.parent)], check=True)
    yield


@contextlib.contextmanager
def disk_full(site: Path, db: Path) -> Iterator[None]:
    fill(db.parent)
    yield


def on_tmpfs(setup):
    """The case runs with site.db on its own small tmpfs (database_path)."""
    setup.tmpfs = True
    return setup


CASES = [
    Case("unreadable", unreadable, EVERY, "permission denied", as_nobody=True),
    Case("read-only-file", read_only_file, WRITES, "permission denied (read-only for this "
         "user)", as_nobody=True),
    Case("read-only-folder", read_only_folder, WRITES, "permission denied on its folder",
         as_nobody=True),
    Case("corrupt-header", corrupt_header, EVERY, "file is not a database"),
    Case("truncated", truncated, EVERY, "database disk image is malformed"),
    Case("missing", missing, EVERY, "site database missing"),
    Case("wal-deleted", wal_deleted, EVERY, "site.db-wal was deleted"),
    Case("read-only-fs", on_tmpfs(read_only_fs), EVERY, "read-only file system"),
    Case("disk-full", on_tmpfs(disk_full), WRITES, "disk full"),
]


@contextlib.contextmanager
def site_for(case: Case, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A site with one app and its input; its site.db on a tmpfs if the case says."""
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(open_folder()) if case.as_nobody else tmp_path
        site = init_site(base / "site").site_path
        (base / "in").mkdir()
        (base / "in" / "a.dat").write_text("input")
        settings = site / "settings.yml"
        text = settings.read_text().replace("laptop: local://", f"laptop: local://{base}")
        db = site / "site.db"
        if getattr(case.setup, "tmpfs", False):
            disk = stack.enter_context(small_tmpfs("1m"))
            shutil.move(db, disk / "site.db")
            db = disk / "site.db"
            text = text.replace("# database_path: /tmp/my-site.db", f"database_path: {db}")
        settings.write_text(text)
        api.use_site(site)
        api.App.sync()
        api.close()
        if case.as_nobody:
            give_to_nobody(base)
        stack.callback(stop_if_running, site)
        yield site, db


def stop_if_running(site: Path) -> None:
    info = pidfile.read(site)
    if info is not None and info.alive():
        service.stop(site, timeout=10)


def run(case: Case, site: Path, *args: str) -> tuple[int, str]:
    if case.as_nobody:
        return balsam_as_nobody("--site", str(site), *args)
    result = subprocess.run([sys.executable, "-m", "balsam_mp", "--site", str(site), *args],
                            capture_output=True, text=True, timeout=120)
    return result.returncode, result.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_command_says_which_file_and_why_in_one_line(case: Case, tmp_path: Path):
    with site_for(case, tmp_path) as (site, db), case.setup(site, db):
        for command in case.commands:
            code, err = run(case, site, *command)
            lines = err.strip().splitlines()
            assert code != 0, (command, err)
            assert len(lines) == 1 and "Traceback" not in err, (command, err)
            assert str(db) in lines[0] and case.cause in lines[0], (command, lines[0])
            assert "cannot rollback" not in err
        assert not (site / "data" / "w1").exists(), "job create left its folder"


def api_create(site: Path) -> Callable[[], object]:
    def create() -> object:
        api.use_site(site)
        try:
            api.Job.objects.create(app="MySim", workdir="w1",
                                   transfers={"input_file": "laptop:/in/a.dat"})
        except BalsamError as exc:
            return {"raised": type(exc).__name__, "message": str(exc),
                    "balsam": True}
        return "created"
    return create


@pytest.mark.parametrize("case", [c for c in CASES if JOB in c.commands],
                         ids=[c.name for c in CASES if JOB in c.commands])
def test_the_api_raises_a_balsam_error_not_peewees(case: Case, tmp_path: Path):
    with site_for(case, tmp_path) as (site, db), case.setup(site, db):
        if case.as_nobody:
            result, _ = as_user(api_create(site), *nobody_ids())
        else:
            result = api_create(site)()
            api.close()
        assert isinstance(result, dict) and result.get("balsam"), result
        assert result["raised"] in (DatabaseFailure.__name__, DiskFull.__name__)
        assert case.cause in result["message"] and str(db) in result["message"]


def test_an_exhausted_quota_is_named(tmp_path: Path):
    """A tmpfs with a per-user block quota (Linux 6.6+ with tmpfs quotas): as nobody."""
    uid, gid = nobody_ids()
    with open_folder() as base:
        disk = base / "quota"
        disk.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0777,usrquota,"
             "usrquota_block_hardlimit=300k", "tmpfs", str(disk)],
            capture_output=True, text=True)
        if mounted.returncode != 0:
            reason = f"this kernel mounts no tmpfs with quotas: {mounted.stderr.strip()}"
            print(f"SKIP: {reason}")
            pytest.skip(reason)
        try:
            site = init_site(base / "site").site_path
            text = (site / "settings.yml").read_text()
            (site / "settings.yml").write_text(text.replace(
                "# database_path: /tmp/my-site.db", f"database_path: {disk}/site.db"))
            shutil.move(site / "site.db", disk / "site.db")
            give_to_nobody(base)
            os.lchown(disk / "site.db", uid, gid)

            def fill_then_create() -> object:
                fill(disk)
                return api_create(site)()
            result, _ = as_user(fill_then_create, uid, gid)
            assert isinstance(result, dict) and result["raised"] == "DiskFull", result
            assert "disk quota exceeded" in result["message"]
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def test_status_still_reads_a_database_whose_file_is_read_only_to_its_user(tmp_path):
    """Reads need no write: a read-only site.db is still inspected (sqlite3 agrees)."""
    case = Case("ro", read_only_file, [], "", as_nobody=True)
    with site_for(case, tmp_path) as (site, db), case.setup(site, db):
        code, err = balsam_as_nobody("--site", str(site), "job", "ls")
        assert code == 0, err
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            assert con.execute("SELECT count(*) FROM job").fetchone() == (0,)
