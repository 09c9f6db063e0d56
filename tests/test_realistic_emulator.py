"""The emulator's `realistic` profile, driven by the unmodified globus-sdk over HTTP."""

from __future__ import annotations

import os
import time

import globus_sdk
import pytest

from balsam_mp.testing.globus_emulator import EmulatorProcess, GlobusEmulator
from balsam_mp.testing.globus_emulator.profiles import PROFILES, profile
from tests.conftest import REMOTE_EP, SITE_EP, wait_for, write_when_read
from tests.test_emulator import NO_RETRIES, client, finished, release, submit

REALISTIC = PROFILES["realistic"]


@pytest.fixture
def emu(endpoint_dirs, monkeypatch):
    """An in-process emulator with the realistic profile; globus-sdk pointed at it."""
    with GlobusEmulator(endpoint_dirs, profile="realistic") as emu:
        for key, value in emu.env.items():
            monkeypatch.setenv(key, value)
        yield emu


def test_the_profile_sets_its_knobs_and_options_override_them(endpoint_dirs):
    with EmulatorProcess(endpoint_dirs, "--profile", "realistic", "--startup-delay", "0.5") as emu:
        knobs = emu.knobs()  # an empty change reads them back
    assert knobs["startup_delay"] == 0.5  # the option wins over the profile
    for name in ("file_overhead", "bandwidth", "max_active"):
        assert knobs[name] == REALISTIC.knobs[name]
    assert knobs["rate_limit"] == REALISTIC.rate_limit == 20
    with GlobusEmulator(endpoint_dirs, profile="realistic", rate_limit=5) as emu:
        assert emu.knobs()["rate_limit"] == 5 and emu.knobs()["file_overhead"] > 0
    with pytest.raises(ValueError, match="unknown emulator profile 'fast'"):
        profile("fast")


def test_lower_bound_pays_one_start_up_and_shares_files_over_the_slots():
    knobs = REALISTIC.knobs
    per_file = knobs["file_overhead"] + 1000 / knobs["bandwidth"]
    assert REALISTIC.lower_bound(2000, 1000) == pytest.approx(
        knobs["startup_delay"] + 667 * per_file)
    assert REALISTIC.lower_bound(1, 1000) == pytest.approx(knobs["startup_delay"] + per_file)
    assert PROFILES["instant"].lower_bound(2000) == 0


def test_tasks_beyond_three_queue_and_each_pays_start_up_and_per_file_costs(
        endpoint_dirs, emu):
    # each task its own sources; the first three tasks' first file is a FIFO, so they
    # run until the test writes it, however slow this machine is
    fifos = [endpoint_dirs[REMOTE_EP] / f"s{t}" / "0.dat" for t in range(3)]
    for t in range(4):
        for n in range(4):
            source = endpoint_dirs[REMOTE_EP] / f"s{t}" / f"{n}.dat"
            source.parent.mkdir(exist_ok=True)
            os.mkfifo(source) if source in fifos else source.write_bytes(b"x" * 1000)
    emu.knobs(startup_delay=1.0, file_overhead=0.05)
    tc = client(emu)
    submitted = time.monotonic()
    try:
        ids = [submit(tc, [(f"/s{t}/{n}.dat", f"/t{t}/{n}.dat") for n in range(4)])
               for t in range(4)]
        def statuses() -> list[str]:
            listed = {t["task_id"]: t["nice_status"] for t in tc.task_list(
                filter={"task_id": ids}, limit=10)}
            return [listed[i] for i in ids]
        # the fourth waits for one of the three slots, as Globus shows it: the three hold
        # theirs (their FIFOs), so this is where the tasks stay; a look right after the
        # submits may come before the emulator's scheduler has started the third
        wait_for(lambda: statuses() == ["OK", "OK", "OK", "Queued"], interval=0.2,
                 what="three tasks running, the fourth queued")  # < 20 requests/s
        for fifo in fifos:
            write_when_read(fifo, b"x" * 1000)
    finally:
        release(fifos)
    first = wait_for(lambda: finished(tc, ids[0]), interval=0.2)  # < 20 requests/s
    # at least one start-up and four files' overhead: never faster than its knobs
    assert time.monotonic() - submitted >= 1.0 + 4 * 0.05
    assert first["status"] == "SUCCEEDED" and first["files_transferred"] == 4
    assert 0 < first["effective_bytes_per_second"] <= REALISTIC.knobs["bandwidth"]
    last = wait_for(lambda: finished(tc, ids[3]), interval=0.2)
    events = [e["code"] for e in tc.task_event_list(ids[3])]
    assert last["status"] == "SUCCEEDED" and "STARTED" in events
    assert (endpoint_dirs[SITE_EP] / "t3" / "3.dat").read_bytes() == b"x" * 1000


def test_requests_beyond_the_limit_get_429_with_retry_after(emu):
    tc = client(emu, retry_config=NO_RETRIES)
    answered = 0
    with pytest.raises(globus_sdk.GlobusAPIError) as refused:
        for _ in range(500):  # far more than 20 fit in one second on any machine
            tc.get_submission_id()
            answered += 1
    assert refused.value.http_status == 429
    assert refused.value.headers.get("Retry-After") == "1"
    assert answered >= 20  # the first 20 of any second are never refused
    assert emu.stats()["injected"]["rate_limited"] == 1
