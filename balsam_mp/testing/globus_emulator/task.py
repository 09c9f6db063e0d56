"""A transfer task as the emulator keeps it, and its Globus task document."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@dataclass
class TransferEntry:
    source_path: str
    destination_path: str
    recursive: bool | None = False  # None (absent): a folder is copied whole, as Globus does


@dataclass
class Task:
    owner: str
    source_endpoint: str
    destination_endpoint: str
    entries: list[TransferEntry]
    submission_id: str
    label: str | None = None
    deadline: float = 0.0  # epoch seconds
    sync_level: int | None = None
    verify_checksum: bool = False
    skip_source_errors: bool = False
    encrypt_data: bool = False
    # options recorded as sent (see transfer_routes.submit_transfer for which act)
    preserve_timestamp: bool = False
    delete_destination_extra: bool = False
    fail_on_quota_errors: bool = False
    filter_rules: list[dict[str, str]] | None = None
    recursive_symlinks: str = "ignore"
    source_display_name: str = ""
    destination_display_name: str = ""
    username: str = ""
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "ACTIVE"
    nice_status: str | None = "Queued"
    nice_status_details: str | None = None  # the repeating fault, while there is one
    fatal_error: dict[str, str] | None = None
    request_time: str = field(default_factory=now_iso)
    completion_time: str | None = None
    started_at: float | None = None
    files: int = 0
    directories: int = 0
    files_transferred: int = 0
    files_skipped: int = 0
    bytes_transferred: int = 0
    bytes_checksummed: int = 0
    faults: int = 0
    subtasks_succeeded: int = 0
    subtasks_skipped_errors: int = 0
    successful: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    # what endpoint administrators did: side ("source"/"destination") -> pause message
    pause_messages: dict[str, str] = field(default_factory=dict)
    canceled_by_admin: str | None = None  # "SOURCE", "DESTINATION" or "BOTH"
    canceled_by_admin_message: str | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    _final_json: bytes | None = None  # a finished task's document never changes

    @property
    def finished(self) -> bool:
        return self.status in ("SUCCEEDED", "FAILED")

    @property
    def is_paused(self) -> bool:
        return bool(self.pause_messages) and not self.finished

    def event(self, code: str, description: str, details: str = "",
              is_error: bool = False) -> None:
        self.events.append({"DATA_TYPE": "event", "code": code, "is_error": is_error,
                            "description": description, "details": details,
                            "time": now_iso()})

    def finish(self, status: str, error: dict[str, str] | None = None) -> None:
        self.status, self.fatal_error = status, error
        self._final_json = None
        self.nice_status = self.nice_status_details = None
        self.completion_time = now_iso()
        if error:
            self.event(error["code"], error["description"], is_error=True)
        else:
            self.event("SUCCEEDED", "succeeded")

    def document_json(self) -> bytes:
        """The task document as JSON; cached once the task has finished."""
        if self._final_json is not None:
            return self._final_json
        encoded = json.dumps(self.document()).encode()
        if self.finished:
            self._final_json = encoded
        return encoded

    def document(self) -> dict[str, Any]:
        """The task document, every field of globus-sdk's recorded task_list answer."""
        elapsed = max(time.time() - self.started_at, 1e-6) if self.started_at else 0
        pending = 0 if self.finished else len(self.entries) - self.subtasks_succeeded \
            - self.subtasks_skipped_errors
        fatal = (self.fatal_error or {}).get("code")
        return {
            "DATA_TYPE": "task", "task_id": self.task_id, "type": "TRANSFER",
            "status": self.status, "label": self.label, "owner_id": self.owner,
            "username": self.username,
            "request_time": self.request_time, "completion_time": self.completion_time,
            "deadline": dt.datetime.fromtimestamp(self.deadline, dt.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S+00:00"),
            "source_endpoint_id": self.source_endpoint,
            "destination_endpoint_id": self.destination_endpoint,
            # the legacy canonical names ("owner#name"); Globus keeps them for old clients
            "source_endpoint": f"emulator#{self.source_endpoint}",
            "destination_endpoint": f"emulator#{self.destination_endpoint}",
            "source_endpoint_display_name": self.source_display_name,
            "destination_endpoint_display_name": self.destination_display_name,
            "sync_level": self.sync_level, "verify_checksum": self.verify_checksum,
            "skip_source_errors": self.skip_source_errors, "encrypt_data": self.encrypt_data,
            "preserve_timestamp": self.preserve_timestamp,
            "delete_destination_extra": self.delete_destination_extra,
            "fail_on_quota_errors": self.fail_on_quota_errors,
            "filter_rules": self.filter_rules, "recursive_symlinks": self.recursive_symlinks,
            "files": self.files, "directories": self.directories,
            "symlinks": 0,  # symlinks kept as symlinks: the emulator copies what they name
            "files_transferred": self.files_transferred, "files_skipped": self.files_skipped,
            "bytes_transferred": self.bytes_transferred,
            "bytes_checksummed": self.bytes_checksummed,
            "effective_bytes_per_second": int(self.bytes_transferred / elapsed) if elapsed else 0,
            "faults": self.faults,
            "subtasks_total": len(self.entries), "subtasks_pending": max(pending, 0),
            "subtasks_retrying": 0, "subtasks_succeeded": self.subtasks_succeeded,
            "subtasks_failed": 1 if self.status == "FAILED" else 0,
            "subtasks_expired": 1 if fatal == "EXPIRED" else 0,
            "subtasks_canceled": 1 if fatal == "CANCELED" else 0,
            "subtasks_skipped_errors": self.subtasks_skipped_errors,
            "nice_status": self.nice_status, "nice_status_details": self.nice_status_details,
            "nice_status_short_description": self.nice_status,
            # as Globus shows them: -1 (no expiry) and OK-or-not while unfinished, else null
            "nice_status_expires_in": None if self.finished else -1,
            "is_ok": None if self.finished else self.nice_status in ("OK", "Queued"),
            "is_paused": self.is_paused, "fatal_error": self.fatal_error,
            "canceled_by_admin": self.canceled_by_admin,
            "canceled_by_admin_message": self.canceled_by_admin_message,
            "history_deleted": False, "command": "API 0.10",
        }


def username_of(identity: str) -> str:
    """Globus' legacy username of an identity: 'u_' and its id in base32, as the task
    documents of identities outside globusid.org show it."""
    try:
        raw = uuid.UUID(identity).bytes
    except ValueError:  # a client id or a test's name: still one stable string
        raw = identity.encode()
    return "u_" + base64.b32encode(raw).decode().lower().rstrip("=")
