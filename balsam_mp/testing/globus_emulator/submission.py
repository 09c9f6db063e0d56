"""A transfer document (POST /transfer) checked and turned into a Task, as Globus does.

Options are checked for their type and recorded as sent, so the task document shows
them; which of them the engine acts on is said in docs/emulator.md.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from balsam_mp.testing.globus_emulator.request import bad_request
from balsam_mp.testing.globus_emulator.task import Task, TransferEntry, username_of

DEFAULT_DEADLINE = 24 * 3600
FLAGS = ("verify_checksum", "skip_source_errors", "encrypt_data", "preserve_timestamp",
         "delete_destination_extra", "fail_on_quota_errors")
RECURSIVE_SYMLINKS = ("ignore", "keep", "copy")
FILTER_METHODS, FILTER_TYPES = ("include", "exclude"), ("file", "dir", None)


def entries(doc: dict) -> list[TransferEntry]:
    found = []
    for item in doc.get("DATA") or []:
        if not isinstance(item, dict):
            raise bad_request("each item of DATA must be a transfer_item object")
        src, dst = item.get("source_path"), item.get("destination_path")
        if not isinstance(src, str) or not isinstance(dst, str) or not src or not dst:
            raise bad_request("each item needs source_path and destination_path")
        for path in (src, dst):
            if "\0" in path or len(path.encode()) > 4096:
                raise bad_request(f"invalid path {path[:100]!r}: a NUL byte or over 4096 bytes")
        recursive = item.get("recursive")
        if recursive is not None and not isinstance(recursive, bool):
            raise bad_request(f"recursive must be true, false or absent, not {recursive!r}")
        found.append(TransferEntry(src, dst, recursive))  # absent: Globus detects the type
    return found


def task_from(doc: dict, owner: str, endpoints: list[str], items: list[TransferEntry],
              display_names: dict[str, str]) -> Task:
    """The task a checked transfer document asks for (its endpoints already known)."""
    label = doc.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > 128 or "\n" in label):
        raise bad_request("label must be at most 128 characters on one line")
    flags = {}
    for name in FLAGS:
        value = doc.get(name, False)
        if not isinstance(value, bool):
            raise bad_request(f"{name} must be a boolean, not {value!r}")
        flags[name] = value
    sync_level = doc.get("sync_level")
    if sync_level is not None and sync_level not in (0, 1, 2, 3):
        raise bad_request(f"sync_level must be 0, 1, 2 or 3, not {sync_level!r}")
    symlinks = doc.get("recursive_symlinks", "ignore")
    if symlinks not in RECURSIVE_SYMLINKS:
        raise bad_request(f"recursive_symlinks must be one of {RECURSIVE_SYMLINKS}")
    return Task(
        owner=owner, source_endpoint=endpoints[0], destination_endpoint=endpoints[1],
        entries=items, submission_id=doc["submission_id"], label=label,
        deadline=deadline(doc.get("deadline")), sync_level=sync_level, **flags,
        filter_rules=filter_rules(doc.get("filter_rules")), recursive_symlinks=symlinks,
        source_display_name=display_names[endpoints[0]],
        destination_display_name=display_names[endpoints[1]], username=username_of(owner))


def filter_rules(rules: Any) -> list[dict[str, str]] | None:
    if rules is None:
        return None
    if not isinstance(rules, list):
        raise bad_request("filter_rules must be a list of filter_rule objects")
    checked = []
    for rule in rules:
        if not isinstance(rule, dict) or rule.get("method", "exclude") not in FILTER_METHODS \
                or rule.get("type") not in FILTER_TYPES or not isinstance(rule.get("name"), str):
            raise bad_request(f"bad filter rule {rule!r}: needs a name, method include|exclude "
                              "and type file|dir (or none)")
        checked.append({"DATA_TYPE": "filter_rule", "method": rule.get("method", "exclude"),
                        "name": rule["name"], "type": rule.get("type")})
    return checked


def deadline(value: Any) -> float:
    if not value:
        return time.time() + DEFAULT_DEADLINE
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f"deadline {value!r} is not ISO-8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()
