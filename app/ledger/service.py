"""The only writer of money rows.

`post()` is the one function the rest of the code calls: it checks that the
legs of a journal entry sum to zero per currency, locks the accounts it
touches in a fixed order, refuses to take a guarded account below zero,
updates the cached balances and appends the postings.

On PostgreSQL all of that is one statement, so a hot account (one app's
escrow) is locked only from that statement to the commit. On SQLite the
transaction already holds the database's write lock (BEGIN IMMEDIATE), and
the same steps run as plain statements.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Row, TextClause, bindparam, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import (
    RETRYABLE_SQLSTATES,
    copy_records,
    insert_on_conflict,
    on_postgres,
    sqlstate_of,
    tune_for_bulk,
)
from app.core.errors import InsufficientFunds
from app.core.money import to_major
from app.ledger import accounts
from app.models import JournalEntry, LedgerAccount, Posting
from app.models.base import utcnow


class Leg(NamedTuple):
    account: str
    amount: int  # signed minor units: + into the account, - out of it

    @property
    def currency(self) -> str:
        return accounts.currency_of(self.account)


# What `post()` takes: `Leg`s, or plain (account, amount) pairs where building 100,000 `Leg`s would cost (a
# distribution).
Legs = Sequence[tuple[str, int]]


def move(source: str, destination: str, amount: int) -> list[Leg]:
    """`source -> destination`: the two legs of a simple movement."""
    return [Leg(source, -amount), Leg(destination, amount)]


@dataclass(frozen=True)
class Entry:
    """A journal entry to post with `post_entries`: `post()`'s arguments as one value."""

    kind: str
    legs: Sequence[Leg]
    idempotency_key: str | None = None
    memo: str = ""


class UnbalancedEntry(ValueError):
    pass


def _balanced_deltas(legs: Legs) -> dict[str, int]:
    """Each account's net movement in `legs`; refuses fewer than two legs, a zero leg, or legs that do
    not sum to zero in every currency."""
    if len(legs) < 2:
        raise UnbalancedEntry("a journal entry needs at least two legs")
    zero = next((account for account, amount in legs if amount == 0), None)
    if zero is not None:
        raise UnbalancedEntry(f"zero leg on {zero}")
    # Each account once (a distribution's 100,000 legs): the legs are the deltas, built at C speed.
    deltas: dict[str, int] = dict(legs)
    if len(deltas) < len(legs):
        deltas = defaultdict(int)
        for account, amount in legs:
            deltas[account] += amount
    totals: dict[str, int] = defaultdict(int)
    for account, delta in deltas.items():
        totals[accounts.currency_of(account)] += delta
    unbalanced = {cur: total for cur, total in totals.items() if total}
    if unbalanced:
        raise UnbalancedEntry(f"legs do not sum to zero: {unbalanced}")
    return deltas


async def _ensure_accounts(session: AsyncSession, names: Sequence[str]) -> None:
    rows = [
        {"name": name, "currency": accounts.currency_of(name), "guarded": accounts.is_guarded(name),
         "balance": 0, "version": 0, "created_at": utcnow()}
        for name in names
    ]
    await session.execute(
        insert_on_conflict(session, LedgerAccount).values(rows).on_conflict_do_nothing(index_elements=["name"]))


async def already_posted(session: AsyncSession, idempotency_key: str) -> bool:
    found = await session.scalar(select(JournalEntry.id).where(JournalEntry.idempotency_key == idempotency_key))
    return found is not None


def _refuse(name: str, balance: int) -> InsufficientFunds:
    currency = accounts.currency_of(name)
    return InsufficientFunds(
        "Not enough money in the account for this movement",
        account=name, available=to_major(balance, currency), currency=currency,
    )


