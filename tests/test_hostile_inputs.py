"""What a hostile probe of the merged product found, each pinned by a test: inputs that
used to be silently wrong, or a traceback, and are now one clear error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from balsam_mp import api, settings
from balsam_mp.errors import SettingsError, ValidationError
from balsam_mp.site import pidfile
from balsam_mp.site.layout import init_site

IN = {"input_file": "laptop:/in.dat"}


def balsam(site, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, BALSAM_SITE_PATH=str(site))
    return subprocess.run([sys.executable, "-m", "balsam_mp", *args], env=env,
                           capture_output=True, text=True, timeout=60)


def one_error_line(result: subprocess.CompletedProcess, words: str) -> None:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


def test_a_workdir_through_a_symlink_inside_data_is_refused(site):
    api.Job.objects.create(app="MySim", workdir="a/1", transfers=IN)
    (site.data_path / "b").symlink_to("a")  # b/1 would be a/1: two jobs in one folder
    with pytest.raises(ValidationError, match="passes through a symlink inside SITE/data"):
        api.Job.objects.create(app="MySim", workdir="b/1", transfers=IN)
    assert [str(j.workdir) for j in api.Job.objects.all()] == ["a/1"]


@pytest.mark.engines
def test_workdir_contains_is_case_sensitive_so_delete_takes_only_what_matches(site):
    for workdir in ("Run1/a", "run1/a"):
        api.Job.objects.create(app="MySim", workdir=workdir, transfers=IN)
    matching = api.Job.objects.filter(workdir__contains="Run1/")
    assert [str(j.workdir) for j in matching] == ["Run1/a"]
    assert matching.delete() == 1
    assert [str(j.workdir) for j in api.Job.objects.all()] == ["run1/a"]


@pytest.mark.engines
def test_text_that_is_not_utf8_is_refused_in_tags_and_filters(site):
    with pytest.raises(ValidationError, match="is not valid UTF-8"):
        api.Job.objects.create(app="MySim", workdir="w", transfers=IN, tags={"a\udcff": "b"})
    with pytest.raises(ValidationError, match="is not valid UTF-8"):
        api.Job.objects.filter(tags={"k": "\udcff"}).count()
    with pytest.raises(ValidationError, match="is not valid UTF-8"):
        api.Job.objects.filter(state="\udcff").count()
    assert api.Job.objects.count() == 0
    listed = balsam(site.site_path, "job", "ls", "--tag", os.fsdecode(b"k=\xff"))
    one_error_line(listed, "is not valid UTF-8")


@pytest.mark.engines
def test_ids_beyond_the_database_are_no_ids(site):
    with pytest.raises(ValidationError, match="beyond the database's integers"):
        api.Job.objects.filter(id=2**70).count()
    huge = str(10**23)
    for args in (("job", "rm", huge), ("job", "modify", huge, "--state", "FAILED"),
                 ("transfer", "retry", huge), ("transfer", "ls", "--job", huge)):
        one_error_line(balsam(site.site_path, *args), "is not an id")


@pytest.mark.parametrize("section, words", [
    ('format: "%(nonexistent)s"', "cannot format a log line"),
    ('format: "%(message)d"', "cannot format a log line"),
    ("backup_count: 30000000", "from 1 to 1000"),
    ("backup_count: 0", "never rotates"),
    ("max_bytes: 100", "from 1024 to"),
])
def test_logging_values_that_would_fail_later_are_refused_now(tmp_path, section, words):
    site = init_site(tmp_path / "site").site_path
    text = (site / "settings.yml").read_text()
    start, end = text.index("logging:"), text.index("transfers:")
    text = text[:start] + f"logging:\n  {section}\n\n" + text[end:]
    (site / "settings.yml").write_text(text)
    with pytest.raises(SettingsError, match=words):
        settings.load(site)
    one_error_line(balsam(site, "site", "sync"), words)


def test_status_and_start_agree_on_a_pidfile_of_another_host_or_a_damaged_one(site):
    path = pidfile.path_of(site.site_path)
    path.write_text(json.dumps({"host": "othernode", "pid": 4242, "create_time": 1.0}))
    status = balsam(site.site_path, "site", "status")
    assert "running on host othernode (pid 4242)" in status.stdout
    one_error_line(balsam(site.site_path, "site", "start"), "running on host othernode")
    assert json.loads(path.read_text())["host"] == "othernode"  # not ours to remove

    path.write_text('{"host": "' + socket.gethostname() + '", "pi')  # cut short
    report = json.loads(balsam(site.site_path, "site", "status", "--format", "json").stdout)
    assert "is damaged" in report["action_required"] and not report["running"]
    stopped = balsam(site.site_path, "site", "stop")
    assert "removed a damaged pidfile" in stopped.stdout and not path.exists()


def test_start_if_not_running_stays_quiet_while_settings_are_broken(running_site):
    settings_file = running_site.site_path / "settings.yml"
    settings_file.write_text(settings_file.read_text() + "\n  broken: [\n")
    again = balsam(running_site.site_path, "site", "start", "--if-not-running")
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    status = balsam(running_site.site_path, "site", "status")
    assert status.returncode == 0 and "running (pid" in status.stdout
    assert "fix settings.yml" in status.stdout


def test_app_sync_ignores_aliases_and_forgets_apps_no_job_uses(site):
    apps = site.apps_path
    (apps / "extra.py").write_text(
        "from balsam_mp.api import ApplicationDefinition\n\n\n"
        "class Gone(ApplicationDefinition):\n    transfers = {}\n\n\n"
        "class Used(ApplicationDefinition):\n    transfers = {}\n\n\nAlias = Used\n")
    assert api.App.sync() == ["Gone", "MySim", "Used"]  # Alias is Used, not a fourth app
    api.Job.objects.create(app="Used", workdir="uses-it")
    (apps / "extra.py").unlink()
    assert api.App.sync() == ["MySim"]
    assert sorted(a.name for a in api.App.objects.all()) == ["MySim", "Used"]  # a job needs it
