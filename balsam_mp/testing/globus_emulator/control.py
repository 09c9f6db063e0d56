"""Ways to run the emulator, and a client for its /_emulator control routes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from globus_sdk.token_storage import SQLiteTokenStorage, TokenStorageData

from balsam_mp.testing.globus_emulator import profiles
from balsam_mp.testing.globus_emulator.knobs import Knobs
from balsam_mp.testing.globus_emulator.server import EmulatorHTTPServer
from balsam_mp.testing.globus_emulator.state import Emulator


class EmulatorControl:
    """Inject faults, change knobs and read back what happened, over HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    @property
    def env(self) -> dict[str, str]:
        """The environment that points globus-sdk at this emulator."""
        return {"GLOBUS_SDK_SERVICE_URL_TRANSFER": self.base_url,
                "GLOBUS_SDK_SERVICE_URL_AUTH": self.base_url}

    def _call(self, method: str, route: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + "_emulator/" + route, data=data,
                                         method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, dict[str, int]]:
        return self._call("GET", "stats")

    def counts(self) -> dict[str, int]:
        return self.stats()["counts"]

    def submissions(self) -> list[dict[str, Any]]:
        return self._call("GET", "submissions")

    def tasks(self) -> dict[str, dict[str, Any]]:
        return self._call("GET", "tasks")

    def fault(self, route: str, **rule: Any) -> None:
        """e.g. fault("submit_transfer", status=503, count=2) or drop=True, probability=0.05."""
        self._call("POST", "faults", {"route": route, **rule})

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def knobs(self, **values: Any) -> dict[str, Any]:
        return self._call("POST", "knobs", values)

    def require_consent(self, endpoint: str, required: bool = True) -> None:
        self._call("POST", "consent", {"endpoint": endpoint, "required": required})

    def grant_consent(self, endpoint: str, identity: str) -> None:
        self._call("POST", "consent", {"endpoint": endpoint, "grant_to": identity})

    def deny(self, endpoint: str, denied: bool = True) -> None:
        self._call("POST", "deny", {"endpoint": endpoint, "denied": denied})

    def add_client(self, client_id: str, client_secret: str) -> None:
        self._call("POST", "clients", {"client_id": client_id, "client_secret": client_secret})

    def expire_tokens(self) -> None:
        self._call("POST", "expire_tokens", {})

    def tokens(self, client_id: str = "emulator-test-client", scope: str = "") -> dict[str, Any]:
        return self._call("POST", "tokens", {"client_id": client_id, "scope": scope})

    def cli_login(self, home: Path) -> str:
        """A globus CLI login (a user's, no service account) written where the CLI keeps
        it under `home`, holding no data_access consent; returns the user's identity."""
        tokens = self.tokens()
        store = home / ".globus" / "cli" / "storage.db"
        store.parent.mkdir(parents=True, exist_ok=True)
        storage = SQLiteTokenStorage(store, namespace="user/production")
        storage.store_token_data_by_resource_server({
            "transfer.api.globus.org": TokenStorageData(
                resource_server="transfer.api.globus.org", identity_id=None,
                scope=tokens["scope"], access_token=tokens["access_token"],
                refresh_token=tokens["refresh_token"],
                expires_at_seconds=int(time.time()) + 3600, token_type="Bearer")})
        storage.close()
        return tokens["emulator_identity"]

    def set_inactive(self, task_id: str, inactive: bool = True,
                     reason: str = "CREDENTIALS") -> dict[str, Any]:
        return self._call("POST", f"tasks/{task_id}", {"inactive": inactive, "reason": reason})

    def fail_task(self, task_id: str, code: str = "FAILED",
                  description: str = "failed by the emulator") -> dict[str, Any]:
        return self._call("POST", f"tasks/{task_id}", {"fail": code, "description": description})

    # what an endpoint's administrator does; side: whose administrator ("source" or
    # "destination"). Each returns the ids of the tasks it changed.
    def admin_pause(self, task_ids: list[str], message: str,
                    side: str = "destination") -> list[str]:
        return self._call("POST", "admin/pause", {"task_ids": task_ids, "message": message,
                                                  "side": side})["changed"]

    def admin_resume(self, task_ids: list[str]) -> list[str]:
        return self._call("POST", "admin/resume", {"task_ids": task_ids})["changed"]

    def admin_cancel(self, task_ids: list[str], message: str,
                     side: str = "destination") -> list[str]:
        return self._call("POST", "admin/cancel", {"task_ids": task_ids, "message": message,
                                                   "side": side})["changed"]


class GlobusEmulator(EmulatorControl):
    """In-process emulator on a background thread: `with GlobusEmulator(eps) as emu:`."""

    def __init__(self, endpoints: dict[str, Path], port: int = 0, knobs: Knobs | None = None,
                 accept_any_token: bool = False, seed: int | None = None,
                 rate_limit: float | None = None, profile: str | None = None) -> None:
        if profile is not None:  # a preset; knobs or rate_limit given here win
            preset = profiles.profile(profile)
            knobs = knobs or preset.make_knobs()
            rate_limit = preset.rate_limit if rate_limit is None else rate_limit
        self.emulator = Emulator(endpoints, knobs, accept_any_token, seed, rate_limit)
        self._server = EmulatorHTTPServer(self.emulator, port)
        super().__init__(self.emulator.base_url)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True,
                                        name="globus-emulator")

    def start(self) -> GlobusEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.emulator.engine.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> GlobusEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EmulatorProcess(EmulatorControl):
    """The emulator as a separate process, for tests that run the site as processes."""

    def __init__(self, endpoints: dict[str, Path], *extra_args: str) -> None:
        args = [sys.executable, "-m", "balsam_mp.testing.globus_emulator", "--port", "0"]
        for endpoint, folder in endpoints.items():
            args += ["--endpoint", f"{endpoint}={folder}"]
        self.process = subprocess.Popen([*args, *extra_args], stdout=subprocess.PIPE,
                                        text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        first = self.process.stdout.readline().strip() if self.process.stdout else ""
        if not first.startswith("http://127.0.0.1:"):
            self.process.kill()
            raise RuntimeError(f"emulator did not start: {first!r}")
        super().__init__(first)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
