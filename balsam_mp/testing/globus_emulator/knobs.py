"""The emulator's knobs (performance and behaviour, changeable while it runs) and the
error codes it reports for what the file system says."""

from __future__ import annotations

import errno
from dataclasses import dataclass


@dataclass
class Knobs:
    """Performance and behaviour settings; all changeable while running."""

    startup_delay: float = 0.0  # seconds before a started task moves its first byte
    file_overhead: float = 0.0  # seconds each file costs on top of its bytes
    bandwidth: float | None = None  # bytes per second per task; None = unlimited
    max_active: int = 3  # tasks running at once per user
    max_pending: int = 100  # unfinished tasks per user before submissions are refused
    metadata_only: bool = False  # BENCHMARK ONLY: complete tasks without touching files
    disk_full: bool = False  # every write to a destination fails with ENOSPC
    fault_retry: float = 1.0  # seconds between two tries of a file whose destination faults


# errno -> the fault code Globus shows in nice_status while it retries a destination
DEST_FAULTS = {errno.EACCES: "PERMISSION_DENIED", errno.EPERM: "PERMISSION_DENIED",
               errno.ENOTDIR: "NOT_A_DIRECTORY", errno.EISDIR: "IS_A_DIRECTORY",
               errno.EEXIST: "FILE_EXISTS", errno.ENAMETOOLONG: "NAME_TOO_LONG",
               errno.EROFS: "PERMISSION_DENIED"}
SOURCE_ERRORS = {errno.EACCES: "PERMISSION_DENIED", errno.EPERM: "PERMISSION_DENIED",
                 errno.ENOENT: "FILE_NOT_FOUND", errno.EISDIR: "IS_A_DIRECTORY"}