async def post(
    session: AsyncSession,
    *,
    kind: str,
    legs: Legs,
    idempotency_key: str | None = None,
    memo: str = "",
) -> int | None:
    """Write one balanced journal entry; returns its id, or None if `idempotency_key` was posted before.

    Call it last in a transaction where it can be: the accounts stay locked until the commit.
    """
    deltas = _balanced_deltas(legs)
    # Pending ORM writes go out now, before the accounts are locked, not at commit while they are.
    await session.flush()
    if not on_postgres(session):
        return await _post_generic(session, kind, legs, deltas, idempotency_key, memo[:500])
    if len(deltas) > BULK_ACCOUNTS:
        return await _post_postgres_bulk(session, kind, legs, deltas, idempotency_key, memo[:500])
    return await _post_postgres(session, kind, legs, deltas, idempotency_key, memo[:500])


async def post_entries(session: AsyncSession, entries: Sequence[Entry]) -> list[int]:
    """Post several new entries, each balanced on its own, as `post()` would one by one; returns their ids.

    On PostgreSQL, entries that all carry idempotency keys go out in one statement (a batch of
    escrow movements): the accounts are locked once, in name order, and guarded accounts are
    checked against the entries' total. A key posted before refuses the whole batch (the caller
    rolls back and posts them one by one instead).
    """
    keys = [entry.idempotency_key for entry in entries]
    if on_postgres(session) and len(entries) > 1 and all(keys) and len(set(keys)) == len(keys):
        for entry in entries:
            _balanced_deltas(entry.legs)
        await session.flush()
        return await _post_postgres_many(session, entries)
    ids = []
    for entry in entries:
        entry_id = await post(session, kind=entry.kind, legs=entry.legs, idempotency_key=entry.idempotency_key,
                              memo=entry.memo)
        if entry_id is None:
            raise AlreadyPosted(entry.idempotency_key)
        ids.append(entry_id)
    return ids


class AlreadyPosted(RuntimeError):
    """An entry of a batch was posted before: the batch is retried one movement at a time."""


# Above this many accounts an entry (a distribution to every holder) stages its legs by COPY
# instead of sending one bind parameter per leg.
BULK_ACCOUNTS = 50
CHUNK = 500


# The accounts of `deltas(name, delta)`, locked in name order, and the first guarded one the deltas
# would take below zero: the part every posting statement shares.
_LOCK_AND_CHECK = """
locked AS (
    SELECT a.id, a.name, a.balance, a.guarded FROM ledger_accounts a
    WHERE a.name IN (SELECT name FROM deltas) ORDER BY a.name FOR UPDATE
),
refused AS (
    SELECT k.name, k.balance FROM locked k JOIN deltas d ON d.name = k.name
    WHERE k.guarded AND k.balance + d.delta < 0
),
"""

# One statement: lock the accounts in name order, check the guards, append the entry and its
# postings, update the cached balances. Nothing is written if an account is missing, a guard
# would break, or the idempotency key was used before.
_POST_SQL = """
WITH deltas(name, delta) AS (VALUES {deltas}),
legs(name, amount, currency) AS (VALUES {legs}),
""" + _LOCK_AND_CHECK + """entry AS (
    INSERT INTO journal_entries (kind, idempotency_key, memo, created_at)
    SELECT :kind, :key, :memo, :now
    WHERE (SELECT count(*) FROM locked) = :accounts AND NOT EXISTS (SELECT 1 FROM refused)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
),
written AS (
    INSERT INTO postings (entry_id, account_id, amount, currency, created_at)
    SELECT e.id, k.id, l.amount, l.currency, :now FROM entry e CROSS JOIN legs l JOIN locked k ON k.name = l.name
),
updated AS (
    UPDATE ledger_accounts a SET balance = a.balance + d.delta, version = a.version + 1
    FROM deltas d, entry e WHERE a.name = d.name
    RETURNING a.id
)
SELECT (SELECT id FROM entry) AS entry_id,
       (SELECT count(*) FROM locked) AS found,
       (SELECT name FROM refused ORDER BY name LIMIT 1) AS refused_name,
       (SELECT balance FROM refused ORDER BY name LIMIT 1) AS refused_balance,
       (SELECT count(*) FROM updated) AS updated
"""


