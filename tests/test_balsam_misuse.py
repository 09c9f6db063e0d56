"""Balsam's calls (#22) attacked by a hostile user: stale objects given to
wait/as_completed, restarts of jobs that failed on a transfer by every route, bulk
updates that must be all or none."""

from __future__ import annotations

import pytest

from balsam_mp import db
from balsam_mp.analytics import throughput_report
from balsam_mp.api import App, ApplicationDefinition, EventLog, Job, TransferItem
from balsam_mp.api import jobs as jobs_module
from balsam_mp.errors import StateConflict, ValidationError
from balsam_mp.schemas import JobState
from balsam_mp.site import pidfile
from tests.conftest import wait_for
from tests.sitemoves import claim, finish, make, stage
from tests.test_cli import balsam


@pytest.mark.engines
def test_wait_reads_the_jobs_before_it_answers(site):
    """A wait given objects read earlier answers from the database, not from them."""
    jobs = make(2, out=False)
    stale = list(Job.objects.order_by("id"))  # read READY
    stage("in")
    for job in Job.objects.all():
        job.state = "FAILED"
        job.save()
    done, not_done = Job.objects.wait(stale, timeout=0)
    assert (len(done), len(not_done)) == (2, 0)
    assert [job.state for job in stale] == ["FAILED", "FAILED"]
    stale = list(Job.objects.order_by("id"))
    Job.objects.filter(id=jobs[0].id).update(state="RESTART_READY")
    completed = Job.objects.as_completed(stale, timeout=0)
    assert next(completed) is stale[1]  # job 0 was restarted: not done
    with pytest.raises(TimeoutError):
        next(completed)


def test_wait_does_not_count_a_restarted_job_done(site):
    make(1, out=False)
    stage("in")
    job = Job.objects.get()
    job.state = "FAILED"
    job.save()  # read FAILED: done
    Job.objects.filter(id=job.id).update(state="RESTART_READY")  # another script restarts it
    done, not_done = Job.objects.wait([job], timeout=0)
    assert (done, [j.id for j in not_done]) == ([], [job.id])
    with pytest.raises(TimeoutError):
        list(Job.objects.as_completed([job], timeout=0))


def failed_on_transfer() -> Job:
    job = make(1, out=False)[0]
    task = claim("in")
    item = TransferItem.objects.get(job_id=job.id)
    finish(task.task_id, failed_items=(item.id,))
    job.refresh_from_db()
    assert job.state == "FAILED"
    return job


@pytest.mark.engines
def test_save_restart_ready_of_a_job_failed_on_a_transfer(site):
    job = failed_on_transfer()
    job.state = "RESTART_READY"
    job.save()
    assert job.state in ("READY", "RESTART_READY")
    stage("in")
    job.refresh_from_db()
    assert job.state == "STAGED_IN"


def test_cli_modify_restart_ready_of_a_job_failed_on_a_transfer(site):
    job = failed_on_transfer()
    result = balsam("job", "modify", str(job.id), "-s", "RESTART_READY", site=site.site_path)
    assert result.returncode == 0, result.stderr
    stage("in")
    job.refresh_from_db()
    assert job.state == "STAGED_IN"


def test_bulk_update_conflict_rolls_back_the_retry_of_items(site):
    failed = failed_on_transfer()
    other = make(1, prefix="o", out=False)[0]  # read READY
    stage("in")  # other: STAGED_IN meanwhile
    failed.state = "RESTART_READY"
    other.state = "FAILED"  # from READY, which it no longer is
    with pytest.raises(StateConflict):
        Job.objects.bulk_update([failed, other])
    assert Job.objects.get(id=failed.id).state == "FAILED"
    assert TransferItem.objects.get(job_id=failed.id).state == "error"


def test_bulk_update_two_objects_of_one_job(site):
    make(1, out=False)
    stage("in")
    first, second = Job.objects.get(), Job.objects.get()
    first.state = "RUNNING"
    second.state = "RUN_DONE"
    with pytest.raises(ValidationError, match="given twice with different changes"):
        Job.objects.bulk_update([first, second])
    assert Job.objects.get().state == "STAGED_IN"


@pytest.mark.parametrize("name", ["x.y", "", "2", "a b"])
def test_an_app_name_no_job_could_name_is_refused_at_sync(site, name):
    """probe22: MyApp.sync() registered type("x.y", ...) (then "unknown app 'x.y'
    (registered: ... x.y ...)"), "" and "2" (read as an app id)."""
    cls = type(name, (ApplicationDefinition,), {"transfers": {}})
    with pytest.raises(ValidationError, match="is not a Python class name"):
        cls.sync()
    assert [app.name for app in App.objects.all()] == ["MySim"]
    unicode = type("Ünï", (ApplicationDefinition,), {"transfers": {}})
    assert unicode.sync().name == "Ünï"
    assert Job.objects.create(workdir="u", app_id="Ünï").app == "Ünï"


