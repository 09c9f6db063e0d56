"""Submission ids fetched ahead: the real SDK against the emulator."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from balsam_mp.site.submission_ids import SubmissionIds
from balsam_mp.transfer.base import RetryableError
from balsam_mp.transfer.globus import GlobusBackend
from tests.conftest import SITE_EP, wait_for
from tests.test_backends import globus_client


@pytest.fixture
def ids(emulator, endpoint_dirs):
    backend = GlobusBackend(globus_client(emulator), SITE_EP, str(endpoint_dirs[SITE_EP]), "/",
                            requests_per_second=1000)
    with ThreadPoolExecutor(max_workers=4) as pool:
        yield SubmissionIds(backend, pool)


def test_ids_are_held_fetched_ahead_and_never_given_twice(ids, emulator):
    ids.stock(3)
    assert len(ids.in_hand) >= 3
    taken = [ids.take() for _ in range(3)]
    ids.fetch_ahead(5)  # in the background: in hand or on the way, never more than asked
    assert len(ids.in_hand) + len(ids.coming) == 5
    wait_for(lambda: all(f.done() for f in ids.coming), what="the fetches ahead")
    assert emulator.counts()["submission_id"] == 3 + 5
    ids.stock(5)  # everything it needs is already here: no new request
    assert emulator.counts()["submission_id"] == 3 + 5
    taken += [ids.take() for _ in range(5)]
    assert len(set(taken)) == 8


def test_a_failed_fetch_ahead_is_dropped_and_a_failing_stock_raises(ids, emulator):
    ids.stock(1)
    ids.take()
    emulator.fault("submission_id", status=503, count=1_000_000)
    ids.fetch_ahead(2)  # both fail in the background
    wait_for(lambda: all(f.done() for f in ids.coming), what="the failed fetches")
    with pytest.raises(RetryableError):  # the ids it needs now cannot be had
        ids.stock(1)
    ids.fetch_ahead(2)
    wait_for(lambda: all(f.done() for f in ids.coming), what="the failed fetches")
    emulator.clear_faults()  # the outage is over: old failures do not count any more
    ids.stock(2)
    assert len({ids.take(), ids.take()}) == 2 and not ids.coming
