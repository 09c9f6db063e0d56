"""One contract, two backends: Globus (real SDK against the emulator) and local copies."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import globus_sdk
import pytest
from globus_sdk.transport import RetryConfig

from balsam_mp.transfer.base import (
    ConsentRequired,
    FileSpec,
    LoginRequired,
    PermanentError,
    RetryableError,
    TaskOptions,
    TransferBackend,
)
from balsam_mp.transfer.globus import GlobusBackend
from balsam_mp.transfer.local import LocalBackend, read_json
from tests.conftest import REMOTE_EP, SITE_EP, wait_for, write_when_read


def options(**changes) -> TaskOptions:
    values = {"label": "balsam test in laptop 1 items", "sync_level": None,
              "deadline": dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1),
              "verify_checksum": True, "skip_source_errors": True}
    return TaskOptions(**{**values, **changes})


@dataclass
class Rig:
    backend: TransferBackend
    remote_address: str
    remote_root: Path  # the folder remote paths land in
    site_root: Path  # the site directory (local side)
    emulator: object = None

    def remote(self, name: str) -> Path:
        path = self.remote_root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def submit(self, direction: str, files: list[FileSpec], sid: str | None = None,
               **option_changes) -> str:
        sid = sid or self.backend.get_submission_id()
        return self.backend.submit(direction, self.remote_address, files, sid,
                                   options(**option_changes))

    def finish(self, task_id: str):
        return wait_for(lambda: (s := self.backend.poll([task_id]).get(task_id)) and s.finished
                        and s, what=f"task {task_id} to finish")


FAST_RETRIES = RetryConfig(max_sleep=0.05)


def globus_client(emulator, retry_config=FAST_RETRIES):
    tokens = emulator.tokens()
    authorizer = globus_sdk.RefreshTokenAuthorizer(
        tokens["refresh_token"], globus_sdk.NativeAppAuthClient("emulator-test-client"),
        access_token=tokens["access_token"], expires_at=int(time.time()) + 3600)
    return globus_sdk.TransferClient(authorizer=authorizer, retry_config=retry_config)


@pytest.fixture(params=["globus", "local"])
def rig(request, tmp_path, endpoint_dirs):
    site_root, remote_root = endpoint_dirs[SITE_EP], endpoint_dirs[REMOTE_EP]
    if request.param == "local":
        yield Rig(LocalBackend(tmp_path / "local_tasks"), str(remote_root), remote_root,
                  site_root)
        return
    emulator = request.getfixturevalue("emulator")
    backend = GlobusBackend(globus_client(emulator), SITE_EP, str(site_root), "/")
    yield Rig(backend, REMOTE_EP, remote_root, site_root, emulator)


def test_stage_in_and_out_with_a_directory(rig):
    rig.remote("in/a.dat").write_text("alpha")
    rig.remote("in/tree/x/b.dat").write_text("beta")
    task_id = rig.submit("in", [
        FileSpec("/in/a.dat", str(rig.site_root / "data/j1/a.dat")),
        FileSpec("/in/tree", str(rig.site_root / "data/j2/tree"), recursive=True)])
    status = rig.finish(task_id)
    assert status.status == "SUCCEEDED" and status.files_transferred == 2
    assert status.bytes_transferred == 9
    assert (rig.site_root / "data/j1/a.dat").read_text() == "alpha"
    assert (rig.site_root / "data/j2/tree/x/b.dat").read_text() == "beta"
    out = rig.submit("out", [FileSpec(str(rig.site_root / "data/j1/a.dat"), "/results/a.dat")])
    assert rig.finish(out).status == "SUCCEEDED"
    assert (rig.remote_root / "results/a.dat").read_text() == "alpha"
    assert rig.backend.failures(out, "out") == []


def test_many_tasks_are_polled_together(rig):
    rig.remote("f.dat").write_text("x")
    ids = [rig.submit("in", [FileSpec("/f.dat", str(rig.site_root / f"data/{n}/f.dat"))])
           for n in range(6)]
    before = rig.emulator.counts().get("task_list", 0) if rig.emulator else 0
    statuses = wait_for(lambda: (s := rig.backend.poll(ids + ["unknown-task"])) and
                        all(x.finished for x in s.values()) and s)
    assert set(statuses) == set(ids)
    if rig.emulator:  # every poll was one task_list request, never one get_task per task
        counts = rig.emulator.counts()
        assert "get_task" not in counts and counts["task_list"] > before


def test_same_submission_id_twice_is_one_task_one_copy(rig):
    rig.remote("f.dat").write_text("once")
    spec = [FileSpec("/f.dat", str(rig.site_root / "data/f.dat"))]
    sid = rig.backend.get_submission_id()
    first = rig.submit("in", spec, sid)
    rig.finish(first)
    copied_at = (rig.site_root / "data/f.dat").stat().st_mtime_ns
    assert rig.submit("in", spec, sid) == first
    assert rig.finish(first).files_transferred == 1
    assert (rig.site_root / "data/f.dat").stat().st_mtime_ns == copied_at
    if rig.emulator:
        records = rig.emulator.submissions()
        assert [r["duplicate"] for r in records] == [False, True]


def test_missing_source_with_and_without_skip(rig):
    rig.remote("good.dat").write_text("g")
    good, bad = str(rig.site_root / "data/good.dat"), str(rig.site_root / "data/bad.dat")
    skipping = rig.submit("in", [FileSpec("/good.dat", good), FileSpec("/missing.dat", bad)])
    assert rig.finish(skipping).status == "SUCCEEDED"
    failures = rig.backend.failures(skipping, "in")
    assert [(f.src, f.dest, f.code) for f in failures] == [
        ("/missing.dat", bad, "FILE_NOT_FOUND")]
    assert Path(good).read_text() == "g"
    strict = rig.submit("in", [FileSpec("/missing.dat", bad)], skip_source_errors=False)
    status = rig.finish(strict)
    assert (status.status, status.fatal_code) == ("FAILED", "FILE_NOT_FOUND")
    out_missing = rig.submit("out", [FileSpec(str(rig.site_root / "data/nope.dat"), "/r/n")])
    rig.finish(out_missing)
    assert [f.src for f in rig.backend.failures(out_missing, "out")] == [
        str(rig.site_root / "data/nope.dat")]


def test_empty_batch_is_refused(rig):
    with pytest.raises(PermanentError, match="empty batch"):
        rig.submit("in", [])


def test_globus_error_types(emulator, endpoint_dirs):
    backend = GlobusBackend(globus_client(emulator), SITE_EP, str(endpoint_dirs[SITE_EP]), "/")
    spec = [FileSpec("/a", str(endpoint_dirs[SITE_EP] / "a"))]
    submit = lambda: backend.submit("in", REMOTE_EP, spec, backend.get_submission_id(),  # noqa
                                    options())
    emulator.fault("submit_transfer", status=503, count=20)
    with pytest.raises(RetryableError, match="503"):
        submit()
    emulator.clear_faults()
    emulator.fault("task_list", status=429, code="RateLimitExceeded", retry_after=0, count=20)
    with pytest.raises(RetryableError, match="429"):
        backend.poll(["x"])
    emulator.clear_faults()
    emulator.require_consent(REMOTE_EP)
    with pytest.raises(ConsentRequired) as err:
        submit()
    assert err.value.endpoints == [REMOTE_EP]
    assert f"balsam site globus-login -e {REMOTE_EP}" in str(err.value)
    emulator.require_consent(REMOTE_EP, False)
    emulator.deny(REMOTE_EP)
    with pytest.raises(PermanentError, match="EndpointPermissionDenied"):
        submit()
    emulator.deny(REMOTE_EP, False)
    emulator.expire_tokens()  # 401 -> the SDK refreshes and retries by itself
    assert submit()
    assert emulator.counts()["token"] == 1
    bogus = GlobusBackend(globus_sdk.TransferClient(
        authorizer=globus_sdk.AccessTokenAuthorizer("bogus")), SITE_EP, "/s")
    with pytest.raises(LoginRequired, match="globus-login"):
        bogus.get_submission_id()


def test_globus_path_mapping(emulator, endpoint_dirs, tmp_path):
    site = endpoint_dirs[SITE_EP]
    mapped = GlobusBackend(globus_client(emulator), SITE_EP, str(site), "/u/site")
    assert mapped.to_endpoint(str(site / "data/j/in.dat")) == "/u/site/data/j/in.dat"
    assert mapped.from_endpoint("/u/site/data/j/in.dat") == str(site / "data/j/in.dat")
    with pytest.raises(PermanentError, match="outside the site directory"):
        mapped.to_endpoint("/elsewhere/x")
    unmapped = GlobusBackend(globus_client(emulator), SITE_EP, str(site))
    assert unmapped.to_endpoint("/any/path") == "/any/path"
    # without globus_endpoint_site_path, paths pass unchanged: an endpoint rooted at "/"
    emulator.emulator.engine.endpoints[SITE_EP] = Path("/")
    (endpoint_dirs[REMOTE_EP] / "f.dat").write_text("f")
    task_id = unmapped.submit("in", REMOTE_EP, [FileSpec("/f.dat", str(tmp_path / "x/f.dat"))],
                              unmapped.get_submission_id(), options())
    wait_for(lambda: unmapped.poll([task_id])[task_id].finished)
    assert (tmp_path / "x/f.dat").read_text() == "f"
    label = emulator.tasks()[task_id]["label"]
    assert label == "balsam test in laptop 1 items"


def _blocking_fifo(rig) -> Path:
    fifo = rig.remote("fifo.dat")
    os.mkfifo(fifo)
    return fifo


def test_local_tasks_survive_a_new_backend_and_cancel(tmp_path, endpoint_dirs):
    remote = endpoint_dirs[REMOTE_EP]
    rig = Rig(LocalBackend(tmp_path / "tasks"), str(remote), remote, endpoint_dirs[SITE_EP])
    _blocking_fifo(rig)  # the runner blocks reading it (no one writes)
    rig.remote("later.dat").write_text("later")
    task_id = rig.submit("in", [FileSpec("/fifo.dat", str(rig.site_root / "a")),
                                FileSpec("/later.dat", str(rig.site_root / "b"))],
                         verify_checksum=False)  # a checksum would read the FIFO twice
    task_dir = tmp_path / "tasks" / task_id
    wait_for(lambda: read_json(task_dir / "runner.json"), what="the runner to start")
    restarted = LocalBackend(tmp_path / "tasks")  # a fresh worker sees the same task
    assert restarted.poll([task_id])[task_id].status == "ACTIVE"
    restarted.cancel(task_id)  # ends the runner stuck on the FIFO (SIGKILL after 5 s)
    status = rig.finish(task_id)
    assert (status.status, status.fatal_code) == ("FAILED", "CANCELED")
    assert not (rig.site_root / "b").exists()


def test_local_runner_killed_is_reported_lost(tmp_path, endpoint_dirs):
    remote = endpoint_dirs[REMOTE_EP]
    rig = Rig(LocalBackend(tmp_path / "tasks"), str(remote), remote, endpoint_dirs[SITE_EP])
    _blocking_fifo(rig)
    task_id = rig.submit("in", [FileSpec("/fifo.dat", str(rig.site_root / "a"))])
    runner = wait_for(lambda: read_json(tmp_path / "tasks" / task_id / "runner.json"))
    os.kill(runner["pid"], signal.SIGKILL)
    status = rig.finish(task_id)
    assert (status.status, status.fatal_code) == ("FAILED", "RUNNER_LOST")


def test_local_root_cannot_be_escaped(tmp_path, endpoint_dirs):
    remote = endpoint_dirs[REMOTE_EP]
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", remote / "link")
    rig = Rig(LocalBackend(tmp_path / "tasks"), str(remote), remote, endpoint_dirs[SITE_EP])
    task_id = rig.submit("in", [FileSpec("/../secret", str(rig.site_root / "a")),
                                FileSpec("/link", str(rig.site_root / "b"))])
    rig.finish(task_id)
    assert {f.code for f in rig.backend.failures(task_id, "in")} == {"PERMISSION_DENIED"}
    assert not (rig.site_root / "a").exists() and not (rig.site_root / "b").exists()


def test_local_task_folders_are_pruned_a_week_after_they_finish(tmp_path, endpoint_dirs):
    remote = endpoint_dirs[REMOTE_EP]
    rig = Rig(LocalBackend(tmp_path / "tasks"), str(remote), remote, endpoint_dirs[SITE_EP])
    rig.remote("f.dat").write_text("x")
    old, recent = (rig.submit("in", [FileSpec("/f.dat", str(rig.site_root / name))])
                   for name in ("old", "recent"))
    rig.finish(old), rig.finish(recent)
    fifo = _blocking_fifo(rig)
    running = rig.submit("in", [FileSpec("/fifo.dat", str(rig.site_root / "a"))],
                         verify_checksum=False)  # a checksum would read the FIFO twice
    eight_days_ago = time.time() - 8 * 86400
    os.utime(tmp_path / "tasks" / old / "result.json", (eight_days_ago, eight_days_ago))
    assert rig.backend.prune() == 1
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == sorted([recent, running])
    assert rig.backend.poll([recent])[recent].status == "SUCCEEDED"
    write_when_read(fifo, "unblock")  # let the running one finish: no process left behind
    assert rig.finish(running).status == "SUCCEEDED"