def test_bulk_restarts_racing_a_running_site_strand_nothing_and_send_nothing_twice(sitekit):
    """A user's script restarts the FAILED jobs over and over while the site retries
    their files (some still missing, some in flight), a stale bulk_update runs into
    the site's moves, the poller is killed -9 mid-way; every job ends JOB_FINISHED and
    no file moves twice."""
    kit = sitekit(emulator_args=("--startup-delay", "0.2"),
                  transfers="  transfer_batch_size: 5\n")
    missing = {1, 4, 7, 11, 17}
    ids = kit.make_jobs(20, stage_out=True, missing=missing)
    stale = list(Job.objects.filter(id=ids).order_by("id"))  # READY
    kit.start()
    bad = [ids[n] for n in sorted(missing)]
    kit.wait_jobs(bad, "FAILED")
    restarts = 0
    for round_ in range(6):  # restart while the files are still missing: they fail again
        moved = Job.objects.filter(state="FAILED").update(state="RESTART_READY")
        restarts += len(moved.retried)
        assert not [j for j in moved if j.state == "RESTART_READY" and j.id in bad]
        if round_ == 2:
            kit.kill("poller")
        if round_ == 4:  # the whole site dies -9 mid-way and is started again
            for role in ("submitter", "supervisor"):
                kit.kill(role)
            wait_for(lambda: not pidfile.read(kit.site).alive(), what="the site to be gone")
            kit.start()
    assert restarts >= len(bad)
    for job in stale:
        job.tags = {"stale": "yes"}
    stale[0].state = "FAILED"  # read READY: the site moved it since
    with pytest.raises(StateConflict):
        Job.objects.bulk_update(stale)
    assert not Job.objects.filter(tags={"stale": "yes"}).exists()  # all or none
    for n in missing:
        (kit.remote / "in" / f"job{n}.dat").write_text(f"input of job{n}")
    deadline_rounds = 0
    while Job.objects.filter(id=ids, state="STAGED_IN").count() < len(ids):
        Job.objects.filter(state="FAILED").update(state="RESTART_READY")
        done, _ = Job.objects.wait(list(Job.objects.filter(id=bad)), timeout=0.5,
                                   poll_interval=0.1)
        deadline_rounds += 1
        assert deadline_rounds < 120, kit.states()
    kit.run_apps(ids)
    done, not_done = Job.objects.wait(list(Job.objects.filter(id=ids)), timeout=60,
                                      poll_interval=0.2)
    assert not not_done and {j.state for j in done} == {"JOB_FINISHED"}
    kit.assert_exactly_once()
    for n in range(20):
        assert (kit.remote / "out" / f"job{n}.dat").read_text() == f"output of job/{n}"


