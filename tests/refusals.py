"""The check every bad-input row runs (tests/test_bad_inputs.py, test_bad_site_inputs.py).

A row runs the real `balsam` command (a new process) on a site that holds one job, and
asserts a non-zero exit, exactly one line on stderr that says what is wrong, no traceback,
and an unchanged site: the row counts and contents of every table, and the listing of
SITE/data. A row with an API form runs it too and asserts the exception type.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from balsam_mp import api
from balsam_mp.errors import ValidationError

LONG = "n" * 300  # one name longer than any file system takes


@dataclass
class Case:
    name: str
    cli: tuple[str | bytes, ...]
    message: str  # a fragment of the one line on stderr (and of the API's message)
    api: Callable[[], object] | None = None
    error: type[BaseException] = ValidationError
    setup: Callable[[Path], None] | None = None


def settings_text(text: str) -> Callable[[Path], None]:
    def write(site: Path) -> None:
        (site / "settings.yml").write_text(text)
    return write


def app_file(source: str) -> Callable[[Path], None]:
    return lambda site: (site / "apps" / "bad.py").write_text(
        "from balsam_mp.api import ApplicationDefinition\n" + source)


def used_workdir(site: Path) -> None:
    api.Job.objects.create(app="MySim", workdir="taken",
                           transfers={"input_file": "laptop:/a"})


def snapshot(site: Path) -> tuple:
    """Every table's rows, and every path under SITE/data with its kind."""
    with sqlite3.connect(site / "site.db") as conn:
        tables = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        rows = {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall()
                for t in tables}
    listing = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(site / "data")):
        for name in sorted(dirs + files):
            path = Path(root, name)
            kind = "l" if path.is_symlink() else "d" if path.is_dir() else "f"
            listing.update(f"{kind} {path.relative_to(site)}\n".encode(errors="surrogateescape"))
    return {t: len(r) for t, r in rows.items()}, hash(repr(rows)), listing.hexdigest()


def run_balsam(site: Path, args: tuple) -> subprocess.CompletedProcess:
    env = dict(os.environ, BALSAM_SITE_PATH=str(site))
    argv = [a.replace("{site}", str(site)).replace("{tmp}", str(site.parent))
            if isinstance(a, str) else a for a in args]
    return subprocess.run([sys.executable, "-m", "balsam_mp", *argv], env=env,
                          capture_output=True, timeout=60)


def assert_refused(path: Path, case: Case) -> None:
    """Run the row's command (and its API form) on the site at path: refused, no change."""
    if case.setup is not used_workdir:
        used_workdir(path)  # a site with a job in it
    if case.setup is not None:
        case.setup(path)
    before = snapshot(path)
    result = run_balsam(path, case.cli)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert case.message in lines[0]
    assert snapshot(path) == before
    assert not (path / "site.pid").exists()
    if case.api is not None:
        if case.error is ValidationError:
            api.use_site(path)  # read the settings this case wrote
        with pytest.raises(case.error) as err:
            case.api()
        assert case.message in str(err.value)
        assert snapshot(path) == before
