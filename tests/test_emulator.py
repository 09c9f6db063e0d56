"""The emulator, driven by the unmodified globus-sdk over real HTTP."""

from __future__ import annotations

import datetime as dt
import os
import time

import globus_sdk
import pytest
from globus_sdk.transport import RetryConfig

from tests.conftest import REMOTE_EP, SITE_EP, wait_for, write_when_read

FAST_RETRIES = RetryConfig(max_sleep=0.05)
NO_RETRIES = RetryConfig(max_retries=0)


def client(emulator, retry_config=FAST_RETRIES, refreshing=False) -> globus_sdk.TransferClient:
    tokens = emulator.tokens()
    if refreshing:
        auth = globus_sdk.NativeAppAuthClient("emulator-test-client")
        authorizer = globus_sdk.RefreshTokenAuthorizer(
            tokens["refresh_token"], auth, access_token=tokens["access_token"],
            expires_at=int(time.time()) + tokens["expires_in"])
    else:
        authorizer = globus_sdk.AccessTokenAuthorizer(tokens["access_token"])
    return globus_sdk.TransferClient(authorizer=authorizer, retry_config=retry_config)


def submit(tc, items, **options) -> str:
    data = globus_sdk.TransferData(REMOTE_EP, SITE_EP, label="test",
                                   submission_id=options.pop("submission_id", None)
                                   or tc.get_submission_id()["value"], **options)
    for source, destination, *recursive in items:
        data.add_item(source, destination, recursive=bool(recursive and recursive[0]))
    return tc.submit_transfer(data)["task_id"]


def finished(tc, task_id):
    task = tc.get_task(task_id)
    return task if task["status"] in ("SUCCEEDED", "FAILED") else None


def test_submit_poll_succeed_copies_files(emulator, endpoint_dirs):
    remote, site = endpoint_dirs[REMOTE_EP], endpoint_dirs[SITE_EP]
    (remote / "a.dat").write_text("alpha")
    (remote / "tree" / "sub").mkdir(parents=True)
    (remote / "tree" / "sub" / "b.dat").write_text("beta!")
    tc = client(emulator)
    task_id = submit(tc, [("/a.dat", "/job1/a.dat"), ("/tree", "/job2/tree", True)],
                     verify_checksum=True, sync_level="checksum")
    task = wait_for(lambda: finished(tc, task_id))
    assert task["status"] == "SUCCEEDED" and task["fatal_error"] is None
    assert task["files_transferred"] == 2 and task["bytes_transferred"] == 10
    assert task["bytes_checksummed"] == 10 and task["subtasks_succeeded"] == 2
    assert (site / "job1/a.dat").read_text() == "alpha"
    assert (site / "job2/tree/sub/b.dat").read_text() == "beta!"
    listing = tc.operation_ls(SITE_EP, path="/job1")
    assert [e["name"] for e in listing] == ["a.dat"]
    again = submit(tc, [("/a.dat", "/job1/a.dat")], sync_level="checksum")
    assert wait_for(lambda: finished(tc, again))["files_skipped"] == 1  # already in sync


def test_lost_submit_answer_is_retried_by_the_sdk_and_copies_once(emulator, endpoint_dirs):
    (endpoint_dirs[REMOTE_EP] / "a.dat").write_text("x")
    tc = client(emulator)
    emulator.fault("submit_transfer", status=503, after=True)
    task_id = submit(tc, [("/a.dat", "/a.dat")])
    wait_for(lambda: finished(tc, task_id))
    records = emulator.submissions()
    assert len(records) == 2 and [r["duplicate"] for r in records] == [False, True]
    assert {r["task_id"] for r in records} == {task_id}
    assert len(emulator.tasks()) == 1


def test_skip_source_errors_both_ways(emulator, endpoint_dirs):
    (endpoint_dirs[REMOTE_EP] / "good.dat").write_text("g")
    tc = client(emulator)
    skipping = submit(tc, [("/good.dat", "/1/good.dat"), ("/missing.dat", "/1/missing.dat")],
                      skip_source_errors=True)
    task = wait_for(lambda: finished(tc, skipping))
    assert task["status"] == "SUCCEEDED" and task["subtasks_skipped_errors"] == 1
    skipped = list(tc.task_skipped_errors(skipping))
    assert [(s["source_path"], s["error_code"]) for s in skipped] == [
        ("/missing.dat", "FILE_NOT_FOUND")]
    assert [s["source_path"] for s in tc.task_successful_transfers(skipping)] == ["/good.dat"]

    strict = submit(tc, [("/missing.dat", "/2/missing.dat")])
    task = wait_for(lambda: finished(tc, strict))
    assert task["status"] == "FAILED" and task["fatal_error"]["code"] == "FILE_NOT_FOUND"
    events = list(tc.task_event_list(strict))
    assert events[0]["code"] == "FILE_NOT_FOUND" and events[0]["is_error"]


