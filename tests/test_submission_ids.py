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


def test_a_failed_fetch_is_raised_by_the_stock_that_needs_it(ids, emulator):
    ids.stock(1)
    ids.take()
    emulator.fault("submission_id", status=503, count=10)
    ids.fetch_ahead(1)
    with pytest.raises(RetryableError):
        ids.stock(1)
    emulator.clear_faults()
    ids.stock(2)
    assert len({ids.take(), ids.take()}) == 2
