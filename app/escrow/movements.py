"""Money out of escrow: releases and refunds, applied many at a time.

Every release and refund of escrowed money goes through `apply()`. It locks the
deposits of all its movements in one statement, checks each movement in order
against what its deposits still hold, and a milestone's release also against
what milestones already released from them (a refused movement writes nothing
and gets its own error), then writes the rows of the accepted ones together and
posts their journal entries. The new rows go in as plain rows, one statement per
table (COPY on PostgreSQL), and the deposits' new amounts in one UPDATE, not as
ORM objects flushed by the unit of work (building and flushing them was about a
fifth of a batch's CPU, measured; a statement per deposit then about 0.3 ms of a
16-movement batch's 4.5 ms). One release or refund is a batch of one;
`app.escrow.group_commit.run` (group commit, `app.core.batching.GroupCommit`) hands
`apply()` the movements of concurrent requests at once, so a hot escrow account
is locked once per batch instead of once per movement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import insert_rows
from app.core.errors import AppError, FundsFrozen, InsufficientFunds, InvalidAmount, InvalidState, NotFound
from app.core.money import MoneyError, format_percentage, percentage_of, to_major, to_minor
from app.escrow.deposits import (
    available,
    deposit_status,
    escrow_row,
    lock_found_deposits,
    remaining,
    write_moved,
)
from app.ledger import accounts
from app.ledger.service import Entry, move, post_entries
from app.models import App, EscrowTransaction, Milestone, Payment, Payout, Refund
from app.models.base import new_id, utcnow
from app.payments.gateway_refunds import new_refund_row
from app.payouts.service import payout_recipients, payout_row
from app.runtime import Runtime
from app.shares.service import reserve_shares


@dataclass(frozen=True)
class ReleaseMoney:
    """`escrow:app -> payable:user:{owner}` out of the given deposits, and the owner's payout queued."""

    app: App
    currency: str
    items: Sequence[tuple[str, int]]  # (deposit id, minor units)
    source_id: str  # the release (or dispute) this money leaves for: one journal entry each
    milestone_id: str | None  # None: not a milestone's release (a dispute resolved for the owner)
    frozen_allowed: int = 0  # dispute resolution only: it unfreezes in the same transaction


@dataclass(frozen=True)
class RefundMoney:
    """`escrow:app -> refund:in_flight` out of one deposit; the gateway is asked after commit."""

    deposit_id: str
    amount: int | None  # minor units; None (and no amount_major): all that remains
    reason: str
    frozen_allowed: int = 0
    amount_major: Decimal | None = None  # as a client sent it, in the deposit's currency


@dataclass(frozen=True)
class RefundMade:
    """A refund written in this batch (status pending: the gateway is asked after commit)."""

    refund_id: str
    record_id: str  # the refund's own escrow row
    deposit_id: str
    amount: int  # minor units
    currency: str
    reason: str
    created_at: datetime
    payment_reference: str  # the charge it goes back to


Movement = ReleaseMoney | RefundMoney
Outcome = RefundMade | None | AppError  # a refund made, nothing for a release, or why it was refused


@dataclass
class _Writes:
    """A batch's new rows by table, and its journal entries."""

    moved: dict[str, EscrowTransaction] = field(default_factory=dict)  # the deposits money left, by id
    escrow_rows: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    payouts: list[dict[str, Any]] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)

    def take(self, deposit: EscrowTransaction, *, released: int = 0, refunded: int = 0) -> None:
        """Money leaves a locked deposit, in memory; `write` writes it."""
        deposit.released += released
        deposit.refunded += refunded
        deposit.status = deposit_status(deposit)
        self.moved[deposit.id] = deposit

    async def write(self, session: AsyncSession) -> None:
        await write_moved(session, self.moved.values(), utcnow())
        for model, rows in ((EscrowTransaction, self.escrow_rows), (Refund, self.refunds), (Payout, self.payouts)):
            await insert_rows(session, model.__table__, rows)


# Each part of a release is the release's total (rounded half up) split by largest remainders:
# less than 1.5 minor units above its exact share of the deposit. Two per part bounds that rounding.
ROUNDING_PER_PART = 2


