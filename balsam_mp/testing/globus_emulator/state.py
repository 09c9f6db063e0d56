"""What the emulator's routes share: the endpoints' files and tasks, tokens, faults,
and the rate limit. The HTTP server (server.py) hands it to every route."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from pathlib import Path

from balsam_mp.testing.globus_emulator.auth import AuthState
from balsam_mp.testing.globus_emulator.engine import Engine
from balsam_mp.testing.globus_emulator.faults import Faults
from balsam_mp.testing.globus_emulator.knobs import Knobs


class Emulator:
    """Everything the routes share. `base_url` ends with '/'."""

    def __init__(self, endpoints: dict[str, Path], knobs: Knobs | None = None,
                 accept_any_token: bool = False, seed: int | None = None,
                 rate_limit: float | None = None) -> None:
        self.engine = Engine(endpoints, knobs)
        self.auth = AuthState(accept_any_token=accept_any_token)
        self.faults = Faults(seed)
        self.denied_endpoints: set[str] = set()
        self.clients: dict[str, str] = {}
        self.user_identity = str(uuid.uuid4())  # who logs in through /authorize
        self.rate_limit = rate_limit  # requests per second per identity, like Globus' 20
        self._recent: dict[str, deque[float]] = {}
        self._rate_lock = threading.Lock()
        self.base_url = ""

    def over_rate_limit(self, identity: str) -> bool:
        if not self.rate_limit:
            return False
        now = time.monotonic()
        with self._rate_lock:
            recent = self._recent.setdefault(identity, deque())
            while recent and now - recent[0] > 1.0:
                recent.popleft()
            if len(recent) >= self.rate_limit:
                self.faults.injected["rate_limited"] += 1
                return True
            recent.append(now)
            return False
