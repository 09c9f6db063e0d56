"""One location's trouble stays its own (issue 20): a task keeps the backend it was sent
with, whatever settings.yml says later."""

from __future__ import annotations

import os
import shutil

import pytest

from balsam_mp import db
from balsam_mp.api import Job
from tests.conftest import REMOTE_EP, wait_for, write_when_read
from tests.test_interventions_e2e import job_spec, task_of


@pytest.mark.parametrize("change", ["switched", "removed"])
def test_a_task_keeps_the_backend_it_was_sent_with(sitekit, tmp_path, change):
    """Case 3: alias `laptop` is switched from local:// to globus:// (or removed, with
    it every local:// alias) while its local copy runs. The copy finishes and is polled
    where it runs, so the job stages in."""
    root = tmp_path / "laptop"
    (root / "in").mkdir(parents=True)
    kit = sitekit(transfers=f"  transfer_locations:\n    remote: globus://{REMOTE_EP}\n"
                            f"    laptop: local://{root}\n"
                            "  verify_checksum: false\n")  # a FIFO is read once
    os.mkfifo(root / "in" / "slow.dat")
    kit.start()
    [job] = Job.objects.bulk_create([job_spec("slow", "laptop:/in/slow.dat")])
    task = task_of(job.id)
    wait_for(lambda: Job.objects.get(id=job.id).state == "READY" and
             task.__class__.objects.get(id=task.id).state == "active",
             what="the local copy to run")
    settings = kit.site / "settings.yml"
    settings.write_text(settings.read_text().replace(
        f"    laptop: local://{root}\n",
        f"    laptop: globus://{REMOTE_EP}\n" if change == "switched" else ""))
    kit.balsam("site", "sync")
    write_when_read(root / "in" / "slow.dat", "slow input")  # the copy reads and finishes
    kit.wait_jobs([job.id], "STAGED_IN", timeout=30)
    assert (kit.site / "data/slow/input.dat").read_text() == "slow input"


OTHER_EP = "5e1f0000-0000-4000-8000-000000000003"


def user_login_without_consent(kit, tmp_path) -> dict:
    """The site's environment with a globus CLI login (no service account) that holds
    no data_access consent."""
    identity = kit.emulator.cli_login(tmp_path / "home")
    env = {k: v for k, v in kit.env.items() if not k.startswith("GLOBUS_CLIENT")}
    return {**env, "USER_IDENTITY": identity}


def test_a_missing_consent_holds_only_the_endpoint_it_names(sitekit, tmp_path):
    """Case 1: Globus wants a consent for endpoint `other`. Its jobs wait (their claims
    kept); jobs on another Globus endpoint and on local:// stage in meanwhile; once the
    consent is there, the waiting jobs follow by themselves."""
    roots = {name: tmp_path / name for name in ("other", "laptop")}
    for root in roots.values():
        (root / "in").mkdir(parents=True)
    kit = sitekit(transfers=f"  transfer_locations:\n    remote: globus://{REMOTE_EP}\n"
                            f"    other: globus://{OTHER_EP}\n"
                            f"    laptop: local://{roots['laptop']}\n",
                  emulator_args=("--endpoint", f"{OTHER_EP}={roots['other']}"))
    kit.emulator.require_consent(OTHER_EP)
    env = user_login_without_consent(kit, tmp_path)
    (kit.remote / "in").mkdir()
    specs: dict[str, list[dict]] = {}
    for alias, root in (("other", roots["other"]), ("remote", kit.remote),
                        ("laptop", roots["laptop"])):
        for n in range(3):
            (root / "in" / f"{n}.dat").write_text(f"{alias} {n}")
            specs.setdefault(alias, []).append(job_spec(f"{alias}/{n}", f"{alias}:/in/{n}.dat"))
    blocked = [job.id for job in Job.objects.bulk_create(specs["other"])]
    kit.start(env=env)
    wait_for(lambda: OTHER_EP in kit.balsam("site", "status").stdout,
             what="status to name the consent it needs")
    # new work on the other locations, while the first claims wait for their consent
    healthy = [job.id for job in Job.objects.bulk_create(specs["remote"] + specs["laptop"])]
    kit.wait_jobs(healthy, "STAGED_IN", timeout=30)
    assert {Job.objects.get(id=j).state for j in blocked} == {"READY"}
    status = kit.balsam("site", "status").stdout  # the group says what it waits on
    assert "in other: 0 active (0 queued), 0 inactive, 1 held; waits on: Globus needs " \
        "your data_access consent" in status, status
    kit.emulator.grant_consent(OTHER_EP, env["USER_IDENTITY"])  # the user consents
    kit.wait_jobs(blocked, "STAGED_IN", timeout=30)
    assert (kit.site / "data/other/2/input.dat").read_text() == "other 2"
    kit.assert_exactly_once()


