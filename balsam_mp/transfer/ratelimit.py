"""Pacing of requests to a transfer service.

`RateLimiter`: at most N calls in any one-second window, shared by one process's
threads. `SharedRateLimiter`: calls paced by a budget that other processes share (the
site passes in a `TokenSource`; for Globus, a token bucket per identity in site.db).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Protocol

GRANT_SECONDS = 0.02  # a grant holds this long's worth of requests (at least one)
KEEP_SECONDS = 1.0  # tokens not used by then are dropped: they would add to a burst


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


class TokenSource(Protocol):
    def take(self, wanted: int) -> tuple[int, float]:
        """Up to `wanted` tokens: (granted, 0.0), or (0, seconds until one is there)."""


class SharedRateLimiter:
    """One token per call, taken from `source` a grant at a time, so a fast caller does
    not pay a round to the shared budget for every request."""

    def __init__(self, source: TokenSource, per_second: float) -> None:
        self.source = source
        self.grant = max(1, int(per_second * GRANT_SECONDS))
        self.grants = 0  # how often the shared budget was asked (tests, benchmarks)
        self._tokens = 0
        self._expires = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until this process holds a token, then spend it."""
        with self._lock:  # the other threads queue here meanwhile: they would wait anyway
            while True:
                now = time.monotonic()
                if self._tokens and now < self._expires:
                    self._tokens -= 1
                    return
                granted, pause = self.source.take(self.grant)
                self.grants += 1
                if granted:
                    self._tokens, self._expires = granted, now + KEEP_SECONDS
                else:
                    time.sleep(pause)
