"""Proof that every minor unit is accounted for: recompute the books from the postings, and check
the business rules the money rows must keep (milestones, deposits, shares, payouts, refunds, revenue
declarations).

Every check is one statement, so on PostgreSQL it reads one snapshot: work committed while the
checks run never shows as a fault.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Subquery, case, func, literal, null, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import on_postgres
from app.core.money import CURRENCIES, FULL_PERCENT, format_percentage
from app.ledger import accounts
from app.models import (
    App,
    Distribution,
    EscrowTransaction,
    Holding,
    JournalEntry,
    LedgerAccount,
    Milestone,
    Payout,
    Posting,
    Refund,
    ReleaseApproval,
    ReleaseRequest,
    RevenueDeclaration,
)
from app.models.distributions import REVENUE_PAYMENTS
from app.models.statuses import PAYOUT_IN_FLIGHT, ReleaseStatus

SAMPLE = 20  # enough offenders to act on without flooding the answer


@dataclass
class Check:
    name: str
    ok: bool
    details: dict[str, Any] = field(default_factory=dict)


async def entries_balance(session: AsyncSession) -> Check:
    offenders = (
        await session.execute(
            select(Posting.entry_id, Posting.currency, func.sum(Posting.amount))
            .group_by(Posting.entry_id, Posting.currency)
            .having(func.sum(Posting.amount) != 0)
            .limit(SAMPLE)
        )
    ).all()
    return Check("entries_sum_to_zero", not offenders,
                 {"unbalanced": [{"entry_id": e, "currency": c, "sum": int(s)} for e, c, s in offenders]})


async def postings_reference_rows(session: AsyncSession) -> Check:
    """The postings table has no foreign keys (see `Posting`): prove the references here."""
    orphans = (
        await session.execute(
            select(Posting.id, Posting.entry_id, Posting.account_id)
            .outerjoin(JournalEntry, JournalEntry.id == Posting.entry_id)
            .outerjoin(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(JournalEntry.id.is_(None) | LedgerAccount.id.is_(None))
            .limit(SAMPLE)
        )
    ).all()
    return Check("postings_reference_entries_and_accounts", not orphans,
                 {"orphans": [{"posting_id": p, "entry_id": e, "account_id": a} for p, e, a in orphans]})


async def cached_balances(session: AsyncSession) -> Check:
    totals = (
        select(Posting.account_id, func.sum(Posting.amount).label("total"))
        .group_by(Posting.account_id)
        .subquery()
    )
    offenders = (
        await session.execute(
            select(LedgerAccount.name, LedgerAccount.balance, func.coalesce(totals.c.total, 0))
            .outerjoin(totals, totals.c.account_id == LedgerAccount.id)
            .where(LedgerAccount.balance != func.coalesce(totals.c.total, 0))
            .limit(SAMPLE)
        )
    ).all()
    return Check("cached_balances_match_postings", not offenders,
                 {"mismatched": [{"account": n, "cached": int(b), "postings": int(t)} for n, b, t in offenders]})


async def guarded_non_negative(session: AsyncSession) -> Check:
    offenders = (
        await session.execute(
            select(LedgerAccount.name, LedgerAccount.balance)
            .where(LedgerAccount.guarded.is_(True), LedgerAccount.balance < 0)
            .limit(SAMPLE)
        )
    ).all()
    return Check("guarded_accounts_non_negative", not offenders,
                 {"negative": [{"account": n, "balance": int(b)} for n, b in offenders]})


async def escrow_matches_deposits(session: AsyncSession) -> Check:
    """Each app's escrow account holds what its deposits still hold (amount - released - refunded).
    Both sides in one statement: read in two, a refund committed between them showed as a mismatch."""
    deposit = EscrowTransaction
    held = (
        select((literal(accounts.ESCROW_PREFIX) + deposit.app_id + ":" + deposit.currency).label("name"),
               func.sum(deposit.amount - deposit.released - deposit.refunded).label("deposits"),
               literal(0).label("ledger"))
        .where(deposit.type == "deposit")
        .group_by(deposit.app_id, deposit.currency)
    )
    booked = select(LedgerAccount.name, literal(0), LedgerAccount.balance).where(
        LedgerAccount.name.like(f"{accounts.ESCROW_PREFIX}%"))
    both = union_all(held, booked).subquery()
    offenders = (
        await session.execute(
            select(both.c.name, func.sum(both.c.ledger), func.sum(both.c.deposits))
            .group_by(both.c.name)
            .having(func.sum(both.c.ledger) != func.sum(both.c.deposits))
            .order_by(both.c.name)
            .limit(SAMPLE)
        )
    ).all()
    return Check("escrow_equals_deposits_minus_releases_and_refunds", not offenders, {"mismatched": [
        {"account": name, "ledger": int(ledger), "deposits": int(deposits)} for name, ledger, deposits in offenders]})


# ---- business rules ------------------------------------------------------------------------------

RELEASES = (EscrowTransaction.type == "release") & (EscrowTransaction.status == "completed")
# Releases of a milestone; a dispute's release carries none.
MILESTONE_RELEASES = RELEASES & EscrowTransaction.milestone_id.is_not(None)
# A failed refund put its money back in the deposit.
REFUNDS_KEPT = (EscrowTransaction.type == "refund") & (EscrowTransaction.status != "failed")

# Refunds that are over: their money left `refund:in_flight` (settled, or returned when failed).
REFUND_STATUSES_SETTLED = ("processed", "failed")


async def milestones_released_once(session: AsyncSession) -> Check:
    """A milestone releases a deposit's money at most once."""
    offenders = (
        await session.execute(
            select(EscrowTransaction.deposit_id, EscrowTransaction.milestone_id, func.count())
            .where(MILESTONE_RELEASES)
            .group_by(EscrowTransaction.deposit_id, EscrowTransaction.milestone_id)
            .having(func.count() > 1)
            .limit(SAMPLE)
        )
    ).all()
    return Check("milestone_released_once_per_deposit", not offenders,
                 {"repeated": [{"deposit_id": d, "milestone_id": m, "releases": int(n)} for d, m, n in offenders]})


