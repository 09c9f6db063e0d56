"""What an endpoint's administrator does to a user's task (pause, resume, cancel with a
message), in the emulator as Globus shows it, and the site's answer to it."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error

import globus_sdk
import pytest

from balsam_mp import api, states
from tests.conftest import REMOTE_EP, SITE_EP, wait_for, write_when_read
from tests.test_emulator import client

MESSAGE = "Disk maintenance on the DTNs until 14:00 UTC"


def queued_task(tc, endpoint_dirs, name: str = "f") -> str:
    (endpoint_dirs[REMOTE_EP] / name).write_text("data")
    data = globus_sdk.TransferData(REMOTE_EP, SITE_EP)
    data.add_item(f"/{name}", f"/copied/{name}")
    return tc.submit_transfer(data)["task_id"]


def test_pause_and_resume_as_globus_shows_them(emulator, endpoint_dirs):
    tc = client(emulator)
    emulator.knobs(max_active=0)  # queued until paused: nothing can start before the pause
    task_id = queued_task(tc, endpoint_dirs)
    assert emulator.admin_pause([task_id], MESSAGE) == [task_id]
    emulator.knobs(max_active=3)  # a paused task does not start all the same
    task = tc.get_task(task_id)
    assert (task["status"], task["is_paused"]) == ("ACTIVE", True)
    info = tc.task_pause_info(task_id)
    assert info["DATA_TYPE"] == "pause_info_limited" and info["pause_rules"] == []
    assert (info["destination_pause_message"], info["source_pause_message"]) == (MESSAGE, None)
    started = time.monotonic()  # paused: nothing is copied, however long it waits
    while time.monotonic() - started < 1.0:
        assert not (endpoint_dirs[SITE_EP] / "copied").exists()
        assert tc.get_task(task_id)["status"] == "ACTIVE"
        time.sleep(0.05)
    assert emulator.admin_resume([task_id]) == [task_id]
    assert emulator.admin_resume([task_id]) == []  # not paused any more
    wait_for(lambda: tc.get_task(task_id)["status"] == "SUCCEEDED", what="the task")
    done = tc.get_task(task_id)
    assert done["is_paused"] is False and tc.task_pause_info(task_id)[
        "destination_pause_message"] is None
    assert (endpoint_dirs[SITE_EP] / "copied/f").read_text() == "data"
    events = [e["code"] for e in tc.task_event_list(task_id)]
    assert "PAUSED" in events and "RESUMED" in events
    assert emulator.admin_pause([task_id], MESSAGE) == []  # a finished task stays as it is


def test_admin_cancel_as_globus_shows_it(emulator, endpoint_dirs):
    tc = client(emulator)
    emulator.knobs(startup_delay=30)
    task_id = queued_task(tc, endpoint_dirs)
    assert emulator.admin_cancel([task_id], "Too many small files: tar them",
                                 side="source") == [task_id]
    task = tc.get_task(task_id)
    assert (task["status"], task["fatal_error"]["code"]) == ("FAILED", "CANCELED")
    assert (task["canceled_by_admin"], task["canceled_by_admin_message"]) == \
        ("SOURCE", "Too many small files: tar them")
    assert tc.cancel_task(task_id)["code"] == "TaskComplete"
    assert emulator.admin_cancel([task_id], "again") == []


@pytest.mark.parametrize("body", [
    {"task_ids": [], "message": "m"}, {"task_ids": ["nope"], "message": "m"},
    {"task_ids": "x", "message": "m"}, {"message": "m"},
    {"task_ids": ["T"], "message": ""}, {"task_ids": ["T"]},
    {"task_ids": ["T"], "message": "m", "side": "middle"}])
def test_bad_admin_requests_are_refused_and_change_nothing(emulator, endpoint_dirs, body):
    tc = client(emulator)
    emulator.knobs(startup_delay=30)
    task_id = queued_task(tc, endpoint_dirs)
    if body.get("task_ids") == ["T"]:
        body = dict(body, task_ids=[task_id])
    with pytest.raises(urllib.error.HTTPError) as refused:
        emulator._call("POST", "admin/pause", body)
    assert refused.value.code in (400, 404)
    assert tc.get_task(task_id)["is_paused"] is False


def site_task(kit) -> str:
    found = wait_for(lambda: [t for t in api.TransferTask.objects.all() if t.task_id],
                     what="the site's task to be submitted")
    return found[0].task_id


def in_flight(kit) -> list[dict]:
    report = json.loads(kit.balsam("site", "status", "--format", "json").stdout)
    return report["tasks_in_flight"]


def test_a_paused_task_holds_no_clock_and_status_says_why(sitekit):
    """Faulting, then paused (and INACTIVE too): neither fault_timeout nor
    inactive_timeout gives it up while the administrator holds it; resumed, it ends."""
    # long clocks until the pause is in place (however slow this machine is between the
    # fault and the pause); short ones from then on: had the pause left a clock running,
    # it would run out in the hold below
    kit = sitekit(transfers="  fault_timeout: 600\n  inactive_timeout: 600\n")
    kit.emulator.knobs(fault_retry=0.2)
    jobs = kit.make_jobs(3, stage_out=False)
    blocked = api.Job.objects.get(id=jobs[1])
    in_the_way = kit.site / "data" / blocked.workdir / "input.dat"
    (in_the_way / "x").mkdir(parents=True)
    kit.start()
    task_id = site_task(kit)
    wait_for(lambda: api.TransferTask.objects.get(task_id=task_id).fault_since is not None,
             what="the site to see the destination fault")
    kit.emulator.admin_pause([task_id], MESSAGE)
    kit.emulator.set_inactive(task_id)
    wait_for(lambda: any(t["nice_status"] and t["nice_status"].startswith("PAUSED")
                         for t in in_flight(kit)), what="status to show the pause")
    settings = kit.site / "settings.yml"
    settings.write_text(settings.read_text().replace("fault_timeout: 600", "fault_timeout: 3")
                        .replace("inactive_timeout: 600", "inactive_timeout: 2"))
    poller = kit.pids()["poller"]
    kit.balsam("site", "sync")
    wait_for(lambda: kit.pids().get("poller") not in (None, poller), what="a new poller")
    text = kit.balsam("site", "status").stdout
    assert f"PAUSED (the destination endpoint's administrator: {MESSAGE})" in text
    held = time.monotonic()
    while time.monotonic() - held < 6:  # twice fault_timeout, three times inactive_timeout
        assert kit.emulator.tasks()[task_id]["status"] == "INACTIVE"  # not cancelled
        assert api.TransferTask.objects.get(task_id=task_id).state in ("active", "inactive")
        time.sleep(0.2)
    shutil.rmtree(in_the_way)
    kit.emulator.set_inactive(task_id, False)
    kit.emulator.admin_resume([task_id])
    kit.wait_jobs(jobs, states.STAGED_IN)
    assert kit.emulator.tasks()[task_id]["status"] == "SUCCEEDED"
    assert len(kit.accepted()) == 1  # never given up, never split
    assert "PAUSED" not in kit.balsam("site", "status").stdout


def test_an_admin_cancel_fails_its_items_with_the_message_and_is_not_retried(sitekit):
    kit = sitekit(emulator_args=("--startup-delay", "30"), transfers="  max_retries: 5\n")
    jobs = kit.make_jobs(4, stage_out=False)
    kit.start()
    task_id = site_task(kit)
    kit.emulator.admin_cancel([task_id], "Too many small files: tar them", side="source")
    kit.wait_jobs(jobs, states.FAILED)
    items = list(api.TransferItem.objects.all())
    assert {(i.state, i.attempts) for i in items} == {("error", 1)}
    assert {i.error for i in items} == {
        "CANCELED_BY_ADMIN: cancelled by the source endpoint's administrator: "
        "Too many small files: tar them"}
    reason = api.Job.objects.get(id=jobs[0]).state_data["failed_files"][0]["reason"]
    assert "Too many small files: tar them" in reason
    assert len(kit.accepted()) == 1  # one task, not split, not sent again
    kit.emulator.knobs(startup_delay=0)
    kit.balsam("transfer", "retry", "--failed")  # the user's decision, once the cause is gone
    kit.wait_jobs(jobs, states.STAGED_IN)


def test_a_running_local_copy_shows_as_running(local_site):
    site = local_site(transfers="  verify_checksum: false\n")  # a checksum rereads the FIFO
    os.mkfifo(site.root / "in" / "slow.dat")  # a copy that waits on its source
    [job] = api.Job.objects.bulk_create([{"app": "MySim", "workdir": "slow/1",
                                          "transfers": {"input_file": "laptop:/in/slow.dat"}}])
    site.balsam("site", "start")
    wait_for(lambda: [t["nice_status"] for t in in_flight(site)] == ["OK"], timeout=30,
             what="the running copy to show as running")
    assert "Queued" not in site.balsam("site", "status").stdout
    write_when_read(site.root / "in" / "slow.dat", "at last")
    site.wait_jobs([job.id], states.STAGED_IN)


def test_what_the_site_reads_from_a_pause_and_an_admin_cancel():
    from balsam_mp.transfer.globus import _status, pause_text

    info = {"DATA_TYPE": "pause_info_limited", "source_pause_message": "Moving\nracks",
            "destination_pause_message": None, "destination_pause_message_share": "quota",
            "pause_rules": [{"DATA_TYPE": "pause_rule_limited", "message": "all writes"}]}
    assert pause_text(info) == ("the source endpoint's administrator: Moving racks; the "
                                "destination share endpoint's administrator: quota; pause "
                                "rule: all writes")
    assert pause_text({"pause_rules": []}) == "by an endpoint administrator (no message)"
    doc = {"task_id": "t", "status": "FAILED", "is_paused": False,
           "fatal_error": {"code": "CANCELED", "description": "canceled"}}
    assert _status(doc).fatal_code == "CANCELED"  # not an administrator's: retried
    both = _status(dict(doc, canceled_by_admin="BOTH", canceled_by_admin_message=None))
    assert (both.fatal_code, both.fatal_error) == (
        "CANCELED_BY_ADMIN", "cancelled by both endpoints' administrators")
    paused = _status({"task_id": "t", "status": "ACTIVE", "is_paused": True,
                      "nice_status": "PERMISSION_DENIED"}, "why")
    assert paused.paused and paused.fault is None  # a paused task has no fault clock
