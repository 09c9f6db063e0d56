"""A Balsam 0.7 user's command-line habits (balsam/cmdline/job.py, app.py, site.py), typed
as Balsam documents them, on a real site through the real `balsam` command.

The 24 habits of issue 22, one test each (test_habit_NN); `--site NAME|all` and the
refusals are in test_cli_sites.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from balsam_mp import api
from balsam_mp.api import Job
from tests.sitemoves import stage


def balsam(site, *args: str, stdin: str | None = None, cwd: Path | None = None,
           env: dict | None = None) -> subprocess.CompletedProcess:
    env = env or dict(os.environ, BALSAM_SITE_PATH=str(site.site_path))
    return subprocess.run([sys.executable, "-m", "balsam_mp", *args], env=env, cwd=cwd,
                          input=stdin, capture_output=True, text=True, timeout=60)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def listed(site, *args: str) -> list[dict]:
    return json.loads(ok(balsam(site, "job", "ls", "--format", "json", *args)))


def make(site, count: int = 3) -> list[int]:
    """Jobs e/0.. tagged n=<i> and run=even|odd."""
    return [j.id for j in Job.objects.bulk_create([
        Job(workdir=f"e/{n}", app="MySim", tags={"n": str(n), "run": "odd" if n % 2 else "even"},
            transfers={"input_file": f"laptop:/in/{n}"}) for n in range(count)])]


# --- job create ----------------------------------------------------------------------

def test_habit_01_create_with_workdir_app_and_stage_data(site):
    out = ok(balsam(site, "job", "create", "-w", "test/1", "-a", "MySim",
                    "-s", "input_file=laptop:/data/in.dat", "-s", "result=laptop:/data/out.dat"))
    assert out.split()[-4:] == ["1", "MySim", "test/1", "READY"]
    assert Job.objects.get(id=1).transfers == {"input_file": "laptop:/data/in.dat",
                                               "result": "laptop:/data/out.dat"}


def test_habit_02_create_names_the_app_by_id(site):
    app_id = api.App.objects.get(name="MySim").id
    ok(balsam(site, "job", "create", "-w", "a/1", "-a", str(app_id), "--transfer",
              "input_file=laptop:/x"))
    assert Job.objects.get(workdir="a/1").app_id == app_id


def test_habit_03_create_names_the_app_as_module_class(site):
    ok(balsam(site, "job", "create", "-w", "a/2", "-a", "example.MySim", "-s",
              "input_file=laptop:/x"))
    assert Job.objects.get(workdir="a/2").app == "MySim"


def test_habit_04_create_with_tags(site):
    ok(balsam(site, "job", "create", "-w", "a/3", "-a", "MySim", "-s", "input_file=laptop:/x",
              "--tag", "experiment=XPCS", "-tag", "system=H2O"))
    assert Job.objects.get(workdir="a/3").tags == {"experiment": "XPCS", "system": "H2O"}


def test_habit_05_create_with_parameters(site):
    ok(balsam(site, "job", "create", "-w", "a/4", "-a", "MySim", "-s", "input_file=laptop:/x",
              "-p", "name=world!", "--param", "count=3"))
    assert Job.objects.get(workdir="a/4").parameters == {"name": "world!", "count": "3"}


def test_habit_06_create_with_yes(site):
    done = balsam(site, "job", "create", "-w", "a/5", "-a", "MySim", "-s",
                  "input_file=laptop:/x", "-y", stdin="")  # never asks, whatever stdin
    assert ok(done) and done.stderr == "" and Job.objects.filter(workdir="a/5").exists()


def test_habit_07_create_with_launcher_options_warns_once_and_creates(site):
    done = balsam(site, "job", "create", "-w", "a/6", "-a", "MySim", "-s",
                  "input_file=laptop:/x", "-n", "2", "-rpn", "4", "-tpr", "2", "-tpc", "1",
                  "-g", "0.5", "-npc", "2", "-lp", "cpu-bind=depth", "-t", "30", "-pid", "1",
                  "--format", "json")
    assert json.loads(ok(done))[0]["workdir"] == "a/6"  # stdout stays JSON
    assert done.stderr.splitlines() == [
        "warning: -n, -rpn, -tpr, -tpc, -g, -npc, -lp, -t, -pid ignored: this site stages "
        "files and runs no apps (Balsam's launcher options have no effect here)"]


# --- job ls --------------------------------------------------------------------------

def test_habit_08_ls_by_tag(site):
    make(site)
    assert [j["workdir"] for j in listed(site, "-t", "run=even")] == ["e/0", "e/2"]
    assert [j["workdir"] for j in listed(site, "--tag", "run=even", "--tag", "n=2")] == ["e/2"]


def test_habit_09_ls_by_state(site):
    ids = make(site)
    stage("in")
    Job.objects.filter(id=ids[0]).update(state="RUNNING")
    assert [j["id"] for j in listed(site, "-s", "RUNNING")] == [ids[0]]
    assert len(listed(site, "--state", "STAGED_IN")) == 2


def test_habit_10_ls_excluding_a_state(site):
    ids = make(site)
    stage("in")
    Job.objects.filter(id=ids[0]).update(state="FAILED")
    assert [j["id"] for j in listed(site, "-ns", "FAILED")] == ids[1:]
    assert [j["id"] for j in listed(site, "--exclude-state", "STAGED_IN")] == ids[:1]


def test_habit_11_ls_one_id(site):
    ids = make(site)
    assert [j["id"] for j in listed(site, "--id", str(ids[1]))] == [ids[1]]
    assert listed(site, "--id", "999") == []  # as in Balsam: no such job lists nothing


def test_habit_12_ls_by_workdir_fragment(site):
    make(site)
    assert [j["workdir"] for j in listed(site, "-w", "/1")] == ["e/1"]
    assert len(listed(site, "--workdir", "e/")) == 3


def test_habit_13_ls_by_app(site):
    make(site)
    assert len(listed(site, "-a", "MySim")) == 3
    assert len(listed(site, "--app", str(api.App.objects.get(name="MySim").id))) == 3


def test_habit_14_ls_counts_by_state(site):
    ids = make(site)
    stage("in")
    Job.objects.filter(id=ids[0]).update(state="FAILED")
    out = ok(balsam(site, "job", "ls", "--by-state"))
    assert out.split() == ["state", "count", "STAGED_IN", "2", "FAILED", "1"]
    every = json.loads(ok(balsam(site, "job", "ls", "--by-state", "-v", "--format", "json")))
    assert len(every) == 14 and {"site": "site", "state": "READY", "count": 0} in every


def test_habit_15_ls_verbose(site):
    make(site, 1)
    out = ok(balsam(site, "job", "ls", "-v"))
    for line in ("workdir: e/0", 'tags: {"n": "0", "run": "even"}', "parameters: {}",
                 'transfers: {"input_file": "laptop:/in/0"}', "---"):
        assert line in out.splitlines()
    assert "created_at" in listed(site, "--verbose")[0]


# --- job modify ----------------------------------------------------------------------

def test_habit_16_modify_by_ids(site):
    ids = make(site)
    stage("in")
    out = ok(balsam(site, "job", "modify", "--id", str(ids[0]), "-i", str(ids[2]),
                    "-s", "RUN_DONE"))
    assert out.splitlines() == [f"job {ids[0]}: RUN_DONE", f"job {ids[2]}: RUN_DONE"]
    assert ok(balsam(site, "job", "modify", str(ids[1]), "-s", "RUNNING"))  # positional too


def test_habit_17_modify_by_tag(site):
    make(site)
    stage("in")
    ok(balsam(site, "job", "modify", "-t", "run=even", "-s", "FAILED"))
    assert [j.state for j in Job.objects.order_by("id")] == ["FAILED", "STAGED_IN", "FAILED"]


# --- job rm --------------------------------------------------------------------------

def test_habit_18_rm_by_id_asks_first(site):
    ids = make(site)
    refused = balsam(site, "job", "rm", "-i", str(ids[0]), stdin="n\n")
    assert refused.returncode == 1 and "not confirmed: nothing deleted" in refused.stderr
    closed = balsam(site, "job", "rm", "--id", str(ids[0]))  # stdin at its end: no answer
    assert closed.returncode == 1 and "pass -y" in closed.stderr.splitlines()[-1]
    assert Job.objects.count() == 3
    done = balsam(site, "job", "rm", "-i", str(ids[0]), "-i", str(ids[1]), stdin="y\n")
    assert ok(done).strip() == "deleted 2 job(s)"
    assert f"Really delete 2 job(s) (site site: {ids[0]}, {ids[1]})?" in done.stderr
    assert [j.id for j in Job.objects.all()] == ids[2:]


def test_habit_19_rm_by_tag_and_state(site):
    ids = make(site, 4)
    stage("in")
    Job.objects.filter(id=ids[0]).update(state="FAILED")
    assert ok(balsam(site, "job", "rm", "-t", "run=even", "-s", "FAILED", "-y")).strip() == \
        "deleted 1 job(s)"
    assert ok(balsam(site, "job", "rm", "--tag", "run=odd", "-ns", "FAILED", "-y")).strip() \
        == "deleted 2 job(s)"
    assert [j.id for j in Job.objects.all()] == [ids[2]]
    assert ok(balsam(site, "job", "rm", "--state", "FAILED", "-y")).strip() == \
        "no job matches: nothing deleted"


def test_habit_20_rm_all(site):
    make(site)
    assert ok(balsam(site, "job", "rm", "--all", "-y")).strip() == "deleted 3 job(s)"
    assert Job.objects.count() == 0


# --- app, site -----------------------------------------------------------------------

def test_habit_21_app_ls(site):
    assert "MySim" in ok(balsam(site, "app", "ls"))
    assert "MySim" in ok(balsam(site, "app", "ls", "-v"))


def test_habit_22_app_rm_by_name(site):
    api.App.objects.get(name="MySim")
    ok(balsam(site, "app", "rm", "-n", "MySim"))
    assert not api.App.objects.filter(name="MySim").exists()


def test_habit_23_site_ls(site):
    make(site, 2)
    rows = json.loads(ok(balsam(site, "site", "ls", "--format", "json")))
    assert rows == [{"name": "site", "path": str(site.site_path), "active": False,
                     "jobs": 2, "database": str(site.database)}]
    assert ok(balsam(site, "site", "ls")).split()[:8] == [
        "name", "path", "active", "jobs", "site", str(site.site_path), "no", "2"]


def test_habit_24_site_init_with_a_name(site, tmp_path):
    out = ok(balsam(site, "site", "init", str(tmp_path / "cori"), "-n", "my-cori-site"))
    assert out.startswith(f"created site 'my-cori-site' at {tmp_path / 'cori'}")
