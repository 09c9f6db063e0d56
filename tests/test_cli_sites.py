"""Balsam's `--site NAME|all` selectors and `site ls` on both engines, and the refusals of
Balsam's flags: one line, a non-zero exit, nothing written (test_cli_balsam.py has the
habits themselves)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from balsam_mp import api
from balsam_mp.api import Job
from balsam_mp.api.site import database
from balsam_mp.site import lease
from balsam_mp.site.layout import init_site
from tests.sitemoves import stage
from tests.test_cli_balsam import balsam, listed, make, ok

# --- Balsam's --site selectors, on both engines ---------------------------------------

@pytest.mark.engines
def test_site_ls_and_site_selectors(site, database_url, tmp_path):
    make(site, 2)
    other = None
    if database_url:  # a second site in the same PostgreSQL database, with a job
        other = init_site(tmp_path / "other", "other", database_url=database_url)
        api.use_site(other.site_path)
        api.App.sync()
        make(other, 1)
        api.use_site(site.site_path)
    rows = json.loads(ok(balsam(site, "site", "ls", "--format", "json")))
    assert [(r["name"], r["path"], r["active"], r["jobs"]) for r in rows] == (
        [("site", str(site.site_path), False, 2)] if other is None else
        [("other", str(other.site_path), False, 1), ("site", str(site.site_path), False, 2)])
    everywhere = listed(site, "--site", "all")
    assert [(j["site"], j["workdir"]) for j in everywhere] == (
        [("site", "e/0"), ("site", "e/1")] if other is None else
        [("other", "e/0"), ("site", "e/0"), ("site", "e/1")])
    assert [j["workdir"] for j in listed(site, "--site", "site")] == ["e/0", "e/1"]
    if other is None:  # SQLite: a site holds only itself
        refused = balsam(site, "job", "ls", "--site", "other")
        assert refused.returncode == 1 and refused.stderr.strip() == (
            "Error: --site other: no folder and no site of that name (this site is 'site'; "
            "a SQLite site holds only itself)")
        return
    database().execute_sql(lease.ENSURE)  # this session takes the lease, as a holder does
    assert database().execute_sql(lease.TAKE, {"host": "login9", "pid": os.getpid(),
                                                   "ttl": lease.LEASE_SECONDS}).fetchone()
    rows = json.loads(ok(balsam(site, "site", "ls", "--format", "json")))
    assert [(r["name"], r["active"]) for r in rows] == [("other", False), ("site", True)]
    assert [(j["site"], j["workdir"]) for j in listed(site, "--site", "other")] == \
        [("other", "e/0")]
    assert len(listed(site, "--site", "other,site")) == 3
    ok(balsam(site, "job", "create", "--site", "other", "-w", "by-name", "-a", "MySim",
              "-s", "input_file=laptop:/x"))
    assert [j["workdir"] for j in listed(site, "--site", "other")] == ["e/0", "by-name"]
    missing = balsam(site, "job", "ls", "--site", "nowhere")
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert "--site nowhere: no folder of that name; as a site's name:" in missing.stderr


def test_a_folder_named_like_a_selector_is_a_folder(site, tmp_path):
    """`--site all` is Balsam's selector only where no folder of that name exists."""
    init_site(tmp_path / "all", "folder-site")
    rows = json.loads(ok(balsam(site, "--site", "all", "site", "ls", "--format", "json",
                                cwd=tmp_path)))
    assert [r["name"] for r in rows] == ["folder-site"]


# --- refusals: one line, non-zero exit, nothing written -------------------------------