@dataclass
class _MilestoneReleases:
    """What releases for milestones took from the locked deposits, kept up to date through a batch."""

    released: set[tuple[str, str]]  # (milestone id, deposit id)
    taken: dict[str, int]  # deposit id -> minor units
    parts: dict[str, int]  # deposit id -> how many releases took them
    promised: dict[str, int]  # app id -> the sum of its milestones' percentages (hundredths)

    def check(self, move_: ReleaseMoney, chosen: list[tuple[EscrowTransaction, int]]) -> None:
        """A milestone is released at most once per deposit, and milestones together never take more
        of a deposit than their percentages of its original amount."""
        if move_.milestone_id is None:
            return
        promised = self.promised.get(move_.app.id, 0)
        for deposit, amount in chosen:
            if (move_.milestone_id, deposit.id) in self.released:
                raise InvalidState("This milestone is already released for this deposit",
                                   milestone_id=move_.milestone_id, transaction_id=deposit.id)
            most = percentage_of(deposit.amount, promised) + ROUNDING_PER_PART * (self.parts.get(deposit.id, 0) + 1)
            if self.taken.get(deposit.id, 0) + amount > most:
                raise InvalidState(
                    "Releases for milestones would take more of this deposit than the app's milestones promise",
                    transaction_id=deposit.id, milestones_percentage=format_percentage(promised),
                    released=to_major(self.taken.get(deposit.id, 0), deposit.currency),
                    requested=to_major(amount, deposit.currency),
                )

    def record(self, move_: ReleaseMoney, chosen: list[tuple[EscrowTransaction, int]]) -> None:
        if move_.milestone_id is None:
            return
        for deposit, amount in chosen:
            self.released.add((move_.milestone_id, deposit.id))
            self.taken[deposit.id] = self.taken.get(deposit.id, 0) + amount
            self.parts[deposit.id] = self.parts.get(deposit.id, 0) + 1


async def _milestone_releases(session: AsyncSession, movements: Sequence[Movement]) -> _MilestoneReleases:
    """Read under the deposits' locks, so a release executed concurrently has committed or waits."""
    history = _MilestoneReleases(released=set(), taken={}, parts={}, promised={})
    releases = [m for m in movements if isinstance(m, ReleaseMoney) and m.milestone_id is not None]
    if not releases:
        return history
    rows = await session.execute(
        select(EscrowTransaction.milestone_id, EscrowTransaction.deposit_id, EscrowTransaction.amount).where(
            EscrowTransaction.type == "release", EscrowTransaction.milestone_id.is_not(None),
            EscrowTransaction.deposit_id.in_({d for m in releases for d, _ in m.items}),
        )
    )
    for milestone_id, deposit_id, amount in rows:
        history.released.add((milestone_id, deposit_id))
        history.taken[deposit_id] = history.taken.get(deposit_id, 0) + amount
        history.parts[deposit_id] = history.parts.get(deposit_id, 0) + 1
    promised = await session.execute(
        select(Milestone.app_id, func.sum(Milestone.release_percentage))
        .where(Milestone.app_id.in_({m.app.id for m in releases})).group_by(Milestone.app_id)
    )
    history.promised = {app_id: int(total) for app_id, total in promised}
    return history


def check_can_give(deposit: EscrowTransaction, amount: int, frozen_allowed: int = 0) -> None:
    left = remaining(deposit)
    if amount > left:
        raise InsufficientFunds(
            "The deposit does not hold that much any more", transaction_id=deposit.id,
            remaining=to_major(left, deposit.currency), requested=to_major(amount, deposit.currency),
        )
    if amount > available(deposit) + frozen_allowed:
        raise FundsFrozen(
            "Part of this deposit is frozen by a dispute", transaction_id=deposit.id,
            frozen=to_major(deposit.frozen, deposit.currency),
        )


def _deposit(deposits: dict[str, EscrowTransaction], deposit_id: str) -> EscrowTransaction:
    if deposit_id not in deposits:
        raise NotFound("Deposit not found", transaction_id=deposit_id)
    return deposits[deposit_id]


def _release(move_: ReleaseMoney, deposits: dict[str, EscrowTransaction], milestones: _MilestoneReleases,
             recipients: dict[tuple[str, str], str], writes: _Writes) -> None:
    chosen = [(_deposit(deposits, deposit_id), amount) for deposit_id, amount in move_.items]
    milestones.check(move_, chosen)
    for deposit, amount in chosen:
        check_can_give(deposit, amount, move_.frozen_allowed)
    app, currency, now = move_.app, move_.currency, utcnow()
    for deposit, amount in chosen:
        writes.take(deposit, released=amount)
        writes.escrow_rows.append(escrow_row(
            now, id=new_id("esc"), type="release", app_id=app.id, investor_id=deposit.investor_id, amount=amount,
            currency=currency, status="completed", gateway_reference=deposit.gateway_reference,
            deposit_id=deposit.id, milestone_id=move_.milestone_id, release_id=move_.source_id,
        ))
    total = sum(amount for _, amount in chosen)
    writes.payouts.append(payout_row(user_id=app.owner_id, amount=total, currency=currency, reason="release",
                                     source_id=move_.source_id, recipient_code=recipients.get((app.owner_id, currency)),
                                     now=now))
    writes.entries.append(Entry(
        kind="release", legs=move(accounts.escrow(app.id, currency), accounts.payable(app.owner_id, currency), total),
        idempotency_key=f"release:{move_.source_id}", memo=f"release {move_.source_id}",
    ))
    milestones.record(move_, chosen)