async def _execute_posting(session: AsyncSession, statement: TextClause, params: dict[str, object],
                           names: Sequence[str]) -> Row[Any]:
    """Run a posting statement; if some of `names` have no account yet (nothing was written),
    create them and run it again. A guard it reports refuses the posting."""
    for attempt in range(2):
        row = (await session.execute(statement, params)).one()
        if row.found == len(names):
            break
        if attempt == 1:
            raise RuntimeError("ledger accounts could not be created")
        await _ensure_accounts(session, names)
    if row.refused_name is not None:
        raise _refuse(row.refused_name, row.refused_balance)
    return row


async def _post_postgres(
    session: AsyncSession, kind: str, legs: Legs, deltas: dict[str, int], key: str | None, memo: str
) -> int | None:
    names = sorted(deltas)
    params: dict[str, object] = {"kind": kind, "key": key, "memo": memo, "now": utcnow(), "accounts": len(names)}
    delta_rows = []
    for i, name in enumerate(names):
        params[f"dn{i}"], params[f"dv{i}"] = name, deltas[name]
        delta_rows.append(f"(CAST(:dn{i} AS VARCHAR), CAST(:dv{i} AS BIGINT))")
    leg_rows = []
    for i, (account, amount) in enumerate(legs):
        params[f"ln{i}"], params[f"la{i}"], params[f"lc{i}"] = account, amount, accounts.currency_of(account)
        leg_rows.append(f"(CAST(:ln{i} AS VARCHAR), CAST(:la{i} AS BIGINT), CAST(:lc{i} AS VARCHAR))")
    statement = text(_POST_SQL.format(deltas=", ".join(delta_rows), legs=", ".join(leg_rows)))
    row = await _execute_posting(session, statement, params, names)
    if row.entry_id is None:
        return None  # the idempotency key was posted before
    assert row.updated == len(names)
    return int(row.entry_id)


# Many accounts at once, in one statement, from the entry's legs staged in `ledger_bulk_legs`: the
# accounts are created or updated, each once, in name order; the entry and its postings are written
# only if no guarded account went below zero. The legs never travel back to the client.
_CREATE_BULK_LEGS = """
CREATE TEMPORARY TABLE ledger_bulk_legs (
    name VARCHAR NOT NULL, currency VARCHAR NOT NULL, guarded BOOLEAN NOT NULL, amount BIGINT NOT NULL
) ON COMMIT DROP
"""

# Each account's net movement: the legs themselves when no account has two (a distribution), or summed.
_BULK_DELTAS_ONE_LEG_EACH = "SELECT name AS n, currency AS c, guarded AS g, amount AS d FROM ledger_bulk_legs"
_BULK_DELTAS_SUMMED = """
    SELECT name AS n, min(currency) AS c, bool_or(guarded) AS g, CAST(sum(amount) AS BIGINT) AS d
    FROM ledger_bulk_legs GROUP BY name"""

# The accounts are upserted in name order: an account another transaction is creating at the same time
# is waited for, then updated.
_POST_BULK_SQL = """
WITH deltas AS ({deltas}),
updated AS (
    INSERT INTO ledger_accounts AS a (name, currency, guarded, balance, version, created_at)
    SELECT n, c, g, d, 1, :now FROM deltas ORDER BY n
    ON CONFLICT (name) DO UPDATE SET balance = a.balance + EXCLUDED.balance, version = a.version + 1
    RETURNING a.id, a.name, a.balance, a.guarded
),
refused AS (
    SELECT u.name, u.balance - d.d AS balance FROM updated u JOIN deltas d ON d.n = u.name
    WHERE u.guarded AND u.balance < 0 ORDER BY u.name LIMIT 1
),
entry AS (
    INSERT INTO journal_entries (kind, idempotency_key, memo, created_at)
    SELECT :kind, :key, :memo, :now WHERE NOT EXISTS (SELECT 1 FROM refused)
    RETURNING id
),
written AS (
    INSERT INTO postings (entry_id, account_id, amount, currency, created_at)
    SELECT e.id, u.id, l.amount, l.currency, :now
    FROM entry e CROSS JOIN ledger_bulk_legs l JOIN updated u ON u.name = l.name
    RETURNING 1
)
SELECT (SELECT id FROM entry) AS entry_id,
       (SELECT name FROM refused) AS refused_name,
       (SELECT balance FROM refused) AS refused_balance,
       (SELECT count(*) FROM written) AS written
"""