def test_long_local_copies_take_no_globus_slot(sitekit, tmp_path):
    """Case 2: three local copies stuck on FIFOs run beside a Globus stage-in: local
    copies count against their own max_concurrent_transfers, not Globus' 3."""
    laptop = tmp_path / "laptop"
    (laptop / "in").mkdir(parents=True)
    kit = sitekit(transfers=f"  transfer_locations:\n    remote: globus://{REMOTE_EP}\n"
                            f"    laptop: local://{laptop}\n  transfer_batch_size: auto\n")
    for n in range(3):
        os.mkfifo(laptop / "in" / f"{n}.dat")
    kit.start()
    stuck = [job.id for job in Job.objects.bulk_create(
        [job_spec(f"stuck/{n}", f"laptop:/in/{n}.dat") for n in range(3)])]
    wait_for(lambda: db.TransferTask.select().where(
        db.TransferTask.protocol == "local", db.TransferTask.state == "active").count() == 3,
        what="three local copies to run")
    [globus] = kit.make_jobs(1, prefix="g", stage_out=False)
    kit.wait_jobs([globus], "STAGED_IN", timeout=30)
    assert {Job.objects.get(id=j).state for j in stuck} == {"READY"}
    for n in range(3):  # let the copies end, so the site stops cleanly
        write_when_read(laptop / "in" / f"{n}.dat", "x")


def test_claims_held_for_a_removed_alias_take_no_slot(sitekit, tmp_path):
    """Case 2: three claims of alias `gone` whose submit answers were lost are held (they
    may exist at Globus) when `gone` leaves settings.yml; they take no slot: a job on
    another alias stages in."""
    kit = sitekit(transfers=f"  transfer_locations:\n    remote: globus://{REMOTE_EP}\n"
                            f"    gone: globus://{REMOTE_EP}\n  transfer_batch_size: 1\n"
                            "  max_concurrent_transfers: 3\n")
    kit.emulator.fault("submit_transfer", after=True, count=1_000_000)
    (kit.remote / "in").mkdir()
    for n in range(3):
        (kit.remote / "in" / f"gone{n}.dat").write_text("old")
    held = [job.id for job in Job.objects.bulk_create(
        [job_spec(f"gone/{n}", f"gone:/in/gone{n}.dat") for n in range(3)])]
    kit.start()
    wait_for(lambda: db.TransferTask.select().where(
        db.TransferTask.state == "submitting").count() == 3, what="three claims")
    settings = kit.site / "settings.yml"
    settings.write_text(settings.read_text().replace(f"    gone: globus://{REMOTE_EP}\n", ""))
    before = kit.pids()["submitter"]
    kit.balsam("site", "sync")
    wait_for(lambda: kit.pids().get("submitter") not in (None, before),
             what="the new submitter")  # the old one may not send them meanwhile
    kit.emulator.clear_faults()
    [fresh] = kit.make_jobs(1, prefix="fresh", stage_out=False)
    kit.wait_jobs([fresh], "STAGED_IN", timeout=30)
    assert {Job.objects.get(id=j).state for j in held} == {"READY"}


