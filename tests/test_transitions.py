"""The transition table, tested as a table: every (from, to) pair of the 14 states, for
the user (set_state, save, update, `balsam job modify`) and the site (the workers)."""

from __future__ import annotations

import pytest

from balsam_mp import api, db, transitions
from balsam_mp.api import Job
from balsam_mp.db import jobs as job_db
from balsam_mp.errors import NotFound, StateConflict, ValidationError
from balsam_mp.states import JOB_STATES

# The user's moves, written out once more by hand: a row per from-state, "x" = allowed.
# Columns in JOB_STATES order: CR AP RE SI PP RU RD RE RT RR PO SO JF FA
USER_TABLE = """
CREATED           .  x  x  .  .  .  .  .  .  .  .  .  .  x
AWAITING_PARENTS  .  .  x  .  .  .  .  .  .  .  .  .  .  x
READY             .  .  .  x  .  .  .  .  .  .  .  .  .  x
STAGED_IN         .  .  .  .  x  x  x  x  x  x  x  .  .  x
PREPROCESSED      .  .  .  x  .  x  x  x  x  x  x  .  .  x
RUNNING           .  .  .  x  x  .  x  x  x  x  x  .  .  x
RUN_DONE          .  .  .  x  x  x  .  x  x  x  x  .  .  x
RUN_ERROR         .  .  .  x  x  x  x  .  x  x  x  .  .  x
RUN_TIMEOUT       .  .  .  x  x  x  x  x  .  x  x  .  .  x
RESTART_READY     .  .  .  x  x  x  x  x  x  .  x  .  .  x
POSTPROCESSED     .  .  .  .  .  .  .  .  .  .  .  x  .  x
STAGED_OUT        .  .  .  .  .  .  .  .  .  .  .  .  x  x
JOB_FINISHED      .  .  .  .  .  .  .  .  .  .  .  .  .  .
FAILED            .  .  x  .  .  .  .  .  .  x  .  .  .  .
"""


def expected_user_moves() -> set[tuple[str, str]]:
    moves = set()
    for line in USER_TABLE.strip().splitlines():
        state, *marks = line.split()
        assert len(marks) == len(JOB_STATES), line
        moves |= {(state, to) for to, mark in zip(JOB_STATES, marks, strict=True) if mark == "x"}
    return moves


def test_the_module_table_is_the_documented_table():
    assert len(JOB_STATES) == 14
    actual = {(a, b) for a in JOB_STATES for b in JOB_STATES if transitions.allowed(a, b)}
    assert actual == expected_user_moves()
    assert not transitions.USER_MOVES["JOB_FINISHED"]
    assert not transitions.SITE_MOVES["JOB_FINISHED"]
    for state in JOB_STATES:  # the site fails anything unfinished, and nothing else
        assert transitions.allowed(state, "FAILED", transitions.SITE) == (
            state not in ("JOB_FINISHED", "FAILED"))


def test_every_pair_through_set_state_on_a_real_database(site):
    """An app with no transfers (no item to wait for): each of the 196 pairs is tried
    on a job put in the from-state; allowed pairs move and log, others change nothing."""
    (site.apps_path / "bare.py").write_text(
        "from balsam_mp.api import ApplicationDefinition\n"
        "class Bare(ApplicationDefinition):\n    transfers = {}\n")
    api.App.sync()
    pairs = [(a, b) for a in JOB_STATES for b in JOB_STATES if a != b]
    jobs = Job.objects.bulk_create([Job(workdir=f"p/{n}", app="Bare") for n in range(len(pairs))])
    allowed = expected_user_moves()
    wrong = []
    for job, (a, b) in zip(jobs, pairs, strict=True):
        db.Job.update(state=a).where(db.Job.id == job.id).execute()  # test set-up only
        created = job.events.get().id  # its creation event (CREATED -> STAGED_IN)
        try:
            Job.objects.set_state(job.id, a, b)
            outcome = "moved"
        except ValidationError:
            outcome = "refused"
        now = Job.objects.get(id=job.id).state
        logged = job.events.filter(from_state=a, to_state=b, id__gt=created).exists()
        ok = (outcome, logged) == ("moved", True) if (a, b) in allowed else \
            (outcome, now, logged) == ("refused", a, False)
        if not ok:
            wrong.append((a, b, outcome, now))
    assert wrong == []


@pytest.mark.parametrize("to_state", ["BOGUS", "", None, "ready"])
def test_state_names_are_checked(site, to_state):
    job = Job.objects.create(workdir="w", app="MySim", transfers={"input_file": "laptop:/x"})
    with pytest.raises(ValidationError, match="is not a job state"):
        Job.objects.set_state(job.id, "READY", to_state)
    assert Job.objects.get(id=job.id).state == "READY"


def test_conflict_and_missing_job(site):
    job = Job.objects.create(workdir="w", app="MySim", transfers={"input_file": "laptop:/x"})
    with pytest.raises(StateConflict, match=f"job {job.id}: expected state CREATED, found READY"):
        Job.objects.set_state(job.id, "CREATED", "READY")
    with pytest.raises(NotFound, match="job 999 does not exist"):
        Job.objects.set_state(999, "READY", "FAILED")


def test_the_workers_ask_the_table_too(site):
    api.connect()
    with pytest.raises(ValidationError, match="site may not move jobs from JOB_FINISHED"):
        job_db.move_jobs([1], "JOB_FINISHED", "READY")


def test_retry_returns_a_job_only_to_a_state_the_table_allows(site):
    from balsam_mp.db import controls
    from tests.sitemoves import claim, finish

    job = Job.objects.create(workdir="w", app="MySim", transfers={"input_file": "laptop:/x"})
    item = api.TransferItem.objects.get(job_id=job.id)
    finish(claim("in").task_id, failed_items=(item.id,))
    assert Job.objects.get(id=job.id).state == "FAILED"
    db.Job.update(state_data={"failed_from": "JOB_FINISHED"}).where(
        db.Job.id == job.id).execute()  # tampered with by hand (sqlite3)
    with db.Job._meta.database.atomic():
        controls.retry_items(None)
    assert Job.objects.get(id=job.id).state == "READY"
