"""What the benchmark scripts share: a site with its emulator (`Bench`), the machine's
load, and the PostgreSQL server of a `--postgres` run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from balsam_mp import api
from balsam_mp.site import pidfile
from balsam_mp.site.layout import init_site
from balsam_mp.testing.globus_emulator import EmulatorProcess
from balsam_mp.testing.postgres_server import PostgresServer

SITE_EP = "5e1f0000-0000-4000-8000-0000000000b1"
REMOTE_EP = "5e1f0000-0000-4000-8000-0000000000b2"
CLIENT = ("bench-account", "bench-secret")
WIDE_APP = '''
from balsam_mp.api import ApplicationDefinition

class Wide(ApplicationDefinition):
    transfers = {f"in{n}": {"direction": "in", "local_path": f"in{n}.dat"} for n in range(10)}
'''


FILE_SIZE = 1000  # bytes of each input file where files are really copied
DATABASE: dict[str, PostgresServer | None] = {"server": None}  # --postgres


def load() -> str:
    """`uptime`'s load averages (1, 5, 15 min): the machine is shared."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def database_url(name: str) -> str | None:
    server = DATABASE["server"]
    return server.create_database(name) if server else None


class Bench:
    def __init__(self, work: Path, transfers: str = "", fast: bool = True,
                 emulator_args: tuple[str, ...] = ("--metadata-only",),
                 batch_size: str = "auto", name: str = "site", url: str | None = None) -> None:
        url = url or database_url(f"bench_{work.name}".lower())
        self.site = init_site(work / name, database_url=url).site_path
        text = (self.site / "settings.yml").read_text()
        text = text.replace("    laptop: local://", f"    remote: globus://{REMOTE_EP}")
        text = text.replace("globus_endpoint_id: null", f"globus_endpoint_id: {SITE_EP}")
        text = text.replace("transfer_batch_size: auto ", f"transfer_batch_size: {batch_size} ")
        if fast:
            text = text.replace("globus_requests_per_second: 20 ",
                                "globus_requests_per_second: 10000 ")
        (self.site / "settings.yml").write_text(text.rstrip() + "\n" + transfers)
        (self.site / "apps" / "wide.py").write_text(WIDE_APP)
        self.remote = work / "remote"
        self.remote.mkdir(exist_ok=True)
        self.emulator = EmulatorProcess({SITE_EP: self.site, REMOTE_EP: self.remote},
                                        *emulator_args, "--client", ":".join(CLIENT))
        self.env = dict(os.environ, **self.emulator.env, BALSAM_SITE_PATH=str(self.site),
                        HOME=str(work), GLOBUS_CLIENT_ID=CLIENT[0],
                        GLOBUS_CLIENT_SECRET=CLIENT[1])
        api.use_site(self.site)
        api.App.sync()

    def jobs(self, count: int, app: str = "MySim", prefix: str = "j") -> float:
        started = time.monotonic()
        for start in range(0, count, 20_000):
            api.Job.objects.bulk_create([
                {"app": app, "workdir": f"{prefix}/{n}",
                 "transfers": {"input_file": f"remote:/in/{n}.dat"} if app == "MySim"
                 else {f"in{k}": f"remote:/in/{n}/{k}.dat" for k in range(10)}}
                for n in range(start, min(count, start + 20_000))])
        return time.monotonic() - started

    def files(self, count: int, prefix: str = "") -> None:
        """The remote input files `jobs()` names, FILE_SIZE bytes each."""
        (self.remote / "in").mkdir(exist_ok=True)
        for n in range(count):
            (self.remote / "in" / f"{prefix}{n}.dat").write_bytes(b"x" * FILE_SIZE)

    def balsam(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "balsam_mp", *args], env=self.env, check=True,
                       capture_output=True)

    def wait_staged_in(self, count: int) -> float:
        while api.Job.objects.filter(state="STAGED_IN").count() < count:
            time.sleep(0.1)  # counting 100,000 jobs is not free: do not steal the site's CPU
        return time.monotonic()

    def processes(self) -> list[psutil.Process]:
        info = pidfile.read(self.site)
        return [psutil.Process(info.pid), *(psutil.Process(p) for p in info.workers.values())]

    def close(self) -> None:
        subprocess.run([sys.executable, "-m", "balsam_mp", "site", "stop"], env=self.env,
                       capture_output=True)
        self.emulator.stop()
        api.close()


def start_postgres() -> PostgresServer:
    server = PostgresServer().start()
    os.environ["PGPASSWORD"] = server.password  # the site's processes inherit it
    return server
