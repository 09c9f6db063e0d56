"""The site's own moves, through the db-layer functions the workers call (no network),
and jobs for them to move."""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

from balsam_mp import api, db
from balsam_mp.api import Job
from balsam_mp.db import claims, outcomes
from balsam_mp.db.claims import Group
from balsam_mp.states import Item

_ids = itertools.count(1)


def claim(direction: str, alias: str = "laptop", limit: int = 100) -> claims.Claim | None:
    """The submitter: claim due pending items of (direction, alias) and submit them."""
    api.connect()
    owner = claims.owner_id()
    found = claims.claim_batches(
        [(Group(direction, alias), "local://", "local")], capacity=1, budget=limit,
        batch_size=limit, take_submission_id=lambda group: f"sid-{next(_ids)}", owner=owner,
        lease=60, deadline=db.utcnow() + dt.timedelta(hours=1))
    if not found:
        return None
    claims.mark_submitted([(found[0], f"remote-{found[0].task_id}")], owner)
    return found[0]


def finish(task_id: int, failed_items: tuple[int, ...] = (), code: str = "FILE_NOT_FOUND"):
    """The poller: the task succeeded, except the files of `failed_items`."""
    api.connect()
    progress = outcomes.Progress("SUCCEEDED", None, 1, 1, 1.0)
    failures = [outcomes.Failure(i, code, "no such file") for i in failed_items]
    return outcomes.finish_task(task_id, progress, failures, api.current_settings().transfers)


def fail_task(task_id: int, code: str = "ENDPOINT_ERROR"):
    """The poller: the whole task failed (its items retry, or fail for good)."""
    api.connect()
    progress = outcomes.Progress("FAILED", None, 0, 0, 0.0, code, "broken")
    return outcomes.finish_task(task_id, progress, [], api.current_settings().transfers)


def stage(direction: str = "in", alias: str = "laptop") -> None:
    """Claim and finish every pending item of one direction (made due now)."""
    db.TransferItem.update(not_before=None).where(db.TransferItem.state == Item.PENDING).execute()
    while (task := claim(direction, alias)) is not None:
        finish(task.task_id)


def mysim_id() -> int:
    return api.App.objects.get(name="MySim").id


def make(n: int = 1, prefix: str = "e", out: bool = True) -> list[Job]:
    jobs = [Job(workdir=Path(prefix, str(i)), app_id=mysim_id(), tags={"n": str(i)},
                transfers={"input_file": {"location_alias": "laptop", "path": f"/in/{i}.dat"},
                           **({"result": f"laptop:/out/{i}.dat"} if out else {})})
            for i in range(n)]
    return Job.objects.bulk_create(jobs)
