"""Jobs, their transfer items, the query API, and bad input that writes nothing."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from balsam_mp import api, states
from balsam_mp.errors import NotFound, StateConflict, ValidationError
from tests.sitemoves import claim, stage

pytestmark = pytest.mark.engines  # every test on SQLite and on PostgreSQL


def test_job_with_stage_in_starts_ready_and_its_items_pending(site, remote_files):
    src = remote_files("in.dat")
    job = api.Job.objects.create(app="MySim", workdir="ensemble/1",
                                 transfers={"input_file": f"laptop:{src}",
                                            "result": "laptop:/results/1.dat"})
    assert job.state == states.READY
    items = {i.slot: i for i in api.TransferItem.objects.filter(job_id=job.id)}
    assert items["input_file"].state == "pending"
    assert items["input_file"].local_path == Path("input.dat")  # relative to the workdir
    assert items["result"].state == "awaiting_job"
    assert (site.data_path / "ensemble/1").is_dir()
    events = [(e.from_state, e.to_state) for e in job.events]
    assert events == [("CREATED", "READY")]


def test_job_without_stage_in_starts_staged_in(site):
    job = api.Job.objects.create(app="MySim", workdir="w", transfers={
        "input_file": "laptop:/x/in.dat"})
    assert job.state == states.READY
    # an app whose only slot is optional: no stage-in item -> STAGED_IN
    (site.apps_path / "plain.py").write_text(
        "from balsam_mp.api import ApplicationDefinition\n"
        "class Plain(ApplicationDefinition):\n"
        "    transfers = {'out': {'direction': 'out', 'local_path': '.'}}\n")
    api.App.sync()
    plain = api.Job.objects.create(app="Plain", workdir="p", transfers={"out": "laptop:/r/o.txt"})
    assert plain.state == states.STAGED_IN
    item = api.TransferItem.objects.get(job_id=plain.id)
    assert item.local_path == Path("o.txt")  # "." keeps the remote name


def test_postprocessed_releases_stage_out_in_one_step(site):
    job = api.Job.objects.create(app="MySim", workdir="w", transfers={
        "input_file": "laptop:/x/in.dat", "result": "laptop:/r/out.dat"})
    with pytest.raises(StateConflict):
        api.Job.objects.set_state(job.id, states.RUN_DONE, states.POSTPROCESSED)
    with pytest.raises(ValidationError, match="stage-in items are not done"):
        api.Job.objects.set_state(job.id, states.READY, states.STAGED_IN)
    stage("in")
    api.Job.objects.set_state(job.id, states.STAGED_IN, states.POSTPROCESSED, "test")
    assert api.TransferItem.objects.get(job_id=job.id, direction="out").state == "pending"
    assert api.Job.objects.get(id=job.id).state == states.POSTPROCESSED


def test_postprocessed_without_stage_out_finishes(site):
    job = api.Job.objects.create(app="MySim", workdir="w", transfers={
        "input_file": "laptop:/x/in.dat"})
    stage("in")
    api.Job.objects.set_state(job.id, states.STAGED_IN, states.POSTPROCESSED)
    assert api.Job.objects.get(id=job.id).state == states.JOB_FINISHED
    trail = [e.to_state for e in api.Job.objects.get(id=job.id).events.order_by("id")]
    assert trail == ["READY", "STAGED_IN", "POSTPROCESSED", "STAGED_OUT", "JOB_FINISHED"]


def test_the_seed_query_loop_runs_as_written(site, capsys):
    api.Job.objects.bulk_create([
        {"app": "MySim", "workdir": f"e/{n}", "transfers": {"input_file": f"laptop:/d/{n}.dat"}}
        for n in range(3)
    ])
    task = claim("in", limit=1)  # the site sends the first file
    from balsam_mp.api import TransferItem
    for item in TransferItem.objects.filter(direction="in", state="active"):
        print(f"File {item.remote_path} is currently staging in via task ID: {item.task_id}")
    assert capsys.readouterr().out == (
        f"File /d/0.dat is currently staging in via task ID: remote-{task.task_id}\n")


def test_query_api_lookups(site):
    api.Job.objects.bulk_create([
        {"app": "MySim", "workdir": f"e/{n}", "transfers": {"input_file": f"laptop:/d/{n}"},
         "tags": {"system": "H2O" if n % 2 else "CO2"}}
        for n in range(10)
    ])
    assert api.Job.objects.count() == 10
    assert api.Job.objects.filter(tags={"system": "H2O"}).count() == 5
    assert api.Job.objects.filter(state__in=["READY", "FAILED"]).count() == 10
    assert api.Job.objects.filter(state="FAILED").first() is None
    ordered = api.Job.objects.order_by("-id")
    assert [j.id for j in ordered[:3]] == [10, 9, 8]
    assert [j.id for j in ordered[2:4]] == [8, 7]
    assert ordered[0].id == 10
    assert api.TransferItem.objects.filter(job_id__in=[1, 2]).count() == 2
    assert api.Job.objects.filter(id__gte=8).count() == 3
    with pytest.raises(NotFound):
        api.Job.objects.get(workdir="nope")
    with pytest.raises(ValidationError, match="no field 'colour'"):
        api.Job.objects.filter(colour="red").count()


@pytest.mark.parametrize("job, message", [
    ({"app": "Nope", "workdir": "w"}, "unknown app 'Nope'"),
    ({"app": "MySim", "workdir": "w",
      "transfers": {"input_file": "laptop:/a", "bogus": "laptop:/b"}},
     "no transfer slot 'bogus'"),
    ({"app": "MySim", "workdir": "w", "transfers": {}}, "required transfer slot 'input_file'"),
    ({"app": "MySim", "workdir": "w", "transfers": {"input_file": "evil:/a"}},
     "alias 'evil' is not in transfer_locations"),
    ({"app": "MySim", "workdir": "w", "transfers": {"input_file": "laptop:rel/a"}},
     "must be absolute"),
    ({"app": "MySim", "workdir": "w", "transfers": {"input_file": "/no/alias"}},
     "is not 'alias:/absolute/path'"),
    ({"app": "MySim", "workdir": "/abs", "transfers": {"input_file": "laptop:/a"}},
     "workdir: '/abs' must be relative"),
    ({"app": "MySim", "workdir": "../up", "transfers": {"input_file": "laptop:/a"}},
     "escapes its directory"),
])
def test_bad_job_is_rejected_and_nothing_written(site, job, message):
    with pytest.raises(ValidationError, match=message):
        api.Job.objects.create(**job)
    assert api.Job.objects.count() == 0
    assert api.TransferItem.objects.count() == 0


def test_bulk_create_with_one_bad_job_writes_none(site):
    good = [{"app": "MySim", "workdir": f"e/{n}", "transfers": {"input_file": f"laptop:/d/{n}"}}
            for n in range(50)]
    bad = {"app": "MySim", "workdir": "e/bad", "transfers": {"input_file": "laptop:/d/x",
                                                             "nope": "laptop:/d/y"}}
    with pytest.raises(ValidationError, match="job 50 .*'nope'"):
        api.Job.objects.bulk_create(good + [bad])
    assert api.Job.objects.count() == 0
    api.Job.objects.bulk_create(good)
    with pytest.raises(ValidationError, match="'e/3': workdir is already used"):
        api.Job.objects.create(**good[3])
    with pytest.raises(ValidationError, match="used twice"):
        api.Job.objects.bulk_create([good[0] | {"workdir": "z"}, good[1] | {"workdir": "z"}])
    assert api.Job.objects.count() == 50


@pytest.mark.parametrize("slots, message", [
    ("{'a': {'direction': 'sideways'}}", "direction must be 'in' or 'out'"),
    ("{'a': {'direction': 'in', 'local_path': '/etc/passwd'}}", "must be relative"),
    ("{'a': {'direction': 'in', 'local_path': '../x'}}", "escapes"),
    ("{'a': {'direction': 'in', 'colour': 'red'}}", "unknown key"),
    ("{'a': {'direction': 'in', 'required': 'yes'}}", "required must be true or false"),
    ("['a']", "transfers must be a dict"),
])
def test_apps_with_bad_slots_are_refused(site, slots, message):
    file = site.apps_path / "bad.py"
    file.write_text("from balsam_mp.api import ApplicationDefinition\n"
                    f"class Bad(ApplicationDefinition):\n    transfers = {slots}\n")
    with pytest.raises(ValidationError, match=message) as err:
        api.App.sync()
    assert str(file) in str(err.value) and "Bad" in str(err.value)
    assert [a.name for a in api.App.objects.all()] == ["MySim"]


def test_sqlite3_or_psql_reads_the_site_database(site):
    api.Job.objects.bulk_create([
        {"app": "MySim", "workdir": f"e/{n}", "transfers": {
            "input_file": f"laptop:/d/{n}", "result": f"laptop:/o/{n}"}} for n in range(4)
    ])
    query = "select state, count(*) from transfer_item group by state order by state"
    if site.database_url:  # docs/postgresql.md's psql lines, as written: the site's own schema
        from balsam_mp.testing.postgres_server import find_bindir

        psql = [str(find_bindir() / "psql"), site.database_url, "-At", "-c"]
        env = dict(os.environ, PGOPTIONS=f"-c search_path=site_{site.site_name}")
        out = subprocess.run([*psql, query], capture_output=True, text=True, check=True,
                             env=env).stdout
        assert out == "awaiting_job|4\npending|4\n"
        qualified = query.replace("transfer_item", f"site_{site.site_name}.transfer_item")
        assert subprocess.run([*psql, qualified], capture_output=True, text=True,
                              check=True).stdout == out
        created = subprocess.run([*psql, "select created_at from job limit 1"], env=env,
                                 capture_output=True, text=True, check=True).stdout.strip()
        assert created.endswith("Z") and "T" in created  # ISO-8601 UTC text, as in SQLite
        return
    db_file = str(site.site_path / "site.db")
    if shutil.which("sqlite3"):
        out = subprocess.run(["sqlite3", db_file, query], capture_output=True, text=True,
                             check=True).stdout
        assert out == "awaiting_job|4\npending|4\n"
    with sqlite3.connect(db_file) as conn:
        assert conn.execute(query).fetchall() == [("awaiting_job", 4), ("pending", 4)]
        created = conn.execute("select created_at from job limit 1").fetchone()[0]
        assert created.endswith("Z") and "T" in created  # ISO-8601 UTC text


def test_app_class_submit(site):
    from balsam_mp.api.appstore import load_app_classes

    my_sim = load_app_classes(site.apps_path)["MySim"][1]
    job = my_sim.submit("e/42", transfers={"input_file": "laptop:/d/42.dat"}, tags={"k": "v"})
    assert (job.state, job.workdir, job.tags) == ("READY", Path("e/42"), {"k": "v"})
    assert api.Job.objects.filter(tags={"k": "v"}).count() == 1
