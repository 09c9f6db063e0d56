"""Named emulator presets: `--profile NAME` or `GlobusEmulator(..., profile=NAME)`.

`instant` is the emulator's defaults (tasks start at once, no request limit): tests of
the site's own logic. `realistic` models Globus as its users see it; the numbers are
explained in docs/emulator.md ("Options and profiles"). Every knob stays settable on its own:
an explicit option or argument overrides the profile's value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from balsam_mp.testing.globus_emulator.knobs import Knobs


@dataclass(frozen=True)
class Profile:
    knobs: dict[str, Any] = field(default_factory=dict)  # Knobs fields
    rate_limit: float | None = None  # requests per second per identity, 429 beyond

    def make_knobs(self, **overrides: Any) -> Knobs:
        """The profile's Knobs; overrides whose value is None leave the profile's."""
        values = dict(self.knobs, **{k: v for k, v in overrides.items() if v is not None})
        return Knobs(**values)

    def lower_bound(self, files: int, size: int = 0) -> float:
        """Seconds the fastest possible client needs to move `files` files of `size`
        bytes, starting from nothing in flight: every slot pays one start-up, and the
        files are shared out over the slots Globus runs at once."""
        knobs = self.make_knobs()
        per_file = knobs.file_overhead + (size / knobs.bandwidth if knobs.bandwidth else 0.0)
        return knobs.startup_delay + math.ceil(files / knobs.max_active) * per_file


PROFILES: dict[str, Profile] = {
    "instant": Profile(),
    "realistic": Profile(
        knobs={
            "startup_delay": 2.0,  # s before a started task moves its first byte
            "file_overhead": 0.01,  # s per file: ~100 small files/s per task
            "bandwidth": 100e6,  # bytes/s per task (a DTN-to-DTN stream)
            "max_active": 3,  # tasks running at once per user; the rest wait "Queued"
        },
        rate_limit=20.0,  # requests/s per user, 429 with Retry-After beyond
    ),
}


def profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown emulator profile {name!r} (known: "
                         f"{', '.join(PROFILES)})") from None
