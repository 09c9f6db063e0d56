"""The transfer backend interface, its value types, and its typed errors."""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass

from balsam_mp.errors import BalsamError

FINISHED = ("SUCCEEDED", "FAILED")
NOT_FAULTS = (None, "OK", "Queued")  # nice_status values of a task that is doing fine


@dataclass(frozen=True)
class FileSpec:
    """One file (or directory, if recursive) to move; both paths as the caller names them."""

    src: str
    dest: str
    recursive: bool = False


@dataclass(frozen=True)
class TaskOptions:
    label: str
    deadline: dt.datetime
    sync_level: str | None = "checksum"
    verify_checksum: bool = True
    skip_source_errors: bool = True
    encrypt_data: bool = True


@dataclass(frozen=True)
class TaskStatus:
    task_id: str
    status: str  # ACTIVE | INACTIVE | SUCCEEDED | FAILED
    nice_status: str | None = None
    nice_status_details: str | None = None  # what the repeating fault is, if any
    files: int = 0
    files_transferred: int = 0
    files_skipped: int = 0
    bytes_transferred: int = 0
    bytes_per_second: float = 0.0
    skipped_errors: int = 0
    faults: int = 0
    fatal_code: str | None = None
    fatal_error: str | None = None
    paused: bool = False  # by an endpoint's administrator (Globus: is_paused)
    pause_message: str | None = None  # what the administrator said, and who

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def fault(self) -> str | None:
        """The fault an ACTIVE task keeps retrying (Globus shows it in nice_status).
        A paused task retries nothing: it waits for the administrator."""
        if self.status != "ACTIVE" or self.paused or self.nice_status in NOT_FAULTS:
            return None
        return self.nice_status


@dataclass(frozen=True)
class FileFailure:
    """A file a finished task could not move (the task itself may have SUCCEEDED)."""

    src: str
    dest: str
    code: str
    details: str


class TransferError(BalsamError):
    """Base of every backend error."""


class RetryableError(TransferError):
    """Worth trying again later: network trouble, 5xx, rate limits."""


class PermanentError(TransferError):
    """Will fail the same way again: bad request, permission denied, bad path."""

    def __init__(self, message: str, code: str = "BAD_REQUEST") -> None:
        super().__init__(message)
        self.code = code  # PERMISSION_DENIED or BAD_REQUEST: retrying will not help


class LoginRequired(TransferError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"{detail}; run `balsam site globus-login`")


class ConsentRequired(TransferError):
    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self.command = "balsam site globus-login " + " ".join(f"-e {ep}" for ep in endpoints)
        super().__init__(
            f"Globus needs your data_access consent for endpoint(s) {', '.join(endpoints)}; "
            f"run `{self.command}`"
        )


class TransferBackend(ABC):
    """What the site's workers need from a transfer service."""

    @abstractmethod
    def get_submission_id(self) -> str:
        """An id that makes a later submit idempotent."""

    @abstractmethod
    def submit(self, direction: str, remote_address: str, files: list[FileSpec],
               submission_id: str, options: TaskOptions) -> str:
        """Submit one batch; returns the remote task id. Same submission id -> same task."""

    @abstractmethod
    def poll(self, task_ids: list[str]) -> dict[str, TaskStatus]:
        """Status of many tasks in as few calls as the service allows. Unknown ids are absent."""

    @abstractmethod
    def failures(self, task_id: str, direction: str) -> list[FileFailure]:
        """Per-file failures of a finished task, paths named as they were submitted."""

    @abstractmethod
    def cancel(self, task_id: str) -> None:
        """Cancel a task; a finished task is left as it is."""


def task_label(site_name: str, direction: str, alias: str, count: int) -> str:
    """`balsam <site> <in|out> <alias> <n> items`, on one line, at most 128 characters."""
    label = f"balsam {site_name} {direction} {alias} {count} items"
    return " ".join(label.split())[:128]
