"""Balsam's calls, attacked: stale objects racing the site's moves, waits on deleted
jobs, absurd timeouts, apps of other sites, retries of failed transfers in a bulk
restart, old databases (real SQLite or PostgreSQL site databases, the site's moves
through the db functions its workers call)."""

from __future__ import annotations

import concurrent.futures
import math
import time

import pytest

from balsam_mp import api, db
from balsam_mp.api import App, ApplicationDefinition, EventLog, Job, TransferItem
from balsam_mp.errors import StateConflict, ValidationError
from balsam_mp.schemas import JobState, TransferItemState
from tests.sitemoves import claim, finish, make, stage
from tests.test_cli import balsam


@pytest.mark.engines
def test_stale_jobs_in_bulk_update_lose_to_the_sites_moves_all_or_none(site):
    jobs = make(3)
    stale = list(Job.objects.order_by("id"))  # read READY
    stage("in")  # the site: READY -> STAGED_IN meanwhile
    stale[0].tags = {"mine": 1}  # fields only: written, the site's state kept
    stale[1].tags = {"mine": 2}
    stale[2].state = "FAILED"  # a move from READY, which it no longer is
    with pytest.raises(StateConflict, match=f"job {jobs[2].id}: expected state READY, "
                                            "found STAGED_IN"):
        Job.objects.bulk_update(stale)
    assert [j.tags for j in Job.objects.order_by("id")] == [{"n": "0"}, {"n": "1"}, {"n": "2"}]
    Job.objects.bulk_update(stale[:2])
    assert [(j.state, j.tags) for j in stale[:2]] == [("STAGED_IN", {"mine": "1"}),
                                                      ("STAGED_IN", {"mine": "2"})]
    Job.objects.get(id=jobs[0].id).delete()
    stale[0].tags, stale[1].tags = {"gone": "y"}, {"again": "x"}
    with pytest.raises(Job.DoesNotExist, match=f"job\\(s\\) {jobs[0].id} no longer exist"):
        Job.objects.bulk_update([stale[1], stale[0]])
    assert Job.objects.get(id=jobs[1].id).tags == {"mine": "2"}  # nothing written
    with pytest.raises(ValidationError, match="item 0 is a Job not saved yet"):
        Job.objects.bulk_update([Job(workdir="x", app="MySim")])
    with pytest.raises(ValidationError, match="workdir cannot be changed"):
        stale[1].workdir = "elsewhere"
        Job.objects.bulk_update([stale[1]])


def test_wait_on_deleted_jobs_is_an_error_not_a_hang(site):
    jobs = make(2)
    Job.objects.get(id=jobs[1].id).delete()
    started = time.monotonic()
    with pytest.raises(Job.DoesNotExist, match=f"job\\(s\\) {jobs[1].id} no longer exist"):
        Job.objects.wait(jobs, poll_interval=0.01)  # no timeout: would never end
    with pytest.raises(Job.DoesNotExist):
        list(Job.objects.as_completed(jobs, poll_interval=0.01))
    assert time.monotonic() - started < 60  # a hang guard: the waits end at once
    with pytest.raises(ValidationError, match="takes a list of Job objects"):
        Job.objects.wait(jobs[0])


@pytest.mark.parametrize("bad", [math.nan, "10", True, -math.inf + math.inf])
def test_nan_and_non_numbers_as_timeouts_are_refused_at_the_call(site, bad):
    jobs = make(1)
    with pytest.raises(ValidationError, match="timeout must be a number of seconds"):
        Job.objects.wait(jobs, timeout=bad)
    with pytest.raises(ValidationError, match="timeout must be a number of seconds"):
        Job.objects.as_completed(jobs, timeout=bad)  # at the call, not at next()
    for interval in (0, -1, math.nan, math.inf):
        with pytest.raises(ValidationError, match="poll_interval must be a positive"):
            Job.objects.wait(jobs, poll_interval=interval)
    with pytest.raises(ValidationError, match="return_when must be one of"):
        Job.objects.wait(jobs, return_when="FIRST_EXCEPTION")


