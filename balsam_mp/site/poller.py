"""The poller: polls every in-flight task in as few calls as each backend allows, then,
in one transaction per result, updates the task, its items and their jobs."""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor, wait

from balsam_mp.db import claims, outcomes
from balsam_mp.db import jobs as job_db
from balsam_mp.db.models import TransferTask, utcnow
from balsam_mp.db.outcomes import Finished, Progress
from balsam_mp.errors import BalsamError
from balsam_mp.site import pauses, results
from balsam_mp.site.backends import Location, build_locations, follow_task
from balsam_mp.site.worker import Worker
from balsam_mp.states import DIRECTIONS, Task
from balsam_mp.transfer.base import (
    ConsentRequired,
    LoginRequired,
    PermanentError,
    TaskStatus,
    TransferBackend,
    TransferError,
)

FASTEST_POLL = 0.05  # seconds; the interval grows to service_period while nothing changes
POLL_SHARE = 1 / 3  # most of the Globus request budget the poller's fast pace may use
FRESH = 2.0  # seconds after its claim that a task is polled fast (short tasks end early)
CANCEL_AGAIN = 30.0  # seconds between two asks to cancel a task a user cancelled
POLL_WAIT = 5.0  # seconds a pass waits for its polls; a slower answer is applied later


class Poller(Worker):
    name = "poller"

    def initialize(self) -> None:
        super().initialize()
        self.locations: dict[str, Location] = build_locations(self.settings)
        # polling fast leaves the rest of the identity's budget to the submitter
        globus = any(loc.protocol == "globus" for loc in self.locations.values())
        self.fastest = max(FASTEST_POLL, 1 / (POLL_SHARE * self.settings.transfers
                                              .globus_requests_per_second)) if globus else \
            FASTEST_POLL
        self.interval = self.fastest
        self.last_poll = 0.0
        self.cancels_sent: dict[int, float] = {}  # task id -> when we last asked
        self.followers: dict[str, TransferBackend] = {}  # protocols no alias uses any more
        self.unfollowed: set[int] = set()  # tasks whose backend cannot be had (logged)
        self.poll_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="poll")
        self.polls: dict[int, tuple] = {}  # backend id -> (backend, tasks, unanswered poll)
        self.poll_errors: dict[int, str] = {}  # backend id -> its last poll's error
        # jobs whose move another session's lock held up, per direction: tried each pass
        self.stragglers = {d: set(job_db.advance_stragglers(d)) for d in DIRECTIONS}

    def step(self) -> bool:
        self.last_poll = time.monotonic()
        for direction, waiting in self.stragglers.items():
            if waiting:
                self.stragglers[direction] = set(job_db.advance_stragglers(direction,
                                                                           sorted(waiting)))
        tasks = list(TransferTask.select(
            TransferTask.id, TransferTask.task_id, TransferTask.direction,
            TransferTask.location_alias, TransferTask.protocol, TransferTask.state,
            TransferTask.inactive_since, TransferTask.deadline, TransferTask.created_at,
            TransferTask.nice_status, TransferTask.fault_since, TransferTask.item_count,
            TransferTask.cancel_requested,
        ).where(TransferTask.state.in_(Task.POLLED)))
        self.forget_ended({t.id for t in tasks})
        by_backend: dict[int, tuple[TransferBackend, list[TransferTask]]] = {}
        for task in tasks:
            try:
                backend = follow_task(self.settings, self.locations, task.location_alias,
                                      task.protocol, self.followers)
            except BalsamError as exc:  # e.g. globus_endpoint_id removed: it waits
                if task.id not in self.unfollowed:  # said once, not every pass
                    self.unfollowed.add(task.id)
                    self.log.warning("task %s cannot be followed: %s", task.task_id, exc)
                continue
            by_backend.setdefault(id(backend), (backend, []))[1].append(task)
        changed = self.poll_each(by_backend)
        # poll fast while tasks finish or were just submitted; back off on long ones
        fresh = any((utcnow() - t.created_at).total_seconds() < FRESH for t in tasks)
        self.interval = self.fastest if changed or fresh else min(
            self.interval * 1.5, self.settings.transfers.service_period)
        return False

    def forget_ended(self, polled: set[int]) -> None:
        """What the poller remembers of tasks stays as big as what is in flight."""
        self.cancels_sent = {k: v for k, v in self.cancels_sent.items() if k in polled}
        self.unfollowed &= polled

    def poll_each(self, by_backend: dict[int, tuple[TransferBackend, list]]) -> bool:
        """Poll every backend at once, each in its own thread, and apply the answers that
        come within POLL_WAIT: a service that hangs or fails holds its own tasks only
        (its poll is answered at a later pass, or fails alone)."""
        started = []
        for key, (backend, group) in by_backend.items():
            if key not in self.polls:  # one poll of a backend at a time
                future = self.poll_pool.submit(backend.poll, [t.task_id for t in group])
                self.polls[key] = (backend, group, future)
                started.append(future)
        wait(started, timeout=POLL_WAIT)
        changed = False
        for key, (backend, group, future) in list(self.polls.items()):
            if not future.done():
                continue
            del self.polls[key]
            try:
                statuses = future.result()
            except (ConsentRequired, LoginRequired) as exc:
                claims.record_site_event("ACTION_REQUIRED", str(exc))
                self.log.error("action required: %s", exc)
                continue
            except TransferError as exc:  # this backend's tasks wait for the next pass
                if self.poll_errors.get(key) != str(exc):  # said once, not every pass
                    self.log.warning("poll failed: %s", exc)
                self.poll_errors[key] = str(exc)
                continue
            self.poll_errors.pop(key, None)
            for task in group:
                status = statuses.get(task.task_id)
                if status is not None:
                    changed |= self.apply(backend, task, status)
                elif task.deadline is not None and utcnow() > task.deadline:
                    changed |= self.lost(task)
        return changed

    def apply(self, backend: TransferBackend, task: TransferTask, status: TaskStatus) -> bool:
        status = pauses.as_seen(status)  # paused by an administrator: no clock runs
        progress = results.progress_of(status)
        if status.status == "INACTIVE" and self.inactive_too_long(task):
            return self.give_up(backend, task, status, "INACTIVE_TIMEOUT", f"inactive for "
                                f"over {self.settings.transfers.inactive_timeout} s; cancelled")
        if status.fault is not None and self.faulting_too_long(task, status):
            details = f" ({status.nice_status_details})" if status.nice_status_details else ""
            tries = f", {status.faults} faults" if status.faults else ""
            return self.give_up(backend, task, status, "STALLED", f"{status.fault}{details} "
                                f"for over {self.settings.transfers.fault_timeout:g} s{tries}; "
                                "cancelled")
        if not status.finished:
            if task.cancel_requested is not None:
                self.cancel_again(backend, task)
            new_state = outcomes.record_progress(task.id, progress)
            if new_state == Task.INACTIVE:
                claims.record_site_event(
                    "ACTION_REQUIRED", f"transfer task {task.task_id} is INACTIVE "
                    f"({status.nice_status}): credentials expired or consent missing; run "
                    "`balsam site globus-login` (the task resumes by itself afterwards)")
            return new_state is not None
        if status.fatal_code == "CANCELED" and self.faulting_too_long(task, None):
            # our own cancel of a stalled task, whose split a crash interrupted
            progress = dataclasses.replace(progress, fatal_code="STALLED", fatal_error=(
                f"{task.nice_status} for over {self.settings.transfers.fault_timeout:g} s; "
                "cancelled"))
        failures = results.file_failures(backend, task, status)
        self.report(task, progress, outcomes.finish_task(task.id, progress, failures,
                                                         self.settings.transfers,
                                                         skip_locked=True))
        return True

    def cancel_again(self, backend: TransferBackend, task: TransferTask) -> None:
        """A user's cancel that the service has not carried out yet (or that a crash cut
        short, or a task sent after it): ask again, every CANCEL_AGAIN seconds."""
        if time.monotonic() - self.cancels_sent.get(task.id, -CANCEL_AGAIN) < CANCEL_AGAIN:
            return
        self.cancels_sent[task.id] = time.monotonic()
        try:
            backend.cancel(task.task_id)
            self.log.info("task %s: cancel requested by the user, sent", task.task_id)
        except PermanentError as exc:  # e.g. it ended meanwhile: the next poll says how
            self.log.warning("task %s: cancel refused: %s", task.task_id, exc)

    def give_up(self, backend: TransferBackend, task: TransferTask, status: TaskStatus,
                code: str, why: str) -> bool:
        """Cancel a task that holds a slot without getting anywhere; its items go round
        again (a stalled batch split in halves)."""
        try:
            backend.cancel(task.task_id)
        except PermanentError as exc:  # e.g. it ended meanwhile: it is given up all the same
            self.log.warning("task %s: cancel refused: %s", task.task_id, exc)
        progress = Progress("FAILED", status.nice_status, status.files_transferred,
                            status.bytes_transferred, status.bytes_per_second, code, why)
        self.report(task, progress, outcomes.finish_task(task.id, progress, [],
                                                         self.settings.transfers))
        return True

    def report(self, task: TransferTask, progress: Progress, finished: Finished) -> None:
        if finished.deferred:
            self.log.warning("task %s ended; a job of it is held by another database "
                             "session: its end is recorded at the next poll", task.task_id)
            return
        if finished.skipped:
            self.stragglers[finished.direction].update(finished.skipped)
            self.log.warning("task %s: job(s) %s held by another database session; moved "
                             "when it lets go", task.task_id,
                             ", ".join(map(str, finished.skipped[:10])))
        if finished.halves:
            self.log.warning(
                "task %s failed as a whole (%s): split round %d, its %d items retried as "
                "halves of %s", task.task_id, outcomes.describe(progress), finished.split_round,
                sum(finished.halves), " and ".join(map(str, finished.halves)))
        elif progress.status == "FAILED":
            self.log.warning("task %s failed (%s): %d item(s) failed", task.task_id,
                             outcomes.describe(progress), finished.failed)
        else:
            self.log.info("task %s %s: %d done, %d failed", task.task_id, progress.status,
                          finished.done, finished.failed)

    def faulting_too_long(self, task: TransferTask, status: TaskStatus | None) -> bool:
        """The same fault (nice_status) for over fault_timeout: e.g. a destination error
        Globus retries until the deadline. status None: as last recorded."""
        if task.fault_since is None or (status and task.nice_status != status.nice_status):
            return False
        waited = (utcnow() - task.fault_since).total_seconds()
        return waited > self.settings.transfers.fault_timeout

    def lost(self, task: TransferTask) -> bool:
        """Past its deadline the service would report a task as expired; one it does not
        know at all is lost. Its items go round again rather than wait forever."""
        progress = Progress("FAILED", None, 0, 0, 0.0, "LOST",
                            "the transfer service no longer knows this task")
        outcomes.finish_task(task.id, progress, [], self.settings.transfers)
        self.log.warning("task %s lost by the service; its items will be retried", task.task_id)
        return True

    def inactive_too_long(self, task: TransferTask) -> bool:
        if task.inactive_since is None:
            return False
        waited = (utcnow() - task.inactive_since).total_seconds()
        return waited > self.settings.transfers.inactive_timeout

    def shutdown(self) -> None:
        self.poll_pool.shutdown(wait=False, cancel_futures=True)  # a hung poll: not awaited
        super().shutdown()

    def idle(self) -> None:
        if self.wait_for_change(self.interval):
            self.interval = self.fastest
            if self.fastest > FASTEST_POLL:  # a commit (our own request grant too) is no
                # reason to poll sooner than the budget allows
                self.sleep(self.last_poll + self.fastest - time.monotonic())