async def releases_within_milestones(session: AsyncSession) -> Check:
    """What milestones released from a deposit is at most the deposit times its app's milestone
    percentages, give or take rounding: a release takes `percentage_of` the deposits' total, rounded
    half up, then `allocate`s it over them (each part within one unit of its exact share), so a
    release row can exceed the exact percentage of its deposit by less than 1.5 minor units."""
    released = (
        select(EscrowTransaction.deposit_id, func.sum(EscrowTransaction.amount).label("total"),
               func.count().label("rows"))
        .where(MILESTONE_RELEASES)
        .group_by(EscrowTransaction.deposit_id)
        .subquery()
    )
    percentages = (
        select(Milestone.app_id, func.sum(Milestone.release_percentage).label("total"))
        .group_by(Milestone.app_id)
        .subquery()
    )
    deposit = EscrowTransaction
    percentage = func.coalesce(percentages.c.total, 0)
    offenders = (
        await session.execute(
            select(deposit.id, deposit.amount, released.c.total, percentage)
            .join(released, released.c.deposit_id == deposit.id)
            .outerjoin(percentages, percentages.c.app_id == deposit.app_id)
            .where(deposit.type == "deposit",
                   2 * released.c.total * FULL_PERCENT
                   >= 2 * deposit.amount * percentage + 3 * released.c.rows * FULL_PERCENT)
            .limit(SAMPLE)
        )
    ).all()
    return Check("releases_within_milestone_percentages", not offenders, {"over": [
        {"deposit_id": d, "amount": int(a), "released": int(r), "milestone_percentages": format_percentage(int(p))}
        for d, a, r, p in offenders]})