def test_huge_zero_and_short_timeouts(site):
    jobs = make(2)
    Job.objects.filter(id=jobs[0].id).update(state="FAILED")
    done, not_done = Job.objects.wait(jobs, timeout=1e308, return_when="FIRST_COMPLETED")
    assert [j.id for j in done] == [jobs[0].id] and [j.id for j in not_done] == [jobs[1].id]
    started = time.monotonic()
    result = Job.objects.wait(jobs, timeout=0.2, poll_interval=3600)  # never past the timeout
    assert len(result.not_done) == 1 and time.monotonic() - started < 60  # not 3600
    assert Job.objects.wait(jobs, timeout=-5).not_done == result.not_done  # no wait at all
    completed = []
    with pytest.raises(concurrent.futures.TimeoutError, match="1 job\\(s\\) still pending"):
        for job in Job.objects.as_completed(jobs, timeout=0.2, poll_interval=0.05):
            completed.append(job.id)
    assert completed == [jobs[0].id]


def test_wait_sees_the_site_finish_jobs(site):
    jobs = make(2, out=False)
    stage("in")
    Job.objects.filter(id=jobs[0].id).update(state="POSTPROCESSED")  # no stage-out: finishes
    done, not_done = Job.objects.wait(jobs, timeout=5, poll_interval=0.01,
                                      return_when="FIRST_COMPLETED")
    assert [j.state for j in done] == ["JOB_FINISHED"] and done[0].done()
    assert not_done[0].state == "STAGED_IN" and not not_done[0].done()


def test_an_app_of_another_site_is_refused_at_sync(site):
    class Elsewhere(ApplicationDefinition):
        site = "theta"

    with pytest.raises(ValidationError, match="site 'theta' is not this site \\('site'\\)"):
        Elsewhere.sync()
    with pytest.raises(ValidationError, match="app class Elsewhere: site 'theta' is not"):
        Job.objects.create(workdir="w", app_id=Elsewhere)
    (site.apps_path / "far.py").write_text(
        "from balsam_mp.api import ApplicationDefinition\n"
        "class Far(ApplicationDefinition):\n    site = 7\n")
    with pytest.raises(ValidationError, match="far.py: app Far: site 7 is not this site"):
        App.sync()
    assert [a.name for a in App.objects.all()] == ["MySim"]  # all or none
    with pytest.raises(ValidationError, match="not this site"):
        ApplicationDefinition.load_by_site("theta")
    with pytest.raises(App.DoesNotExist, match="site 'theta' is not this site"):
        Job(workdir="w", app="MySim", site_name="theta")
    assert Job(workdir="w", app="MySim", site_name="site").app == "MySim"

    class MySim(ApplicationDefinition):  # the name of an app here, of another site
        site = "theta"

    with pytest.raises(ValidationError, match="app class MySim: site 'theta' is not this"):
        Job.objects.create(workdir="w", app_id=MySim, transfers={"input_file": "laptop:/x"})
    with pytest.raises(ValidationError, match="site 'theta' is not this site"):
        MySim.submit("w", transfers={"input_file": "laptop:/x"})
    assert Job.objects.count() == 0


def test_apps_registered_from_python_stay_until_removed(site):
    class FromNotebook(ApplicationDefinition):
        transfers = {}

    FromNotebook.sync()
    (site.apps_path / "extra.py").write_text(
        "from balsam_mp.api import ApplicationDefinition\n"
        "class Extra(ApplicationDefinition):\n    transfers = {}\n"
        "class Used(ApplicationDefinition):\n    transfers = {}\n")
    App.sync()
    Job.objects.create(workdir="u", app_id="Used")
    assert balsam("app", "sync", site=site.site_path).returncode == 0
    assert {a.name for a in App.objects.all()} == {"MySim", "FromNotebook", "Extra", "Used"}
    (site.apps_path / "extra.py").unlink()  # its unused app goes; the used one stays
    assert balsam("site", "sync", site=site.site_path).returncode == 0
    assert {a.name for a in App.objects.all()} == {"MySim", "FromNotebook", "Used"}
    listed = balsam("app", "ls", "-v", site=site.site_path)
    assert listed.returncode == 0 and "extra.Used" in listed.stdout
    refused = balsam("app", "rm", "-n", "Used", site=site.site_path)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("Error: app Used is used by 1 job(s) (`balsam job ls "
                                      "--app Used`); delete them first")
    missing = balsam("app", "rm", "-n", "Nope", site=site.site_path)
    assert "no app named 'Nope' (apps: FromNotebook, MySim, Used)" in missing.stderr
    assert balsam("app", "rm", "-n", "FromNotebook", site=site.site_path).returncode == 0
    App.objects.get(name="MySim")  # MySim has no job: Balsam's app.delete() removes it
    App.objects.get(name="MySim").delete()
    assert {a.name for a in App.objects.all()} == {"Used"}


