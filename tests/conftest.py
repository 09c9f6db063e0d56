"""Shared fixtures: a fresh site per test, bound to the Python API.

Tests marked `engines` run once on SQLite and once on PostgreSQL (a server this test run
starts itself, see postgres_server below); the others on SQLite only.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from balsam_mp import api
from balsam_mp.site import pidfile
from balsam_mp.site.layout import init_site

ENGINES = ("sqlite", "postgres")
# Local development only: BALSAM_TEST_POSTGRES=skip skips the PostgreSQL runs. Without
# it a server that cannot start fails those tests (CI must never pass them silently).
SKIP_POSTGRES = os.environ.get("BALSAM_TEST_POSTGRES") == "skip"
_database_names = itertools.count(1)
# Hypothesis fails an example that runs past its deadline (200 ms by default) or data that
# is slow to generate: on a loaded machine (CI: three workers on two cores) one stall of
# the process does that to a correct test. The properties are what the tests check, not
# their speed; an explicit @settings keeps these unless it says otherwise.
hypothesis_settings.register_profile("balsam", deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("balsam")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("engines") and "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", ENGINES, indirect=True)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """sqlite, or postgres for the second run of a test marked `engines`."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the whole run; every process of a test finds the
    password in $PGPASSWORD, as a user's would."""
    if SKIP_POSTGRES:
        pytest.skip("BALSAM_TEST_POSTGRES=skip")
    from balsam_mp.testing.postgres_server import PostgresServer, PostgresServerError

    try:
        server = PostgresServer().start()
    except PostgresServerError as exc:
        pytest.fail(f"cannot start the test PostgreSQL server: {exc}", pytrace=False)
    old = os.environ.get("PGPASSWORD")
    os.environ["PGPASSWORD"] = server.password
    yield server
    server.stop()
    if old is None:
        os.environ.pop("PGPASSWORD", None)
    else:
        os.environ["PGPASSWORD"] = old


@pytest.fixture
def database_url(engine: str, request: pytest.FixtureRequest):
    """None on SQLite; on PostgreSQL the URL of a new, empty database for this test."""
    if engine == "sqlite":
        yield None
        return
    server = request.getfixturevalue("postgres_server")
    name = f"test_{os.getpid()}_{next(_database_names)}"
    yield server.create_database(name)
    api.close()
    server.drop_database(name)  # WITH (FORCE): a process left behind loses its session


@pytest.fixture
def empty_database(postgres_server):
    """The URL of a new, empty PostgreSQL database, whatever the engine (for a SQLite
    site that moves there: tests/test_migrate*.py)."""
    name = f"empty_{os.getpid()}_{next(_database_names)}"
    yield postgres_server.create_database(name)
    api.close()
    postgres_server.drop_database(name)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str | None):
    """A new site with its example app synced; the API points at it."""
    settings = init_site(tmp_path / "site", database_url=database_url)
    monkeypatch.setenv("BALSAM_SITE_PATH", str(settings.site_path))
    api.use_site(settings.site_path)
    api.App.sync()
    yield api.current_settings()
    api.close()


@pytest.fixture
def remote_files(tmp_path: Path):
    """Make files under tmp/remote and return a function that creates more."""
    root = tmp_path / "remote"
    root.mkdir()

    def make(name: str, content: str = "data") -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        return path

    make.root = root  # type: ignore[attr-defined]
    return make


SITE_EP = "5e1f0000-0000-4000-8000-000000000001"
REMOTE_EP = "5e1f0000-0000-4000-8000-000000000002"


def wait_for(condition, timeout: float = 15.0, interval: float = 0.02, what: str = ""):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)



def fifo_writer(fifo: Path, timeout: float = 60.0) -> int:
    """A writer on `fifo`, opened once a reader has it open (before that, a non-blocking
    open fails with ENXIO): a test fails, rather than hangs, if no reader ever comes.
    Held open without writing, it keeps the reader waiting."""
    def opened() -> int | None:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return None

    return wait_for(opened, timeout=timeout, what=f"a reader to open {fifo}")


def write_when_read(fifo: Path, data: str | bytes) -> None:
    """Write `data` (far less than a pipe holds: never blocks) into `fifo` once a reader
    has it open, then close it: the reader sees the end of the file."""
    writer = fifo_writer(fifo)
    try:
        os.write(writer, data.encode() if isinstance(data, str) else data)
    finally:
        os.close(writer)

@pytest.fixture
def endpoint_dirs(tmp_path: Path) -> dict[str, Path]:
    dirs = {SITE_EP: tmp_path / "site_ep", REMOTE_EP: tmp_path / "remote_ep"}
    for folder in dirs.values():
        folder.mkdir()
    return dirs


@pytest.fixture
def emulator(endpoint_dirs, monkeypatch):
    """An in-process emulator; the environment points globus-sdk at it."""
    from balsam_mp.testing.globus_emulator import GlobusEmulator

    with GlobusEmulator(endpoint_dirs) as emu:
        for key, value in emu.env.items():
            monkeypatch.setenv(key, value)
        yield emu


@pytest.fixture
def sitekit(tmp_path, monkeypatch, database_url):
    """Make a SiteKit (emulator process + site); everything it started is stopped after."""
    from tests.sitekit import SiteKit

    kits = []

    def make(**kwargs):
        kit = SiteKit(tmp_path, database_url=database_url, **kwargs)
        kits.append(kit)
        monkeypatch.setenv("BALSAM_SITE_PATH", str(kit.site))
        return kit

    yield make
    for kit in kits:
        kit.close()


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


@pytest.fixture
def local_site(tmp_path):
    """Make a LocalSite (a running site on local:///ROOT); each is closed after."""
    from tests.localsite import LocalSite

    sites = []

    def make(**kwargs):
        sites.append(LocalSite(tmp_path, **kwargs))
        return sites[-1]

    yield make
    for site in sites:
        site.close()