# Several keyed entries in one statement: as _POST_SQL, with the entries and their legs as arrays
# (a leg names its entry by position) and the guards checked against the entries' total.
_POST_MANY_SQL = text("""
WITH deltas(name, delta) AS (
    SELECT * FROM unnest(CAST(:names AS VARCHAR[]), CAST(:deltas AS BIGINT[]))
),
legs(entry, name, amount, currency) AS (
    SELECT * FROM unnest(CAST(:leg_entries AS INTEGER[]), CAST(:leg_names AS VARCHAR[]),
                         CAST(:leg_amounts AS BIGINT[]), CAST(:leg_currencies AS VARCHAR[]))
),
""" + _LOCK_AND_CHECK + """entries AS (
    INSERT INTO journal_entries (kind, idempotency_key, memo, created_at)
    SELECT kind, key, memo, :now
    FROM unnest(CAST(:kinds AS VARCHAR[]), CAST(:keys AS VARCHAR[]), CAST(:memos AS VARCHAR[])) AS t(kind, key, memo)
    WHERE (SELECT count(*) FROM locked) = :accounts AND NOT EXISTS (SELECT 1 FROM refused)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, idempotency_key
),
written AS (
    INSERT INTO postings (entry_id, account_id, amount, currency, created_at)
    SELECT e.id, k.id, l.amount, l.currency, :now
    FROM legs l JOIN entries e ON e.idempotency_key = (CAST(:keys AS VARCHAR[]))[l.entry]
    JOIN locked k ON k.name = l.name
),
updated AS (
    UPDATE ledger_accounts a SET balance = a.balance + d.delta, version = a.version + 1
    FROM deltas d WHERE a.name = d.name AND (SELECT count(*) FROM entries) = :entries
    RETURNING a.id
)
SELECT (SELECT json_object_agg(idempotency_key, id) FROM entries) AS ids,
       (SELECT count(*) FROM locked) AS found,
       (SELECT name FROM refused ORDER BY name LIMIT 1) AS refused_name,
       (SELECT balance FROM refused ORDER BY name LIMIT 1) AS refused_balance,
       (SELECT count(*) FROM updated) AS updated
""")


async def _post_postgres_many(session: AsyncSession, entries: Sequence[Entry]) -> list[int]:
    deltas: dict[str, int] = defaultdict(int)
    legs = [(position, leg) for position, entry in enumerate(entries, start=1) for leg in entry.legs]
    for _, leg in legs:
        deltas[leg.account] += leg.amount
    names = sorted(deltas)
    keys = [entry.idempotency_key for entry in entries]
    params = {
        "names": names, "deltas": [deltas[name] for name in names], "accounts": len(names),
        "leg_entries": [position for position, _ in legs], "leg_names": [leg.account for _, leg in legs],
        "leg_amounts": [leg.amount for _, leg in legs], "leg_currencies": [leg.currency for _, leg in legs],
        "kinds": [entry.kind for entry in entries], "keys": keys, "memos": [entry.memo[:500] for entry in entries],
        "entries": len(entries), "now": utcnow(),
    }
    row = await _execute_posting(session, _POST_MANY_SQL, params, names)
    ids = json.loads(row.ids) if isinstance(row.ids, str) else (row.ids or {})
    if len(ids) != len(entries):
        raise AlreadyPosted(next(key for key in keys if key not in ids))
    assert row.updated == len(names)
    return [int(ids[key]) for key in keys]