def test_a_wrong_app_name_lists_the_apps_and_never_a_listed_one_as_missing(site):
    with pytest.raises(ValidationError) as caught:
        Job.objects.create(workdir="w", app_id="Nope", transfers={"input_file": "laptop:/x"})
    assert str(caught.value) == ("job: app_id: unknown app 'Nope' (registered: MySim (id 1, "
                                 "example.MySim))")
    for name in ("MySim", "example.MySim", App.objects.get(name="MySim"), 1):
        assert Job.objects.create(workdir=f"w{name!s:.3}", app_id=name,
                                  transfers={"input_file": "laptop:/x"}).app == "MySim"
    with pytest.raises(ValidationError, match="registered from module 'example'"):
        Job(workdir="x", app_name="other.MySim", transfers={"input_file": "laptop:/x"}).save()
    class Other(ApplicationDefinition):
        transfers = {}

    with pytest.raises(ValidationError, match="app class Other is not registered at this "
                                              "site: call Other.sync\\(\\) first"):
        Job(workdir="x", app_id=Other).save()
    Other.sync()
    with pytest.raises(ValidationError, match="these name different apps \\(app_id is MySim, "
                                              "app_name is Other\\)"):
        Job(workdir="x", app_id=1, app_name="Other").save()


@pytest.mark.engines
def test_bulk_restart_retries_failed_transfers_and_keeps_flights(site):
    failed_in, ran, in_flight = make(3)
    task = claim("in", limit=2)  # the first two jobs' inputs; the third waits
    bad = TransferItem.objects.get(job_id=failed_in.id, direction="in").id
    finish(task.task_id, failed_items=(bad,))  # failed_in: FAILED on its transfer
    flying = claim("in")  # in_flight's input is now active in a task
    Job.objects.filter(id=ran.id).update(state="RUN_DONE")
    Job.objects.filter(id=[ran.id, in_flight.id]).update(state="FAILED",
                                                        state_data={"reason": "bad run"})
    moved = Job.objects.filter(state="FAILED").update(state="RESTART_READY")
    assert moved.retried == {failed_in.id: "READY", in_flight.id: "READY"}
    assert sorted((j.id, j.state) for j in moved) == [
        (failed_in.id, "READY"), (ran.id, "RESTART_READY"), (in_flight.id, "READY")]
    stage("in")  # the retried file arrives
    finish(flying.task_id)  # the task in flight ends: its job was not orphaned
    assert {j.state for j in Job.objects.filter(id=[failed_in.id, in_flight.id])} == {
        "STAGED_IN"}
    event = EventLog.objects.filter(job_id=ran.id, to_state="FAILED").get()
    assert event.data == {"reason": "bad run"}
    assert EventLog.objects.filter(data={"reason": "bad run"}).count() == 2
    assert Job.objects.get(id=failed_in.id).state_data["previous_failures"]
    Job.objects.filter(id=failed_in.id).update(state="POSTPROCESSED")  # its result fails
    task = claim("out")
    finish(task.task_id, failed_items=tuple(
        i.id for i in TransferItem.objects.filter(job_id=failed_in.id, direction="out")))
    assert Job.objects.get(id=failed_in.id).state == "FAILED"
    moved = Job.objects.filter(id=failed_in.id).update(state="RESTART_READY")
    assert moved.retried == {failed_in.id: "POSTPROCESSED"}  # its result goes again
    stage("out")
    assert Job.objects.get(id=failed_in.id).state == "JOB_FINISHED"