@pytest.mark.parametrize("args, message", [
    (("job", "create", "-w", "x", "-a", "MySim", "-t", "input_file=laptop:/x"),
     "-t is Balsam's wall time in minutes; give a transfer with -s/--stage-data"),
    (("job", "create", "-w", "x", "-a", "Nope", "-s", "input_file=laptop:/x"),
     "--app: unknown app 'Nope': no app has that id or name (apps: 1 MySim (example.MySim))"),
    (("job", "create", "-w", "x", "-a", "MySim", "-s", "input_file=laptop:/x", "-p", "k"),
     "-p 'k': expected KEY=VALUE"),
    (("job", "create", "-w", "x", "-a", "MySim", "-s", "input_file=laptop:/x", "-n", "two"),
     "'two' is not a valid integer"),
    (("job", "create", "--site", "all", "-w", "x", "-a", "MySim", "-s", "input_file=laptop:/x"),
     "--site all names several sites; this command works on one"),
    (("job", "ls", "-s", "BOGUS"), "'BOGUS' is not a job state"),
    (("job", "ls", "--id", "x1"), "--id 'x1' is not an id"),
    (("job", "ls", "-a", "Nope"), "unknown app 'Nope'"),
    (("job", "modify", "-s", "FAILED"), "give the jobs to modify"),
    (("job", "modify", "-i", "1", "-i", "99", "-s", "FAILED"), "no job with id 99"),
    (("job", "modify", "-t", "run", "-s", "FAILED"), "--tag 'run': expected KEY=VALUE"),
    (("job", "rm", "-y"), "give the jobs to delete"),
    (("job", "rm", "--all", "-i", "1", "-y"), "--all deletes every job: give it alone"),
    (("job", "rm", "-ns", "nope", "-y"), "'nope' is not a job state"),
    (("job", "rm", "-i", "1", "-i", "99", "-y"), "no job with id 99"),
    (("site", "start", "--site", "nope"), "--site nope: no folder of that name"),
])
def test_refusals_are_one_line_and_change_nothing(site, args, message):
    make(site)
    result = balsam(site, *args)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert Job.objects.count() == 3 and not (site.data_path / "x").exists()
    assert {j.state for j in Job.objects.all()} == {"READY"}


def test_rm_deletes_only_the_jobs_it_asked_about(site):
    """A job that starts matching while the question waits is not deleted with them."""
    make(site, 2)
    env = dict(os.environ, BALSAM_SITE_PATH=str(site.site_path))
    proc = subprocess.Popen([sys.executable, "-m", "balsam_mp", "job", "rm", "-t", "run=even"],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        asked = b""
        while not asked.endswith(b"[y/N]: "):  # the prompt; read() would wait for EOF
            chunk = os.read(proc.stderr.fileno(), 1024)
            assert chunk, f"balsam exited before asking: {asked!r}"
            asked += chunk
        late = Job.objects.create(workdir="late", app="MySim", tags={"run": "even"},
                                  transfers={"input_file": "laptop:/late"})
        out, _ = proc.communicate(b"y\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and out.decode().strip() == "deleted 1 job(s)"
    assert [j.workdir.as_posix() for j in Job.objects.all()] == ["e/1", "late"]
    assert late.id in [j.id for j in Job.objects.all()]


def test_launcher_options_balsam_refuses_are_refused_here_too(site):
    result = balsam(site, "job", "create", "-w", "x", "-a", "MySim", "-s",
                    "input_file=laptop:/x", "-lp", "cpu-bind")
    assert result.returncode == 1 and result.stderr.strip() == \
        "Error: -lp 'cpu-bind': expected KEY=VALUE"
    assert Job.objects.count() == 0 and not (site.data_path / "x").exists()
    ok(balsam(site, "job", "create", "-w", "x", "-a", "0001", "-s", "input_file=laptop:/x"))
    assert Job.objects.get(workdir="x").app == "MySim"  # digits are an id, as in Balsam


def test_modify_and_rm_speak_json_too(site):
    ids = make(site)
    stage("in")
    moved = json.loads(ok(balsam(site, "job", "modify", "-t", "run=even", "-s", "RUNNING",
                                 "--format", "json")))
    assert moved == [{"id": ids[0], "state": "RUNNING"}, {"id": ids[2], "state": "RUNNING"}]
    assert json.loads(ok(balsam(site, "job", "rm", "-s", "RUNNING", "-y", "--format",
                                "json"))) == {"deleted": 2}
    assert json.loads(ok(balsam(site, "job", "rm", "-s", "FAILED", "-y", "--format",
                                "json"))) == {"deleted": 0}
