"""A task that fails as a whole sends its items again as one batch: they come due at one
moment, so no submitter pass can fall between them and split the retry."""

from __future__ import annotations

import pytest

from balsam_mp import db
from balsam_mp.states import Item
from tests.sitemoves import claim, fail_task, make


@pytest.mark.engines
def test_a_failed_tasks_items_come_due_together_and_go_out_as_one_batch(site):
    make(10, out=False)
    first = claim("in")
    assert len(first.items) == 10
    fail_task(first.task_id, "ENDPOINT_ERROR")  # retried, with backoff
    rows = list(db.TransferItem.select().where(db.TransferItem.direction == "in"))
    assert {(i.state, i.attempts) for i in rows} == {(Item.PENDING, 1)}
    due = {i.not_before for i in rows}
    assert len(due) == 1, sorted(due)  # a jitter per item made 10 moments over seconds
