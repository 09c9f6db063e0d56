"""One side of a race of bulk writes (tests/test_pg_deadlocks.py), run as its own process:
python -m tests.pg_race KIND ROUNDS. It exits 0 if every write went through, else prints
the error that reached it and exits 1."""

from __future__ import annotations

import sys

from balsam_mp import api


def race(kind: str, rounds: int) -> None:
    api.use_site(None)  # $BALSAM_SITE_PATH
    jobs = api.Job.objects.filter(tags={"race": "yes"})
    for n in range(rounds):
        if kind == "tags":
            jobs.update(tags={"race": "yes", "round": str(n)})
        elif kind == "state":
            jobs.update(state="RESTART_READY" if n % 2 else "RUN_DONE")
        elif kind == "params":
            jobs.update(parameters={"round": str(n)})
        elif kind == "delete":  # jobs made for the round, deleted with the others watching
            made = api.Job.objects.bulk_create([
                {"app": "MySim", "workdir": f"del/{n}/{i}", "tags": {"race": "yes"},
                 "transfers": {"input_file": f"laptop:/tmp/race/{n}/{i}.dat"}}
                for i in range(20)])
            api.Job.objects.filter(id__in=[job.id for job in made]).delete()
        else:
            raise SystemExit(f"unknown kind {kind!r}")


if __name__ == "__main__":
    race(sys.argv[1], int(sys.argv[2]))
