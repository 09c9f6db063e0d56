"""The state machine of tests/test_api_stateful.py: a user's calls (create, save with
stale and fresh objects, update, set_state, delete, `transfer retry`, `transfer cancel`)
and the site's moves (claim, finish with some files failed, fail a whole task) as
Hypothesis rules, with what a user relies on as invariants checked after every step; `runs`
counts what a run explored. The class's code is also the seed of the suite's fixed run
(Hypothesis derandomizes from a digest of it): a change to it picks other examples.
"""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from balsam_mp import api, db, itemmoves, transitions
from balsam_mp.api import Job
from balsam_mp.api.jobwrite import SITE_KEYS
from balsam_mp.db import cancels, controls, outcomes
from balsam_mp.errors import NotFound, StateConflict, ValidationError
from balsam_mp.states import JOB_STATES, Item, Task
from tests.sitemoves import claim, fail_task, finish

STAGED = {"STAGED_IN", "PREPROCESSED", "RUNNING", "RUN_DONE", "RUN_ERROR", "RUN_TIMEOUT",
          "RESTART_READY", "POSTPROCESSED", "STAGED_OUT", "JOB_FINISHED"}
RELEASED = {"POSTPROCESSED", "STAGED_OUT", "JOB_FINISHED"}
runs: dict = {"examples": 0, "steps": 0, "seen": set()}
workdirs = itertools.count()


def db_state(job: Job | int) -> str | None:
    """The stored state of this job (None once deleted, even if a new job got its id)."""
    if isinstance(job, int):
        return db.Job.select(db.Job.state).where(db.Job.id == job).scalar()
    if job.id is None:
        return None
    return db.Job.select(db.Job.state).where(job._same_row()).scalar()


def db_states() -> dict[int, str]:
    return dict(db.Job.select(db.Job.id, db.Job.state).tuples())


