"""Row ids: sortable by creation time, unguessable, and handed out in order within a batch."""

from __future__ import annotations

import re

from app.models.base import new_id, new_ids


def test_a_batch_of_ids_is_unique_ascending_and_shaped_like_single_ids() -> None:
    batch = new_ids("po", 5_000)
    assert len(set(batch)) == 5_000
    assert batch == sorted(batch)  # rows written in this order go into the primary key's index in key order
    shape = re.compile(r"po_[0-9a-f]{12}[0-9a-f]{16}")
    assert all(shape.fullmatch(one) for one in [*batch, new_id("po")])
    assert new_id("po") >= batch[-1][:15]  # a later id never sorts before an earlier millisecond
