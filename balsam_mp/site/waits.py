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

FILE = "waits.json"


def write(site_path: Path, waits: dict[str, dict]) -> None:
    """alias -> {"reason", "until" (epoch seconds)}, written whole (temp file, rename)."""
    folder = permissions.make_folder(site_path / ".run", permissions.RUNTIME.folder)
    path = folder / FILE
    temp = path.with_suffix(f".tmp{os.getpid()}")
    with os.fdopen(permissions.open_file(temp, os.O_WRONLY | os.O_TRUNC,
                                         permissions.RUNTIME.file), "w") as out:
        json.dump(waits, out)
    os.replace(temp, path)


def read(site_path: Path) -> dict[str, dict]:
    """The waits still current; none if the file is missing or unreadable."""
    try:
        waits = json.loads((site_path / ".run" / FILE).read_text())
    except (OSError, ValueError):
        return {}
    now = time.time()
    return {alias: wait for alias, wait in waits.items()
            if isinstance(wait, dict) and isinstance(wait.get("until"), (int, float))
            and wait["until"] > now}


def groups(in_flight: list[dict], trusted: dict | None, waits: dict[str, dict]) -> list[dict]:
    """Per (direction, alias) with a task in flight or a wait: its tasks active (of
    which queued at the service), inactive and held (claims not sent: their alias
    waits or is gone), and what it waits on, if anything."""
    found: dict[tuple[str, str], dict] = {}

    def group(direction: str, alias: str) -> dict:
        return found.setdefault((direction, alias), {
            "direction": direction, "alias": alias, "active": 0, "queued": 0,
            "inactive": 0, "held": 0, "waits_on": None})

    for task in in_flight:
        entry = group(task["direction"], task["alias"])
        gone = trusted is not None and task["alias"] not in trusted
        if task["state"] == "submitting" and (gone or task["alias"] in waits):
            entry["held"] += 1
        elif task["state"] == "inactive":
            entry["inactive"] += 1
        else:
            entry["active"] += 1
            entry["queued"] += task.get("nice_status") == "Queued"
        if gone:
            entry["waits_on"] = "its alias left transfer_locations"
    for alias, wait in waits.items():
        for entry in [e for e in found.values() if e["alias"] == alias] or \
                [group("-", alias)]:
            entry["waits_on"] = wait.get("reason")
    return sorted(found.values(), key=lambda e: (e["alias"], e["direction"]))