def release(fifos: list) -> None:
    """Let every task still waiting on one of `fifos` end, and any not started yet read
    a plain file: a writer opened (and closed) for each reader there, the FIFO replaced."""
    writers = []
    for fifo in fifos:
        try:
            writers.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # ENXIO: no reader on it (any more), or already replaced
            pass
        fifo.unlink(missing_ok=True)
        fifo.write_text("x")
    for writer in writers:
        os.close(writer)


def test_at_most_three_tasks_run_the_rest_queue(emulator, endpoint_dirs):
    # each task's source is a FIFO: a running task waits on it until the test writes it,
    # so the three running and two queued are there however slow the machine is
    fifos = [endpoint_dirs[REMOTE_EP] / f"{n}.fifo" for n in range(5)]
    for fifo in fifos:
        os.mkfifo(fifo)
    tc = client(emulator)
    try:
        ids = [submit(tc, [(f"/{n}.fifo", f"/{n}/a.dat")]) for n in range(5)]

        def states():
            tasks = list(tc.task_list(filter={"task_id": ids}, limit=100))
            return sorted(t["nice_status"] or "done" for t in tasks)

        assert wait_for(lambda: states() == ["OK", "OK", "OK", "Queued", "Queued"])
        for fifo in fifos:  # in order: a queued task starts as one before it ends
            write_when_read(fifo, b"x")
    finally:
        release(fifos)
    for task_id in ids:
        assert wait_for(lambda t=task_id: finished(tc, t))["status"] == "SUCCEEDED"


def test_task_list_pages_and_filters(emulator, endpoint_dirs):
    (endpoint_dirs[REMOTE_EP] / "a.dat").write_text("x")
    tc = client(emulator)
    ids = [submit(tc, [("/a.dat", f"/{n}/a.dat")]) for n in range(7)]
    page = tc.task_list(filter={"task_id": ids}, limit=3, offset=3)
    assert page["total"] == 7 and len(page["DATA"]) == 3
    wait_for(lambda: all(finished(tc, t) for t in ids))
    succeeded = tc.task_list(filter={"task_id": ids[:2], "status": ["SUCCEEDED"]}, limit=10)
    assert {t["task_id"] for t in succeeded} == set(ids[:2])


def test_deadline_expiry_and_cancel(emulator, endpoint_dirs):
    (endpoint_dirs[REMOTE_EP] / "a.dat").write_text("x")
    emulator.knobs(startup_delay=30)
    tc = client(emulator)
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=0.5)
    expiring = submit(tc, [("/a.dat", "/1/a.dat")], deadline=soon)
    task = wait_for(lambda: finished(tc, expiring))
    assert task["fatal_error"]["code"] == "EXPIRED"
    cancelled = submit(tc, [("/a.dat", "/2/a.dat")])
    assert tc.cancel_task(cancelled)["code"] == "Canceled"
    assert finished(tc, cancelled)["fatal_error"]["code"] == "CANCELED"
    assert tc.cancel_task(cancelled)["code"] == "TaskComplete"
    assert not (endpoint_dirs[SITE_EP] / "2").exists()


def test_paths_never_escape_their_endpoint(emulator, endpoint_dirs, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not copy")
    remote = endpoint_dirs[REMOTE_EP]
    os.symlink(secret, remote / "link.txt")
    tc = client(emulator)
    task_id = submit(tc, [("/../secret.txt", "/1/a"), ("/link.txt", "/1/b"),
                          (str(secret), "/1/c")], skip_source_errors=True)
    wait_for(lambda: finished(tc, task_id))
    codes = sorted(s["error_code"] for s in tc.task_skipped_errors(task_id))
    assert codes == ["FILE_NOT_FOUND", "PERMISSION_DENIED", "PERMISSION_DENIED"]
    assert not (endpoint_dirs[SITE_EP] / "1").exists()
    (remote / "ok.txt").write_text("ok")
    outward = submit(tc, [("/ok.txt", "/../../escaped.txt")])
    assert wait_for(lambda: finished(tc, outward))["fatal_error"]["code"] == "PERMISSION_DENIED"
    assert not (tmp_path.parent / "escaped.txt").exists()
    with pytest.raises(globus_sdk.TransferAPIError) as err:
        tc.operation_ls(REMOTE_EP, path="/../")
    assert err.value.http_status == 403


def test_empty_transfer_unknown_task_and_endpoint(emulator):
    tc = client(emulator)
    with pytest.raises(globus_sdk.TransferAPIError) as err:
        submit(tc, [])
    assert (err.value.http_status, err.value.code) == (
        400, "ClientError.BadRequest.NoTransferItems")
    with pytest.raises(globus_sdk.TransferAPIError) as err:
        tc.get_task("no-such-task")
    assert (err.value.http_status, err.value.code) == (404, "ClientError.NotFound")
    assert tc.get_endpoint(SITE_EP)["DATA_TYPE"] == "endpoint"
    task_id = submit(tc, [("/nothing", "/nothing")])
    assert tc.update_task(task_id, {"DATA_TYPE": "task", "label": "renamed"})["code"] == "Updated"
    assert tc.get_task(task_id)["label"] == "renamed"
    assert tc.operation_mkdir(SITE_EP, "/newdir")["code"] == "DirectoryCreated"


def test_expired_token_is_refreshed_on_401(emulator, endpoint_dirs):
    tc = client(emulator, refreshing=True)
    tc.get_submission_id()
    emulator.expire_tokens()
    assert tc.get_submission_id()["value"]
    counts = emulator.counts()
    assert counts["token"] == 1 and counts["submission_id"] == 3  # 401, then retried
    unknown = globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer("bogus"),
                                        retry_config=NO_RETRIES)
    with pytest.raises(globus_sdk.TransferAPIError) as err:
        unknown.get_submission_id()
    assert (err.value.http_status, err.value.code) == (401, "AuthenticationFailed")


