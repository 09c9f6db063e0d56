"""A site as a months-long service: deaths explained, crash loops paused, logs bounded,
unattended restarts, and a status that tells the truth in one short snapshot."""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys

import psutil

from balsam_mp import api, states
from balsam_mp.db.models import LogEvent
from balsam_mp.site import pidfile
from balsam_mp.site.crashes import CRASH_LIMIT, FIRST_PAUSE, MAX_PAUSE, RestartPolicy
from balsam_mp.site.status import LINE, elide, status
from tests.conftest import wait_for


def site_status(kit) -> dict:
    return json.loads(kit.balsam("site", "status", "--format", "json").stdout)


def test_a_crashing_worker_is_explained_and_paused_then_sync_restarts_it(sitekit):
    kit = sitekit()
    kit.start()
    # a row the poller cannot read (as if edited by hand with sqlite3): it dies on every step
    with sqlite3.connect(kit.site / "site.db") as con:
        con.execute("INSERT INTO transfer_task (direction, location_alias, remote_address, "
                    "protocol, state, task_id, label, item_count, files_transferred, "
                    "files_skipped, bytes_transferred, bytes_per_second, created_at, "
                    "updated_at, deadline) VALUES ('in', 'remote', 'x', 'globus', 'active', "
                    "'t-1', '', 0, 0, 0, 0, 0, '2026-01-01T00:00:00.000000Z', "
                    "'2026-01-01T00:00:00.000000Z', 'not a time')")
    report = wait_for(lambda: (r := site_status(kit))["workers"]["poller"]["state"] ==
                      "crash-looping" and r, timeout=60, what="the poller to be crash-looping")
    poller = report["workers"]["poller"]
    assert "poller exited with code 1: ValueError" in poller["last_error"]
    assert poller["next_try"] and report["workers"]["submitter"]["state"] == "running"
    assert "poller is crash-looping" in report["action_required"]
    assert report["running"]
    text = kit.balsam("site", "status").stdout
    assert "poller     crash-looping: poller exited with code 1: ValueError" in text
    assert "ACTION REQUIRED" in text
    log = (kit.site / "logs" / "poller.log").read_text()
    assert "poller crashed" in log and "Traceback" in log and "ValueError" in log
    supervisor_log = kit.site / "logs" / "supervisor.log"  # written after the pidfile
    wait_for(lambda: "crash-looping: next try in 30s" in supervisor_log.read_text(),
             what="the supervisor to log the pause")
    deaths = wait_for(lambda: list(LogEvent.select().where(LogEvent.to_state == "WORKER_DIED")),
                      what="the deaths in the event log")
    assert "poller exited with code 1: ValueError" in deaths[0].message

    with sqlite3.connect(kit.site / "site.db") as con:  # the operator fixes the row ...
        con.execute("DELETE FROM transfer_task WHERE task_id = 't-1'")
    kit.balsam("site", "sync")  # ... and a sync starts the paused worker at once
    wait_for(lambda: site_status(kit)["workers"]["poller"]["state"] == "running",
             what="the poller to run again after sync")


def test_restart_policy_backs_off_then_pauses_a_crash_loop():
    policy = RestartPolicy()
    delays = [policy.after_death(lived=0.5, now=float(n)) for n in range(CRASH_LIMIT)]
    assert delays == [0.2, 0.4, 0.8, 1.6, FIRST_PAUSE] and policy.crash_looping
    pauses = []
    for loop in range(8):
        for n in range(CRASH_LIMIT):
            delay = policy.after_death(lived=0.5, now=100.0 * (loop + 1) + n)
        pauses.append(delay)
    assert pauses[0] == 2 * FIRST_PAUSE and pauses[-1] == MAX_PAUSE  # growing, capped
    policy.after_death(lived=3600.0, now=10_000.0)  # then it ran well for an hour
    assert not policy.crash_looping


def test_logs_rotate_and_stay_bounded(sitekit):
    max_bytes, backups = 4096, 2
    kit = sitekit()
    settings = kit.site / "settings.yml"
    text = settings.read_text()
    start, end = text.index("logging:"), text.index("transfers:")
    settings.write_text(text[:start] + f"logging:\n  level: debug\n  max_bytes: {max_bytes}\n"
                        f"  backup_count: {backups}\n  flush_period: 30\n\n" + text[end:])
    kit.start()
    ids = kit.make_jobs(60, stage_out=False)
    kit.wait_jobs(ids, states.STAGED_IN)
    logs = kit.site / "logs"
    assert (logs / "poller.log.1").exists() and (logs / "submitter.log.1").exists()
    for process in ("supervisor", "submitter", "poller"):
        files = list(logs.glob(f"{process}.log*"))
        assert len(files) <= backups + 1, files
        # a file is rotated before a line would take it past max_bytes (one long line
        # may start a file on its own)
        assert all(f.stat().st_size <= max_bytes or f.read_text().count("\n") == 1
                   for f in files), [(f.name, f.stat().st_size) for f in files]


