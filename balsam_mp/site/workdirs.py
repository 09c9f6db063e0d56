"""The site makes the folders its stage-ins land in.

Jobs created on the site's machine have their workdirs already (job creation makes
them). A client on another machine cannot, so before a stage-in batch is sent the
submitter makes every missing folder, checking that it stays inside SITE/data through
any symlink; a folder it cannot make fails its own items (and so their jobs) alone,
with the reason.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from balsam_mp.db.results import Failure


def make_folders(data: Path, items: list[tuple[int, str]]) -> list[Failure]:
    """items: (item id, local path). Returns the items whose folder cannot be made."""
    root = str(data)
    real_root = os.path.realpath(root)
    verdicts: dict[str, tuple[str, str] | None] = {}  # folder -> (code, reason) or None
    failures = []
    for item_id, local in items:
        folder = os.path.dirname(local)
        if folder not in verdicts:
            verdicts[folder] = _make(folder, root, real_root)
        if verdicts[folder] is not None:
            failures.append(Failure(item_id, *verdicts[folder]))
    return failures


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def _make(folder: str, root: str, real_root: str) -> tuple[str, str] | None:
    if os.path.normpath(folder) != folder or not _inside(folder, root):  # no '..' parts:
        return "INVALID_PATH", f"workdir folder {folder} is not inside {root}"  # makedirs
        # would climb out through a '..' after a part that does not exist yet
    existing = folder
    while not os.path.lexists(existing):  # the deepest part that exists must stay inside
        existing = os.path.dirname(existing)
    real = os.path.realpath(existing)
    if not _inside(real, real_root):
        return "INVALID_PATH", (f"cannot create the workdir folder {folder}: {existing} "
                                "leads out of SITE/data through a symlink")
    if real != real_root + existing[len(root):]:  # as job creation on the site refuses:
        # through a symlink inside SITE/data, two jobs could share one folder
        return "INVALID_PATH", (f"workdir folder {folder} passes through a symlink "
                                f"({existing} is {real})")
    if existing == folder and os.path.isdir(folder):
        return None
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        code = "PERMISSION_DENIED" if exc.errno in (errno.EACCES, errno.EPERM) \
            else "INVALID_PATH"
        return code, f"cannot create the workdir folder {folder}: {exc.strerror}"
    return None
