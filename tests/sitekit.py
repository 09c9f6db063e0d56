"""A running site for end-to-end tests: emulator process + `balsam site start` + helpers."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from balsam_mp import api
from balsam_mp.site import pidfile
from balsam_mp.site.layout import init_site
from balsam_mp.testing.globus_emulator import EmulatorProcess
from tests.conftest import REMOTE_EP, SITE_EP, wait_for

CLIENT = ("site-service-account", "site-secret")
# The site paces the moments it takes its request tokens; the service counts the
# moments requests arrive. At the default (95% of the limit sent in any second) a loaded
# machine that holds the emulator 0.4 s gives it the held requests and the next second's
# at once: 429s from a correct site (2 of 3 runs). Told half the enforced limit, the site
# sends at most 0.2 x 10 + 7.5 x (1 + D) requests in a second of arrivals when requests
# are held up to D s: under 20 while D < 1.4 s. A site that does not pace still draws 429s.
PACED = "  globus_requests_per_second: 10\n"


class JobWaits:
    """Waiting for jobs, for any test rig bound to the API."""

    def wait_jobs(self, ids: list[int], state: str, timeout: float = 60.0) -> None:
        def reached():
            return api.Job.objects.filter(id__in=ids, state=state).count() == len(ids)
        wait_for(reached, timeout=timeout, interval=0.1,
                 what=f"{len(ids)} jobs to reach {state} ({self.states()})")

    def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in api.Job.objects.all():
            counts[job.state] = counts.get(job.state, 0) + 1
        return counts


class SiteKit(JobWaits):
    def __init__(self, tmp_path: Path, transfers: str = "", emulator_args=(),
                 database_url: str | None = None, name: str | None = None) -> None:
        self.site = init_site(tmp_path / "site", name, database_url=database_url).site_path
        self.remote = tmp_path / "remote"
        self.remote.mkdir()
        settings = (self.site / "settings.yml").read_text()
        start = settings.index("transfers:")
        base = ("  transfer_locations:\n"
                f"    remote: globus://{REMOTE_EP}\n"
                f"  globus_endpoint_id: {SITE_EP}\n"
                "  globus_endpoint_site_path: /\n"
                "  service_period: 0.5\n"
                "  retry_backoff: 0.2\n"
                "  transfer_batch_size: 100\n")  # fixed batches; test_batch_shapes: auto
        given = {line.split(":")[0] for line in transfers.splitlines()}
        base = "".join(line for line in base.splitlines(keepends=True)
                       if line.split(":")[0] not in given)  # a key given twice is an error
        (self.site / "settings.yml").write_text(settings[:start] + "transfers:\n" + base +
                                                transfers)
        api.use_site(self.site)  # bad settings fail here, before a process is started
        self.emulator = EmulatorProcess({SITE_EP: self.site, REMOTE_EP: self.remote},
                                        "--client", ":".join(CLIENT), *emulator_args)
        self.env = dict(os.environ, **self.emulator.env, HOME=str(tmp_path / "home"),
                        GLOBUS_CLIENT_ID=CLIENT[0], GLOBUS_CLIENT_SECRET=CLIENT[1],
                        BALSAM_SITE_PATH=str(self.site))
        api.App.sync()

    def balsam(self, *args: str, check: bool = True, env: dict | None = None):
        result = subprocess.run([sys.executable, "-m", "balsam_mp", *args], env=env or self.env,
                                capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"balsam {' '.join(args)} failed: {result.stderr}")
        return result

    def start(self, env: dict | None = None):
        return self.balsam("site", "start", env=env)

    def pids(self) -> dict[str, int]:
        info = pidfile.read(self.site)
        assert info is not None and info.alive(), "the site is not running"
        return {"supervisor": info.pid, **(info.workers or {})}

    def make_jobs(self, count: int, prefix: str = "job", stage_out: bool = True,
                  missing: set[int] = frozenset()) -> list[int]:
        specs = []
        for n in range(count):
            name = f"{prefix}{n}"
            if n not in missing:
                (self.remote / "in").mkdir(exist_ok=True)
                (self.remote / "in" / f"{name}.dat").write_text(f"input of {name}")
            transfers = {"input_file": f"remote:/in/{name}.dat"}
            if stage_out:
                transfers["result"] = f"remote:/out/{name}.dat"
            specs.append({"app": "MySim", "workdir": f"{prefix}/{n}", "transfers": transfers})
        return [job.id for job in api.Job.objects.bulk_create(specs)]

    def run_apps(self, ids: list[int]) -> None:
        """Stand in for the app: write each output, then mark the jobs POSTPROCESSED,
        all in one transaction (so their stage-out items become pending together)."""
        jobs = list(api.Job.objects.filter(id__in=ids))
        for job in jobs:
            (self.site / "data" / job.workdir / "output.dat").write_text(
                f"output of {job.workdir}")
        with api.Job.objects.model._meta.database.atomic():
            for job in jobs:
                api.Job.objects.set_state(job.id, "STAGED_IN", "POSTPROCESSED")

    def assert_exactly_once(self) -> collections.Counter:
        """No submission id made two tasks and no file was in two successful tasks;
        returns how often each (source, destination) moved."""
        tasks_of = collections.defaultdict(set)
        for record in self.emulator.submissions():
            tasks_of[record["submission_id"]].add(record["task_id"])
        assert all(len(ids) == 1 for ids in tasks_of.values()), "a submission id made two tasks"
        moved: collections.Counter = collections.Counter()
        for task in self.emulator.tasks().values():
            if task["status"] == "SUCCEEDED":
                moved.update((s["source_path"], s["destination_path"])
                             for s in task["successful"])
        assert moved and max(moved.values()) == 1, "a file was in two successful tasks"
        return moved

    def accepted(self) -> list[dict]:
        return [s for s in self.emulator.submissions() if not s["duplicate"]]

    def kill(self, role: str) -> int:
        pid = self.pids()[role]
        os.kill(pid, signal.SIGKILL)
        return pid

    def close(self) -> None:
        info = pidfile.read(self.site)
        if info is not None and info.alive():
            self.balsam("site", "stop", "--timeout", "10", check=False)
        for proc in psutil.process_iter():  # anything of this site still alive
            try:
                mine = proc.environ().get("BALSAM_SITE_PATH") == str(self.site)
                if mine and proc.pid != os.getpid():
                    proc.kill()
            except psutil.Error:
                continue
        self.emulator.stop()
        api.close()
