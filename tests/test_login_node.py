"""A site on a login node shared with hundreds of users: private whatever the umask,
shared with a group on request, copies that keep their modes as `cp`, a site that halts
when its database is swapped under it, and deaths each counted."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import stat
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from balsam_mp import api, states
from balsam_mp.db.models import LogEvent
from balsam_mp.errors import BalsamError, ValidationError
from balsam_mp.permissions import MODES
from balsam_mp.site import pidfile, service, worker
from balsam_mp.site.layout import init_site
from balsam_mp.transfer.filecopy import copy_atomic
from tests.conftest import wait_for
from tests.hostile_env import (
    as_user,
    balsam_as_nobody,
    nobody_ids,
    open_folder,
)
from tests.localsite import LocalSite


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def local_site(tmp_path):
    sites = []

    def make(base: Path | None = None, transfers: str = "") -> LocalSite:
        sites.append(LocalSite(base or tmp_path, transfers))
        return sites[-1]
    yield make
    for site in sites:
        site.close()


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_a_site_is_private_whatever_the_umask(local_site, mask):
    with umask(mask):
        kit = local_site()
        kit.balsam("site", "start")
        ids = kit.make_jobs(3)
        kit.wait_jobs(ids, states.STAGED_IN)
    site = kit.site
    assert mode(site) == 0o700
    folders = [site / name for name in ("apps", "data", "logs", ".run", "local_tasks")]
    assert {p.name: oct(mode(p)) for p in folders} == {p.name: "0o700" for p in folders}
    files = [site / "settings.yml", site / "site.db", site / "site.db-wal",
             site / "site.db-shm", site / "site.pid", *(site / "logs").iterdir(),
             *(site / ".run").iterdir(), *(site / "apps").glob("*.py")]
    assert {str(p): oct(mode(p)) for p in files} == {str(p): "0o600" for p in files}
    assert (site / ".run" / "supervisor.lock") in files and (site / "logs" / "poller.log") \
        in files and (site / "logs" / "supervisor.out") in files


def test_no_other_user_can_open_the_lock_even_in_an_opened_folder(local_site):
    """The issue's attack: another user opens the lock read-only and flocks it, and
    `site start --if-not-running` from cron then fails. Even with the folders opened
    (an owner's chmod), the lock file itself lets no one else in."""
    with open_folder() as base:
        kit = local_site(base)
        kit.balsam("site", "stop", check=False)
        for folder in (kit.site, kit.site / ".run"):
            folder.mkdir(exist_ok=True)
            folder.chmod(0o755)
        kit.balsam("site", "start")
        lock = kit.site / ".run" / "supervisor.lock"
        assert mode(lock) == 0o600

        def take_the_lock() -> object:
            try:
                os.open(lock, os.O_RDONLY)
            except PermissionError as exc:
                return f"refused: {exc.strerror}"
            return "opened"
        result, _ = as_user(take_the_lock, *nobody_ids())
        assert result == "refused: Permission denied"
        assert kit.balsam("site", "start", "--if-not-running").returncode == 0


def test_a_group_site_lets_its_group_read_and_no_one_else(tmp_path):
    """`site_permissions: group` on a site chgrp'ed to the team: a member reads it while
    it runs (SQLite needs the -wal and -shm files the running site keeps; only the owner
    may make them); a user outside the group gets one clear refusal."""
    uid, gid = nobody_ids()
    team = 4242  # the team's group
    with open_folder() as base:
        site = init_site(base / "site").site_path
        settings = site / "settings.yml"
        settings.write_text(settings.read_text().replace("site_permissions: private",
                                                         "site_permissions: group"))
        for root, dirs, files in os.walk(site):  # chgrp -R team SITE
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.lchown(name, -1, team)
        outsider, _ = as_user(lambda: _jobs(site), uid, gid, (team,))
        assert "permission denied: the site is private" in str(outsider), outsider
        service.sync(site)  # the owner's `balsam site sync` gives the setting's modes
        api.close()
        modes = MODES["group"]
        assert mode(site) == modes.folder == mode(site / "logs") == mode(site / "data")
        assert mode(site / "settings.yml") == modes.file == mode(site / "site.db")
        stopped, _ = as_user(lambda: _jobs(site), uid, gid, (team,))
        assert "site.db: permission denied (read-only for this user)" in str(stopped)
        with sqlite3.connect(site / "site.db") as running:  # as the running site does
            running.execute("SELECT count(*) FROM job").fetchone()
            member, _ = as_user(lambda: _jobs(site), uid, gid, (team,))
            assert member == {"jobs": 0}, member
            outsider, _ = as_user(lambda: _jobs(site), uid, gid)
            assert "permission denied: the site is private" in str(outsider), outsider
            code, err = balsam_as_nobody("--site", str(site), "job", "ls")
            assert code != 0 and f"'{site}' is not readable" in err, err  # click's check
            assert len(err.splitlines()) == 1, err


def _jobs(site: Path) -> object:
    try:
        api.use_site(site)
        return {"jobs": api.Job.objects.count()}
    except (BalsamError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def test_site_status_warns_of_modes_wider_than_the_setting(local_site):
    kit = local_site()
    (kit.site / "settings.yml").chmod(0o644)
    kit.site.chmod(0o755)
    report = json.loads(kit.balsam("site", "status", "--format", "json").stdout)
    action = report["action_required"]
    assert "more users may read the site than site_permissions: private allows" in action
    assert f"{kit.site} (0755)" in action and "settings.yml (0644)" in action
    kit.balsam("site", "sync")
    report = json.loads(kit.balsam("site", "status", "--format", "json").stdout)
    assert not report["action_required"]
    assert mode(kit.site) == 0o700 and mode(kit.site / "settings.yml") == 0o600


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_local_copies_keep_the_source_mode_masked_by_the_umask_like_cp(local_site, mask):
    kit = local_site(transfers="")
    tree = kit.root / "in" / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin").chmod(0o751)
    files = {"secret.dat": 0o600, "run.sh": 0o755, "shared.dat": 0o664, "bin/tool": 0o750}
    for name, bits in files.items():
        (tree / name).write_text(name)
        (tree / name).chmod(bits)
    specs = [{"app": "MySim", "workdir": f"m/{name}",
              "transfers": {"input_file": f"laptop:/in/tree/{name}"}}
             for name in ("secret.dat", "run.sh", "shared.dat")]
    with umask(mask):
        ids = [job.id for job in api.Job.objects.bulk_create(specs)]
        kit.balsam("site", "start")
        kit.wait_jobs(ids, states.STAGED_IN)
    for name in ("secret.dat", "run.sh", "shared.dat"):
        assert mode(kit.site / "data" / "m" / name / "input.dat") == files[name] & ~mask
    # a folder copy (recursive), through the same copy: folders as `cp -r` (owner rwx kept)
    dst = kit.site / "data" / "copy"
    with umask(mask):
        for name in ("bin/tool", "run.sh"):
            copy_atomic(tree / name, dst / name, "t", keep_mode=True)
    assert mode(dst / "bin") == (0o751 & ~mask) | 0o700
    assert mode(dst / "bin" / "tool") == 0o750 & ~mask


@pytest.mark.parametrize("mask", [0o002, 0o022, 0o077])
def test_the_emulator_like_globus_gives_the_destination_default(tmp_path, mask):
    """Globus keeps no permissions: a file gets the destination's default mode."""
    src = tmp_path / "src"
    src.write_text("x")
    src.chmod(0o700)
    with umask(mask):
        copy_atomic(src, tmp_path / "out" / "dst", "t")
    assert mode(tmp_path / "out" / "dst") == 0o666 & ~mask
    assert mode(tmp_path / "out") == 0o777 & ~mask


@pytest.mark.parametrize("workdir", ["a\nb", "a\x01b", "tab\there", "del\x7f", "c1\x85x",
                                     "esc\x1b[31m"])
def test_workdirs_with_control_characters_are_refused(local_site, workdir):
    kit = local_site()
    with pytest.raises(ValidationError, match="contains the control character"):
        api.Job.objects.create(app="MySim", workdir=workdir, transfers={})
    result = kit.balsam("job", "create", "--app", "MySim", "--workdir", workdir,
                        check=False)
    assert result.returncode == 1 and "control character" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list((kit.site / "data").iterdir()) == []


@pytest.mark.parametrize("name", ["", "bad name!", "a\x01b", "x" * 65, "-lead", "é",
                                  "a/b", ".hidden"])
def test_site_names_follow_one_rule(tmp_path, name):
    with pytest.raises(BalsamError, match="must be 1 to 64 characters"):
        init_site(tmp_path / "site", name)
    assert not (tmp_path / "site").exists()
    good = init_site(tmp_path / "ok", "theta-gpu_2.v1").site_path
    settings = good / "settings.yml"
    settings.write_text(settings.read_text().replace('"theta-gpu_2.v1"', json.dumps(name)))
    with pytest.raises(BalsamError, match="site_name: site name .* must be 1 to 64"):
        api.use_site(good)
        api.Job.objects.count()
    api.close()


def test_site_init_makes_missing_parent_folders_and_keeps_the_site_private(tmp_path):
    with umask(0o022):
        site = init_site(tmp_path / "sites" / "polaris").site_path
    assert (site / "settings.yml").is_file() and mode(site) == 0o700
    assert list((tmp_path / "sites").iterdir()) == [site]  # no staging folder left


def test_worker_sleep_reads_the_clock_once_per_decision(monkeypatch):
    """The race the issue saw: the deadline check passed, the second clock read was past
    the deadline, and time.sleep got a negative length. A clock that moves 1 ms per
    read replays it every time."""
    readings = iter(x * 0.001 for x in range(10_000))
    naps = []
    fake = types.SimpleNamespace(monotonic=lambda: next(readings), sleep=naps.append)
    monkeypatch.setattr(worker, "time", fake)
    sleeper = worker.Worker.__new__(worker.Worker)
    sleeper.stopping, sleeper.parent_pid = False, os.getppid()
    sleeper.sleep(0.0025)  # deadline 2.5 ms: checked at 1 ms, 2 ms, then 3 ms is past it
    assert naps and all(n >= 0 for n in naps), naps


def test_every_worker_death_is_its_own_event(local_site):
    """Two deaths with the same message are two rows (the event log skips a repeated
    ACTION_REQUIRED, never a death)."""
    kit = local_site()
    kit.balsam("site", "start")

    def poller_pid() -> int | None:
        info = pidfile.read(kit.site)
        return (info.workers or {}).get("poller") if info else None

    def deaths() -> list:
        return list(LogEvent.select().where(LogEvent.to_state == "WORKER_DIED"))

    killed: list[int] = []
    for count in (1, 2):
        pid = wait_for(lambda: poller_pid() not in (None, *killed) and poller_pid(),
                       what="a running poller")
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        wait_for(lambda n=count: len(deaths()) >= n, what=f"death {count} in the event log")
    assert [row.message for row in deaths()] == ["poller was killed by SIGKILL"] * 2