def test_a_sync_the_workers_could_not_boot_with_is_refused(local_site):
    """Case 4: a sync adds a Globus alias to a site whose daemon has no Globus
    credentials. The workers' boot is tried first: the sync exits non-zero with the
    reason, the running workers stay, and the site goes on."""
    local = local_site()
    local.balsam("site", "start")
    settings = local.site / "settings.yml"
    settings.write_text(settings.read_text().replace(
        "  transfer_locations:\n", f"  transfer_locations:\n    remote: globus://{REMOTE_EP}\n"
    ).replace("transfers:\n", f"transfers:\n  globus_endpoint_id: {OTHER_EP}\n", 1))
    refused = local.balsam("site", "sync", check=False)
    assert refused.returncode != 0
    assert "sync refused, the running workers are kept" in refused.stderr, refused.stderr
    assert "credentials" in refused.stderr.lower() or "login" in refused.stderr.lower()
    assert "running (" in local.balsam("site", "status").stdout
    [job] = local.make_jobs(1)
    local.wait_jobs([job], "STAGED_IN")


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
def test_a_row_a_stranger_holds_delays_only_its_own_job(sitekit, database_url):
    """Case 5: a psql session holds one READY job FOR UPDATE, idle in its transaction.
    Every other job stages in; `site status` names the session; once it lets go, the
    held job follows by itself."""
    import psycopg

    from balsam_mp.db import locks
    from balsam_mp.db.postgres import schema_of

    kit = sitekit()
    jobs = kit.make_jobs(30, stage_out=False)
    stranger = psycopg.connect(database_url, application_name="psql-by-hand",
                               options=f"-c search_path={schema_of(api_site_name())}")
    try:
        stranger.execute("SELECT id FROM job WHERE id = %s FOR UPDATE", (jobs[0],))
        kit.start()
        kit.wait_jobs(jobs[1:], "STAGED_IN", timeout=60)
        assert Job.objects.get(id=jobs[0]).state == "READY"
        # status waits a minute; this, none: so a worker's transaction that happens to
        # be open (a pass's reads lock the tables too) is listed as well
        session = f"session {stranger.info.backend_pid} "
        [line] = [held for held in locks.long_lock_holders(seconds=0) if session in held]
        assert f"{session}(psql-by-hand, idle in transaction)" in line, line
        stranger.rollback()
        kit.wait_jobs(jobs[:1], "STAGED_IN", timeout=30)
    finally:
        stranger.close()


def api_site_name() -> str:
    from balsam_mp import api

    return api.current_settings().site_name


def test_inactive_tasks_on_one_endpoint_take_no_slot_from_another(sitekit, tmp_path):
    """Case 2: three tasks INACTIVE on endpoint `remote` (credentials expired there):
    they take no slot, at the site nor at Globus (which works on 3 tasks per user, and
    queues others until one stops working: completes, pauses or backs off), so a job
    on endpoint `other` stages in while they wait."""
    other = tmp_path / "other"
    (other / "in").mkdir(parents=True)
    (other / "in" / "x.dat").write_text("other x")
    kit = sitekit(transfers=f"  transfer_locations:\n    remote: globus://{REMOTE_EP}\n"
                            f"    other: globus://{OTHER_EP}\n  transfer_batch_size: auto\n",
                  emulator_args=("--endpoint", f"{OTHER_EP}={other}"))
    kit.emulator.knobs(fault_retry=0.2)
    stuck = kit.make_jobs(3, stage_out=False)
    # a folder where each input goes: the three tasks run (holding Globus' 3 slots) and
    # retry that fault until the test lets them end, however slow this machine is
    in_the_way = [kit.site / "data" / Job.objects.get(id=j).workdir / "input.dat"
                  for j in stuck]
    for folder in in_the_way:
        (folder / "x").mkdir(parents=True)
    kit.start()
    wait_for(lambda: len(kit.emulator.tasks()) == 3 and all(
        t["faults"] >= 1 for t in kit.emulator.tasks().values()),
        what="three tasks running at Globus")
    for task_id in kit.emulator.tasks():
        kit.emulator.set_inactive(task_id)
    wait_for(lambda: db.TransferTask.select().where(
        db.TransferTask.state == "inactive").count() == 3, timeout=30,
        what="the site to see them INACTIVE")
    [job] = Job.objects.bulk_create([job_spec("o", "other:/in/x.dat")])
    kit.wait_jobs([job.id], "STAGED_IN", timeout=30)
    assert {Job.objects.get(id=j).state for j in stuck} == {"READY"}
    for folder in in_the_way:
        shutil.rmtree(folder)
    for task_id in kit.emulator.tasks():  # credentials back: they finish
        kit.emulator.set_inactive(task_id, False)
    kit.wait_jobs(stuck, "STAGED_IN", timeout=30)


