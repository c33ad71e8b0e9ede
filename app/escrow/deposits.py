"""Deposits: what each one holds, the rows of money into and out of them, and locking them in a fixed order."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.core.db import on_postgres
from app.core.errors import NotFound
from app.models import EscrowTransaction


def escrow_row(now: datetime, **columns: Any) -> dict[str, Any]:
    """An `escrow_transactions` row (a deposit, or a release or refund out of one) for a batch to insert:
    the columns `columns` leaves out at their empty values, so rows of one batch go in one statement."""
    return {"payment_id": None, "deposit_id": None, "milestone_id": None, "release_id": None, "refund_id": None,
            "shares": 0, "released": 0, "refunded": 0, "frozen": 0, "created_at": now, "updated_at": now, **columns}


def remaining(deposit: EscrowTransaction) -> int:
    """Still in escrow: not released, not refunded (frozen money is still here)."""
    return deposit.amount - deposit.released - deposit.refunded


def available(deposit: EscrowTransaction) -> int:
    """Free to move: still in escrow and not frozen by a dispute."""
    return remaining(deposit) - deposit.frozen


def deposit_status(deposit: EscrowTransaction) -> str:
    if remaining(deposit) > 0:
        return "held"
    if deposit.refunded == 0:
        return "released"
    return "refunded" if deposit.released == 0 else "closed"


# Built once, not per call: every release and refund batch runs it (building it took a quarter to a third
# of its CPU, measured).
_LOCK_DEPOSITS = (
    select(EscrowTransaction)
    .where(EscrowTransaction.id.in_(bindparam("ids", expanding=True)), EscrowTransaction.type == "deposit")
    .order_by(EscrowTransaction.id)
    .with_for_update()
    .execution_options(populate_existing=True)
)


async def lock_found_deposits(session: AsyncSession, ids: Iterable[str]) -> dict[str, EscrowTransaction]:
    """Lock the deposits among `ids` in id order, so concurrent releases and refunds cannot deadlock."""
    rows = (await session.scalars(_LOCK_DEPOSITS, {"ids": sorted(set(ids))})).all()
    return {row.id: row for row in rows}


async def lock_deposits(session: AsyncSession, ids: Iterable[str]) -> dict[str, EscrowTransaction]:
    """`lock_found_deposits`, where a missing deposit is an error."""
    wanted = sorted(set(ids))
    found = await lock_found_deposits(session, wanted)
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotFound("Deposit not found", transaction_id=missing[0])
    return found


_MOVED_COLUMNS = ("released", "refunded", "status", "updated_at")
# One statement for a batch's deposits on PostgreSQL: their new values as arrays.
_WRITE_MOVED_POSTGRES = text("""
UPDATE escrow_transactions AS d SET released = v.released, refunded = v.refunded, status = v.status, updated_at = :now
FROM unnest(CAST(:ids AS VARCHAR[]), CAST(:released AS BIGINT[]), CAST(:refunded AS BIGINT[]),
            CAST(:statuses AS VARCHAR[])) AS v(id, released, refunded, status)
WHERE d.id = v.id
""")
_deposits = EscrowTransaction.__table__
# Elsewhere (SQLite) one UPDATE per deposit; parameter names must differ from the columns' own.
_WRITE_MOVED = update(_deposits).where(_deposits.c.id == bindparam("b_id")).values(
    released=bindparam("b_released"), refunded=bindparam("b_refunded"), status=bindparam("b_status"),
    updated_at=bindparam("b_now"))


async def write_moved(session: AsyncSession, deposits: Collection[EscrowTransaction], now: datetime) -> None:
    """The released, refunded and status that money leaving `deposits` left on them in memory, written in one
    statement instead of the unit of work's statement per deposit."""
    if not deposits:
        return
    if on_postgres(session):
        written = await session.execute(_WRITE_MOVED_POSTGRES, {
            "ids": [d.id for d in deposits], "released": [d.released for d in deposits],
            "refunded": [d.refunded for d in deposits], "statuses": [d.status for d in deposits], "now": now})
    else:
        written = await session.execute(_WRITE_MOVED, [
            {"b_id": d.id, "b_released": d.released, "b_refunded": d.refunded, "b_status": d.status, "b_now": now}
            for d in deposits])
    if written.rowcount != len(deposits):
        raise RuntimeError(f"{len(deposits)} deposits to write, {written.rowcount} written")
    # Written: the unit of work has nothing left to write for them. Their changes stay known to the session
    # all the same, so a savepoint rolled back over this write expires them as it does any change.
    for deposit in deposits:
        deposit.updated_at = now
        for column in _MOVED_COLUMNS:
            set_committed_value(deposit, column, getattr(deposit, column))
