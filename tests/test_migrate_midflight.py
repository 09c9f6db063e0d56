"""A SQLite site caught mid-flight moves to PostgreSQL and sends every file once: items
active at the emulator, a task `submitting` whose submit answer was lost (Globus made
its task), jobs finished; stopped with SIGKILL of every process, or cleanly."""

from __future__ import annotations

import os
import re
import signal
import time

import psutil
import pytest

from balsam_mp import api, db, states
from balsam_mp.site import pidfile
from tests.conftest import wait_for

JOBS = int(os.environ.get("BALSAM_MIGRATE_JOBS", "10000"))


def tasks_in(state: str) -> list[db.TransferTask]:
    return list(db.TransferTask.select().where(db.TransferTask.state == state))


def caught_mid_flight(kit) -> db.TransferTask:
    """Wait until jobs have finished, items are active at the emulator and a task is
    `submitting` though Globus made it (every submit answer lost); that task."""
    def staged(count: int) -> list[int]:
        return [j.id for j in api.Job.objects.filter(state=states.STAGED_IN)][:count]

    wait_for(lambda: len(staged(300)) == 300, timeout=120, what="jobs staged in")
    kit.run_apps(staged(100))
    wait_for(lambda: api.Job.objects.filter(state=states.JOB_FINISHED).count() >= 1,
             timeout=120, what="jobs finished")
    kit.emulator.knobs(startup_delay=15.0)  # what starts now stays active at Globus
    kit.run_apps(staged(100))

    def running() -> set[str]:
        active = {tid for tid, t in kit.emulator.tasks().items() if t["status"] == "ACTIVE"}
        return {t.task_id for t in tasks_in("active")} & active
    wait_for(running, timeout=60, what="items active at Globus")
    kit.emulator.fault("submit_transfer", after=True, count=1_000_000)
    kit.run_apps(staged(100))

    def lost() -> db.TransferTask | None:
        made = {s["submission_id"] for s in kit.emulator.submissions()}
        return next((t for t in tasks_in("submitting") if t.submission_id in made), None)
    return wait_for(lost, timeout=60, what="a task whose submit answer was lost")


def play_apps(kit) -> None:
    """Stand in for the apps of every job STAGED_IN: its output, then one bulk state
    change, as a workflow would (kit.run_apps moves one job at a time)."""
    staged = list(api.Job.objects.filter(state=states.STAGED_IN))
    for job in staged:
        (kit.site / "data" / job.workdir / "output.dat").write_text(f"output of {job.workdir}")
    if staged:
        api.Job.objects.filter(id__in=[j.id for j in staged], state=states.STAGED_IN).update(
            state=states.POSTPROCESSED)


def kill_everything(kit) -> None:
    """SIGKILL the supervisor and its workers at once, as a crash of the node would."""
    supervisor = psutil.Process(pidfile.read(kit.site).pid)
    victims = [supervisor, *supervisor.children(recursive=True)]
    for process in victims:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(victims, timeout=10)


@pytest.mark.parametrize("jobs, stop", [(JOBS, "kill"), (1000, "stop")])
def test_a_site_caught_mid_flight_moves_and_sends_every_file_once(empty_database, sitekit,
                                                                   jobs, stop):
    kit = sitekit(transfers="  transfer_batch_size: 500\n  claim_lease: 5\n")
    kit.emulator.knobs(startup_delay=2.0)
    begun = time.monotonic()
    ids = kit.make_jobs(jobs)
    kit.start()
    lost = caught_mid_flight(kit)
    caught = time.monotonic() - begun
    if stop == "kill":
        kill_everything(kit)
    else:
        kit.balsam("site", "stop")
    kit.emulator.clear_faults()
    kit.emulator.knobs(startup_delay=0.5)
    before = {"events": db.LogEvent.select().count(),
              "finished": api.Job.objects.filter(state=states.JOB_FINISHED).count(),
              "active": len(tasks_in("active")), "submitting": len(tasks_in("submitting")),
              "budgets": list(db.models.RequestBudget.select().tuples())}
    api.close()

    started = time.monotonic()
    moved = kit.balsam("site", "migrate", "--database-url", empty_database)
    took = time.monotonic() - started
    assert f"job {jobs}," in moved.stdout and "tasks still submitting: " \
        f"{before['submitting']}" in moved.stdout, moved.stdout
    [backup] = kit.site.glob("site.db.migrated-*")
    api.use_site(kit.site)
    assert api.current_settings().database_url == empty_database
    api.connect()  # the models too
    assert db.LogEvent.select().count() == before["events"]
    assert list(db.models.RequestBudget.select().tuples()) == before["budgets"] != []
    assert api.Job.objects.filter(state=states.JOB_FINISHED).count() == before["finished"]

    kit.start()
    restarted = time.monotonic()
    deadline = restarted + 600
    while api.Job.objects.filter(state=states.JOB_FINISHED).count() < jobs:
        assert time.monotonic() < deadline, f"not finished: {kit.states()}"
        assert not api.Job.objects.filter(state=states.FAILED).count(), kit.states()
        play_apps(kit)
        time.sleep(0.2)

    drained = time.monotonic() - restarted
    moved_files = kit.assert_exactly_once()  # no submission id twice, no file twice
    assert sum(moved_files.values()) == 2 * jobs
    made = [s for s in kit.emulator.submissions() if s["submission_id"] == lost.submission_id]
    assert {s["task_id"] for s in made} == {db.TransferTask.get_by_id(lost.id).task_id}
    for job in api.Job.objects.filter(id__in=ids[:: max(1, jobs // 50)]):
        name = f"job{job.workdir.parts[1]}"
        assert (kit.site / "data" / job.workdir / "input.dat").read_text() == f"input of {name}"
        assert (kit.remote / "out" / f"{name}.dat").read_text() == f"output of {job.workdir}"
    assert len(list((kit.remote / "out").iterdir())) == jobs
    copy_time = float(re.search(r"in ([0-9.]+) s;", moved.stdout).group(1))
    shown = {key: value for key, value in before.items() if key != "budgets"}
    print(f"\nmigrate: {jobs} jobs ({stop}), {shown} -> copied in {copy_time:.1f} s, "
          f"the command took {took:.1f} s; backup {backup.name}; caught after {caught:.0f} s, "
          f"drained on PostgreSQL in {drained:.0f} s")
