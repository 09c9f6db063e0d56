"""A FAILED job's held files with the real site running, against the Globus emulator:
one endpoint's missing consent while its job is failed and restarted, and a failed
job deleted and its workdir reused while the workers run. After each: no job stuck,
every file its own job's, nothing sent twice."""

from __future__ import annotations

from balsam_mp import db
from balsam_mp.api import Job, TransferItem
from balsam_mp.states import Item
from tests.conftest import REMOTE_EP, wait_for
from tests.test_failure_domains import OTHER_EP, user_login_without_consent
from tests.test_interventions_e2e import job_spec


def test_a_job_failed_and_restarted_while_its_endpoint_lacks_consent(sitekit, tmp_path):
    """Its input is claimed and waits for the consent when the user FAILs the job, then
    restarts it: the claim stays (it is in flight), the job goes back to READY, and once
    the user consents it stages in, its input sent once; the healthy endpoint's jobs
    never wait."""
    other = tmp_path / "other"
    (other / "in").mkdir(parents=True)
    kit = sitekit(transfers=f"  transfer_locations:\n    remote: globus://{REMOTE_EP}\n"
                            f"    other: globus://{OTHER_EP}\n",
                  emulator_args=("--endpoint", f"{OTHER_EP}={other}"))
    kit.emulator.require_consent(OTHER_EP)
    env = user_login_without_consent(kit, tmp_path)
    for n in range(2):
        (other / "in" / f"{n}.dat").write_text(f"other {n}")
    claimed, later = (job.id for job in Job.objects.bulk_create(
        [job_spec(f"other/{n}", f"other:/in/{n}.dat") for n in range(2)]))
    kit.start(env=env)
    wait_for(lambda: OTHER_EP in kit.balsam("site", "status").stdout,
             what="status to name the consent it needs")
    [first] = TransferItem.objects.filter(job_id=claimed)
    assert first.state == Item.SUBMITTING  # claimed, held for the consent
    Job.objects.set_state(claimed, "READY", "FAILED")
    assert TransferItem.objects.get(id=first.id).state == Item.SUBMITTING  # in flight
    assert Job.objects.filter(id=claimed).update(state="RESTART_READY").retried == \
        {claimed: "READY"}
    healthy = kit.make_jobs(2, stage_out=False)
    kit.wait_jobs(healthy, "STAGED_IN", timeout=30)
    kit.emulator.grant_consent(OTHER_EP, env["USER_IDENTITY"])
    kit.wait_jobs([claimed, later], "STAGED_IN", timeout=30)
    for n in range(2):
        assert (kit.site / f"data/other/{n}/input.dat").read_text() == f"other {n}"
    moved = kit.assert_exactly_once()
    assert max(moved.values()) == 1


def test_a_failed_job_deleted_and_its_workdir_reused_while_the_workers_run(sitekit):
    """The user FAILs a job before the site starts (its input held), starts the site,
    deletes the job and makes a new one on the same workdir: only the new input is ever
    sent, and it is the one in the workdir."""
    kit = sitekit()
    (kit.remote / "in").mkdir()
    (kit.remote / "in" / "old.dat").write_text("OLD")
    (kit.remote / "in" / "new.dat").write_text("NEW")
    [old] = Job.objects.bulk_create([job_spec("w", "remote:/in/old.dat")])
    Job.objects.set_state(old.id, "READY", "FAILED")
    kit.start()
    warm = kit.make_jobs(3, stage_out=False)  # the workers are busy meanwhile
    kit.balsam("job", "rm", "-y", str(old.id))
    [new] = Job.objects.bulk_create([job_spec("w", "remote:/in/new.dat")])
    kit.wait_jobs(warm + [new.id], "STAGED_IN", timeout=30)
    assert (kit.site / "data/w/input.dat").read_text() == "NEW"
    moved = kit.assert_exactly_once()
    assert not any(source.endswith("/in/old.dat") for source, _ in moved), moved
    assert db.TransferItem.select().where(db.TransferItem.job == old.id).count() == 0