async def releases_approved_as_required(session: AsyncSession) -> Check:
    """A release that is approved or released has the approvals it asked for: at least
    `required_approvals` approving decisions, one of them an admin's when its amount needed one
    (the per-currency release threshold)."""
    approvals = (
        select(ReleaseApproval.release_id, func.count().label("approvals"),
               func.max(case((ReleaseApproval.is_admin, 1), else_=0)).label("admin"))
        .where(ReleaseApproval.decision == "approve")
        .group_by(ReleaseApproval.release_id)
        .subquery()
    )
    given, admin = func.coalesce(approvals.c.approvals, 0), func.coalesce(approvals.c.admin, 0)
    release = ReleaseRequest
    offenders = (
        await session.execute(
            select(release.id, release.status, release.required_approvals, release.needs_admin, given, admin)
            .outerjoin(approvals, approvals.c.release_id == release.id)
            .where(release.status.in_((ReleaseStatus.APPROVED, ReleaseStatus.RELEASED)),
                   or_(given < release.required_approvals, release.needs_admin & (admin == 0)))
            .order_by(release.id)
            .limit(SAMPLE)
        )
    ).all()
    return Check("releases_approved_as_required", not offenders, {"short": [
        {"release_id": r, "status": s, "required_approvals": int(n), "needs_admin": bool(a),
         "approvals": int(g), "admin_approved": bool(h)}
        for r, s, n, a, g, h in offenders]})


async def deposits_match_their_rows(session: AsyncSession) -> Check:
    """Each deposit's `released` and `refunded` are the sums of its release and (kept) refund rows, and
    released + refunded + frozen fit in its amount: amount = released + refunded + held."""
    released = (
        select(EscrowTransaction.deposit_id, func.sum(EscrowTransaction.amount).label("total"))
        .where(RELEASES).group_by(EscrowTransaction.deposit_id).subquery()
    )
    refunded = (
        select(EscrowTransaction.deposit_id, func.sum(EscrowTransaction.amount).label("total"))
        .where(REFUNDS_KEPT).group_by(EscrowTransaction.deposit_id).subquery()
    )
    deposit = EscrowTransaction
    released_rows, refunded_rows = func.coalesce(released.c.total, 0), func.coalesce(refunded.c.total, 0)
    offenders = (
        await session.execute(
            select(deposit.id, deposit.amount, deposit.released, deposit.refunded, deposit.frozen,
                   released_rows, refunded_rows)
            .outerjoin(released, released.c.deposit_id == deposit.id)
            .outerjoin(refunded, refunded.c.deposit_id == deposit.id)
            .where(deposit.type == "deposit", or_(
                deposit.released != released_rows,
                deposit.refunded != refunded_rows,
                deposit.released + deposit.refunded + deposit.frozen > deposit.amount,
                deposit.released < 0, deposit.refunded < 0, deposit.frozen < 0,
            ))
            .limit(SAMPLE)
        )
    ).all()
    return Check("deposits_match_their_release_and_refund_rows", not offenders, {"mismatched": [
        {"deposit_id": d, "amount": int(a), "released": int(rel), "refunded": int(ref), "frozen": int(f),
         "held": int(a - rel - ref), "release_rows": int(rr), "refund_rows": int(fr)}
        for d, a, rel, ref, f, rr, fr in offenders]})


async def shares_match_holdings(session: AsyncSession) -> Check:
    """An app's `shares_issued` is what its holders hold, and no one holds shares of an unknown app."""
    held = select(Holding.app_id, func.sum(Holding.shares).label("total")).group_by(Holding.app_id).subquery()
    total = func.coalesce(held.c.total, 0)
    offenders = (
        await session.execute(
            select(App.id, App.shares_issued, total)
            .outerjoin(held, held.c.app_id == App.id)
            .where(App.shares_issued != total)
            .union_all(
                select(held.c.app_id, null(), held.c.total)
                .outerjoin(App, App.id == held.c.app_id)
                .where(App.id.is_(None), held.c.total != 0)
            )
            .limit(SAMPLE)
        )
    ).all()
    return Check("shares_issued_match_holdings", not offenders, {"mismatched": [
        {"app_id": a, "shares_issued": None if i is None else int(i), "held": int(h)} for a, i, h in offenders]})


