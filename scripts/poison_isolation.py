"""Measure two promises of the transfer layer on this machine (real site, real processes).

1. No false failures: N tiny local transfer tasks (one job each, transfer_batch_size 1)
   with max_retries 0; every job must reach STAGED_IN, none FAILED.
2. Poison isolation: one batch of 100 jobs of which one is poisoned, on the local
   backend (its runner dies on that file, as an out-of-memory kill would) and on the
   Globus emulator (a destination error Globus retries, the task ACTIVE with the fault
   in nice_status); prints the split rounds it took to pin the fault on its own job.

Run: .venv/bin/python scripts/poison_isolation.py [--jobs 1000] [--batch 100]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from balsam_mp import api
from balsam_mp.site.layout import init_site
from balsam_mp.testing.globus_emulator import EmulatorProcess
from balsam_mp.transfer.local import read_json, runner_alive

SITE_EP, REMOTE_EP = "5e1f0000-0000-4000-8000-000000000001", "5e1f0000-0000-4000-8000-000000000002"
CLIENT = ("poison-bench", "secret")


class Site:
    def __init__(self, work: Path, locations: str, transfers: str, env: dict | None = None):
        self.site = init_site(work / "site").site_path
        self.root = work / "root"
        (self.root / "in").mkdir(parents=True)
        text = (self.site / "settings.yml").read_text()
        (self.site / "settings.yml").write_text(
            text[:text.index("transfers:")] + "transfers:\n  transfer_locations:\n"
            f"{locations}  service_period: 0.5\n" + transfers)
        self.env = dict(os.environ, **(env or {}), BALSAM_SITE_PATH=str(self.site))
        api.use_site(self.site)
        api.App.sync()

    def jobs(self, count: int, alias: str) -> list[int]:
        for n in range(count):
            (self.root / "in" / f"job{n}.dat").write_text(f"input of job{n}")
        return [job.id for job in api.Job.objects.bulk_create([
            {"app": "MySim", "workdir": f"job/{n}",
             "transfers": {"input_file": f"{alias}:/in/job{n}.dat"}} for n in range(count)])]

    def balsam(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "balsam_mp", *args], env=self.env, check=True,
                       capture_output=True, timeout=120)

    def wait_settled(self, count: int, timeout: float) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {s: api.Job.objects.filter(state=s).count() for s in ("STAGED_IN", "FAILED")}
            if sum(states.values()) == count:
                return states
            time.sleep(0.2)
        raise SystemExit(f"timed out: {states}")

    def close(self) -> None:
        subprocess.run([sys.executable, "-m", "balsam_mp", "site", "stop"], env=self.env,
                       capture_output=True, timeout=60)
        for proc in psutil.process_iter():
            try:
                if proc.environ().get("BALSAM_SITE_PATH") == str(self.site) and \
                        proc.pid != os.getpid():
                    proc.kill()
            except psutil.Error:
                continue
        api.close()


def no_false_failures(work: Path, jobs: int) -> None:
    site = Site(work, f"    laptop: local://{work / 'root'}\n",
                "  max_retries: 0\n  transfer_batch_size: 1\n  max_concurrent_transfers: 20\n")
    try:
        ids = site.jobs(jobs, "laptop")
        started = time.monotonic()
        site.balsam("site", "start")
        states = site.wait_settled(len(ids), timeout=1800)
        print(f"no false failures: {jobs} tiny local tasks, max_retries 0: "
              f"{states['FAILED']} job(s) FAILED, {states['STAGED_IN']} STAGED_IN "
              f"in {time.monotonic() - started:.1f}s")
    finally:
        site.close()


def report(kind: str, batch: int, poisoned: int, started: float) -> None:
    item = api.TransferItem.objects.get(job_id=poisoned)
    tasks = api.TransferTask.objects.count()
    reason = api.Job.objects.get(id=poisoned).state_data["failed_files"][0]["reason"]
    print(f"poison isolation ({kind}): batch of {batch}, 1 poisoned: isolated after "
          f"{item.split_round} split rounds, {tasks} tasks, "
          f"{time.monotonic() - started:.1f}s; its job's reason: {reason}")


def poisoned_local_batch(work: Path, batch: int) -> None:
    victim = min(42, batch - 1)
    site = Site(work, f"    laptop: local://{work / 'root'}\n",
                f"  max_retries: 0\n  transfer_batch_size: {batch}\n")
    stop = threading.Event()

    def killer() -> None:  # the OOM killer of a runner stuck on the poisoned file
        while not stop.wait(0.02):
            for task in (site.site / "local_tasks").glob("*"):
                spec, runner = read_json(task / "spec.json"), read_json(task / "runner.json")
                if spec and runner and runner_alive(task) and \
                        any(f["src"] == f"/in/job{victim}.dat" for f in spec["files"]):
                    os.kill(runner["pid"], signal.SIGKILL)

    thread = threading.Thread(target=killer, daemon=True)
    try:
        ids = site.jobs(batch, "laptop")
        (site.root / f"in/job{victim}.dat").unlink()
        os.mkfifo(site.root / f"in/job{victim}.dat")
        thread.start()
        started = time.monotonic()
        site.balsam("site", "start")
        states = site.wait_settled(len(ids), timeout=600)
        assert states["FAILED"] == 1, states
        report("local backend, runner killed on one file", batch, ids[victim], started)
    finally:
        stop.set()
        site.close()


def poisoned_globus_batch(work: Path, batch: int) -> None:
    victim = min(42, batch - 1)
    (work / "root").mkdir(parents=True)
    (work / "site").mkdir()
    emulator = EmulatorProcess({SITE_EP: work / "site", REMOTE_EP: work / "root"},
                               "--client", ":".join(CLIENT))
    env = dict(emulator.env, HOME=str(work / "home"), GLOBUS_CLIENT_ID=CLIENT[0],
               GLOBUS_CLIENT_SECRET=CLIENT[1])
    (work / "site").rmdir()
    site = Site(work, f"    remote: globus://{REMOTE_EP}\n", f"  globus_endpoint_id: {SITE_EP}\n"
                "  globus_endpoint_site_path: /\n  max_retries: 0\n  fault_timeout: 1\n"
                f"  transfer_batch_size: {batch}\n", env)
    try:
        emulator.knobs(fault_retry=0.2)
        ids = site.jobs(batch, "remote")
        workdir = api.Job.objects.get(id=ids[victim]).workdir
        (site.site / "data" / workdir / "input.dat" / "x").mkdir(parents=True)
        started = time.monotonic()
        site.balsam("site", "start")
        states = site.wait_settled(len(ids), timeout=600)
        assert states["FAILED"] == 1, states
        report("Globus emulator, destination fault", batch, ids[victim], started)
    finally:
        site.close()
        emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        no_false_failures(Path(tmp) / "a", args.jobs)
        poisoned_local_batch(Path(tmp) / "b", args.batch)
        poisoned_globus_batch(Path(tmp) / "c", args.batch)


if __name__ == "__main__":
    main()
