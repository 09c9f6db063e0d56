"""The command line's rules: where --site is read, --version, tags with any key, and a
broken settings.yml that never locks a running site on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from balsam_mp import api, settings
from balsam_mp.errors import BalsamError
from balsam_mp.site import pidfile, service
from balsam_mp.site.layout import init_site
from tests.conftest import REMOTE_EP, wait_for
from tests.test_login import balsam as login_balsam
from tests.test_login import globus_site  # noqa: F401 - a fixture


def balsam(*args: str, env_site: Path | None = None, cwd: Path | None = None):
    env = {k: v for k, v in os.environ.items() if k != "BALSAM_SITE_PATH"}
    if env_site is not None:
        env["BALSAM_SITE_PATH"] = str(env_site)
    return subprocess.run([sys.executable, "-m", "balsam_mp", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def make_site(path: Path, job: str | None = None) -> Path:
    site = init_site(path).site_path
    api.use_site(site)
    api.App.sync()
    if job:
        api.Job.objects.create(app="MySim", workdir=job, transfers={"input_file": "laptop:/a"})
    return site


def workdirs(result) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [j["workdir"] for j in json.loads(result.stdout)]


def test_site_after_any_subcommand_wins_over_the_environment(tmp_path):
    a, b = make_site(tmp_path / "a", "job-of-a"), make_site(tmp_path / "b", "job-of-b")
    ls = ("job", "ls", "--format", "json")
    assert workdirs(balsam(*ls, "--site", str(b), env_site=a)) == ["job-of-b"]
    assert workdirs(balsam(*ls, "--site", str(b), cwd=tmp_path)) == ["job-of-b"]
    assert workdirs(balsam("--site", str(a), *ls, "--site", str(b))) == ["job-of-b"]
    assert workdirs(balsam("--site", str(b), *ls, env_site=a)) == ["job-of-b"]
    assert workdirs(balsam(*ls, env_site=a)) == ["job-of-a"]
    made = balsam("job", "create", "--app", "MySim", "--workdir", "w2", "-s",
                  "input_file=laptop:/x", "--site", str(b), env_site=a)
    assert made.returncode == 0, made.stderr
    assert (b / "data" / "w2").is_dir() and not (a / "data" / "w2").exists()


def test_version():
    result = balsam("--version")
    assert result.returncode == 0 and result.stdout.strip() == "balsam, version 0.1.0"


@pytest.mark.parametrize("key", ['say "hi"', "a.b", "x[0]", "$", "", "ü \\ '"])
def test_tag_filter_matches_any_key(tmp_path, key):
    site = make_site(tmp_path / "s")
    for n, value in enumerate(("v", "w")):
        api.Job.objects.create(app="MySim", workdir=f"j{n}", tags={key: value, "k": "v"},
                               transfers={"input_file": "laptop:/a"})
    assert [str(j.workdir) for j in api.Job.objects.filter(tags={key: "v"})] == ["j0"]
    assert [str(j.workdir) for j in api.Job.objects.filter(tags={key: "w", "k": "v"})] == ["j1"]
    assert api.Job.objects.filter(tags={key: "nope"}).count() == 0
    if key:  # KEY=VALUE needs a key on the command line
        listed = balsam("job", "ls", "--format", "json", "--tag", f"{key}=w", env_site=site)
        assert workdirs(listed) == ["j1"]


@pytest.fixture
def running_site(tmp_path):
    """A site started with `balsam site start`; whatever it started is stopped after."""
    site = make_site(tmp_path / "site")
    started = balsam("site", "start", env_site=site)
    assert started.returncode == 0, started.stderr
    info = pidfile.read(site)
    yield site
    for pid in [info.pid, *(info.workers or {}).values()]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_broken_settings_file_does_not_lock_a_running_site_on(running_site, tmp_path):
    site = running_site
    supervisor = pidfile.read(site).pid
    good = (site / "settings.yml").read_text()
    (site / "settings.yml").write_text(good + "site_name: twice\nsite_name: again\n")
    assert balsam("job", "ls", env_site=site).returncode == 1  # really broken

    status = balsam("site", "status", "--format", "json", env_site=site)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["running"] and report["pid"] == supervisor
    assert "given twice" in report["settings_error"]
    assert f"using the default database {site / 'site.db'}" in report["action_required"]
    text = balsam("site", "status", env_site=site)
    assert "ACTION REQUIRED: fix settings.yml" in text.stdout and "running" in text.stdout

    stopped = balsam("site", "stop", "--site", str(site))
    assert stopped.returncode == 0, stopped.stderr
    assert not psutil.pid_exists(supervisor) or \
        psutil.Process(supervisor).status() == psutil.STATUS_ZOMBIE
    assert "not running" in balsam("site", "status", env_site=site).stdout


def test_status_reads_database_path_from_a_broken_file(tmp_path):
    site = make_site(tmp_path / "site", "w1")
    moved = tmp_path / "elsewhere.db"
    api.close()  # the last connection folds the WAL into site.db
    os.rename(site / "site.db", moved)
    (site / "settings.yml").write_text(f"database_path: {moved}\ntransfers: {{bogus: 1}}\n")
    report = json.loads(balsam("site", "status", "--format", "json", env_site=site).stdout)
    assert f"using database_path {moved} from it" in report["settings_error"]
    assert report["items"] == [{"direction": "in", "state": "pending", "count": 1}]


BALSAM_RENDERED = """
site_id: 12
transfers:
    transfer_locations:
        laptop: local://
        remote: globus://{remote}
    globus_endpoint_id: null
    service_period: 0.2
