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
from concurrent.futures import Future, ThreadPoolExecutor, wait

from balsam_mp.db import claims, refusals, sites
from balsam_mp.db.claims import Claim, Group
from balsam_mp.db.models import utcnow
from balsam_mp.site import batching, sending, waits, workdirs
from balsam_mp.site.backends import Location, build_locations
from balsam_mp.site.domains import Domains
from balsam_mp.site.submission_ids import SubmissionIds
from balsam_mp.site.worker import Worker
from balsam_mp.states import DIRECTIONS
from balsam_mp.transfer.base import (
    ConsentRequired,
    LoginRequired,
    PermanentError,
    RetryableError,
    TransferError,
)

SENDERS = 8  # concurrent requests to each transfer service
CRASH_HOOK = "BALSAM_MP_TEST_CRASH_AFTER_SUBMIT"  # tests: a file whose existence means "die"


class Submitter(Worker):
    name = "submitter"
    synchronous = "FULL"  # a claim must survive a power cut before its batch is sent

    def initialize(self) -> None:
        super().initialize()
        sites.publish(str(self.settings.site_path), self.settings.transfers.transfer_locations)
        self.owner = claims.owner_id()
        self.locations: dict[str, Location] = build_locations(self.settings)
        self.last_served: dict[Group, float] = {}
        self.held: set[int] = set()  # claims waiting for their alias to come back
        # transfer_batch_size auto: tasks worth having in flight, and their pacing
        config = self.settings.transfers
        self.auto = config.transfer_batch_size == batching.AUTO
        protocols = {loc.protocol for loc in self.locations.values()}
        # tasks in flight at most, per protocol: under auto, what each service runs at once
        self.limits = {p: batching.slots(config.max_concurrent_transfers, {p}) if self.auto
                       else config.max_concurrent_transfers for p in protocols}
        self.slots = max(self.limits.values(), default=1)  # the pace's divisor
        self.domains = Domains(self.locations, self.limits,
                               lambda found: waits.write(self.settings.site_path, found))
        waits.write(self.settings.site_path, {})  # a new submitter waits on nothing yet
        self.last_claim = self.next_claim = self.cost_checked = 0.0
        self.task_cost = 0.0  # median seconds from claim to finish, recently
        # a pool per protocol: a service that hangs ties up its own threads only
        self.pools = {p: ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix=f"send-{p}")
                      for p in protocols}
        self.submission_ids = {id(location.backend): SubmissionIds(
            location.backend, self.pools[location.protocol])
            for location in self.locations.values()}
        self.sending: dict[int, tuple[Claim, Future[str]]] = {}  # task id -> unanswered send

    def step(self) -> bool:
        self.collect()  # sends answered since the last pass
        # claims taken over may have been sent before a crash: resent as they are
        held = claims.unsubmitted(self.owner, self.settings.transfers.claim_lease)
        self.submit([c for c in held if c.task_id not in self.sending and
                     not self.domains.waiting(c.alias)], fresh=False)
        new = self.claim_new()
        self.submit(new)
        return bool(new)

    def claim_new(self) -> list[Claim]:
        """Claim batches round-robin over (direction, alias), oldest job first in each,
        for each protocol within its free slots; aliases that wait are left out."""
        use = claims.slot_use()
        free, stalled = self.domains.free_slots(use), self.domains.stalled(use)
        now = utcnow()
        groups = claims.ready_groups([Group(direction, alias) for alias in self.locations
                                      if alias not in stalled for direction in DIRECTIONS],
                                     now)
        new: list[Claim] = []
        for protocol, limit in sorted(self.limits.items()):
            mine = [g for g in groups if self.locations[g.alias].protocol == protocol]
            try:
                new += self.claim_protocol(mine, limit - free[protocol], free[protocol], now)
            except TransferError as exc:
                # no submission id to be had: every alias of this backend waits
                self.hold({g.alias for g in mine}, exc)
        for claim in new:
            self.last_served[Group(claim.direction, claim.alias)] = time.monotonic()
        if new:
            self.last_claim = time.monotonic()
        return new

    def claim_protocol(self, groups: list[Group], in_flight: int, capacity: int,
                       now: dt.datetime) -> list[Claim]:
        config = self.settings.transfers
        if not groups or capacity <= 0 or (self.auto and in_flight and self.paced()):
            return []
        batches, batch_size = capacity, config.transfer_batch_size
        if self.auto:
            batch_size = batching.auto_batch_size(
                claims.due_count(groups, now, config.num_items_query_limit), capacity)
            if in_flight:  # one new task per pace while others run: start-ups stay staggered
                batches = 1
        groups.sort(key=lambda g: self.last_served.get(g, 0.0))  # least recently served first
        for backend_key in {id(self.locations[g.alias].backend) for g in groups}:
            self.submission_ids[backend_key].stock(batches)
        return claims.claim_batches(
            [(g, self.locations[g.alias].address, self.locations[g.alias].protocol)
             for g in groups],
            batches, config.num_items_query_limit, batch_size,
            self.take_submission_id, self.owner, config.claim_lease,
            utcnow() + dt.timedelta(seconds=config.task_deadline))

    def hold(self, aliases: set[str], exc: Exception) -> None:
        """Aliases whose sends failed wait on their own; the others go on."""
        action = isinstance(exc, (ConsentRequired, LoginRequired))
        if action and claims.record_site_event("ACTION_REQUIRED", str(exc)):
            self.log.error("action required: %s", exc)
        if not any(self.domains.waiting(alias) for alias in aliases):
            self.log.warning("%s wait%s: %s", ", ".join(sorted(aliases)),
                             "s" if len(aliases) == 1 else "", exc)
        self.domains.hold(aliases, str(exc), action)

    def paced(self) -> bool:
        """Under auto, with tasks in flight: True while the last new task is younger than
        what a task costs here over the slots (at most service_period). Slots then free
        one by one, so work that trickles in waits for the next of them about a third of
        a start-up, not a whole one behind slots that all free at once."""
        if time.monotonic() >= self.cost_checked + 1.0:  # one small query a second
            self.task_cost, self.cost_checked = claims.recent_task_seconds(), time.monotonic()
        pace = min(self.settings.transfers.service_period, self.task_cost / self.slots)
        self.next_claim = self.last_claim + pace
        return time.monotonic() < self.next_claim

    def idle(self) -> None:
        """Wait for a commit, or until a paced claim is due, or service_period."""
        period = self.settings.transfers.service_period
        due = self.next_claim - time.monotonic()
        self.wait_for_change(due if 0 < due < period else period)

    def shutdown(self) -> None:
        for pool in self.pools.values():  # ids fetched ahead: not needed
            pool.shutdown(wait=False, cancel_futures=True)  # a hung send: resent, same id
        super().shutdown()

    def take_submission_id(self, group: Group) -> str:
        return self.submission_ids[id(self.locations[group.alias].backend)].take()

    def submit(self, batch: list[Claim], fresh: bool = True) -> None:
        """Send claims, their folders made first. Items of a `fresh` claim (never sent)
        whose folder cannot be made leave it; a resend stays the batch it was."""
        batch = [claim for claim in batch if self.trusted(claim) and
                 self.folders_made(claim, drop=fresh)]
        # the sends wait on the network, so they overlap
        new = {claim.task_id: (claim, self.pools[self.locations[claim.alias].protocol].submit(
            self.send, claim)) for claim in batch}
        self.sending.update(new)
        # the ids for the next batches arrive while these are in flight
        for location in {self.locations[claim.alias] for claim in batch}:
            self.submission_ids[id(location.backend)].fetch_ahead(self.slots)
        wait([future for _, future in new.values()], timeout=waits.SEND_WAIT)
        self.collect()
        slow = {claim.alias for claim, future in new.values() if not future.done()}
        if slow:  # answered later (collect); meanwhile these aliases take no new work
            self.hold(slow, RetryableError(
                f"no answer from the service within {waits.SEND_WAIT:g} s"))

    def collect(self) -> None:
        """Handle the sends that have been answered: record the tasks made, make aliases
        whose sends failed wait, abandon batches the service refused."""
        submitted: list[tuple[Claim, str]] = []
        for task_id, (claim, future) in list(self.sending.items()):
            if not future.done():
                continue
            del self.sending[task_id]
            try:
                submitted.append((claim, future.result()))
                self.domains.clear(claim.alias)
            except ConsentRequired as exc:  # the claims stay ours, sent when the wait ends
                self.hold(self.domains.of_endpoints(
                    exc.endpoints, self.settings.transfers.globus_endpoint_id) or
                    {claim.alias}, exc)
            except LoginRequired as exc:  # the identity's: every alias of its protocol
                self.hold({a for a, loc in self.locations.items()
                           if loc.protocol == claim.protocol}, exc)
            except RetryableError as exc:
                self.hold({claim.alias}, exc)
            except PermanentError as exc:
                finished = refusals.abandon(claim, exc.code, str(exc), self.settings.transfers)
                self.log.error("task %s refused: %s%s", claim.task_id, exc, (
                    f"; split round {finished.split_round}, its {sum(finished.halves)} items "
                    f"retried as halves of {' and '.join(map(str, finished.halves))}"
                    if finished.halves else ""))
        if submitted:
            claims.mark_submitted(submitted, self.owner)
            self.log.info("submitted %d task(s), %d item(s)", len(submitted),
                          sum(len(c.items) for c, _ in submitted))

    def folders_made(self, claim: Claim, drop: bool) -> bool:
        """Stage-ins: the folders they land in exist (a client's jobs have none yet);
        with `drop`, items whose folder cannot be made fail alone (else the transfer
        fails them). False if none is left to send."""
        if claim.direction != "in":
            return True
        failures = workdirs.make_folders(self.settings.data_path,
                                         [(item[0], item[2]) for item in claim.items])
        for failure in failures:
            self.log.error("item %d: %s", failure.item_id, failure.reason)
        if not failures or not drop:
            return True
        refusals.drop_items(claim, failures, self.settings.transfers)
        return bool(claim.items)

    def trusted(self, claim: Claim) -> bool:
        """A claim whose alias left transfer_locations (or changed protocol) since is not
        sent, nor failed: it may have been sent before a crash, so it keeps its
        submission id until the alias is back as it was (`site status` lists it;
        `transfer cancel` resolves it with the backend it was claimed for)."""
        location = self.locations.get(claim.alias)
        if location is not None and location.protocol == claim.protocol:
            return True
        if claim.task_id not in self.held:
            self.held.add(claim.task_id)
            self.log.warning("task %s waits: location alias %r is not usable (see "
                             "`balsam site status`)", claim.task_id, claim.alias)
        return False

    def send(self, claim: Claim) -> str:
        location = self.locations[claim.alias]
        remote_id = sending.send(self.settings, location.backend, location.address, claim)
        hook = os.environ.get(CRASH_HOOK)
        if hook and os.path.exists(hook):  # tests: die between submit and record
            os.unlink(hook)
            os.kill(os.getpid(), signal.SIGKILL)
        return remote_id
