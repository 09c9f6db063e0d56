"""What each failure domain waits on, for `site status`.

The submitter keeps its aliases' waits in memory (domains.py) and writes them to
`.run/waits.json` whenever they change; `site status` reads that file while the site
runs and puts it beside the tasks of each group (direction, alias)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from balsam_mp import permissions
from balsam_mp.settings import Settings
from balsam_mp.site import batching

FILE = "waits.json"
SEND_WAIT = 5.0  # seconds a submitter's pass waits for its sends (a slower answer: later)


def write(site_path: Path, waits: dict[str, dict]) -> None:
    """alias -> {"reason", "until" (epoch seconds)}, written whole (temp file, rename)."""
    folder = permissions.make_folder(site_path / ".run", permissions.RUNTIME.folder)
    path = folder / FILE
    temp = path.with_suffix(f".tmp{os.getpid()}")
    with os.fdopen(permissions.open_file(temp, os.O_WRONLY | os.O_TRUNC,
                                         permissions.RUNTIME.file), "w") as out:
        json.dump(waits, out)
    os.replace(temp, path)


def read(site_path: Path, grace: float = 0.0) -> dict[str, dict]:
    """The waits still current, or ended less than `grace` seconds ago; none if the file
    is missing or unreadable."""
    try:
        waits = json.loads((site_path / ".run" / FILE).read_text())
    except (OSError, ValueError):
        return {}
    now = time.time()
    return {alias: wait for alias, wait in waits.items()
            if isinstance(wait, dict) and isinstance(wait.get("until"), (int, float))
            and wait["until"] + grace > now}


def retry_grace(site: Settings | None) -> float:
    """How long after its wait ends an alias's claims may still be unsent: the submitter
    tries them at its next pass (within service_period) and waits SEND_WAIT for the
    answer; then it clears the wait or holds the alias again. Until then they are held,
    not running at the service."""
    return (site.transfers.service_period if site is not None else 0.0) + SEND_WAIT


def groups(in_flight: list[dict], site: Settings | None, waits: dict[str, dict],
           pending: dict[tuple[str, str], int], locked: bool) -> list[dict]:
    """Per (direction, alias) with a task in flight, a wait or items pending: its tasks
    active (of which queued at the service), inactive and held (claims not sent: their
    alias waits or is gone), and what it waits on: the reason of its wait, its alias
    gone, a lock another session holds, or the slots its protocol has in use."""
    trusted = site.transfers.transfer_locations if site else None
    found: dict[tuple[str, str], dict] = {}

    def group(direction: str, alias: str) -> dict:
        return found.setdefault((direction, alias), {
            "direction": direction, "alias": alias, "active": 0, "queued": 0,
            "inactive": 0, "held": 0, "waits_on": None})

    for task in in_flight:
        entry = group(task["direction"], task["alias"])
        gone = trusted is not None and (task["alias"] not in trusted or (
            site is not None and site.location(task["alias"])[0] != task["protocol"]))
        if task["state"] == "submitting" and (gone or task["alias"] in waits):
            entry["held"] += 1
        elif task["state"] == "inactive":
            entry["inactive"] += 1
        else:
            entry["active"] += 1
            entry["queued"] += task.get("nice_status") == "Queued"
        if gone and task["state"] == "submitting":
            entry["waits_on"] = "its alias left transfer_locations (or changed protocol)"
    for alias, wait in waits.items():
        for entry in [e for e in found.values() if e["alias"] == alias] or \
                [group("-", alias)]:
            entry["waits_on"] = wait.get("reason")
    busy = _slots_in_use(in_flight)
    for (direction, alias), count in pending.items():
        entry = group(direction, alias)
        if entry["waits_on"] or not count:
            continue
        if locked:
            entry["waits_on"] = "a lock another database session holds (ACTION REQUIRED)"
        elif site is not None and alias in (trusted or {}):
            protocol = site.location(alias)[0]
            used, limit = busy.get(protocol, 0), _limit(site, protocol)
            if used >= limit:
                entry["waits_on"] = f"the slots ({used} of {limit} {protocol} tasks running)"
    return sorted(found.values(), key=lambda e: (e["alias"], e["direction"]))


def _limit(site: Settings, protocol: str) -> int:
    """The submitter's limit of tasks in flight for a protocol (submitter.py)."""
    config = site.transfers
    auto = config.transfer_batch_size == batching.AUTO
    return batching.slots(config.max_concurrent_transfers, {protocol}) if auto else \
        config.max_concurrent_transfers


def _slots_in_use(in_flight: list[dict]) -> dict[str, int]:
    """protocol -> tasks running at the service (submitting ones are not yet there)."""
    used: dict[str, int] = {}
    for task in in_flight:
        if task["state"] == "active":  # at the service: running whatever settings say
            used[task["protocol"]] = used.get(task["protocol"], 0) + 1
    return used