async def _refund(session: AsyncSession, move_: RefundMoney, deposits: dict[str, EscrowTransaction],
                  payments: dict[str, Payment], writes: _Writes) -> RefundMade:
    deposit = _deposit(deposits, move_.deposit_id)
    left = remaining(deposit)
    amount = left if move_.amount is None else move_.amount
    if move_.amount_major is not None:
        try:
            amount = to_minor(move_.amount_major, deposit.currency)
        except MoneyError as exc:
            raise InvalidAmount(str(exc)) from None
    if amount <= 0:
        raise InsufficientFunds("Nothing is left in this deposit to refund") if left == 0 else InvalidAmount(
            "The refund must be more than zero")
    if amount > left:
        raise InsufficientFunds("That is more than the deposit still holds", transaction_id=deposit.id,
                                remaining=to_major(left, deposit.currency))
    if amount > available(deposit) + move_.frozen_allowed:
        raise FundsFrozen("Part of this deposit is frozen by a dispute; resolve the dispute instead",
                          transaction_id=deposit.id, frozen=to_major(deposit.frozen, deposit.currency))
    payment = payments.get(deposit.payment_id or "")
    if payment is None:
        raise InvalidState("This deposit was not collected through the gateway and cannot be refunded there")

    cancels_shares = deposit.released == 0 and deposit.refunded + amount == deposit.amount and deposit.shares > 0
    if cancels_shares:  # the last check: it writes nothing when it refuses
        await reserve_shares(session, app_id=deposit.app_id, user_id=deposit.investor_id, shares=deposit.shares)
    writes.take(deposit, refunded=amount)
    now = utcnow()
    record = escrow_row(
        now, id=new_id("esc"), type="refund", app_id=deposit.app_id, investor_id=deposit.investor_id,
        amount=amount, currency=deposit.currency, status="pending", gateway_reference=deposit.gateway_reference,
        deposit_id=deposit.id, shares=deposit.shares if cancels_shares else 0, refund_id=new_id("rfd"),
    )
    escrow = accounts.escrow(deposit.app_id, deposit.currency)
    refund, entry = new_refund_row(payment, amount=amount, source_account=escrow, return_account=escrow,
                                   reason=move_.reason or "escrow refund", now=now,
                                   escrow_transaction_id=record["id"], refund_id=record["refund_id"])
    writes.escrow_rows.append(record)
    writes.refunds.append(refund)
    writes.entries.append(entry)
    return RefundMade(refund_id=refund["id"], record_id=record["id"], deposit_id=deposit.id, amount=amount,
                      currency=refund["currency"], reason=refund["reason"], created_at=now,
                      payment_reference=payment.reference)


# Built once: a batch of refunds reads the charges they go back to.
_PAYMENTS = select(Payment).where(Payment.id.in_(bindparam("ids", expanding=True)))


async def apply(session: AsyncSession, rt: Runtime, movements: Sequence[Movement]) -> list[Outcome]:
    """Apply `movements` in order; each outcome is the refund made, None for a release, or the
    `AppError` that refused it (nothing of a refused movement is written)."""
    deposit_ids = [i for m in movements for i in ([d for d, _ in m.items] if isinstance(m, ReleaseMoney)
                                                  else [m.deposit_id])]
    deposits = await lock_found_deposits(session, deposit_ids)
    milestones = await _milestone_releases(session, movements)
    refunded = {deposits[m.deposit_id].payment_id for m in movements
                if isinstance(m, RefundMoney) and m.deposit_id in deposits}
    payments = {p.id: p for p in (await session.scalars(_PAYMENTS, {"ids": list(refunded)})).all()} \
        if refunded else {}
    owners = {(m.app.owner_id, m.currency) for m in movements if isinstance(m, ReleaseMoney)}
    recipients: dict[tuple[str, str], str] = {}
    for currency in {c for _, c in owners}:
        found = await payout_recipients(session, [o for o, c in owners if c == currency], currency)
        recipients |= {(owner, currency): code for owner, code in found.items()}

    writes = _Writes()
    outcomes: list[Outcome] = []
    for movement in movements:
        try:
            if isinstance(movement, ReleaseMoney):
                _release(movement, deposits, milestones, recipients, writes)
                outcomes.append(None)
            else:
                outcomes.append(await _refund(session, movement, deposits, payments, writes))
        except AppError as refusal:
            outcomes.append(refusal)
    await writes.write(session)
    await post_entries(session, writes.entries)
    if writes.entries:
        rt.notify_worker()
    return outcomes


async def apply_one(session: AsyncSession, rt: Runtime, movement: Movement) -> RefundMade | None:
    """One movement in the caller's transaction; a refusal raises."""
    outcome = (await apply(session, rt, [movement]))[0]
    if isinstance(outcome, AppError):
        raise outcome
    return outcome
