"""A user's calls interleaved with the site's own moves, on a real SQLite site database.

Hypothesis drives the user (create, save with stale and fresh objects, update, set_state,
delete, `transfer retry`, `transfer cancel`) and the site (claim, finish with some files
failed, fail a whole task) through the same functions the workers call, and checks after
every step what a user relies on:
- a job is STAGED_IN (or later) only when all its stage-in items are done;
- no item is awaiting_job once its job is POSTPROCESSED or later;
- every state change has its log row (a job's log is an unbroken chain ending at its
  state), and every move in it is one the transition table allows;
- nothing the site wrote is reverted by a user save (state, and its state_data keys).
The rules and invariants are the machine in tests/stateful_machine.py.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from balsam_mp import api
from tests.stateful_machine import SiteAndUser, runs

# The suite runs a fixed set of examples (no flakes); STATEFUL_EXAMPLES=N explores afresh.
EXAMPLES = int(os.environ.get("STATEFUL_EXAMPLES", "100"))
EXPLORE = "STATEFUL_EXAMPLES" in os.environ


def test_user_calls_and_site_moves_interleaved(site):
    (site.apps_path / "two.py").write_text(
        "from balsam_mp.api import ApplicationDefinition\n"
        "class Two(ApplicationDefinition):\n"
        "    transfers = {'a': {'direction': 'in', 'local_path': 'a', 'required': True},\n"
        "                 'b': {'direction': 'in', 'local_path': 'b', 'required': True},\n"
        "                 'c': {'direction': 'out', 'local_path': 'c'}}\n")
    api.App.sync()
    api.connect()
    runs.update(examples=0, steps=0, seen=set())
    run_state_machine_as_test(SiteAndUser, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=40, deadline=None,
        derandomize=not EXPLORE, database=None if not EXPLORE else settings.default.database,
        suppress_health_check=list(HealthCheck)))
    print(f"\nstateful test: {runs['examples']} examples, {runs['steps']} steps checked, "
          f"job states reached: {sorted(runs['seen'])}")
    assert runs["examples"] >= EXAMPLES
    assert {"STAGED_IN", "POSTPROCESSED", "JOB_FINISHED", "FAILED"} <= runs["seen"]
