"""Proof that every minor unit is accounted for: recompute the books from the postings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.ledger import accounts
from app.models import EscrowTransaction, JournalEntry, LedgerAccount, Posting

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
    held = (
        await session.execute(
            select(
                EscrowTransaction.app_id,
                EscrowTransaction.currency,
                func.sum(EscrowTransaction.amount - EscrowTransaction.released - EscrowTransaction.refunded),
            )
            .where(EscrowTransaction.type == "deposit")
            .group_by(EscrowTransaction.app_id, EscrowTransaction.currency)
        )
    ).all()
    expected = {accounts.escrow(app_id, cur): int(total) for app_id, cur, total in held}
    actual = {
        name: int(balance)
        for name, balance in (
            await session.execute(
                select(LedgerAccount.name, LedgerAccount.balance).where(LedgerAccount.name.like("escrow:app:%"))
            )
        ).all()
    }
    offenders = [
        {"account": name, "ledger": actual.get(name, 0), "deposits": expected.get(name, 0)}
        for name in sorted(set(expected) | set(actual))
        if actual.get(name, 0) != expected.get(name, 0)
    ]
    return Check("escrow_equals_deposits_minus_releases_and_refunds", not offenders,
                 {"mismatched": offenders[:SAMPLE]})


async def run_checks(session: AsyncSession) -> list[Check]:
    return [
        await entries_balance(session),
        await postings_reference_rows(session),
        await cached_balances(session),
        await guarded_non_negative(session),
        await escrow_matches_deposits(session),
    ]
