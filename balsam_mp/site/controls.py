"""`balsam transfer cancel`: cancel remote tasks, then fail their items."""

from __future__ import annotations

from balsam_mp.db import controls
from balsam_mp.settings import Settings
from balsam_mp.site.backends import backend_of_task, build_locations
from balsam_mp.states import Task


def cancel(settings: Settings, ids: list[str]) -> list[str]:
    tasks = controls.find_tasks(ids)
    locations = build_locations(settings)
    report = []
    for task in tasks:
        if task.state not in Task.IN_FLIGHT:
            report.append(f"task {task.id} is already {task.state}; nothing to cancel")
            continue
        backend = backend_of_task(locations, task.location_alias, task.protocol)
        if task.task_id and backend is not None:
            backend.cancel(task.task_id)
        count = controls.cancel_task_items(task.id, settings.transfers)
        report.append(f"task {task.id} ({task.task_id or 'not yet submitted'}) cancelled; "
                      f"{count} item(s) marked error")
    return report
