"""What `sync_level: checksum` (the default) costs when a batch is sent again.

1,000 files of 1 MB are staged in once; then the same batch is sent again, as a retry
or a resubmission would, with each sync level. Every destination file exists already,
so `checksum` reads both sides of each file to compare them, `size` and `mtime` only
stat them, and null copies every file again. New files cost nothing extra at any level
(a missing destination is copied without a comparison).

Both backends, with their defaults (verify_checksum on): the local backend, and the
Globus emulator over HTTP (a real TransferClient; the emulator copies on this machine).
Usage: python scripts/bench_sync.py [--files 1000] [--size-mb 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

import globus_sdk

from balsam_mp.testing.globus_emulator import GlobusEmulator
from balsam_mp.transfer.base import FileSpec, TaskOptions, TransferBackend
from balsam_mp.transfer.globus import GlobusBackend
from balsam_mp.transfer.local import LocalBackend

SRC = "5e1f0000-0000-4000-8000-00000000000a"
DST = "5e1f0000-0000-4000-8000-00000000000b"
LEVELS = (None, "exists", "size", "mtime", "checksum")


def make_files(root: Path, count: int, size: int) -> None:
    (root / "in").mkdir(parents=True)
    for n in range(count):
        (root / "in" / f"{n}.dat").write_bytes(os.urandom(size))


def run_task(backend: TransferBackend, address: str, files: list[FileSpec],
             level: str | None) -> float:
    """Seconds from submit to SUCCEEDED for one batch."""
    options = TaskOptions("bench", dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1),
                          sync_level=level)
    start = time.perf_counter()
    task_id = backend.submit("in", address, files, str(uuid.uuid4()), options)
    while True:
        status = backend.poll([task_id]).get(task_id)
        if status is not None and status.finished:
            assert status.status == "SUCCEEDED", status
            return time.perf_counter() - start
        time.sleep(0.02)  # the task runs elsewhere: poll it


def measure(name: str, backend: TransferBackend, address: str, files: list[FileSpec]) -> None:
    first = run_task(backend, address, files, "checksum")
    print(f"{name}: first copy of {len(files)} files: {first:.2f} s")
    for level in LEVELS:
        seconds = run_task(backend, address, files, level)
        print(f"{name}: again, sync_level {str(level):8}: {seconds:6.2f} s "
              f"({seconds / first:.2f}x the first copy)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size-mb", type=float, default=1.0)
    args = parser.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        remote, site = Path(tmp, "remote"), Path(tmp, "site")
        make_files(remote, args.files, int(args.size_mb * 1e6))
        site.mkdir()
        local_files = [FileSpec(f"/in/{n}.dat", str(site / "local" / str(n) / "in.dat"))
                       for n in range(args.files)]
        measure("local", LocalBackend(Path(tmp, "tasks"), site), str(remote), local_files)
        with GlobusEmulator({SRC: remote, DST: site}, accept_any_token=True) as emulator:
            os.environ.update(emulator.env)
            client = globus_sdk.TransferClient(
                authorizer=globus_sdk.AccessTokenAuthorizer("bench"))
            backend = GlobusBackend(client, DST, str(site), "/", requests_per_second=1000)
            globus_files = [FileSpec(f"/in/{n}.dat", str(site / "globus" / str(n) / "in.dat"))
                            for n in range(args.files)]
            measure("emulator", backend, SRC, globus_files)


if __name__ == "__main__":
    main()
