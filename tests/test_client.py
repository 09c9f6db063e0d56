"""Clients without the site directory: jobs created from another process through the
database alone (api.use_database, $BALSAM_DATABASE_URL + $BALSAM_SITE_NAME, the CLI's
--database-url/--site-name); the site makes their workdirs before staging them in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from balsam_mp import api, states
from balsam_mp.errors import BalsamError, ValidationError

pytestmark = pytest.mark.parametrize("engine", ["postgres"], indirect=True)

CLIENT = """
import json, sys
from balsam_mp import api
api.use_database(sys.argv[1], site=sys.argv[2])
jobs = api.Job.objects.bulk_create(json.loads(sys.argv[3]))
print(json.dumps([job.id for job in jobs]))
"""


def client_env(kit, tmp_path) -> dict:
    """A machine without the site: no site path, another home, another cwd."""
    env = {k: v for k, v in kit.env.items() if k != "BALSAM_SITE_PATH"}
    return dict(env, HOME=str(tmp_path / "client-home"))


def specs(names: list[str]) -> list[dict]:
    return [{"app": "MySim", "workdir": name,
             "transfers": {"input_file": f"remote:/in/{name.replace('/', '_')}.dat"}}
            for name in names]


def test_a_client_creates_jobs_the_site_stages_into_folders_it_makes(sitekit, tmp_path,
                                                                     database_url):
    kit = sitekit()
    (kit.remote / "in").mkdir()
    names = [f"client/{n}" for n in range(5)] + ["blocked/1", "escape/1"]
    for name in names:
        (kit.remote / "in" / f"{name.replace('/', '_')}.dat").write_text(name)
    (kit.site / "data" / "blocked").write_text("a file where a folder should be")
    outside = tmp_path / "outside"
    outside.mkdir()
    (kit.site / "data" / "escape").symlink_to(outside)
    (tmp_path / "elsewhere").mkdir()
    created = subprocess.run([sys.executable, "-c", CLIENT, database_url, "site",
                              json.dumps(specs(names))], env=client_env(kit, tmp_path),
                             cwd=tmp_path / "elsewhere", capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    ids = json.loads(created.stdout)
    assert not (kit.site / "data" / "client").exists()  # the client made no folder
    kit.start()
    kit.wait_jobs(ids[:5], states.STAGED_IN)
    for n in range(5):
        assert (kit.site / "data" / "client" / str(n) / "input.dat").read_text() == \
            f"client/{n}"
    kit.wait_jobs(ids[5:], states.FAILED)
    blocked, escape = (api.Job.objects.get(id=i).state_data["failed_files"][0]["reason"]
                       for i in ids[5:])
    assert "cannot create the workdir folder" in blocked and "blocked/1" in blocked
    assert "leads out of SITE/data through a symlink" in escape
    assert list(outside.iterdir()) == []  # nothing was made or staged outside SITE/data


def test_a_client_checks_what_it_can_before_writing(sitekit, tmp_path, database_url,
                                                    monkeypatch):
    kit = sitekit()
    api.close()
    monkeypatch.delenv("BALSAM_SITE_PATH")
    with pytest.raises(BalsamError, match="no site 'other' in this database"):
        api.use_database(database_url, site="other")
    kit.start()  # the workers publish the site's settings
    site = api.use_database(database_url, site="site")
    assert site.client and site.site_path == kit.site
    for bad, message in [({"app": "Nope"}, "unknown app 'Nope'"),
                         ({"transfers": {"input_file": "mars:/x"}}, "location alias 'mars'"),
                         ({"workdir": "../up"}, "'..'")]:
        with pytest.raises(ValidationError, match=message):
            api.Job.objects.bulk_create([{**specs(["ok/1"])[0], **bad}])
    assert api.Job.objects.count() == 0
    with pytest.raises(BalsamError, match="apps are synced by the site"):
        api.App.sync()
    monkeypatch.setenv("BALSAM_DATABASE_URL", database_url)
    monkeypatch.setenv("BALSAM_SITE_NAME", "site")
    api.close()
    api.Job.objects.create(app="MySim", workdir="env/1",
                           transfers={"input_file": "remote:/in/x.dat"})
    assert [str(j.workdir) for j in api.Job.objects.all()] == ["env/1"]


def test_the_cli_of_a_client(sitekit, tmp_path, database_url):
    kit = sitekit()
    kit.start()
    env = client_env(kit, tmp_path)
    (tmp_path / "elsewhere").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "balsam_mp", "--database-url", database_url, "--site-name",
         "site", "job", "create", "--app", "MySim", "--workdir", "cli/1", "-s",
         "input_file=remote:/in/none.dat", "--format", "json"],
        env=env, cwd=tmp_path / "elsewhere", capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "balsam_mp", "job", "ls", "--format", "json"],
        env=dict(env, BALSAM_DATABASE_URL=database_url, BALSAM_SITE_NAME="site"),
        cwd=tmp_path / "elsewhere", capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert [row["workdir"] for row in json.loads(listed.stdout)] == ["cli/1"]
    status = subprocess.run(  # what the database says: no pidfile, no disk sizes here
        [sys.executable, "-m", "balsam_mp", "--site-name", "site", "site", "status",
         "--format", "json"],
        env=dict(env, BALSAM_DATABASE_URL=database_url), cwd=tmp_path / "elsewhere",
        capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["site"] == "site" and report["active"] is True and "sizes" not in report
    assert "globus_endpoint_id" not in (report["action_required"] or "")  # not published
    url_only = dict(env, BALSAM_DATABASE_URL=database_url)  # names no site: every site
    for command in (("site", "status"), ("job", "ls"), ("transfer", "ls")):
        listed = subprocess.run(
            [sys.executable, "-m", "balsam_mp", *command, "--all-sites", "--format", "json"],
            env=url_only, cwd=tmp_path / "elsewhere", capture_output=True, text=True)
        assert listed.returncode == 0, listed.stderr
        assert {row["site"] for row in json.loads(listed.stdout)} == {"site"}, command
    both = subprocess.run([sys.executable, "-m", "balsam_mp", "--site", str(kit.site),
                           "--site-name", "site", "job", "ls"], env=url_only,
                          capture_output=True, text=True)
    assert both.returncode == 1 and "give one" in both.stderr
    named_and_all = subprocess.run(
        [sys.executable, "-m", "balsam_mp", "--site-name", "site", "job", "ls", "--all-sites"],
        env=url_only, cwd=tmp_path / "elsewhere", capture_output=True, text=True)
    assert named_and_all.returncode == 1 and "give one" in named_and_all.stderr
    with pytest.raises(ValidationError, match="site must be a site's name, not 5"):
        api.use_database(database_url, site=5)
    # a client's environment in the site's own directory: site commands use the directory
    synced = subprocess.run([sys.executable, "-m", "balsam_mp", "site", "sync"],
                            env=dict(url_only, BALSAM_SITE_NAME="another"), cwd=kit.site,
                            capture_output=True, text=True)
    assert synced.returncode == 0 and "settings are valid" in synced.stdout, synced.stderr
    unnamed = subprocess.run([sys.executable, "-m", "balsam_mp", "job", "ls"], env=url_only,
                             cwd=tmp_path / "elsewhere", capture_output=True, text=True)
    assert unnamed.returncode == 1 and "name a site of $BALSAM_DATABASE_URL" in unnamed.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "balsam_mp", "--site-name", "site", "site", "stop"],
        env=dict(env, BALSAM_DATABASE_URL=database_url), cwd=tmp_path / "elsewhere",
        capture_output=True, text=True)
    assert refused.returncode != 0 and "no balsam site" in refused.stderr
    assert os.environ.get("BALSAM_SITE_NAME") is None


def test_a_site_name_without_a_database_is_one_clear_error(monkeypatch, engine):
    monkeypatch.delenv("BALSAM_DATABASE_URL", raising=False)
    with pytest.raises(BalsamError, match=r"named without a database: .*\$BALSAM_DATABASE_URL"):
        api.use_database(None, site="polaris")
