"""Create a demo site, sync its example app, create jobs and list them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

JOBS = 10


def balsam(*args: str) -> None:
    print("$ balsam " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "balsam_mp", *args], check=True)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="balsam-demo-"))
    try:
        site = work / "site"
        remote = work / "remote"
        remote.mkdir()
        balsam("site", "init", str(site), "--name", "demo")
        balsam("--site", str(site), "app", "sync")
        for n in range(JOBS):
            (remote / f"in{n}.dat").write_text(f"input {n}\n")
            balsam("--site", str(site), "job", "create", "--app", "MySim",
                   "--workdir", f"ensemble/{n}", "-t", f"input_file=laptop:{remote}/in{n}.dat")
        balsam("--site", str(site), "job", "ls")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