@pytest.mark.engines
def test_state_enums_are_state_names_everywhere(site):
    job = make(1, out=False)[0]
    stage("in")
    job.refresh_from_db()
    job.state = JobState.run_done
    job.save()
    assert job.state == "RUN_DONE" and Job.objects.filter(state=JobState.run_done).count() == 1
    Job.objects.set_state(job.id, JobState.run_done, JobState.running)
    Job.objects.filter(id=job.id).update(state=JobState.failed)
    assert EventLog.objects.filter(to_state=JobState.failed, from_state=JobState.running)
    assert TransferItem.objects.filter(state=TransferItemState.done).count() == 1
    assert str(JobState.failed) == "FAILED" and JobState.is_valid("READY")


def test_tags_take_numbers_and_booleans_as_balsam_does(site):
    job = Job.objects.create(workdir="t", app="MySim", transfers={"input_file": "laptop:/x"},
                             tags={"n": 1, "ok": True, 2: 0.5})
    assert job.tags == {"n": "1", "ok": "True", "2": "0.5"}
    assert Job.objects.filter(tags={"ok": True, "n": 1}).count() == 1
    for bad, message in (({"k": None}, "tag keys and values must be strings"),
                         ({"k": [1]}, "tag keys and values must be strings"),
                         ({1: "a", "1": "b"}, "key '1' is given twice")):
        with pytest.raises(ValidationError, match=message):
            Job.objects.filter(id=job.id).update(tags=bad)


def test_an_old_database_shows_created_and_gains_event_data(site):
    job = make(1)[0]
    api.close()
    raw = db.connect(site.database)
    raw.execute_sql("UPDATE log_event SET from_state = NULL")  # as schema 4 wrote it
    raw.execute_sql('ALTER TABLE "log_event" DROP COLUMN "data"')
    for column in ("submitted_at", "started_at"):  # schema 5's
        raw.execute_sql(f'ALTER TABLE "transfer_task" DROP COLUMN "{column}"')
    db.models.Meta.update(value="4").where(db.models.Meta.key == "schema_version").execute()
    raw.close()
    api.use_site(site.site_path)  # migrates to schemas 5 and 6
    assert [(e.from_state, e.to_state) for e in job.events] == [("CREATED", "READY")]
    assert EventLog.objects.filter(from_state="CREATED").count() == 1
    assert EventLog.objects.filter(from_state=["CREATED", "READY"]).count() == 1
    Job.objects.filter(id=job.id).update(state="FAILED", state_data={"error": "bad"})
    assert EventLog.objects.first().data == {"error": "bad"}  # newest first


def test_results_and_launcher_fields_say_this_site_runs_no_apps(site):
    job = make(1)[0]
    for call in (job.result, job.result_nowait, lambda: job.result(timeout=1)):
        with pytest.raises(Job.NoResult, match="this site stages files and runs no apps"):
            call()
    with pytest.raises(AttributeError, match="num_nodes is a Balsam launcher setting"):
        _ = job.num_nodes
    assert job.get_parameters() == {} and job.get_parameters() is not job.parameters
    from balsam_mp.api import site_config

    assert site_config.data_path == site.data_path


def test_the_other_refusals_of_the_docs_table(site):
    job = make(1)[0]
    with pytest.raises(ValidationError, match="state_timestamp is not supported; an "
                                              "event's time is the database's clock"):
        job.state_timestamp = time.time()
    with pytest.raises(AttributeError, match="Job.parent_ids: parent_ids is a Balsam"):
        job.parent_query()
    with pytest.raises(ModuleNotFoundError, match="No module named 'balsam_mp.config'"):
        __import__("balsam_mp.config")
    log = EventLog.objects.first()
    log.from_state = "RUNNING"
    with pytest.raises(ValidationError, match=f"EventLog {log.id}: from_state cannot be "
                                              "changed from the API"):
        log.save()
    assert Job.objects.filter(site_name="site").count() == 1
    assert App.objects.filter(site_id="site").count() == 1
    with pytest.raises(ValidationError, match="sites here are named, not numbered"):
        App.objects.filter(site_id=3).count()
    mysim = ApplicationDefinition.load_by_name("MySim", site_name="site")
    assert mysim.__app_id__ == App.objects.get(name="MySim").id
    assert mysim.submit("loaded", transfers={"input_file": "laptop:/x"}).app == "MySim"
