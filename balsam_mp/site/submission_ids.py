"""Submission ids fetched ahead of need.

Step 1 of a submission stores a submission id with its claim, so the submitter must hold
one before it claims. Fetching the ids for the next batches while the current ones are in
flight, instead of when the next claim is due, takes a round trip off every batch. An id
fetched and never used costs nothing: the service forgets it.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, Future, wait

from balsam_mp.transfer.base import RetryableError, TransferBackend

ID_WAIT = 5.0  # seconds a claim waits for submission ids; slower ones count later


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
        raising the errors of those fetches. A service that does not answer within
        ID_WAIT is a RetryableError: the fetches go on, and count when they arrive."""
        if not self.called:  # the very first call alone: it logs in once for all
            self._fetch(1)
            self.called = True
        while self.coming and self.coming[0].done():
            fetch = self.coming.popleft()
            if fetch.exception() is None:
                self.in_hand.append(fetch.result())
        self._fetch(count - len(self.in_hand) - len(self.coming))
        done, _ = wait(self.coming, timeout=ID_WAIT)
        while self.coming and self.coming[0] in done:
            fetch = self.coming.popleft()
            self.in_hand.append(fetch.result())  # a failed fetch raises its error here
        if len(self.in_hand) < count:
            raise RetryableError(f"the service gave no submission id within {ID_WAIT:g} s")

    def _fetch(self, count: int) -> None:
        for _ in range(count):
            self.coming.append(self.pool.submit(self.backend.get_submission_id))

    def fetch_ahead(self, count: int) -> None:
        """Start fetches so that `count` ids are in hand or on their way."""
        for _ in range(count - len(self.in_hand) - len(self.coming)):
            self.coming.append(self.pool.submit(self.backend.get_submission_id))

    def take(self) -> str:
        return self.in_hand.pop()