def test_start_if_not_running_after_every_process_was_killed(sitekit):
    kit = sitekit()
    quiet = kit.balsam("site", "start", "--if-not-running")
    assert "started" in quiet.stdout
    again = kit.balsam("site", "start", "--if-not-running")
    assert again.returncode == 0 and again.stdout == "" and again.stderr == ""
    ids = kit.make_jobs(300, stage_out=False)
    wait_for(lambda: kit.accepted(), what="a first task")
    pids = kit.pids()
    for pid in pids.values():  # a login node reboot, as the site sees it
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() !=
                             psutil.STATUS_ZOMBIE for p in pids.values()),
             what="every site process to be gone")
    assert "started" in kit.balsam("site", "start", "--if-not-running").stdout
    kit.wait_jobs(ids, states.STAGED_IN)
    tasks_of = collections.defaultdict(set)
    for record in kit.emulator.submissions():
        tasks_of[record["submission_id"]].add(record["task_id"])
    assert all(len(tasks) == 1 for tasks in tasks_of.values()), "a submission id made two tasks"
    moved = collections.Counter()
    for task in kit.emulator.tasks().values():
        if task["status"] == "SUCCEEDED":
            moved.update(s["source_path"] for s in task["successful"])
    assert len(moved) == 300 and max(moved.values()) == 1, "a file was sent twice"


def test_two_racing_starts_one_wins_the_other_says_already_running(sitekit):
    kit = sitekit()
    command = [sys.executable, "-m", "balsam_mp", "site", "start"]
    racers = [subprocess.Popen(command, env=kit.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=60), *p.communicate()) for p in racers]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, _, err in results if code == 1)
    winner = next(out for code, out, _ in results if code == 0)
    assert "already running" in loser and "Traceback" not in loser
    assert "started" in winner
    info = pidfile.read(kit.site)
    assert info.alive() and f"pid {info.pid}" in winner


def test_status_is_short_and_says_what_an_operator_asks_first(sitekit):
    kit = sitekit()
    ids = kit.make_jobs(20, stage_out=False, missing={3})
    (kit.site / "logs" / "poller.log").write_text("x" * 5000)
    kit.start()
    kit.wait_jobs([i for n, i in enumerate(ids) if n != 3], states.STAGED_IN)
    wait_for(lambda: api.Job.objects.get(id=ids[3]).state == states.FAILED,
             what="the job with a missing file to fail")
    report = status(kit.site)
    assert report["done_last_minute"] == 19 and report["done_last_hour"] == 19
    assert report["last_error"].startswith("remote:/in/job3.dat: FILE_NOT_FOUND: ")
    assert report["sizes"]["database"] > 0 and report["sizes"]["logs"] >= 5000
    text = kit.balsam("site", "status").stdout
    assert "19 in the last minute" in text and "disk: site.db" in text
    assert max(len(line) for line in text.splitlines()) <= LINE + 40


def test_elide_keeps_both_ends():
    path = "/home/user/" + "deep/" * 2000 + "input.dat"
    short = elide(f"FILE_NOT_FOUND: {path}")
    assert len(short) <= LINE and short.startswith("FILE_NOT_FOUND: /home/user/")
    assert short.endswith("input.dat") and "..." in short
    assert elide("short") == "short"


def test_a_claim_whose_wait_just_ended_is_held_until_the_submitter_tries_it(site):
    """Between the end of an alias's wait and the submitter's next try of its claim (at
    its next pass, then the send), status says the claim is held and why, not that it
    runs at the service (a snapshot in that gap said "1 active" and no reason)."""
    import datetime as dt
    import time

    from balsam_mp import db
    from balsam_mp.db import claims
    from balsam_mp.db.claims import Group
    from balsam_mp.site import waits
    from tests.sitemoves import make

    make(2)
    claims.claim_batches([(Group("in", "laptop"), "local://", "local")], capacity=1,
                         budget=100, batch_size=100, take_submission_id=lambda group: "sid",
                         owner=claims.owner_id(), lease=60,
                         deadline=db.utcnow() + dt.timedelta(hours=1))  # not sent yet
    pidfile.write(site.site_path)  # this process stands in for the running site
    reason = "Globus needs your data_access consent"

    def group_after_wait_ended(ago: float) -> dict:
        waits.write(site.site_path, {"laptop": {"reason": reason, "until": time.time() - ago}})
        [group] = status(site.site_path)["groups"]
        return {key: group[key] for key in ("active", "held", "waits_on")}

    assert group_after_wait_ended(0.1) == {"active": 0, "held": 1, "waits_on": reason}
    assert waits.retry_grace(site) == site.transfers.service_period + waits.SEND_WAIT
    # no try came within the grace (the submitter is gone): the wait is over
    assert group_after_wait_ended(waits.retry_grace(site) + 1)["waits_on"] is None
