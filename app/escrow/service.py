"""Escrow: investors' money held per app until milestones release it.

`EscrowService(session)` is the platform's Python interface to escrow, in async form:
`await EscrowService(session).process_deposit(app=..., investor=..., amount=Decimal("1000.00"), ...)`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.service import readable_by
from app.core.errors import NotFound
from app.core.money import to_minor
from app.core.schemas import PageParams, fetch_page, where_given
from app.core.security import Principal
from app.escrow.deposits import escrow_row
from app.escrow.refunds import refund_deposit
from app.escrow.releases import create_release
from app.escrow.schemas import EscrowTransactionOut, ReleaseIn
from app.events.record import NewEvent, emit_all
from app.ledger import accounts
from app.ledger.service import Entry, move, post_entries
from app.models import App, EscrowTransaction, Milestone, Refund, ReleaseRequest
from app.models.base import new_id, utcnow
from app.runtime import Runtime


def new_deposit_row(
    app_id: str,
    *,
    investor: str,
    amount: int,
    currency: str,
    gateway_reference: str,
    payment_gateway: str = "PAYSTACK",
    payment_id: str | None = None,
    shares: int = 0,
) -> tuple[dict[str, Any], Entry]:
    """A deposit of `amount` minor units as a row, and its journal entry (`gateway -> escrow:app`), for the
    caller to write: `process_deposit` writes one, an investment batch inserts many rows at once."""
    row = escrow_row(
        utcnow(), id=new_id("esc"), type="deposit", app_id=app_id, investor_id=investor, amount=amount,
        currency=currency, status="held", payment_gateway=payment_gateway, gateway_reference=gateway_reference,
        payment_id=payment_id, shares=shares,
    )
    entry = Entry("deposit", move(accounts.gateway(currency), accounts.escrow(app_id, currency), amount),
                  idempotency_key=f"deposit:{gateway_reference}", memo=f"investment {gateway_reference}")
    return row, entry


def deposit_held(deposit: Mapping[str, Any], app: App) -> NewEvent:
    """The `deposit.held` event of a new deposit's row, about the investor and the app's owner."""
    shown = SimpleNamespace(**deposit, remaining=deposit["amount"])  # nothing has left a new deposit yet
    return NewEvent("deposit.held", EscrowTransactionOut.model_validate(shown), [deposit["investor_id"], app.owner_id])


class EscrowService:
    def __init__(self, session: AsyncSession, runtime: Runtime | None = None) -> None:
        self.session = session
        self.runtime = runtime

    def _rt(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("EscrowService needs the runtime for releases and refunds")
        return self.runtime

    async def process_deposit(
        self,
        *,
        app: App,
        investor: str,
        amount: Decimal,
        currency: str,
        payment_gateway: str = "PAYSTACK",
        gateway_reference: str,
        payment_id: str | None = None,
        shares: int = 0,
    ) -> EscrowTransaction:
        """Money the gateway collected for `app` goes into its escrow: `gateway -> escrow:app`."""
        row, entry = new_deposit_row(app.id, investor=investor, amount=to_minor(amount, currency),
                                     currency=currency, payment_gateway=payment_gateway,
                                     gateway_reference=gateway_reference, payment_id=payment_id, shares=shares)
        deposit = EscrowTransaction(**row)
        self.session.add(deposit)
        await emit_all(self.session, [deposit_held(row, app)])
        await post_entries(self.session, [entry])
        await self.session.flush()
        return deposit

    async def process_release(
        self,
        transaction: EscrowTransaction,
        *,
        milestone: Milestone,
        release_percentage: Decimal,
        requested_by: Principal,
    ) -> ReleaseRequest:
        """Ask to release `release_percentage` of one deposit for `milestone`.

        Money moves only after the app's approvers approve and an admin executes it
        (or by itself with ENABLE_AUTOMATIC_RELEASES below the threshold).
        """
        body = ReleaseIn(milestone_id=milestone.id, transaction_id=transaction.id,
                         release_percentage=str(release_percentage))
        return await create_release(self.session, self._rt(), requested_by, body)

    async def process_refund(
        self, transaction: EscrowTransaction, *, amount: Decimal | None = None, reason: str = ""
    ) -> Refund:
        """Refund `amount` (major units; default all that remains) of a deposit through the gateway."""
        minor = None if amount is None else to_minor(amount, transaction.currency)
        return await refund_deposit(self.session, self._rt(), transaction.id, amount=minor, reason=reason)


async def _readable(
    session: AsyncSession, principal: Principal, stmt: Select[tuple[EscrowTransaction]]
) -> Select[tuple[EscrowTransaction]]:
    """Investors see their own transactions; owners and approvers their apps'; admins all."""
    return await readable_by(session, principal, stmt, own=(EscrowTransaction.investor_id,),
                             app=EscrowTransaction.app_id)


async def get_transaction(session: AsyncSession, principal: Principal, transaction_id: str) -> EscrowTransaction:
    stmt = await _readable(session, principal, select(EscrowTransaction).where(EscrowTransaction.id == transaction_id))
    found = await session.scalar(stmt)
    if found is None:
        raise NotFound("Escrow transaction not found", transaction_id=transaction_id)
    return found


async def list_transactions(
    session: AsyncSession,
    principal: Principal,
    params: PageParams,
    *,
    app_id: str | None = None,
    investor_id: str | None = None,
    type: str | None = None,
    status: str | None = None,
) -> tuple[Sequence[EscrowTransaction], str | None]:
    stmt = await _readable(session, principal, select(EscrowTransaction))
    stmt = where_given(stmt, {EscrowTransaction.app_id: app_id, EscrowTransaction.investor_id: investor_id,
                              EscrowTransaction.type: type, EscrowTransaction.status: status})
    return await fetch_page(session, stmt, EscrowTransaction.id, params)
