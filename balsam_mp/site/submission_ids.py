"""Submission ids fetched ahead of need.

Step 1 of a submission stores a submission id with its claim, so the submitter must hold
one before it claims. Fetching the ids for the next batches while the current ones are in
flight, instead of when the next claim is due, takes a round trip off every batch. An id
fetched and never used costs nothing: the service forgets it.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future

from balsam_mp.transfer.base import TransferBackend


class SubmissionIds:
    """Ids of one backend: some in hand, some on their way."""

    def __init__(self, backend: TransferBackend, pool: Executor) -> None:
        self.backend = backend
        self.pool = pool
        self.in_hand: list[str] = []
        self.coming: deque[Future[str]] = deque()
        self.called = False

    def stock(self, count: int) -> None:
        """Hold `count` ids. A fetch started ahead counts if it worked; one that failed is
        dropped (the outage it met may be over), and what is still missing is fetched now,
        raising the errors of those fetches."""
        if not self.called:  # the very first call alone: it logs in once for all
            self.in_hand.append(self.backend.get_submission_id())
            self.called = True
        while self.coming and (len(self.in_hand) < count or self.coming[0].done()):
            fetch = self.coming.popleft()
            if fetch.exception() is None:
                self.in_hand.append(fetch.result())
        missing = range(count - len(self.in_hand))
        self.in_hand.extend(self.pool.map(lambda _: self.backend.get_submission_id(), missing))

    def fetch_ahead(self, count: int) -> None:
        """Start fetches so that `count` ids are in hand or on their way."""
        for _ in range(count - len(self.in_hand) - len(self.coming)):
            self.coming.append(self.pool.submit(self.backend.get_submission_id))

    def take(self) -> str:
        return self.in_hand.pop()