async def _post_postgres_bulk(
    session: AsyncSession, kind: str, legs: Legs, deltas: dict[str, int], key: str | None, memo: str
) -> int | None:
    if key is not None and await already_posted(session, key):
        return None
    await tune_for_bulk(session)
    await session.execute(text(_CREATE_BULK_LEGS))
    # Staged in name order: the statement sorts them by name, and PostgreSQL's sort returns at once on
    # rows already in order (a distribution's legs nearly are, which Python's sort finds in one pass too).
    # Each row is completed as the COPY sends it, while PostgreSQL takes in the rows before it.
    await copy_records(session, "ledger_bulk_legs", ("name", "currency", "guarded", "amount"),
                       ((account, accounts.currency_of(account), accounts.is_guarded(account), amount)
                        for account, amount in sorted(legs)))
    statement = text(_POST_BULK_SQL.format(
        deltas=_BULK_DELTAS_ONE_LEG_EACH if len(legs) == len(deltas) else _BULK_DELTAS_SUMMED))
    params = {"kind": kind, "key": key, "memo": memo, "now": utcnow()}
    try:
        async with session.begin_nested():
            row = (await session.execute(statement, params)).one()
    except DBAPIError as error:
        # A deadlock (the entry holds some accounts and waits for one another transaction is creating,
        # which waits for one of the entry's): PostgreSQL failed this statement to break it. Back to the
        # savepoint, the entry lets go of its locks, and posted again it waits its turn behind the other.
        if sqlstate_of(error) not in RETRYABLE_SQLSTATES:
            raise
        row = (await session.execute(statement, params)).one()
    # Dropped now, not at commit: another bulk entry in the same transaction stages its own legs.
    await session.execute(text("DROP TABLE ledger_bulk_legs"))
    if row.refused_name is not None:
        raise _refuse(row.refused_name, row.refused_balance)
    assert row.written == len(legs)
    return int(row.entry_id)


async def _post_generic(
    session: AsyncSession, kind: str, legs: Legs, deltas: dict[str, int], key: str | None, memo: str
) -> int | None:
    if key is not None and await already_posted(session, key):
        return None
    names = sorted(deltas)
    by_name = {}
    for start in range(0, len(names), CHUNK):
        chunk = names[start:start + CHUNK]
        await _ensure_accounts(session, chunk)
        rows = await session.execute(
            select(LedgerAccount.id, LedgerAccount.name, LedgerAccount.balance, LedgerAccount.guarded)
            .where(LedgerAccount.name.in_(chunk)).order_by(LedgerAccount.name).with_for_update()
        )
        by_name.update({row.name: row for row in rows})
    for name in names:
        account = by_name[name]
        if account.guarded and account.balance + deltas[name] < 0:
            raise _refuse(name, account.balance)
    now = utcnow()
    entry_id = await session.scalar(
        JournalEntry.__table__.insert()
        .values(kind=kind, idempotency_key=key, memo=memo, created_at=now)
        .returning(JournalEntry.id)
    )
    await session.execute(
        Posting.__table__.insert(),
        [{"entry_id": entry_id, "account_id": by_name[account].id, "amount": amount,
          "currency": accounts.currency_of(account), "created_at": now} for account, amount in legs],
    )
    accounts_table = LedgerAccount.__table__
    await session.execute(
        accounts_table.update()
        .where(accounts_table.c.id == bindparam("account_id"))
        .values(balance=accounts_table.c.balance + bindparam("delta"), version=accounts_table.c.version + 1),
        [{"account_id": by_name[name].id, "delta": deltas[name]} for name in names],
    )
    return entry_id


async def balance(session: AsyncSession, account: str) -> int:
    value = await session.scalar(select(LedgerAccount.balance).where(LedgerAccount.name == account))
    return value or 0
