"""Each entity's status moves come from one table: a move back is refused with 409 and changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pytest

from app.core.errors import InvalidState
from app.models.statuses import (
    TRANSITIONS,
    DisputeStatus,
    MilestoneStatus,
    PaymentStatus,
    PayoutStatus,
    RefundStatus,
    ReleaseStatus,
    RevenueDeclarationStatus,
    ShareTransferStatus,
    advance,
)


@dataclass
class Row:
    status: str


BACKWARD: list[tuple[StrEnum, StrEnum]] = [
    (PaymentStatus.SUCCESS, PaymentStatus.PENDING),
    (PaymentStatus.REFUNDED, PaymentStatus.SUCCESS),
    (RefundStatus.SENT, RefundStatus.PENDING),  # once the gateway may have it, never sent again
    (RefundStatus.PROCESSED, RefundStatus.SENT),
    (PayoutStatus.PAID, PayoutStatus.PROCESSING),
    (PayoutStatus.PROCESSING, PayoutStatus.PENDING),
    (MilestoneStatus.COMPLETED, MilestoneStatus.PENDING),
    (ReleaseStatus.RELEASED, ReleaseStatus.APPROVED),
    (ReleaseStatus.REJECTED, ReleaseStatus.PENDING_APPROVAL),
    (DisputeStatus.RESOLVED, DisputeStatus.OPEN),
    (ShareTransferStatus.COMPLETED, ShareTransferStatus.PENDING),
    (RevenueDeclarationStatus.PAID, RevenueDeclarationStatus.REPLACED),  # a paid declaration stands
]


@pytest.mark.parametrize(("current", "target"), BACKWARD, ids=lambda s: f"{type(s).__name__}.{s}")
def test_a_backward_move_is_refused_and_changes_nothing(current: StrEnum, target: StrEnum) -> None:
    row = Row(status=str(current))
    with pytest.raises(InvalidState) as refused:
        advance(row, target)
    assert refused.value.status_code == 409
    assert row.status == current


def test_every_entity_with_a_table_is_tested_and_every_status_has_a_row() -> None:
    assert {type(current) for current, _ in BACKWARD} == set(TRANSITIONS)
    for statuses, table in TRANSITIONS.items():
        assert set(table) == set(statuses), statuses


@pytest.mark.parametrize(
    ("current", "target"),
    [(PaymentStatus.PENDING, PaymentStatus.SUCCESS), (PayoutStatus.REVERSED, PayoutStatus.PENDING),
     (MilestoneStatus.RELEASED, MilestoneStatus.RELEASED)],
)
def test_an_allowed_move_happens(current: StrEnum, target: StrEnum) -> None:
    row = Row(status=str(current))
    advance(row, target)
    assert row.status == target
