"""A running site whose only location is `laptop: local:///ROOT` (no Globus at all)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from balsam_mp import api
from balsam_mp.site import pidfile
from balsam_mp.site.layout import init_site
from tests.sitekit import JobWaits


class LocalSite(JobWaits):
    def __init__(self, tmp_path: Path, transfers: str = "") -> None:
        self.site = init_site(tmp_path / "site").site_path
        self.root = tmp_path / "root"
        (self.root / "in").mkdir(parents=True)
        settings = (self.site / "settings.yml").read_text()
        start = settings.index("transfers:")
        (self.site / "settings.yml").write_text(settings[:start] + (
            "transfers:\n"
            "  transfer_locations:\n"
            f"    laptop: local://{self.root}\n"
            "  service_period: 0.5\n"
            "  retry_backoff: 0.2\n" + transfers))
        self.env = dict(os.environ, HOME=str(tmp_path / "home"),
                        BALSAM_SITE_PATH=str(self.site))
        api.use_site(self.site)
        api.App.sync()

    def balsam(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "balsam_mp", *args], env=self.env,
                                capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"balsam {' '.join(args)} failed: {result.stderr}")
        return result

    def make_jobs(self, count: int, prefix: str = "job", stage_out: bool = False) -> list[int]:
        """Jobs reading laptop:/in/<prefix><n>.dat (created here, a few bytes each)."""
        specs = []
        for n in range(count):
            name = f"{prefix}{n}"
            (self.root / "in" / f"{name}.dat").write_text(f"input of {name}")
            transfers = {"input_file": f"laptop:/in/{name}.dat"}
            if stage_out:
                transfers["result"] = f"laptop:/out/{name}.dat"
            specs.append({"app": "MySim", "workdir": f"{prefix}/{n}", "transfers": transfers})
        return [job.id for job in api.Job.objects.bulk_create(specs)]

    def close(self) -> None:
        info = pidfile.read(self.site)
        if info is not None and info.alive():
            self.balsam("site", "stop", "--timeout", "10", check=False)
        for proc in psutil.process_iter():  # runners and anything else of this site
            try:
                if proc.environ().get("BALSAM_SITE_PATH") == str(self.site) and \
                        proc.pid != os.getpid():
                    proc.kill()
            except psutil.Error:
                continue
        api.close()
