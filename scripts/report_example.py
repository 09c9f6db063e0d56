"""Draw docs/report-example.png: `balsam site report` after a demo-like run.

Like scripts/demo.py, but against the emulator's `realistic` profile (a task starts
after 2 s, Globus runs 3 at once) and with jobs arriving in waves, so the picture shows
queued tasks, batches and stage-in/stage-out side by side:

    .venv/bin/python scripts/report_example.py docs/report-example.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from demo import (
    CLIENT_ID,
    CLIENT_SECRET,
    REMOTE_EP,
    SITE_EP,
    balsam,
    balsam_stop_quietly,
    demo_site,
)

from balsam_mp import api
from balsam_mp.testing.globus_emulator import EmulatorProcess


def wave(remote: Path, start: int, count: int) -> list[int]:
    for n in range(start, start + count):
        (remote / "inputs" / f"{n}.dat").write_bytes(os.urandom(20_000 + 4_000 * (n % 50)))
    return [job.id for job in api.Job.objects.bulk_create([
        {"app": "MySim", "workdir": f"ensemble/{n}",
         "transfers": {"input_file": f"remote:/inputs/{n}.dat",
                       "result": f"remote:/results/{n}.dat"}}
        for n in range(start, start + count)])]


def run_apps(site: Path) -> int:
    """The app, simulated: every STAGED_IN job writes its output and is POSTPROCESSED."""
    ready = list(api.Job.objects.filter(state="STAGED_IN"))
    for job in ready:
        workdir = site / "data" / job.workdir
        (workdir / "output.dat").write_bytes((workdir / "input.dat").read_bytes()[::-1])
    with api.Job.objects.model._meta.database.atomic():
        for job in ready:
            api.Job.objects.set_state(job.id, "STAGED_IN", "POSTPROCESSED", "app ran")
    return len(ready)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", type=Path)
    parser.add_argument("--waves", type=int, default=4)
    parser.add_argument("--jobs-per-wave", type=int, default=250)
    args = parser.parse_args()
    work, site, remote = demo_site("balsam-report-")
    emulator = EmulatorProcess({SITE_EP: site, REMOTE_EP: remote}, "--client",
                               f"{CLIENT_ID}:{CLIENT_SECRET}", "--profile", "realistic")
    env = dict(os.environ, **emulator.env, BALSAM_SITE_PATH=str(site), HOME=str(work),
               GLOBUS_CLIENT_ID=CLIENT_ID, GLOBUS_CLIENT_SECRET=CLIENT_SECRET)
    try:
        api.use_site(site)
        api.App.sync()
        print(balsam(env, "site", "start"))
        ids: list[int] = []
        for number in range(args.waves):
            ids += wave(remote, number * args.jobs_per_wave, args.jobs_per_wave)
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:  # the app runs as inputs arrive
                run_apps(site)
                time.sleep(1)
        while api.Job.objects.filter(state="JOB_FINISHED").count() < len(ids):
            if api.Job.objects.filter(state="FAILED").exists():
                raise SystemExit("a job FAILED; see `balsam job ls --state FAILED`")
            run_apps(site)
            time.sleep(0.5)
        print(balsam(env, "site", "report", "-o", str(args.output.resolve())))
        print(balsam(env, "site", "stop"))
    finally:
        balsam_stop_quietly(env)
        emulator.stop()
        api.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
