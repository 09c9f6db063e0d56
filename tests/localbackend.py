"""A local backend between an alias's root and SITE/data, run one task at a time to its
end, for the tests that then look at both sides (confinement, per-file errors, hostile
files)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path

from balsam_mp.transfer.base import FileFailure, FileSpec, TaskOptions, TaskStatus
from balsam_mp.transfer.local import LocalBackend
from tests.conftest import wait_for


@dataclass
class Local:
    backend: LocalBackend
    root: Path  # the alias's root: local:///root
    data: Path  # SITE/data
    outside: Path  # neither: nothing may be read from or written here
    tasks: Path

    def run(self, direction: str, files: list[FileSpec], sid: str | None = None,
            **changes) -> tuple[TaskStatus, dict[str, FileFailure]]:
        values = {"label": "t", "sync_level": None, "verify_checksum": True,
                  "deadline": dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)}
        task_id = self.backend.submit(direction, str(self.root), files, sid or str(uuid.uuid4()),
                                      TaskOptions(**{**values, **changes}))
        status = wait_for(lambda: (s := self.backend.poll([task_id])[task_id]).finished and s)
        failures = {f.src if direction == "in" else f.dest: f
                    for f in self.backend.failures(task_id, direction)}
        return status, failures

    @classmethod
    def confined(cls, tmp_path: Path) -> Local:
        """root, site/data and tasks under tmp_path, and a folder outside both roots
        holding a secret file and a secret folder: nothing may be read or written there."""
        folders = [tmp_path / name for name in ("root", "site/data", "outside")]
        for folder in folders:
            folder.mkdir(parents=True)
        (tmp_path / "outside" / "secret.dat").write_text("secret")
        (tmp_path / "outside" / "dir").mkdir()
        (tmp_path / "outside" / "dir" / "secret.dat").write_text("secret")
        return cls(LocalBackend(tmp_path / "tasks", folders[1]), *folders, tmp_path / "tasks")


def make(path: Path, text: str = "data") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
