"""At most N calls in any one-second window, shared by a process's threads.

Globus allows 20 requests per second per user; the submitter and the poller each keep
to half of that by default (`globus_requests_per_second: 10`).
"""

from __future__ import annotations

import threading
import time
from collections import deque


class RateLimiter:
    def __init__(self, per_second: float) -> None:
        self.capacity = max(1, int(per_second))
        self.window = self.capacity / per_second  # seconds in which `capacity` calls fit
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until one more call fits in the window, then count it."""
        while True:
            with self._lock:
                now = time.monotonic()
                while self._recent and now - self._recent[0] >= self.window:
                    self._recent.popleft()
                if len(self._recent) < self.capacity:
                    self._recent.append(now)
                    return
                pause = self.window - (now - self._recent[0])
            time.sleep(pause)
