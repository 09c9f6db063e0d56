"""A finished task's status, as the database takes it: its progress and the items its
per-file failures name. The poller reads them, and so does a user's cancel."""

from __future__ import annotations

from collections import defaultdict

from balsam_mp.db.models import TransferItem, TransferTask
from balsam_mp.db.results import Failure, Progress
from balsam_mp.states import Item
from balsam_mp.transfer.base import TaskStatus, TransferBackend


def progress_of(status: TaskStatus) -> Progress:
    return Progress(status.status, status.nice_status, status.files_transferred,
                    status.bytes_transferred, status.bytes_per_second,
                    status.fatal_code, status.fatal_error, status.fault)


def file_failures(backend: TransferBackend, task: TransferTask,
                  status: TaskStatus) -> list[Failure]:
    """Items named by the task's per-file failures (the rest of the batch succeeded)."""
    if status.status != "SUCCEEDED" or not status.skipped_errors:
        return []
    by_paths: dict[tuple[str, str], list[int]] = defaultdict(list)
    for item_id, remote, local in (TransferItem.select(
            TransferItem.id, TransferItem.remote_path, TransferItem.local_path)
            .where(TransferItem.transfer_task == task.id,
                   TransferItem.state.in_(Item.IN_FLIGHT)).tuples()):
        key = (remote, local) if task.direction == "in" else (local, remote)
        by_paths[key].append(item_id)
    found = []
    for failure in backend.failures(task.task_id, task.direction):
        for item_id in by_paths.get((failure.src, failure.dest), []):
            found.append(Failure(item_id, failure.code, failure.details or failure.code))
    return found
