"""Reconciliation runs: our records and the gateway's lists for a window, read outside any transaction
held across gateway calls, then compared by the rules of `app/ledger/reconciliation.py` (the admin's
`GET /v1/admin/reconciliation` and the worker's periodic job)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, Final

from sqlalchemy import String, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.core import metrics
from app.gateway.errors import GatewayRejected
from app.ledger.integrity import CHEAP_CHECKS
from app.ledger.reconciliation import (
    CHARGE_STATUSES_AGREEING,
    EDGE_MARGIN,
    KINDS,
    LOOKUP_CHUNK,
    PAYOUT_STATUSES_AT_GATEWAY,
    RECORD_TYPES,
    Difference,
    Found,
    Reconciliation,
    Row,
    Window,
    _gateway_refund,
    _record_of,
    compare_charges,
    compare_refunds,
    compare_transfers,
)
from app.models import JournalEntry, Payment, Payout, Posting, Refund
from app.models.base import utcnow
from app.runtime import Runtime

log = logging.getLogger(__name__)


async def _charge_differences(rt: Runtime, window: Window) -> list[Difference]:
    listed = await rt.gateway.list_transactions(start=window.listed_from, end=window.listed_to, status="success")
    charges = {record.reference: record for record in listed}
    async with rt.db.unit_of_work() as session:
        charged = (await session.scalars(
            select(Payment).where(Payment.status.in_(CHARGE_STATUSES_AGREEING), Payment.created_at >= window.start,
                                  Payment.created_at < window.end)
        )).all()
        named = {r.reference for r in listed if window.holds(r.created_at)} - {p.reference for p in charged}
        payments = [*charged, *await _by_key(session, Payment, Payment.reference, named)]
    for payment in charged:
        if payment.reference not in charges:
            record = await _fetch_or_none(rt.gateway.fetch_transaction_record(payment.reference))
            if record is not None:
                charges[payment.reference] = record
    known = {payment.reference for payment in payments}
    return compare_charges(payments, [charge for charge in charges.values()
                                      if charge.reference in known or window.holds(charge.created_at)])


async def _transfer_differences(rt: Runtime, window: Window) -> list[Difference]:
    listed = await rt.gateway.list_transfers(start=window.listed_from, end=window.listed_to)
    async with rt.db.unit_of_work() as session:
        # A payout belongs to the window by its latest send (`payout:{id}:{attempt}:sent`); a payout sent
        # then was updated at that moment or later, which narrows the search.
        sent_key = literal("payout:") + Payout.id + ":" + cast(Payout.attempts, String) + ":sent"
        sent = (await session.scalars(
            select(Payout)
            .join(JournalEntry, JournalEntry.idempotency_key == sent_key)
            .where(Payout.attempts > 0, Payout.updated_at >= window.start,
                   JournalEntry.created_at >= window.start, JournalEntry.created_at < window.end)
        )).all()
        in_window = [t for t in listed if window.holds(t.created_at)]
        named = {t.reference for t in in_window if t.reference} - {p.reference for p in sent}
        codes = {t.transfer_code for t in in_window if not t.reference and t.transfer_code}
        payouts = [*sent, *await _by_key(session, Payout, Payout.reference, named),
                   *await _by_key(session, Payout, Payout.transfer_code, codes)]
    transfers = list(listed)
    listed_keys = {key for t in listed for key in (t.reference, t.transfer_code) if key}
    for payout in sent:
        if payout.status in PAYOUT_STATUSES_AT_GATEWAY and not {payout.reference, payout.transfer_code} & listed_keys:
            result = await _fetch_or_none(rt.gateway.verify_transfer(payout.reference))
            if result is not None:
                transfers.append(_record_of(result))
    known = {p.reference for p in payouts} | {p.transfer_code for p in payouts if p.transfer_code}
    return compare_transfers(payouts, [t for t in transfers if (t.reference or t.transfer_code) in known
                                       or window.holds(t.created_at)])


async def _by_key(session: AsyncSession, model: type[Row], column: InstrumentedAttribute[Any],
                  keys: set[str]) -> list[Row]:
    """The rows whose `column` is one of `keys`, a bounded number of keys per query."""
    rows: list[Row] = []
    ordered = sorted(keys)
    for start in range(0, len(ordered), LOOKUP_CHUNK):
        rows += (await session.scalars(select(model).where(column.in_(ordered[start:start + LOOKUP_CHUNK])))).all()
    return rows


async def _fetch_or_none(fetch: Awaitable[Found]) -> Found | None:
    """The gateway's record, or None when it has none (404)."""
    try:
        return await fetch
    except GatewayRejected as error:
        if error.status_code == 404:
            return None
        raise


