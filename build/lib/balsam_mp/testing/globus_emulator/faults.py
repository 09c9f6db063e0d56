"""Fault injection and request counting for the emulator."""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass


@dataclass
class FaultRule:
    """Fail calls to `route` ('*' for any Transfer or Auth route).

    Either the next `count` calls, or each call with `probability` until removed.
    `drop` closes the connection without an answer instead of sending `status`.
    `after` lets the call take effect first and then loses its answer: a task is
    created, but the client sees the fault (the case exactly-once submission is for).
    """

    route: str
    status: int = 503
    code: str = "ServiceUnavailable"
    message: str = "injected fault"
    count: int | None = 1
    probability: float | None = None
    retry_after: int | None = None
    drop: bool = False
    after: bool = False


class Faults:
    def __init__(self, seed: int | None = None) -> None:
        self.rules: list[FaultRule] = []
        self.counts: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._random = random.Random(seed)

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self.rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def on_request(self, route: str) -> FaultRule | None:
        """Count a call to `route`; return the fault to inject, if any."""
        with self._lock:
            self.counts[route] += 1
            for rule in self.rules:
                if rule.route not in ("*", route):
                    continue
                if rule.probability is not None:
                    if self._random.random() >= rule.probability:
                        continue
                elif rule.count is not None:
                    if rule.count <= 0:
                        continue
                    rule.count -= 1
                self.injected[route] += 1
                return rule
            return None