@pytest.mark.parametrize("name", ["all", "this", "ALL"])
def test_a_site_cannot_take_the_name_of_a_site_selector(tmp_path, name):
    """probe22: `site init -n all` made a site that `--site all` could never pick alone."""
    result = balsam("site", "init", "-n", name, str(tmp_path / "s"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"site name '{name}' is what `--site {name.lower()}` means" in result.stderr
    assert not (tmp_path / "s").exists()


def test_throughput_report_refuses_a_state_that_is_no_job_state(site):
    """probe22: a typo ("JOB_FINSHED") or an item state gave ([], []), an empty report."""
    make(1, out=False)
    stage("in")
    assert len(throughput_report(EventLog.objects.all(), "STAGED_IN")[0]) == 1
    assert len(throughput_report(EventLog.objects.all(), JobState.staged_in)[1]) == 1
    for bad in ("JOB_FINSHED", "done", None, 3):
        with pytest.raises(ValidationError, match="throughput_report: to_state: .* is not "
                                                  "a job state"):
            throughput_report(EventLog.objects.all(), bad)


@pytest.mark.engines
@pytest.mark.parametrize("change", ["removed", "slots"])
def test_an_app_removed_or_changed_while_jobs_are_created(site, monkeypatch, change):
    """probe22: `app rm` (or an `app sync` changing the slots) between the planning and
    the commit of a job creation gave "site database: FOREIGN KEY constraint failed"
    (or items made from the old slots)."""
    class Racing(ApplicationDefinition):
        transfers = {"input_file": {"direction": "in", "local_path": "in.dat"}}

    Racing.sync()
    planned = jobs_module._reject_used_workdirs

    def meanwhile(workdirs):  # another process, between the plan and the commit
        planned(workdirs)
        if change == "removed":
            db.App.delete().where(db.App.name == "Racing").execute()
        else:
            db.App.update(transfers={"other": {"direction": "in", "local_path": "o.dat",
                                               "required": False, "recursive": False,
                                               "description": ""}}).where(
                db.App.name == "Racing").execute()

    monkeypatch.setattr(jobs_module, "_reject_used_workdirs", meanwhile)
    with pytest.raises(ValidationError,
                       match="while its jobs were being created.*; nothing was created"):
        Job.objects.create(workdir="r/1", app_id="Racing",
                           transfers={"input_file": "laptop:/in/r.dat"})
    assert Job.objects.count() == 0 and TransferItem.objects.count() == 0
    assert not (site.data_path / "r" / "1").exists()


class MySim(ApplicationDefinition):
    """A user's own MySim, not synced: its input goes to mine.txt."""

    transfers = {"input_file": {"direction": "in", "local_path": "mine.txt"}}


@pytest.mark.engines
def test_another_class_of_a_registered_name_is_not_silently_the_registered_app(site):
    """probe22: Job(app_id=MySim) and MySim.submit() with a user's own class MySim took
    SITE/apps' MySim, so the input was staged to input.dat, not mine.txt."""
    for attempt in (lambda: Job.objects.create(workdir="m/1", app_id=MySim,
                                               transfers={"input_file": "laptop:/x"}),
                    lambda: MySim.submit("m/2", transfers={"input_file": "laptop:/x"})):
        with pytest.raises(ValidationError, match="app class MySim is not the registered "
                                                  "MySim \\(example.MySim\\): their transfer "
                                                  "slots differ; call MySim.sync"):
            attempt()
    assert Job.objects.count() == 0
    registered = ApplicationDefinition.load_by_name("MySim")  # the registered one: fine
    registered.submit("m/3", transfers={"input_file": "laptop:/x"})
    MySim.sync()  # now this class is MySim
    job = MySim.submit("m/4", transfers={"input_file": "laptop:/x"})
    assert str(TransferItem.objects.get(job_id=job.id).local_path) == "mine.txt"


@pytest.mark.parametrize("selector", [",", " , ,"])
def test_a_site_selector_of_commas_alone_is_an_error(site, selector):
    """probe22: `job ls --site ,` listed no site and exited 0."""
    result = balsam("job", "ls", "--site", selector, site=site.site_path)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == (f"Error: --site {selector!r} names no site (give "
                                     "NAME[,NAME...], all, this or a folder)")


def test_job_ls_with_an_empty_app_is_an_error_not_every_job(site):
    """probe22: `balsam job ls -a "$APP"` with $APP empty listed every job."""
    make(1, out=False)
    result = balsam("job", "ls", "-a", "", site=site.site_path)
    assert result.returncode == 1 and result.stdout == ""
    assert "--app: unknown app '': no app has that id or name" in result.stderr


@pytest.mark.engines
def test_bulk_update_of_one_job_given_twice_with_different_changes(site):
    """probe22: the last object's tags silently won over the first's."""
    make(1, out=False)
    first, second, same = Job.objects.get(), Job.objects.get(), Job.objects.get()
    first.tags, second.tags, same.tags = {"x": "1"}, {"y": "2"}, {"x": "1"}
    with pytest.raises(ValidationError, match="job 1 is given twice with different "
                                              "changes; nothing was written"):
        Job.objects.bulk_update([first, second])
    assert Job.objects.get().tags == {"n": "0"}
    Job.objects.bulk_update([first, same])  # the same change twice: written once
    assert Job.objects.get().tags == {"x": "1"} == same.tags


def test_as_completed_follows_a_running_site_each_job_once(sitekit):
    """as_completed over jobs a running site stages in and out while the user's script
    plays the app: each job is yielded once, JOB_FINISHED or FAILED (its input missing)."""
    kit = sitekit(transfers="  transfer_batch_size: 4\n")
    ids = kit.make_jobs(12, stage_out=True, missing={5})
    jobs = list(Job.objects.filter(id=ids))
    kit.start()
    seen = []
    completing = Job.objects.as_completed(jobs, timeout=120, poll_interval=0.05)
    kit.wait_jobs([i for n, i in enumerate(ids) if n != 5], "STAGED_IN")
    kit.run_apps([i for n, i in enumerate(ids) if n != 5])
    for job in completing:
        seen.append((job.id, job.state))
    assert sorted(seen) == sorted((i, "FAILED" if n == 5 else "JOB_FINISHED")
                                  for n, i in enumerate(ids))
    kit.assert_exactly_once()
