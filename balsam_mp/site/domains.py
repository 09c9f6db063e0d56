"""Failure domains: each location alias waits, fails and recovers on its own.

An alias whose sends fail (a consent or login Globus asks for, the service out of
reach) waits: its claims are kept, sent again when its wait ends, and it takes no new
work meanwhile; every other alias goes on. The wait doubles from RETRY_FIRST up to
RETRY_MAX on retryable errors; a consent or a login is asked again every ACTION_RETRY.

Slots are counted against the limit that really binds, per protocol: Globus' active
tasks per identity over Globus tasks only (`auto`: 3), and `max_concurrent_transfers`
for local copies. A task that is not running takes no slot: an INACTIVE one, a claim
held for an alias that is gone (or changed protocol), a claim of an alias that waits.
A group (direction, alias) with such a task takes no new work until it moves, so at
most the tasks it already had wait in it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from balsam_mp.site.backends import Location
from balsam_mp.states import Task

RETRY_FIRST = 0.5  # seconds an alias waits after its first retryable failure
RETRY_MAX = 30.0
ACTION_RETRY = 10.0  # seconds between two tries of an alias that needs a consent or login


@dataclass
class Wait:
    until: float  # time.monotonic()
    delay: float
    reason: str


class Domains:
    def __init__(self, locations: dict[str, Location], limits: dict[str, int],
                 record: Callable[[dict[str, dict]], None] = lambda waits: None) -> None:
        self.locations = locations
        self.limits = limits  # protocol -> tasks in flight at most
        self.waits: dict[str, Wait] = {}
        self.record = record  # told the waits whenever they change (for `site status`)

    def _changed(self) -> None:
        now, wall = time.monotonic(), time.time()
        self.record({alias: {"reason": wait.reason, "until": wall + wait.until - now}
                     for alias, wait in self.waits.items() if wait.until > now})

    def hold(self, aliases: set[str], reason: str, action: bool = False) -> None:
        """These aliases wait: ACTION_RETRY for a person's action, else a doubling backoff."""
        now = time.monotonic()
        for alias in aliases:
            before = self.waits.get(alias)
            delay = ACTION_RETRY if action else min(
                RETRY_MAX, before.delay * 2 if before else RETRY_FIRST)
            self.waits[alias] = Wait(now + delay, delay, reason)
        self._changed()

    def clear(self, alias: str) -> None:
        if self.waits.pop(alias, None) is not None:
            self._changed()

    def waiting(self, alias: str) -> bool:
        wait = self.waits.get(alias)
        return wait is not None and time.monotonic() < wait.until

    def usable(self, alias: str, protocol: str) -> bool:
        """A task of this alias and protocol can be sent (or runs) now."""
        location = self.locations.get(alias)
        return location is not None and location.protocol == protocol and \
            not self.waiting(alias)

    def of_endpoints(self, endpoints: list[str], site_endpoint: str | None) -> set[str]:
        """The Globus aliases a consent for these endpoints holds up (all of them when the
        site's own endpoint is among them: it is in every Globus task)."""
        globus = {a for a, loc in self.locations.items() if loc.protocol == "globus"}
        if site_endpoint in endpoints:
            return globus
        return {a for a in globus if self.locations[a].address in endpoints}

    def free_slots(self, use: list[tuple[str, str, str, int]]) -> dict[str, int]:
        """protocol -> slots free; `use`: (protocol, alias, task state, count) of the
        tasks in flight (claims.slot_use)."""
        running: Counter[str] = Counter()
        for protocol, alias, state, count in use:
            if not self.waits_here(alias, protocol, state):
                running[protocol] += count
        return {protocol: limit - running[protocol] for protocol, limit in self.limits.items()}

    def waits_here(self, alias: str, protocol: str, state: str) -> bool:
        """A task that is not running: INACTIVE, or a claim that cannot be sent now (its
        alias waits, is gone or changed protocol). A task the service has is running,
        whatever settings.yml says of its alias since."""
        return state == Task.INACTIVE or (state == Task.SUBMITTING and
                                          not self.usable(alias, protocol))

    def stalled(self, use: list[tuple[str, str, str, int]]) -> set[str]:
        """Aliases with a task that waits (INACTIVE, or a claim that cannot be sent)."""
        return {alias for protocol, alias, state, count in use
                if self.waits_here(alias, protocol, state)}