"""


def test_globus_aliases_without_endpoint_id_wait_and_say_which_key_to_set(running_site,
                                                                         tmp_path):
    site = running_site
    (site / "settings.yml").write_text(BALSAM_RENDERED.format(remote=REMOTE_EP))
    synced = balsam("site", "sync", env_site=site)
    assert synced.returncode == 0, synced.stderr
    source = tmp_path / "in.dat"
    source.write_text("local input")
    api.use_site(site)
    local = api.Job.objects.create(app="MySim", workdir="local",
                                   transfers={"input_file": f"laptop:{source}"})
    remote = api.Job.objects.create(app="MySim", workdir="remote",
                                    transfers={"input_file": "remote:/in.dat"})
    wait_for(lambda: api.Job.objects.get(id=local.id).state == "STAGED_IN", timeout=30,
             what="the local job to stage in")
    assert (site / "data" / "local" / "input.dat").read_text() == "local input"
    assert api.Job.objects.get(id=remote.id).state == "READY"
    assert api.TransferItem.objects.get(job_id=remote.id).state == "pending"
    report = json.loads(balsam("site", "status", "--format", "json", env_site=site).stdout)
    assert report["running"] and report["waiting_for_endpoint_id"] == {"remote": 1}
    assert "set transfers.globus_endpoint_id" in report["action_required"]
    assert "'remote' (1 item)" in report["action_required"]


def test_sync_refuses_what_start_refuses(tmp_path, monkeypatch):
    """The database on NFS: `site start` refuses it, so `site sync` does too."""
    site = make_site(tmp_path / "site")
    real = psutil.disk_partitions

    def with_nfs(all: bool = False):  # noqa: A002 - psutil's own keyword
        return [*real(all), SimpleNamespace(mountpoint=str(site), fstype="nfs4")]

    monkeypatch.setattr(psutil, "disk_partitions", with_nfs)
    for call in (lambda: service.sync(site), lambda: service.start(settings.load(site))):
        with pytest.raises(BalsamError, match="nfs4 file system"):
            call()


@pytest.mark.parametrize("code", ["not-the-code", ""])
def test_a_wrong_login_code_is_one_error(globus_site, emulator, code):  # noqa: F811
    login = login_balsam(globus_site, "site", "globus-login", stdin=subprocess.PIPE)
    next(line for line in login.stdout if line.startswith("http://127.0.0.1"))
    _, err = login.communicate(code + "\n" if code else "", timeout=60)
    assert login.returncode == 1 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert ("Globus refused the login" if code else "no authorization code") in err
