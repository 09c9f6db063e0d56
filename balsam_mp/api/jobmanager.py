"""Job.objects: Balsam's JobManager (create, bulk_create, bulk_update, bulk_refresh,
wait, as_completed) and our set_state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from balsam_mp import transitions
from balsam_mp.api import waiting
from balsam_mp.api.jobwrite import UpdateResult, bulk_update
from balsam_mp.api.query import Manager, guarded
from balsam_mp.api.site import transaction
from balsam_mp.api.waiting import JobT
from balsam_mp.db import jobs as job_db
from balsam_mp.errors import ValidationError


class JobManager(Manager[JobT]):
    def create(self, workdir: Any = None, app_id: Any = None, **fields: Any) -> JobT:
        """Create and save one job (the keywords of Job(...))."""
        job = self.model_class(workdir=workdir, app_id=app_id, **fields)
        job.save()
        return job

    def bulk_create(self, jobs: list[JobT | dict[str, Any]]) -> list[JobT]:
        """Create many jobs (Job objects or dicts of its keywords) in one transaction:
        all of them, or none if one is bad. The Job objects given become saved."""
        if not isinstance(jobs, (list, tuple)):
            raise ValidationError(f"bulk_create takes a list of Job objects, not {jobs!r}")
        objs = []
        for index, job in enumerate(jobs):
            if isinstance(job, dict):
                job = self.model_class(**job)
            elif not isinstance(job, self.model_class):
                raise ValidationError(f"job {index}: {job!r} is not a Job or a dict")
            objs.append(job)
        return self.model_class._create_all(objs)

    def bulk_update(self, jobs: list[JobT]) -> UpdateResult:
        """Balsam's: write what changed on each of these jobs (each its own change), as
        save() would, in one transaction: all or none. A job moved or deleted since it
        was read is refused (StateConflict, Job.DoesNotExist). The jobs are re-read."""
        return bulk_update(waiting.saved_jobs("bulk_update", jobs, self.model_class))

    def bulk_refresh(self, jobs: list[JobT]) -> None:
        """Balsam's: re-read these jobs in one query (Job.DoesNotExist if one is gone)."""
        waiting.bulk_refresh(waiting.saved_jobs("bulk_refresh", jobs, self.model_class),
                             self.model_class)

    def wait(self, jobs: list[JobT], timeout: float | None = None, poll_interval: float = 1.0,
             return_when: str = "ALL_COMPLETED") -> waiting.JobWaitResult:
        """Balsam's: poll until all jobs are done (JOB_FINISHED or FAILED), or any with
        return_when="FIRST_COMPLETED", or `timeout` s passed; returns (done, not_done)."""
        return waiting.wait(jobs, self.model_class, timeout, poll_interval, return_when)

    def as_completed(self, jobs: list[JobT], timeout: float | None = None,
                     poll_interval: float = 1.0) -> Iterator[JobT]:
        """Balsam's: yield the jobs as they are done; concurrent.futures.TimeoutError
        if `timeout` s pass first."""
        return waiting.as_completed(jobs, self.model_class, timeout, poll_interval)

    def set_state(self, job_id: int, from_state: str, to_state: str, message: str = "") -> None:
        """Compare-and-set one job's state (e.g. RUN_DONE -> POSTPROCESSED)."""
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise ValidationError(f"set_state: job id {job_id!r} is not an integer")
        from_state = transitions.check_state_name(from_state, f"job {job_id}: state")
        to_state = transitions.check_state_name(to_state, f"job {job_id}: state")
        with transaction():
            guarded(lambda: job_db.set_job_state(job_id, from_state, to_state, message))