def _movements(session: AsyncSession, prefix: str, suffixes: tuple[str, ...]) -> Subquery:
    """Per owner id, how many journal entries are keyed `{prefix}:{id}:...:{suffix}`, for each suffix
    (payout and refund ids hold no `:`)."""
    rest = func.substr(JournalEntry.idempotency_key, len(prefix) + 2)
    position = func.strpos if on_postgres(session) else func.instr
    keyed = (
        select(func.substr(rest, 1, position(rest, ":") - 1).label("owner_id"), JournalEntry.idempotency_key)
        .where(JournalEntry.idempotency_key.like(f"{prefix}:%"))
        .subquery()
    )
    counts = [func.sum(case((keyed.c.idempotency_key.like(f"%:{suffix}"), 1), else_=0)).label(suffix)
              for suffix in suffixes]
    return select(keyed.c.owner_id, *counts).group_by(keyed.c.owner_id).subquery()


async def payouts_match_movements(session: AsyncSession) -> Check:
    """Each payout has the journal entries its status implies, over all its attempts
    (`payout:{id}:{attempt}:sent|paid|returned|reversed_after_paid`): one attempt in flight (sent,
    neither paid nor returned) while processing, one paid entry not reversed afterwards once paid,
    and every other attempt returned or reversed after it was paid."""
    movements = _movements(session, "payout", ("sent", "paid", "returned", "reversed_after_paid"))
    sent, paid, returned, reversed_ = (func.coalesce(movements.c[name], 0)
                                       for name in ("sent", "paid", "returned", "reversed_after_paid"))
    offenders = (
        await session.execute(
            select(Payout.id, Payout.status, sent, paid, returned, reversed_)
            .outerjoin(movements, movements.c.owner_id == Payout.id)
            .where(or_(
                sent - returned - paid != case((Payout.status.in_(PAYOUT_IN_FLIGHT), 1), else_=0),
                paid - reversed_ != case((Payout.status == "paid", 1), else_=0),
            ))
            .union_all(
                select(movements.c.owner_id, null(), movements.c.sent, movements.c.paid, movements.c.returned,
                       movements.c.reversed_after_paid)
                .outerjoin(Payout, Payout.id == movements.c.owner_id)
                .where(Payout.id.is_(None))
            )
            .limit(SAMPLE)
        )
    ).all()
    return Check("payouts_match_ledger_movements", not offenders, {"mismatched": [
        {"payout_id": i, "status": st, "sent": int(s), "paid": int(p), "returned": int(r),
         "reversed_after_paid": int(v)}
        for i, st, s, p, r, v in offenders]})


async def refunds_match_movements(session: AsyncSession) -> Check:
    """Each refund has exactly one `refund:{id}:out`, plus one `settled` once processed or one
    `returned` once failed, and nothing else."""
    movements = _movements(session, "refund", ("out", "settled", "returned"))
    out, settled, returned = (func.coalesce(movements.c[name], 0) for name in ("out", "settled", "returned"))
    offenders = (
        await session.execute(
            select(Refund.id, Refund.status, out, settled, returned)
            .outerjoin(movements, movements.c.owner_id == Refund.id)
            .where(or_(
                out != 1,
                settled != case((Refund.status == "processed", 1), else_=0),
                returned != case((Refund.status == "failed", 1), else_=0),
            ))
            .union_all(
                select(movements.c.owner_id, null(), movements.c.out, movements.c.settled, movements.c.returned)
                .outerjoin(Refund, Refund.id == movements.c.owner_id)
                .where(Refund.id.is_(None))
            )
            .limit(SAMPLE)
        )
    ).all()
    return Check("refunds_match_ledger_movements", not offenders, {"mismatched": [
        {"refund_id": i, "status": st, "out": int(o), "settled": int(s), "returned": int(r)}
        for i, st, o, s, r in offenders]})