def test_status_says_a_group_waits_on_the_slots(local_site):
    """One copy may run at once (max_concurrent_transfers: 1) and it is stuck: the
    group's line says its next item waits on the slots."""
    local = local_site(transfers="  max_concurrent_transfers: 1\n  transfer_batch_size: 1\n"
                                 "  verify_checksum: false\n")
    os.mkfifo(local.root / "in" / "slow.dat")
    local.balsam("site", "start")
    [slow] = Job.objects.bulk_create([job_spec("slow", "laptop:/in/slow.dat")])
    wait_for(lambda: db.TransferTask.select().where(
        db.TransferTask.state == "active").count() == 1, what="the copy to run")
    later = local.make_jobs(1, prefix="later")
    line = "in laptop: 1 active (0 queued), 0 inactive, 0 held; waits on: the slots " \
        "(1 of 1 local tasks running)"
    wait_for(lambda: line in local.balsam("site", "status").stdout, what=line)
    write_when_read(local.root / "in" / "slow.dat", "slow")
    local.wait_jobs([slow.id, *later], "STAGED_IN")


def test_a_task_the_service_runs_takes_its_slot_whatever_its_alias_says():
    """Only what is not running is exempt: a claim that cannot be sent, an INACTIVE task.
    Tasks running at Globus count, also when their alias waits, left, or changed."""
    from balsam_mp.site.backends import Location
    from balsam_mp.site.domains import Domains

    locations = {"remote": Location("remote", "globus", REMOTE_EP, None),
                 "other": Location("other", "globus", OTHER_EP, None)}
    domains = Domains(locations, {"globus": 3})
    domains.hold({"remote"}, "Globus is unavailable: 503")
    use = [("globus", "remote", "active", 2), ("globus", "remote", "submitting", 4),
           ("globus", "gone", "active", 1), ("globus", "gone", "submitting", 5),
           ("local", "other", "active", 1), ("globus", "other", "inactive", 3)]
    assert domains.free_slots(use) == {"globus": 0}  # 2 + 1 running: the 3 are taken
    assert domains.stalled(use) == {"remote", "gone", "other"}


def test_a_globus_that_hangs_holds_only_its_own_aliases(sitekit, tmp_path):
    """Globus accepts connections and never answers (the emulator stopped with SIGSTOP)
    while Globus jobs are being sent: local:// jobs are claimed, copied and recorded
    meanwhile; once Globus answers again its jobs stage in, each file sent once."""
    import signal

    laptop = tmp_path / "laptop"
    (laptop / "in").mkdir(parents=True)
    kit = sitekit(transfers=f"  transfer_locations:\n    remote: globus://{REMOTE_EP}\n"
                            f"    laptop: local://{laptop}\n")
    warm = kit.make_jobs(2, prefix="warm", stage_out=False)
    kit.start()
    kit.wait_jobs(warm, "STAGED_IN", timeout=60)
    os.kill(kit.emulator.process.pid, signal.SIGSTOP)
    try:
        hung = kit.make_jobs(5, prefix="g", stage_out=False)
        from balsam_mp.site import waits

        wait_for(lambda: "remote" in waits.read(kit.site), timeout=30,
                 what="the submitter to meet the hung service (a send or an id unanswered)")
        for n in range(3):
            (laptop / "in" / f"{n}.dat").write_text(f"laptop {n}")
        local = [job.id for job in Job.objects.bulk_create(
            [job_spec(f"l/{n}", f"laptop:/in/{n}.dat") for n in range(3)])]
        kit.wait_jobs(local, "STAGED_IN", timeout=40)
    finally:
        os.kill(kit.emulator.process.pid, signal.SIGCONT)
    kit.wait_jobs(hung, "STAGED_IN", timeout=150)
    kit.assert_exactly_once()