def test_consent_required_is_detected_by_the_sdk(emulator, endpoint_dirs):
    emulator.require_consent(REMOTE_EP)
    tc = client(emulator, NO_RETRIES)
    with pytest.raises(globus_sdk.TransferAPIError) as err:
        submit(tc, [("/a", "/a")])
    assert err.value.http_status == 403 and err.value.info.consent_required
    assert REMOTE_EP in err.value.info.consent_required.required_scopes[0]
    emulator.deny(SITE_EP)
    emulator.require_consent(REMOTE_EP, False)
    with pytest.raises(globus_sdk.TransferAPIError) as err:
        submit(tc, [("/a", "/a")])
    assert err.value.code == "EndpointPermissionDenied"


@pytest.mark.parametrize("fault, retried", [
    ({"status": 503, "count": 2}, True),
    ({"status": 429, "code": "RateLimitExceeded", "retry_after": 0, "count": 1}, True),
    ({"drop": True, "count": 1}, True),
    ({"status": 502, "code": "ExternalError.Endpoint", "count": 1}, False),
])
def test_injected_faults(emulator, fault, retried):
    emulator.fault("submission_id", **fault)
    tc = client(emulator)
    if retried:
        assert tc.get_submission_id()["value"]
        assert emulator.stats()["injected"]["submission_id"] == fault["count"]
    else:
        with pytest.raises(globus_sdk.TransferAPIError) as err:
            tc.get_submission_id()
        assert err.value.code == fault["code"] and emulator.counts()["submission_id"] == 1
    emulator.fault("submission_id", **fault)
    with pytest.raises((globus_sdk.GlobusAPIError, globus_sdk.NetworkError)):
        client(emulator, NO_RETRIES).get_submission_id()


def test_inactive_and_failed_by_control(emulator, endpoint_dirs):
    (endpoint_dirs[REMOTE_EP] / "a.dat").write_text("x")
    emulator.knobs(max_active=0)  # queued: no task can end before the control reaches it
    tc = client(emulator)
    task_id = submit(tc, [("/a.dat", "/a.dat")])
    assert emulator.set_inactive(task_id)["status"] == "INACTIVE"
    emulator.knobs(max_active=3)  # INACTIVE, it does not start all the same
    assert tc.get_task(task_id)["status"] == "INACTIVE"
    emulator.set_inactive(task_id, False)
    assert wait_for(lambda: finished(tc, task_id))["status"] == "SUCCEEDED"
    emulator.knobs(max_active=0)
    other = submit(tc, [("/a.dat", "/b.dat")])
    emulator.fail_task(other, "ENDPOINT_ERROR")
    assert finished(tc, other)["fatal_error"]["code"] == "ENDPOINT_ERROR"


def test_runs_as_a_process_and_stops_on_sigterm(endpoint_dirs, monkeypatch):
    from balsam_mp.testing.globus_emulator import EmulatorProcess

    with EmulatorProcess(endpoint_dirs, "--accept-any-token") as emu:
        assert emu.base_url.startswith("http://127.0.0.1:")
        lines = [emu.process.stdout.readline().strip() for _ in range(2)]
        assert lines == [f"export {k}={v}" for k, v in emu.env.items()]
        for key, value in emu.env.items():
            monkeypatch.setenv(key, value)
        tc = globus_sdk.TransferClient(authorizer=globus_sdk.AccessTokenAuthorizer("any"))
        assert tc.get_endpoint(SITE_EP)["id"] == SITE_EP
    assert emu.process.returncode == 0
