"""Balsam's futures-like helpers over jobs: bulk_refresh, wait, as_completed.

"Done" is JOB_FINISHED or FAILED, as in Balsam. A job deleted while it is waited on is
one clear error (Job.DoesNotExist naming it), never a wait that cannot end.
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from collections.abc import Iterator
from typing import Any, NamedTuple, TypeVar

from balsam_mp import db
from balsam_mp.api.model import Model
from balsam_mp.api.query import guarded
from balsam_mp.db.bulk import value_list
from balsam_mp.errors import ValidationError
from balsam_mp.schemas import DONE_STATES

JobT = TypeVar("JobT", bound=Model)  # api/job.py's Job, which builds on this module

RETURN_WHEN = ("ALL_COMPLETED", "FIRST_COMPLETED")  # concurrent.futures' names


class JobWaitResult(NamedTuple):
    done: list[Any]
    not_done: list[Any]


def saved_jobs(call: str, jobs: Any, job_class: type[JobT]) -> list[JobT]:
    """The list of saved Job objects a helper was given, or one clear error."""
    if isinstance(jobs, (str, bytes, dict)) or not hasattr(jobs, "__iter__"):
        raise ValidationError(f"{call} takes a list of Job objects, not {jobs!r}")
    jobs = list(jobs)
    for index, job in enumerate(jobs):
        if not isinstance(job, job_class):
            raise ValidationError(f"{call}: item {index} ({job!r}) is not a Job")
        if job.id is None:
            raise ValidationError(f"{call}: item {index} is a Job not saved yet")
    return jobs


def bulk_refresh(jobs: list[JobT], job_class: type[JobT]) -> None:
    """Re-read every job in one query; none is changed if one no longer exists."""
    by_id: dict[int, list[JobT]] = {}
    for job in jobs:
        by_id.setdefault(job.id, []).append(job)  # type: ignore[arg-type]
    if not by_id:
        return
    rows = guarded(lambda: list(job_class._select().where(
        db.Job.id.in_(value_list(sorted(by_id)))).dicts()))
    found = {row["id"]: row for row in rows}
    gone = sorted(job.id for job in jobs if job.id not in found  # type: ignore[type-var]
                  or found[job.id]["created_at"] != job.created_at)
    if gone:
        raise job_class.DoesNotExist(
            f"job(s) {', '.join(map(str, dict.fromkeys(gone)))} no longer exist "
            "(deleted meanwhile)")
    for job_id, same in by_id.items():
        for job in same:
            job._load(found[job_id])


def _limits(call: str, timeout: Any, poll_interval: Any) -> tuple[float | None, float]:
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or math.isnan(timeout):
            raise ValidationError(f"{call}: timeout must be a number of seconds or None, "
                                  f"not {timeout!r}")
        timeout = None if math.isinf(timeout) and timeout > 0 else max(0.0, float(timeout))
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, (int, float)) \
            or not math.isfinite(poll_interval) or poll_interval <= 0:
        raise ValidationError(f"{call}: poll_interval must be a positive number of seconds, "
                              f"not {poll_interval!r}")
    return timeout, float(poll_interval)


def _pause(deadline: float | None, poll_interval: float) -> None:
    """Sleep one poll interval, never past the deadline (a poll, not a wait on a
    condition: the site moves the jobs in other processes)."""
    left = poll_interval if deadline is None else min(poll_interval,
                                                      deadline - time.monotonic())
    if left > 0:
        time.sleep(left)


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    end = time.monotonic() + timeout
    return end if math.isfinite(end) else None  # a huge timeout: no deadline


def wait(jobs: Any, job_class: type[JobT], timeout: Any = None, poll_interval: Any = 1.0,
         return_when: str = "ALL_COMPLETED") -> JobWaitResult:
    """Balsam's Job.objects.wait: poll until all jobs are done (or, with
    return_when="FIRST_COMPLETED", any), or `timeout` seconds have passed."""
    jobs = saved_jobs("wait", jobs, job_class)
    timeout, poll_interval = _limits("wait", timeout, poll_interval)
    if return_when not in RETURN_WHEN:
        raise ValidationError(f"wait: return_when must be one of {', '.join(RETURN_WHEN)}, "
                              f"not {return_when!r}")
    deadline = _deadline(timeout)
    bulk_refresh(jobs, job_class)  # objects read earlier may be stale either way
    done = [job for job in jobs if job.state in DONE_STATES]
    not_done = [job for job in jobs if job.state not in DONE_STATES]

    def finished() -> bool:
        return not not_done or (return_when == "FIRST_COMPLETED" and bool(done))

    while not finished() and (deadline is None or time.monotonic() < deadline):
        _pause(deadline, poll_interval)
        bulk_refresh(not_done, job_class)
        done += [job for job in not_done if job.state in DONE_STATES]
        not_done = [job for job in not_done if job.state not in DONE_STATES]
    return JobWaitResult(done=done, not_done=not_done)


def as_completed(jobs: Any, job_class: type[JobT], timeout: Any = None,
                 poll_interval: Any = 1.0) -> Iterator[JobT]:
    """Balsam's Job.objects.as_completed: yield each job once it is done; a
    concurrent.futures.TimeoutError when `timeout` seconds pass first. The arguments
    are checked at the call, not at the first next()."""
    jobs = saved_jobs("as_completed", jobs, job_class)
    timeout, poll_interval = _limits("as_completed", timeout, poll_interval)
    return _completing(jobs, job_class, timeout, poll_interval)


def _completing(jobs: list[JobT], job_class: type[JobT], timeout: float | None,
                poll_interval: float) -> Iterator[JobT]:
    deadline = _deadline(timeout)
    bulk_refresh(jobs, job_class)  # objects read earlier may be stale either way
    pending = []
    for job in jobs:
        if job.state in DONE_STATES:
            yield job
        else:
            pending.append(job)
    while pending:
        if deadline is not None and time.monotonic() >= deadline:
            raise concurrent.futures.TimeoutError(
                f"{len(pending)} job(s) still pending after the {timeout} s timeout "
                f"(ids {', '.join(str(job.id) for job in pending[:10])}"
                f"{', ...' if len(pending) > 10 else ''})")
        _pause(deadline, poll_interval)
        bulk_refresh(pending, job_class)
        for job in [job for job in pending if job.state in DONE_STATES]:
            yield job
        pending = [job for job in pending if job.state not in DONE_STATES]
