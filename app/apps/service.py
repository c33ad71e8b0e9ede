"""The registry of apps investors can buy shares in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.schemas import AppUpsert
from app.core.config import Settings
from app.core.db import insert_on_conflict
from app.core.errors import CurrencyNotSupported, InvalidAmount, InvalidState
from app.core.money import CURRENCIES, MoneyError, parse_percentage, to_minor
from app.core.repository import get_or_404
from app.core.schemas import PageParams, fetch_page
from app.core.security import Principal
from app.models import App, audit

S = TypeVar("S", bound=Select[Any])


def check_currency(settings: Settings, code: str) -> str:
    """The one rule for which currencies are accepted."""
    code = code.upper()
    if code not in CURRENCIES:
        raise CurrencyNotSupported(f"{code} is not supported", currency=code, supported=sorted(CURRENCIES))
    if not settings.enable_multi_currency and code != settings.default_currency:
        raise CurrencyNotSupported(
            f"Only {settings.default_currency} is accepted", currency=code, supported=[settings.default_currency]
        )
    return code


async def get_app(session: AsyncSession, app_id: str, *, for_update: bool = False) -> App:
    return await get_or_404(session, App, app_id, for_update=for_update)


async def upsert_app(
    session: AsyncSession, settings: Settings, principal: Principal, app_id: str, data: AppUpsert
) -> App:
    currency = check_currency(settings, data.currency)
    try:
        share_price = to_minor(data.share_price, currency)
    except MoneyError as exc:
        raise InvalidAmount(str(exc), field="share_price") from None
    if share_price <= 0:
        raise InvalidAmount("share_price must be greater than zero", field="share_price")
    fields = {
        "name": data.name, "owner_id": data.owner_id, "currency": currency, "share_price": share_price,
        "total_shares": data.total_shares, "approvers": list(data.approvers),
        "required_approvals": data.required_approvals, "lock_in_days": data.lock_in_days,
        "platform_fee_hundredths": parse_percentage(data.platform_fee_percentage),
    }
    # Concurrent first PUTs: one insert wins, the others wait for it and insert nothing; then each
    # caller updates the row under its lock, the last one's fields staying.
    created = await session.execute(
        insert_on_conflict(session, App).values(id=app_id, shares_issued=0, **fields)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    app = await get_app(session, app_id, for_update=True)
    before = {} if created.rowcount else {name: getattr(app, name) for name in fields}
    if app.shares_issued and (app.currency != currency or app.share_price != share_price):
        raise InvalidState("Currency and share price are fixed once shares are issued")
    if data.total_shares < app.shares_issued:
        raise InvalidState("total_shares cannot go below the shares already issued",
                           shares_issued=app.shares_issued)
    for name, value in fields.items():
        setattr(app, name, value)
    audit.record(session, principal, "app.created" if created.rowcount else "app.updated", "app", app_id,
                 audit.diff(before, fields))
    await session.flush()
    return app


async def list_apps(
    session: AsyncSession, principal: Principal, params: PageParams
) -> tuple[Sequence[App], str | None]:
    """An admin lists every app; anyone else the apps they own or approve. By id, last first."""
    stmt = await readable_by(session, principal, select(App), app=App.id)
    return await fetch_page(session, stmt, App.id, params)


async def overseen_app_ids(session: AsyncSession, principal: Principal) -> list[str]:
    """Apps whose escrow the caller may read (owner or approver). Approvers live in a JSON list,
    which no index can search portably, so the candidates are filtered here."""
    rows = (await session.execute(select(App.id, App.owner_id, App.approvers))).all()
    return [app_id for app_id, owner, approvers in rows if owner == principal.user_id or principal.user_id in approvers]


async def readable_by(
    session: AsyncSession,
    principal: Principal,
    stmt: S,
    *,
    own: Sequence[ColumnElement[str]] = (),
    app: ColumnElement[str] | None = None,
) -> S:
    """`stmt` narrowed to the rows `principal` may read: an admin reads them all; anyone else the rows whose
    `own` columns name them (payer, investor, seller or buyer), or, given `app`, the rows of an app they
    own or approve."""
    if principal.is_admin:
        return stmt
    readable = [column == principal.user_id for column in own]
    if app is not None:
        readable.append(app.in_(await overseen_app_ids(session, principal)))
    return stmt.where(or_(*readable))
