"""A transfer task as the emulator keeps it, and its Globus task document."""

from __future__ import annotations

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
    recursive: bool = False


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
    cancelled: threading.Event = field(default_factory=threading.Event)
    _final_json: bytes | None = None  # a finished task's document never changes

    @property
    def finished(self) -> bool:
        return self.status in ("SUCCEEDED", "FAILED")

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
        elapsed = max(time.time() - self.started_at, 1e-6) if self.started_at else 0
        pending = 0 if self.finished else len(self.entries) - self.subtasks_succeeded \
            - self.subtasks_skipped_errors
        return {
            "DATA_TYPE": "task", "task_id": self.task_id, "type": "TRANSFER",
            "status": self.status, "label": self.label, "owner_id": self.owner,
            "request_time": self.request_time, "completion_time": self.completion_time,
            "deadline": dt.datetime.fromtimestamp(self.deadline, dt.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S+00:00"),
            "source_endpoint_id": self.source_endpoint,
            "destination_endpoint_id": self.destination_endpoint,
            "sync_level": self.sync_level, "verify_checksum": self.verify_checksum,
            "skip_source_errors": self.skip_source_errors, "encrypt_data": self.encrypt_data,
            "files": self.files, "directories": self.directories,
            "files_transferred": self.files_transferred, "files_skipped": self.files_skipped,
            "bytes_transferred": self.bytes_transferred,
            "bytes_checksummed": self.bytes_checksummed,
            "effective_bytes_per_second": int(self.bytes_transferred / elapsed) if elapsed else 0,
            "faults": self.faults,
            "subtasks_total": len(self.entries), "subtasks_pending": max(pending, 0),
            "subtasks_retrying": 0, "subtasks_succeeded": self.subtasks_succeeded,
            "subtasks_failed": 1 if self.status == "FAILED" else 0,
            "subtasks_expired": 1 if (self.fatal_error or {}).get("code") == "EXPIRED" else 0,
            "subtasks_canceled": 1 if (self.fatal_error or {}).get("code") == "CANCELED" else 0,
            "subtasks_skipped_errors": self.subtasks_skipped_errors,
            "nice_status": self.nice_status, "nice_status_details": self.nice_status_details,
            "nice_status_short_description": self.nice_status,
            "is_paused": False, "fatal_error": self.fatal_error,
            "history_deleted": False, "command": "API 0.10",
        }