class SiteAndUser(RuleBasedStateMachine):
    jobs = Bundle("jobs")  # API objects the user holds: fresh, or stale after other steps

    def __init__(self) -> None:
        super().__init__()
        runs["examples"] += 1
        for table in (db.LogEvent, db.TransferItem, db.TransferTask, db.Job):
            table.delete().execute()

    # --- the user ---------------------------------------------------------------------

    @rule(target=jobs, app=st.sampled_from(["MySim", "Two"]), out=st.booleans())
    def create(self, app: str, out: bool) -> Job:
        n = next(workdirs)
        transfers = {"input_file": f"laptop:/in/{n}"} if app == "MySim" else {
            "a": f"laptop:/in/a{n}", "b": f"laptop:/in/b{n}"}
        if out:
            transfers["result" if app == "MySim" else "c"] = f"laptop:/out/{n}"
        job = Job(workdir=f"s/{n}", app=app, transfers=transfers, tags={"n": str(n)})
        job.save()
        return job

    @rule(target=jobs, job=jobs)
    def fetch(self, job: Job) -> Job:
        """A fresh copy of a job (the old one becomes stale as the site moves on)."""
        try:
            return Job.objects.get(id=job.id)
        except Job.DoesNotExist:
            return job

    @rule(job=jobs, tag=st.text("xyz", min_size=1, max_size=3))
    def save_tags(self, job: Job, tag: str) -> None:
        if job.id is None:
            return
        before, stored = db_state(job), db.Job.get_or_none(id=job.id)
        changed = job._loaded["tags"] != {"n": tag}  # dirty tracking: only changes are written
        job.tags = {"n": tag}
        try:
            job.save()
        except NotFound:
            assert before is None
            return
        assert db_state(job) == before  # a stale object never reverts the site
        assert Job.objects.get(id=job.id).tags == ({"n": tag} if changed else stored.tags)

    @rule(job=jobs, key=st.sampled_from(["note", "failed_from"]))
    def save_state_data(self, job: Job, key: str) -> None:
        if db_state(job) is None:
            return
        stored = db.Job.get_by_id(job.id).state_data
        job.state_data = {**job.state_data, key: "user"}
        try:
            job.save()
        except ValidationError as exc:
            assert key in SITE_KEYS and "written by the site" in str(exc)
            job.refresh_from_db()
            return
        except NotFound:
            return  # a stale copy of a deleted job (its id may now be another job's)
        data = Job.objects.get(id=job.id).state_data
        for site_key in SITE_KEYS:  # the site's keys the user did not touch survive
            if site_key != key and site_key in stored:
                assert data[site_key] == stored[site_key]

    @rule(job=jobs, target_state=st.sampled_from(JOB_STATES))
    def save_state(self, job: Job, target_state: str) -> None:
        if job.id is None:
            return
        before, read_in = db_state(job), job.state
        job.state = target_state
        try:
            job.save()
        except (ValidationError, StateConflict, NotFound) as exc:
            assert db_state(job) == before
            if isinstance(exc, StateConflict):
                assert before != read_in and f"found {before}" in str(exc)
            if before is not None:
                job.refresh_from_db()
            return
        assert read_in == target_state or (
            before == read_in and transitions.allowed(read_in, target_state))

    @rule()
    def run_apps(self) -> None:
        """The user's code runs every staged-in job and marks it POSTPROCESSED."""
        for job in Job.objects.filter(state="STAGED_IN"):
            for state in ("RUNNING", "RUN_DONE", "POSTPROCESSED"):
                job.state = state
                job.save()
            assert not db.TransferItem.select().where(
                db.TransferItem.job == job.id,
                db.TransferItem.state == Item.AWAITING_JOB).exists()

    @rule(job=jobs, target_state=st.sampled_from(JOB_STATES))
    def set_state(self, job: Job, target_state: str) -> None:
        before = db_state(job)
        if before is None or before == target_state:
            return
        try:
            Job.objects.set_state(job.id, before, target_state)
        except ValidationError:
            assert db_state(job) == before
            return
        assert transitions.allowed(before, target_state)

    @rule(target_state=st.sampled_from(JOB_STATES), data=st.data())
    def update(self, target_state: str, data: st.DataObject) -> None:
        ids = sorted(db_states())
        chosen = data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=3)) if ids \
            else []
        before = db_states()
        try:
            Job.objects.filter(id=chosen).update(state=target_state)
        except ValidationError:
            assert db_states() == before  # all or none
            return
        for job_id in chosen:
            assert before[job_id] == target_state or transitions.allowed(before[job_id],
                                                                          target_state)

    @rule(data=st.data(), tag=st.text("xyz", min_size=1, max_size=2))
    def update_tags(self, data: st.DataObject, tag: str) -> None:
        ids = sorted(db_states())
        chosen = data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=3)) if ids \
            else []
        before = db_states()
        updated = Job.objects.filter(id=chosen).update(tags={"n": tag})
        assert sorted(j.id for j in updated) == sorted(chosen)
        assert db_states() == before  # tags only: no job moved
        assert all(j.tags == {"n": tag} for j in updated)

    @rule(job=consumes(jobs))
    def delete(self, job: Job) -> None:
        if db_state(job) is None:
            return
        busy = db.TransferItem.select().where(db.TransferItem.job == job.id,
                                              db.TransferItem.state.in_(Item.IN_FLIGHT)).exists()
        job_id = job.id
        try:
            job.delete()
        except ValidationError:
            assert busy and db_state(job) is not None
            return
        assert not busy and db_state(job_id) is None
        assert not db.TransferItem.select().where(db.TransferItem.job == job_id).exists()

    @rule()
    def retry_failed(self) -> None:
        """The user's `balsam transfer retry --failed`."""
        with db.Job._meta.database.atomic():
            controls.retry_items(None)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        """The user's `balsam transfer cancel` of a task in flight."""
        tasks = self.tasks_in_flight(active_only=True)
        if tasks:  # the service answers the cancel: the task failed, CANCELED
            task = data.draw(st.sampled_from(tasks))
            cancels.request_cancel(task)
            outcomes.finish_task(task, outcomes.Progress("FAILED", None, 0, 0, 0.0, "CANCELED",
                                                         "canceled by the user"), [],
                                 api.current_settings().transfers, itemmoves.CANCEL)

    # --- the site ---------------------------------------------------------------------

    @rule(direction=st.sampled_from(["in", "out"]), limit=st.integers(1, 4))
    def site_claims(self, direction: str, limit: int) -> None:
        db.TransferItem.update(not_before=None).where(
            db.TransferItem.state == Item.PENDING).execute()  # retries are due: time passes
        claim(direction, limit=limit)

    @rule(data=st.data(), fail_some=st.booleans(),
          code=st.sampled_from(["FILE_NOT_FOUND", "ENDPOINT_ERROR"]))
    def site_finishes(self, data: st.DataObject, fail_some: bool, code: str,
                      task: int | None = None) -> None:
        tasks = self.tasks_in_flight(active_only=True)
        if not tasks:
            return
        task = task or data.draw(st.sampled_from(tasks))
        items = [i for (i,) in db.TransferItem.select(db.TransferItem.id).where(
            db.TransferItem.transfer_task == task).tuples()]
        failed = data.draw(st.lists(st.sampled_from(items), unique=True)) if fail_some else []
        finished = db_states()
        finish(task, tuple(failed), code)
        for job_id, state in finished.items():  # a finished job never moves again
            if state == "JOB_FINISHED":
                assert db_state(job_id) == "JOB_FINISHED"

    @rule(data=st.data(), fail_some=st.booleans())
    def site_pass(self, data: st.DataObject, fail_some: bool) -> None:
        """One round of both workers: claim what is due, then finish every task."""
        for direction in ("in", "out"):
            self.site_claims(direction, 10)
        for task in self.tasks_in_flight(active_only=True):
            self.site_finishes(data, fail_some, "ENDPOINT_ERROR", task)

    @rule(data=st.data())
    def site_task_fails(self, data: st.DataObject) -> None:
        tasks = self.tasks_in_flight(active_only=True)
        if tasks:
            fail_task(data.draw(st.sampled_from(tasks)))

    def tasks_in_flight(self, active_only: bool = False) -> list[int]:
        wanted = (Task.ACTIVE, Task.INACTIVE) if active_only else Task.IN_FLIGHT
        return [t for (t,) in db.TransferTask.select(db.TransferTask.id).where(
            db.TransferTask.state.in_(wanted)).order_by(db.TransferTask.id).tuples()]

    # --- what a user relies on, after every step --------------------------------------

    @invariant()
    def staged_in_means_inputs_done(self) -> None:
        runs["steps"] += 1
        rows = db.TransferItem.select(db.TransferItem.job, db.Job.state).join(db.Job).where(
            db.TransferItem.direction == "in", db.TransferItem.state != Item.DONE,
            db.Job.state.in_(list(STAGED))).tuples()
        assert list(rows) == []

    @invariant()
    def released_means_no_item_awaits(self) -> None:
        rows = db.TransferItem.select(db.TransferItem.id, db.Job.state).join(db.Job).where(
            db.TransferItem.state == Item.AWAITING_JOB,
            db.Job.state.in_(list(RELEASED))).tuples()
        assert list(rows) == []
        finished_open = db.TransferItem.select().join(db.Job).where(
            db.Job.state == "JOB_FINISHED", db.TransferItem.state != Item.DONE)
        assert not finished_open.exists()

    @invariant()
    def every_change_is_logged_and_allowed(self) -> None:
        events: dict[int, list[tuple[str | None, str]]] = {}
        for job_id, from_state, to_state in db.LogEvent.select(
                db.LogEvent.job, db.LogEvent.from_state, db.LogEvent.to_state).where(
                db.LogEvent.transfer_item.is_null(), db.LogEvent.job.is_null(False)
        ).order_by(db.LogEvent.id).tuples():
            events.setdefault(job_id, []).append((from_state, to_state))
        for job_id, state in db_states().items():
            assert state in JOB_STATES
            chain = events.get(job_id, [])
            runs["seen"].update(entered for _, entered in chain)  # passed through, too
            assert chain and chain[0][0] == "CREATED", (job_id, chain)
            for (_, reached), (left, entered) in itertools.pairwise(chain):
                assert left == reached, (job_id, chain)
                assert transitions.allowed(left, entered, transitions.USER) or \
                    transitions.allowed(left, entered, transitions.SITE), (job_id, chain)
            assert chain[-1][1] == state, (job_id, chain, state)

    @invariant()
    def every_item_move_is_in_the_table(self) -> None:
        for from_state, to_state in db.LogEvent.select(
                db.LogEvent.from_state, db.LogEvent.to_state).where(
                db.LogEvent.transfer_item.is_null(False),
                db.LogEvent.from_state.is_null(False)).tuples():
            assert itemmoves.any_actor("item", from_state, to_state), (from_state, to_state)
