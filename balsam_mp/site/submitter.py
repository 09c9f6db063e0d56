"""The submitter: claims pending items, batches them, submits each batch exactly once.

Exactly once: a batch's submission id is stored with its claim before anything is sent,
and a batch left `submitting` by a crash is sent again with that same id, which the
service answers with the original task.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time

from balsam_mp.db import claims
from balsam_mp.db.claims import Claim, Group
from balsam_mp.db.models import utcnow
from balsam_mp.site.backends import Location, build_locations
from balsam_mp.site.worker import Worker
from balsam_mp.transfer.base import (
    ConsentRequired,
    FileSpec,
    LoginRequired,
    PermanentError,
    RetryableError,
    TaskOptions,
    task_label,
)

CRASH_HOOK = "BALSAM_MP_TEST_CRASH_AFTER_SUBMIT"  # tests: a file whose existence means "die"


class Submitter(Worker):
    name = "submitter"
    synchronous = "FULL"  # a claim must survive a power cut before its batch is sent

    def initialize(self) -> None:
        super().initialize()
        self.owner = claims.owner_id()
        self.locations: dict[str, Location] = build_locations(self.settings)
        self.last_served: dict[Group, float] = {}

    def step(self) -> bool:
        config = self.settings.transfers
        claims.renew_leases(self.owner, config.claim_lease)
        leftover = claims.my_unsubmitted(self.owner) + claims.take_over_abandoned(
            self.owner, config.claim_lease)
        self.submit(leftover)
        new = self.claim_new()
        self.submit(new)
        return bool(new)

    def claim_new(self) -> list[Claim]:
        """Claim batches round-robin over (direction, alias), oldest job first in each."""
        config = self.settings.transfers
        capacity = config.max_concurrent_transfers - claims.in_flight_count()
        budget = config.num_items_query_limit
        groups = sorted(claims.ready_groups(utcnow()),
                        key=lambda g: self.last_served.get(g, 0.0))
        new: list[Claim] = []
        while capacity > 0 and budget > 0 and groups:
            for group in list(groups):
                if capacity <= 0 or budget <= 0:
                    break
                claim = self.claim_one(group, min(config.transfer_batch_size, budget))
                if claim is None:
                    groups.remove(group)
                    continue
                new.append(claim)
                capacity -= 1
                budget -= len(claim.items)
                self.last_served[group] = time.monotonic()
        return new

    def claim_one(self, group: Group, limit: int) -> Claim | None:
        location = self.locations.get(group.alias)
        if location is None:
            return None  # alias no longer trusted: its items wait for a settings fix
        config = self.settings.transfers
        submission_id = location.backend.get_submission_id()  # before the claim: step 1
        deadline = utcnow() + dt.timedelta(seconds=config.task_deadline)
        return claims.claim_batch(group, limit, location.address, location.protocol,
                                  submission_id, self.owner, config.claim_lease, deadline)

    def submit(self, batch: list[Claim]) -> None:
        submitted: list[tuple[Claim, str]] = []
        retry_later: Exception | None = None
        for claim in batch:
            try:
                submitted.append((claim, self.send(claim)))
            except (ConsentRequired, LoginRequired) as exc:
                if claims.record_site_event("ACTION_REQUIRED", str(exc)):
                    self.log.error("action required: %s", exc)
                retry_later = exc
            except RetryableError as exc:
                retry_later = exc
            except PermanentError as exc:
                self.log.error("task %s refused: %s", claim.task_id, exc)
                claims.abandon(claim, "REFUSED", str(exc), self.settings.transfers)
        if submitted:
            claims.mark_submitted(submitted, self.owner)
            self.log.info("submitted %d task(s), %d item(s)", len(submitted),
                          sum(len(c.items) for c, _ in submitted))
        if retry_later is not None:
            raise retry_later  # the loop backs off; the claims stay ours to resend

    def send(self, claim: Claim) -> str:
        location = self.locations[claim.alias]
        config = self.settings.transfers
        inbound = claim.direction == "in"
        files = [FileSpec(remote, local, recursive) if inbound else
                 FileSpec(local, remote, recursive)
                 for _, remote, local, recursive in claim.items]
        options = TaskOptions(
            label=task_label(self.settings.site_name, claim.direction, claim.alias, len(files)),
            deadline=claim.deadline, sync_level=config.sync_level,
            verify_checksum=config.verify_checksum, skip_source_errors=config.skip_source_errors)
        remote_id = location.backend.submit(claim.direction, location.address, files,
                                            claim.submission_id, options)
        hook = os.environ.get(CRASH_HOOK)
        if hook and os.path.exists(hook):  # tests: die between submit and record
            os.unlink(hook)
            os.kill(os.getpid(), signal.SIGKILL)
        return remote_id
