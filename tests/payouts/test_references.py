"""Transfer references: what Paystack accepts, unique, and in order within a batch."""

from __future__ import annotations

import re

from app.payouts.service import new_payout_reference, new_payout_references


def test_a_batch_of_references_is_unique_ascending_and_what_paystack_accepts() -> None:
    batch = new_payout_references(5_000)
    assert len(set(batch)) == 5_000
    assert batch == sorted(batch)  # a distribution's payouts go into the references' index in key order
    accepted = re.compile(r"[a-z0-9_-]{16,50}")
    assert all(accepted.fullmatch(one) for one in [*batch, new_payout_reference()])
