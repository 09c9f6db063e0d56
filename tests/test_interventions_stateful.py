"""Issue 19's invariants under a user stepping in while the real submitter and poller
run passes against the Globus emulator over HTTP (tests/intervention_machine.py).

The workers run in this process, one pass per rule, on the API's own connection (two
connections of one process would wait on each other's SQLite write lock)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from balsam_mp import api
from balsam_mp.api import site as api_site
from balsam_mp.site import worker
from balsam_mp.site.layout import init_site
from balsam_mp.site.poller import Poller
from balsam_mp.site.submitter import Submitter
from balsam_mp.testing.globus_emulator import GlobusEmulator
from tests import intervention_machine
from tests.conftest import REMOTE_EP, SITE_EP

EXAMPLES = int(os.environ.get("STATEFUL_EXAMPLES", "40"))
EXPLORE = "STATEFUL_EXAMPLES" in os.environ
TRANSFERS = (f"transfers:\n  transfer_locations:\n    remote: globus://{REMOTE_EP}\n"
             f"  globus_endpoint_id: {SITE_EP}\n  globus_endpoint_site_path: /\n"
             "  transfer_batch_size: 3\n  retry_backoff: 0.01\n")


def test_interventions_interleaved_with_the_workers(tmp_path, monkeypatch):
    site = init_site(tmp_path / "site").site_path
    text = (site / "settings.yml").read_text()
    (site / "settings.yml").write_text(text[:text.index("transfers:")] + TRANSFERS)
    remote = tmp_path / "remote"
    for folder in ("in", "out"):
        (remote / folder).mkdir(parents=True)
    with GlobusEmulator({SITE_EP: site, REMOTE_EP: remote}) as emulator:
        emulator.add_client("site-account", "secret")
        for key, value in {**emulator.env, "GLOBUS_CLIENT_ID": "site-account",
                           "GLOBUS_CLIENT_SECRET": "secret", "HOME": str(tmp_path)}.items():
            monkeypatch.setenv(key, value)
        config = api.use_site(site)
        api.App.sync()
        shared = api_site.database()
        monkeypatch.setattr(worker.db, "connect", lambda *args, **kwargs: shared)
        submitter, poller = Submitter(config), Poller(config)
        submitter.initialize()
        poller.initialize()
        rig = intervention_machine.Rig(site, remote, config, emulator, submitter, poller)
        monkeypatch.setattr(intervention_machine, "RIG", rig)
        try:
            run_state_machine_as_test(intervention_machine.Interventions, settings=settings(
                max_examples=EXAMPLES, stateful_step_count=40, deadline=None,
                derandomize=not EXPLORE, database=None,
                suppress_health_check=list(HealthCheck)))
        finally:
            for pool in submitter.pools.values():
                pool.shutdown(wait=True, cancel_futures=True)
            api.close()
    print(f"\ninterventions: {rig.runs['examples']} examples, {rig.runs['steps']} steps "
          f"checked, job states seen: {sorted(rig.runs['seen'])}")
    assert rig.runs["examples"] >= EXAMPLES
    assert {"READY", "STAGED_IN", "POSTPROCESSED", "JOB_FINISHED"} <= rig.runs["seen"]