async def _refund_differences(rt: Runtime, window: Window) -> list[Difference]:
    listed = {result.id: _gateway_refund(result)
              for result in await rt.gateway.list_refunds_between(start=window.listed_from, end=window.listed_to)}
    async with rt.db.unit_of_work() as session:
        made = (await session.scalars(
            select(Refund).where(Refund.created_at >= window.start, Refund.created_at < window.end)
        )).all()
        in_window = [record for record in listed.values() if window.holds(record.created_at)]
        known = {refund.id for refund in made}
        named = {record.refund_id for record in in_window if record.refund_id} - known
        refunds = [*made, *await _by_key(session, Refund, Refund.id, named)]
        recorded = sorted({record.id for record in in_window} - {r.gateway_refund_id for r in refunds})
        for start in range(0, len(recorded), LOOKUP_CHUNK):
            refunds += [refund for refund in (await session.scalars(
                select(Refund).where(Refund.gateway_refund_id.in_(recorded[start:start + LOOKUP_CHUNK]))
            )).all() if refund.id not in known | named]
    for refund in made:
        if refund.gateway_refund_id is not None and refund.gateway_refund_id not in listed:
            result = await _fetch_or_none(rt.gateway.fetch_refund(refund.gateway_refund_id))
            if result is not None:
                listed[result.id] = _gateway_refund(result)
    ours = {refund.id for refund in refunds}
    by_gateway_id = {refund.gateway_refund_id for refund in refunds if refund.gateway_refund_id is not None}
    return compare_refunds([r for r in listed.values()
                            if r.refund_id in ours or r.id in by_gateway_id or window.holds(r.created_at)], refunds)


SOURCES: Final[Sequence[Callable[[Runtime, Window], Awaitable[list[Difference]]]]] = (
    _charge_differences, _transfer_differences, _refund_differences,
)


async def reconcile(rt: Runtime, window: Window) -> Reconciliation:
    """Compare the books with the gateway over `window`. Gateway calls happen outside any transaction."""
    differences: list[Difference] = []
    for source in SOURCES:
        differences += await source(rt, window)
    return Reconciliation(window, differences)


async def reconcile_recent(rt: Runtime) -> Reconciliation:
    """The periodic job: the last RECONCILIATION_LOOKBACK_SECONDS, ending EDGE_MARGIN ago so that
    what is settling right now (a webhook on its way) is not reported. Logged and counted."""
    end = utcnow() - EDGE_MARGIN
    result = await reconcile(rt, Window(end - timedelta(seconds=rt.settings.reconciliation_lookback_seconds), end))
    counts = Counter((d.record, d.kind) for d in result.differences)
    for record in RECORD_TYPES:
        for kind in KINDS:
            metrics.RECONCILIATION_DIFFERENCES.labels(record=record, kind=kind).set(counts[(record, kind)])
    metrics.RECONCILIATION_RUNS.inc()
    if result.ok:
        log.info("gateway reconciliation %s..%s: no differences", result.window.start, result.window.end)
    else:
        log.warning("gateway reconciliation %s..%s: %d differences: %s", result.window.start, result.window.end,
                    len(result.differences),
                    "; ".join(f"{d.record} {d.reference} {d.kind}" for d in result.differences[:20]))
    return result


async def ledger_sum(rt: Runtime) -> int:
    """What all postings add up to: zero in balanced books."""
    async with rt.db.unit_of_work() as session:
        return int(await session.scalar(select(func.coalesce(func.sum(Posting.amount), 0))) or 0)


async def failing_cheap_checks(rt: Runtime) -> list[str]:
    """The names of the cheap business checks (`integrity.CHEAP_CHECKS`) that fail now."""
    async with rt.db.unit_of_work() as session:
        results = [await check(session) for check in CHEAP_CHECKS]
    return [result.name for result in results if not result.ok]