async def _in_flight_matches(session: AsyncSession, name: str, account: Callable[[str], str],
                             open_amounts: Callable[[str], ColumnElement[int]]) -> Check:
    """One statement (one snapshot) reading, per currency, an in-flight account's balance and the
    total of the open rows it must equal."""
    columns = []
    for code in CURRENCIES:
        columns.append(select(LedgerAccount.balance).where(LedgerAccount.name == account(code)).scalar_subquery())
        columns.append(open_amounts(code))
    row = tuple(int(value or 0) for value in (await session.execute(select(*columns))).one())
    offenders = [
        {"account": account(code), "ledger": ledger, "open": open_total}
        for code, ledger, open_total in zip(CURRENCIES, row[::2], row[1::2], strict=True)
        if ledger != open_total
    ]
    return Check(name, not offenders, {"mismatched": offenders})


async def payouts_in_flight(session: AsyncSession) -> Check:
    """`payout:in_flight` holds exactly the payouts being sent. Cheap: the (status, available_at)
    index finds the open payouts, the account is found by its unique name."""
    return await _in_flight_matches(
        session, "payout_in_flight_equals_open_payouts", accounts.payout_in_flight,
        lambda code: select(func.sum(Payout.amount))
        .where(Payout.status.in_(PAYOUT_IN_FLIGHT), Payout.currency == code).scalar_subquery(),
    )


async def refunds_in_flight(session: AsyncSession) -> Check:
    """`refund:in_flight` holds exactly the refunds not settled yet. Cheap while refunds stay few."""
    return await _in_flight_matches(
        session, "refund_in_flight_equals_open_refunds", accounts.refund_in_flight,
        lambda code: select(func.sum(Refund.amount))
        .where(Refund.status.not_in(REFUND_STATUSES_SETTLED), Refund.currency == code).scalar_subquery(),
    )


async def declarations_distributed_once(session: AsyncSession) -> Check:
    """A paid revenue declaration has exactly one distribution (its `source`), of exactly its pool; a
    declaration not paid has none; and every distribution that is not of revenue payments has its paid
    declaration."""
    distributed = (
        select(Distribution.source.label("source"), func.count().label("distributions"),
               func.sum(Distribution.amount).label("amount"))
        .where(Distribution.source != REVENUE_PAYMENTS).group_by(Distribution.source).subquery()
    )
    declared = (
        select(RevenueDeclaration.id, RevenueDeclaration.status, RevenueDeclaration.pool,
               func.coalesce(distributed.c.distributions, 0), func.coalesce(distributed.c.amount, 0))
        .outerjoin(distributed, distributed.c.source == RevenueDeclaration.id)
        .where(or_(
            (RevenueDeclaration.status == "paid")
            & ((func.coalesce(distributed.c.distributions, 0) != 1)
               | (func.coalesce(distributed.c.amount, 0) != RevenueDeclaration.pool)),
            (RevenueDeclaration.status != "paid") & (func.coalesce(distributed.c.distributions, 0) != 0),
        ))
    )
    orphans = (
        select(distributed.c.source, literal(None), literal(None), distributed.c.distributions, distributed.c.amount)
        .outerjoin(RevenueDeclaration, RevenueDeclaration.id == distributed.c.source)
        .where(RevenueDeclaration.id.is_(None))
    )
    offenders = (await session.execute(union_all(declared, orphans).limit(SAMPLE))).all()
    return Check("paid_declarations_distributed_once", not offenders, {"mismatched": [
        {"declaration_id": d, "status": status, "pool": None if pool is None else int(pool),
         "distributions": int(n), "distributed": int(amount)}
        for d, status, pool, n, amount in offenders]})


# Cheap enough for every readiness probe: they read only open rows and a few accounts.
CHEAP_CHECKS = (payouts_in_flight, refunds_in_flight)


# Every check, in the order the report lists them.
CHECKS: tuple[Callable[[AsyncSession], Awaitable[Check]], ...] = (
    entries_balance, postings_reference_rows, cached_balances, guarded_non_negative, escrow_matches_deposits,
    milestones_released_once, releases_within_milestones, releases_approved_as_required, deposits_match_their_rows,
    shares_match_holdings, payouts_match_movements, refunds_match_movements, declarations_distributed_once,
    *CHEAP_CHECKS,
)


async def run_checks(session: AsyncSession) -> list[Check]:
    return [await check(session) for check in CHECKS]
