"""The demo: 1,000 jobs staged in and out through Globus (the bundled emulator).

Starts the Globus emulator and a site, creates 1,000 jobs with one input and one output
each, shows progress until all are STAGED_IN, marks them POSTPROCESSED (standing in for
the app run), shows progress until JOB_FINISHED, prints a summary, and stops everything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from balsam_mp import api
from balsam_mp.site.layout import init_site
from balsam_mp.testing.globus_emulator import EmulatorProcess

SITE_EP = "5e1f0000-0000-4000-8000-0000000000d1"
REMOTE_EP = "5e1f0000-0000-4000-8000-0000000000d2"
CLIENT_ID, CLIENT_SECRET = "demo-service-account", "demo-secret"


def balsam(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "balsam_mp", *args], env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"balsam {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def demo_site(prefix: str) -> tuple[Path, Path, Path]:
    """A new folder with a site named demo set up for the emulator, and the remote
    endpoint's folder (with inputs/): (folder, site, remote)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    site = init_site(work / "site", "demo").site_path
    remote = work / "remote"
    (remote / "inputs").mkdir(parents=True)
    text = (site / "settings.yml").read_text()
    text = text.replace("    laptop: local://", f"    laptop: local://\n    remote: globus://{REMOTE_EP}")
    text = text.replace("globus_endpoint_id: null", f"globus_endpoint_id: {SITE_EP}")
    text = text.replace("globus_endpoint_site_path: null", "globus_endpoint_site_path: /")
    (site / "settings.yml").write_text(text)
    return work, site, remote


def progress(label: str, ids: list[int], state: str) -> float:
    started = time.monotonic()
    with click.progressbar(length=len(ids), label=label, show_pos=True) as bar:
        reached = 0
        while reached < len(ids):
            now = api.Job.objects.filter(state=state).count()
            failed = api.Job.objects.filter(state="FAILED").count()
            if failed:
                raise SystemExit(f"{failed} job(s) FAILED; see `balsam job ls --state FAILED`")
            bar.update(now - reached)
            reached = now
            time.sleep(0.1)
    elapsed = time.monotonic() - started
    print(f"{label.strip()}: {len(ids)}/{len(ids)} jobs {state} after {elapsed:.1f}s")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the demo folder")
    args = parser.parse_args()
    work, site, remote = demo_site("balsam-demo-")
    print(f"demo site: {site}\nremote endpoint folder: {remote}")
    emulator = EmulatorProcess({SITE_EP: site, REMOTE_EP: remote},
                               "--client", f"{CLIENT_ID}:{CLIENT_SECRET}")
    env = dict(os.environ, **emulator.env, BALSAM_SITE_PATH=str(site), HOME=str(work),
               GLOBUS_CLIENT_ID=CLIENT_ID, GLOBUS_CLIENT_SECRET=CLIENT_SECRET)
    try:
        print(f"Globus emulator at {emulator.base_url}")
        api.use_site(site)
        api.App.sync()
        for n in range(args.jobs):
            (remote / "inputs" / f"{n}.dat").write_text(f"input {n}\n")
        ids = [job.id for job in api.Job.objects.bulk_create([
            {"app": "MySim", "workdir": f"ensemble/{n}",
             "transfers": {"input_file": f"remote:/inputs/{n}.dat",
                           "result": f"remote:/results/{n}.dat"}}
            for n in range(args.jobs)])]
        print(f"created {len(ids)} jobs, each with one input and one output")
        started = time.monotonic()
        print(balsam(env, "site", "start"))
        stage_in = progress("staging in ", ids, "STAGED_IN")
        for job in api.Job.objects.filter(id__in=ids):  # the app run, simulated
            workdir = site / "data" / job.workdir
            (workdir / "output.dat").write_text((workdir / "input.dat").read_text().upper())
        db = api.Job.objects.model._meta.database
        with db.atomic():
            for job_id in ids:
                api.Job.objects.set_state(job_id, "STAGED_IN", "POSTPROCESSED", "demo app ran")
        stage_out = progress("staging out", ids, "JOB_FINISHED")
        total = time.monotonic() - started
        print(balsam(env, "site", "stop"))
        summarise(emulator, remote, len(ids), stage_in, stage_out, total)
    finally:
        balsam_stop_quietly(env)
        emulator.stop()
        api.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def summarise(emulator, remote: Path, jobs: int, stage_in: float, stage_out: float,
              total: float) -> None:
    counts = emulator.counts()
    calls = sum(counts.values())
    items = api.TransferItem.objects.filter(state="done").count()
    tasks = api.TransferTask.objects.count()
    results = len(list((remote / "results").iterdir()))
    print("\nsummary")
    print(f"  jobs finished:      {api.Job.objects.filter(state='JOB_FINISHED').count()}/{jobs}")
    print(f"  items transferred:  {items} ({results} results on the remote endpoint)")
    print(f"  transfer tasks:     {tasks}")
    by_route = ", ".join(f"{route} {n}" for route, n in sorted(counts.items()))
    print(f"  Globus API calls:   {calls} ({by_route})")
    print(f"  time: stage-in {stage_in:.1f}s, stage-out {stage_out:.1f}s, total {total:.1f}s")


def balsam_stop_quietly(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "balsam_mp", "site", "stop"], env=env,
                   capture_output=True)


if __name__ == "__main__":
    main()
