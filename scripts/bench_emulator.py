"""How fast the emulator itself is, so it is never the bottleneck of a site benchmark.

Starts the emulator as its own process (metadata-only, zero latency, any token) and
drives it from this process over keep-alive HTTP connections:
  (1) POST /v0.10/transfer with 100 items each, for a fixed time;
  (2) GET /v0.10/task_list?filter=task_id:<100 ids>, for a fixed time.
Targets: 500 submissions/s and 1,000 polls/s on a 2-core machine.
"""

from __future__ import annotations

import http.client
import json
import platform
import tempfile
import threading
import time
import uuid
from pathlib import Path

from balsam_mp.testing.globus_emulator import EmulatorProcess

SRC = "5e1f0000-0000-4000-8000-00000000000a"
DST = "5e1f0000-0000-4000-8000-00000000000b"
SECONDS = 5.0
THREADS = 4


def transfer_body() -> bytes:
    items = [{"DATA_TYPE": "transfer_item", "source_path": f"/in/{n}.dat",
              "destination_path": f"/data/job{n}/in.dat"} for n in range(100)]
    return json.dumps({"DATA_TYPE": "transfer", "submission_id": str(uuid.uuid4()),
                       "source_endpoint": SRC, "destination_endpoint": DST,
                       "label": "bench", "DATA": items}).encode()


def hammer(port: int, make_request, seconds: float) -> tuple[int, list]:
    """Run make_request() on THREADS keep-alive connections; return (count, last bodies)."""
    count = [0]
    results: list = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        done, last = 0, None
        while time.monotonic() < stop:
            method, path, body = make_request()
            conn.request(method, path, body=body, headers={
                "Authorization": "Bearer bench", "Content-Type": "application/json"})
            response = conn.getresponse()
            last = response.read()
            assert response.status in (200, 202), last[:200]
            done += 1
        with lock:
            count[0] += done
            results.append(last)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return count[0], results


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {SRC: Path(tmp, "a"), DST: Path(tmp, "b")}
        for folder in dirs.values():
            folder.mkdir()
        with EmulatorProcess(dirs, "--metadata-only", "--accept-any-token") as emu:
            port = int(emu.base_url.rstrip("/").rsplit(":", 1)[1])
            n, bodies = hammer(port, lambda: ("POST", "/v0.10/transfer", transfer_body()),
                               SECONDS)
            print(f"submissions: {n / SECONDS:8.0f} /s  (100 items each, {n} in {SECONDS}s)")
            task_ids = list(emu.tasks())[:100]
            path = "/v0.10/task_list?limit=100&filter=task_id:" + ",".join(task_ids)
            n, bodies = hammer(port, lambda: ("GET", path, None), SECONDS)
            returned = len(json.loads(bodies[0])["DATA"])
            print(f"task_list polls: {n / SECONDS:8.0f} /s  ({returned} tasks each, {n} in "
                  f"{SECONDS}s)")
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {__import__('os').cpu_count()} cores")


if __name__ == "__main__":
    main()
