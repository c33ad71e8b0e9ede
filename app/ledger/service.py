"""The only writer of money rows.

`post()` is the one function the rest of the code calls: it checks that the
legs of a journal entry sum to zero per currency, locks the accounts it
touches in a fixed order, refuses to take a guarded account below zero,
updates the cached balances and appends the postings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InsufficientFunds
from app.core.money import to_major
from app.ledger import accounts
from app.models import JournalEntry, LedgerAccount, Posting


@dataclass(frozen=True)
class Leg:
    account: str
    amount: int  # signed minor units: + into the account, - out of it

    @property
    def currency(self) -> str:
        return accounts.currency_of(self.account)


def move(source: str, destination: str, amount: int) -> list[Leg]:
    """`source -> destination`: the two legs of a simple movement."""
    return [Leg(source, -amount), Leg(destination, amount)]


class UnbalancedEntry(ValueError):
    pass


def _check_balanced(legs: Sequence[Leg]) -> None:
    if len(legs) < 2:
        raise UnbalancedEntry("a journal entry needs at least two legs")
    totals: dict[str, int] = defaultdict(int)
    for leg in legs:
        if leg.amount == 0:
            raise UnbalancedEntry(f"zero leg on {leg.account}")
        totals[leg.currency] += leg.amount
    unbalanced = {cur: total for cur, total in totals.items() if total}
    if unbalanced:
        raise UnbalancedEntry(f"legs do not sum to zero: {unbalanced}")


async def _ensure_accounts(session: AsyncSession, names: Sequence[str]) -> None:
    rows = [
        {"name": name, "currency": accounts.currency_of(name), "guarded": accounts.is_guarded(name),
         "balance": 0, "version": 0}
        for name in names
    ]
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    await session.execute(insert(LedgerAccount).values(rows).on_conflict_do_nothing(index_elements=["name"]))


async def already_posted(session: AsyncSession, idempotency_key: str) -> bool:
    found = await session.scalar(select(JournalEntry.id).where(JournalEntry.idempotency_key == idempotency_key))
    return found is not None


async def post(
    session: AsyncSession,
    *,
    kind: str,
    legs: Sequence[Leg],
    idempotency_key: str | None = None,
    memo: str = "",
) -> JournalEntry | None:
    """Write one balanced journal entry. Returns None if `idempotency_key` was posted before."""
    _check_balanced(legs)
    if idempotency_key is not None and await already_posted(session, idempotency_key):
        return None

    deltas: dict[str, int] = defaultdict(int)
    for leg in legs:
        deltas[leg.account] += leg.amount
    names = sorted(deltas)
    await _ensure_accounts(session, names)
    # Fixed lock order (by name) so two entries touching the same accounts cannot deadlock.
    locked = (
        await session.scalars(
            select(LedgerAccount).where(LedgerAccount.name.in_(names)).order_by(LedgerAccount.name).with_for_update()
        )
    ).all()
    by_name = {account.name: account for account in locked}

    for name in names:
        account = by_name[name]
        new_balance = account.balance + deltas[name]
        if account.guarded and new_balance < 0:
            raise InsufficientFunds(
                "Not enough money in the account for this movement",
                account=name,
                available=to_major(account.balance, account.currency),
                currency=account.currency,
            )
    for name in names:
        account = by_name[name]
        account.balance += deltas[name]
        account.version += 1

    entry = JournalEntry(kind=kind, idempotency_key=idempotency_key, memo=memo[:500])
    session.add(entry)
    await session.flush()
    session.add_all(
        Posting(entry_id=entry.id, account_id=by_name[leg.account].id, amount=leg.amount, currency=leg.currency)
        for leg in legs
    )
    await session.flush()
    return entry


async def balance(session: AsyncSession, account: str) -> int:
    value = await session.scalar(select(LedgerAccount.balance).where(LedgerAccount.name == account))
    return value or 0
