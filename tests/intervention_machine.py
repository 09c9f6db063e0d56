"""The state machine of tests/test_interventions_stateful.py: a user stepping in (create,
re-create on a freed workdir, run, FAIL, restart, retry, cancel, delete) interleaved
with passes of the real submitter and poller, against the Globus emulator over HTTP with
faults that lose submit answers and hold tasks. After every step it checks what issue 19
promises: no job stuck, every staged-in input its own job's, every finished job's remote
result its last run's, and no task running at the service that the site cancelled."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from balsam_mp import api, db, itemmoves
from balsam_mp.api import Job
from balsam_mp.db import controls
from balsam_mp.errors import BalsamError, StateConflict, ValidationError
from balsam_mp.site import controls as site_controls
from balsam_mp.states import Item, Task
from tests.conftest import wait_for

FLIGHT = (Item.PENDING, *Item.IN_FLIGHT)
STAGED = ("STAGED_IN", "RUNNING", "RUN_DONE", "RESTART_READY", "POSTPROCESSED",
          "JOB_FINISHED")
uids = itertools.count()


@dataclass
class Rig:
    """What the machine drives: the site, its workers (in this process), the emulator."""

    site: Path
    remote: Path
    settings: object
    emulator: object
    submitter: object
    poller: object
    runs: dict = field(default_factory=lambda: {"examples": 0, "steps": 0, "seen": set()})


RIG: Rig | None = None  # set by the test before the machine runs


class Interventions(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.rig = RIG
        self.rig.runs["examples"] += 1
        self.rig.emulator.clear_faults()
        self.rig.emulator.knobs(startup_delay=0.0)
        for table in (db.LogEvent, db.TransferItem, db.TransferTask, db.Job):
            table.delete().execute()
        self.input_of: dict[int, str] = {}  # job id -> its input's content
        self.result_of: dict[int, str] = {}  # job id -> its last run's output
        self.uid_of: dict[int, int] = {}
        self.freed: list[str] = []  # workdirs of deleted jobs, to reuse

    # --- the user ---------------------------------------------------------------------

    @rule(reuse=st.booleans())
    def create(self, reuse: bool) -> None:
        uid = next(uids)
        workdir = self.freed.pop() if reuse and self.freed else f"w{uid}"
        content = f"in-{uid:06d}"  # every input the same size: only a checksum tells
        (self.rig.remote / "in" / f"{uid}.dat").write_text(content)
        [job] = Job.objects.bulk_create([{"app": "MySim", "workdir": workdir, "transfers": {
            "input_file": f"remote:/in/{uid}.dat", "result": f"remote:/out/{uid}.dat"}}])
        self.input_of[job.id], self.uid_of[job.id] = content, uid

    @rule(data=st.data())
    def run_app(self, data: st.DataObject) -> None:
        """The app runs (again) and writes this run's output: STAGED_IN or RESTART_READY
        -> RUNNING -> RUN_DONE -> POSTPROCESSED."""
        job = self.pick(data, ("STAGED_IN", "RESTART_READY"))
        if job is None:
            return
        run = len([e for e in db.LogEvent.select().where(
            db.LogEvent.job == job.id, db.LogEvent.to_state == "RUNNING")]) + 1
        output = f"out-{self.uid_of[job.id]:06d}-{run:03d}"  # the same size, run to run
        (self.rig.site / "data" / job.workdir / "output.dat").write_text(output)
        state = job.state
        for after in ("RUNNING", "RUN_DONE", "POSTPROCESSED"):
            Job.objects.set_state(job.id, state, after)
            state = after
            self.rig.runs["seen"].add(after)
        self.result_of[job.id] = output

    @rule(data=st.data())
    def fail_job(self, data: st.DataObject) -> None:
        job = self.pick(data, ("READY", "STAGED_IN", "RUNNING", "RUN_DONE", "RESTART_READY",
                               "POSTPROCESSED"))
        if job is not None:
            Job.objects.set_state(job.id, job.state, "FAILED")

    @rule(data=st.data())
    def restart(self, data: st.DataObject) -> None:
        job = self.pick(data, ("FAILED",))
        if job is not None:
            try:  # refused while a transfer of it failed, or its inputs are not in
                Job.objects.set_state(job.id, "FAILED", "RESTART_READY")
            except ValidationError:
                pass

    @rule()
    def retry_failed(self) -> None:
        with db.Job._meta.database.atomic():
            controls.retry_items(None)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        tasks = [t for (t,) in db.TransferTask.select(db.TransferTask.id).where(
            db.TransferTask.state.in_(Task.IN_FLIGHT)).order_by(db.TransferTask.id).tuples()]
        if not tasks:
            return
        task = data.draw(st.sampled_from(tasks))
        _, unconfirmed = site_controls.cancel(self.rig.settings, [str(task)])
        assert db.TransferTask.get_by_id(task).cancel_requested is not None  # recorded,
        assert unconfirmed in (0, 1)  # and sent again by the poller if unconfirmed

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        job = self.pick(data, None)
        if job is None:
            return
        try:
            Job.objects.filter(id=job.id).delete()
        except ValidationError:  # in flight: refused
            return
        self.freed.append(job.workdir)
        for known in (self.input_of, self.result_of, self.uid_of):
            known.pop(job.id, None)

    @rule(data=st.data())
    def replace(self, data: st.DataObject) -> None:
        """Delete a job and create a new one on its workdir (its old input stays there)."""
        before = len(self.freed)
        self.delete(data)
        if len(self.freed) > before:
            self.create(reuse=True)

    # --- the environment and the site ---------------------------------------------------

    @rule()
    def lose_the_next_submit_answer(self) -> None:
        self.rig.emulator.fault("submit_transfer", after=True, count=1)

    @rule(slow=st.booleans())
    def service_pace(self, slow: bool) -> None:
        """Slow: new tasks wait a second before they copy (time to hold or cancel them)."""
        self.rig.emulator.knobs(startup_delay=1.0 if slow else 0.0)

    @rule(hold=st.booleans())
    def hold_tasks(self, hold: bool) -> None:
        """Hold every running task INACTIVE (as expired credentials do), or let go."""
        for task_id, task in self.rig.emulator.tasks().items():
            if task["status"] == ("ACTIVE" if hold else "INACTIVE"):
                self.rig.emulator.set_inactive(task_id, hold)

    @rule()
    def submitter_pass(self) -> None:
        try:
            self.rig.submitter.step()
        except BalsamError:  # a lost answer: the claim stays, sent again next pass
            pass

    @rule()
    def poller_pass(self) -> None:
        wait_for(lambda: all(t["status"] != "ACTIVE" for t in self.rig.emulator.tasks()
                             .values()), timeout=60, what="the service's running tasks")
        self.rig.poller.step()

    @rule()
    def site_pass(self) -> None:
        """Both workers, one pass each, the service's running tasks done in between."""
        self.submitter_pass()
        self.poller_pass()

    @rule(data=st.data())
    def work_through(self, data: st.DataObject) -> None:
        """A quiet stretch: the site stages in, every staged-in app runs, the site stages
        out (so the machine reaches JOB_FINISHED often, between interventions)."""
        self.site_pass()
        for _ in Job.objects.filter(state="STAGED_IN"):
            self.run_app(data)
        self.site_pass()

    def pick(self, data: st.DataObject, states: tuple[str, ...] | None) -> Job | None:
        query = Job.objects.all() if states is None else Job.objects.filter(state=states)
        jobs = sorted(query, key=lambda j: j.id)
        return data.draw(st.sampled_from(jobs)) if jobs else None

    # --- what issue 19 promises, after every step ----------------------------------------

    @invariant()
    def no_job_is_stuck(self) -> None:
        self.rig.runs["steps"] += 1
        for job in Job.objects.filter(state=["READY", "POSTPROCESSED"]):
            self.rig.runs["seen"].add(job.state)
            direction = "in" if job.state == "READY" else "out"
            moving = db.TransferItem.select().where(
                db.TransferItem.job == job.id, db.TransferItem.direction == direction,
                db.TransferItem.state.in_(FLIGHT)).exists()
            assert moving, f"job {job.id} is {job.state} with nothing moving"

    @invariant()
    def a_failed_runs_result_is_not_sent(self) -> None:
        """While a job is FAILED, no stage-out of it is waiting to go or being sent."""
        leaving = db.TransferItem.select().join(db.Job).where(
            db.Job.state == "FAILED", db.TransferItem.direction == "out",
            db.TransferItem.state.in_((Item.PENDING, Item.SUBMITTING)))
        assert not leaving.exists()

    @invariant()
    def a_failed_job_stages_nothing_new(self) -> None:
        """While a job is FAILED, none of its stage-in items waits to go: they wait for
        the job to be READY again (a retry or a restart)."""
        waiting = db.TransferItem.select().join(db.Job).where(
            db.Job.state == "FAILED", db.TransferItem.direction == "in",
            db.TransferItem.state == Item.PENDING)
        assert not waiting.exists()

    @invariant()
    def staged_inputs_are_the_jobs_own(self) -> None:
        for job in Job.objects.filter(state=list(STAGED)):
            self.rig.runs["seen"].add(job.state)
            found = (self.rig.site / "data" / job.workdir / "input.dat").read_text()
            assert found == self.input_of[job.id], (job.id, job.state, found)

    @invariant()
    def finished_results_are_the_last_runs(self) -> None:
        for job in Job.objects.filter(state="JOB_FINISHED"):
            remote = self.rig.remote / "out" / f"{self.uid_of[job.id]}.dat"
            assert remote.read_text() == self.result_of[job.id], job.id

    @invariant()
    def no_cancelled_task_runs_at_the_service(self) -> None:
        remote = self.rig.emulator.tasks()
        for task_id, state in db.TransferTask.select(
                db.TransferTask.task_id, db.TransferTask.state).where(
                db.TransferTask.cancel_requested.is_null(False),
                db.TransferTask.state.in_((Task.SUCCEEDED, Task.FAILED))).tuples():
            if task_id is not None:
                assert remote[task_id]["status"] in ("SUCCEEDED", "FAILED"), (task_id, state)

    @invariant()
    def every_item_move_is_in_the_table(self) -> None:
        for from_state, to_state in db.LogEvent.select(
                db.LogEvent.from_state, db.LogEvent.to_state).where(
                db.LogEvent.transfer_item.is_null(False),
                db.LogEvent.from_state.is_null(False)).tuples():
            assert itemmoves.any_actor("item", from_state, to_state), (from_state, to_state)


__all__ = ["RIG", "Interventions", "Rig", "StateConflict", "api"]
