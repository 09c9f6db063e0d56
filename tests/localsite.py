"""A site started with `balsam site start` on the test site: its alias laptop is
local://, so the local backend really copies files (no emulator needed)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import pytest

from balsam_mp.site import pidfile


@pytest.fixture
def running_site(site, tmp_path):
    """`balsam site start` on the test site (alias laptop: local://, the local backend)."""
    env = dict(os.environ, BALSAM_SITE_PATH=str(site.site_path), HOME=str(tmp_path / "home"))

    def balsam(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "balsam_mp", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    started = balsam("site", "start")
    assert started.returncode == 0, started.stderr
    try:
        yield site
    finally:
        stopped = balsam("site", "stop", "--timeout", "10")
        info = pidfile.read(site.site_path)
        if info is not None and info.alive():  # stop failed: kill what this test started
            for pid in [info.pid, *(info.workers or {}).values()]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        assert stopped.returncode == 0, stopped.stderr
