"""Automatic distributions (`ENABLE_AUTOMATIC_DISTRIBUTIONS`): revenue paid in queues its app, period and
currency once (`queue_distributions`, in the transaction that applies the payment); the worker then makes
that period's distribution exactly once and its payouts go out like any distribution's.

Exactly once is the database's: one queue row per (app, period, currency) (unique), taken under its lock
with SKIP LOCKED and done once (its status), and one distribution per (app, period, currency) (unique)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.apps.service import get_app
from app.core import outbox
from app.core.db import insert_on_conflict
from app.core.errors import AppError
from app.core.logging import redact
from app.distributions.schemas import DistributionIn
from app.distributions.service import plan_for_app, write_distribution
from app.models import AutomaticDistribution, Distribution
from app.models.audit import AUTOMATION
from app.models.base import utcnow
from app.runtime import Runtime

log = logging.getLogger(__name__)

# A refusal that will not change by waiting (nothing to distribute, no holders) is retried this many times,
# spaced by the backoff below: revenue refunded or shares issued meanwhile may still change it.
MAX_ATTEMPTS = 5
FIRST_RETRY_SECONDS = 60.0
LONGEST_RETRY_SECONDS = 3600.0


async def queue_distributions(session: AsyncSession, rt: Runtime, periods: Iterable[tuple[str, str, str]]) -> None:
    """In the transaction that applies successful revenue: queue each (app_id, period, currency) once,
    however many times its success is seen. A revenue declaration's payment calls this the same way."""
    if not rt.settings.enable_automatic_distributions:
        return
    now = utcnow()
    rows = [
        {"app_id": app_id, "period": period, "currency": currency, "status": "pending", "attempts": 0,
         "available_at": now, "created_at": now, "updated_at": now}
        for app_id, period, currency in sorted(set(periods))
    ]
    if not rows:
        return
    await session.execute(insert_on_conflict(session, AutomaticDistribution).values(rows).on_conflict_do_nothing(
        index_elements=["app_id", "period", "currency"]))
    rt.notify_worker()


async def make_automatic_distributions(rt: Runtime) -> int:
    """Worker job: the due queued periods, each distributed in a unit of work of its own."""
    async with rt.db.unit_of_work() as session:
        ids = (await session.scalars(
            select(AutomaticDistribution.id)
            .where(AutomaticDistribution.status == "pending", AutomaticDistribution.available_at <= utcnow())
            .order_by(AutomaticDistribution.id).limit(rt.settings.worker_batch_size)
        )).all()
    done = 0
    for queued_id in ids:
        done += await distribute_one(rt, queued_id)
    return done


async def distribute_one(rt: Runtime, queued_id: int) -> int:
    """Make the distribution of one queued period, or say why not; 1 when this call did the row."""
    async with rt.db.unit_of_work() as session:
        # Another worker holding the row is doing it; a row done meanwhile is not pending any more.
        queued = await session.scalar(
            select(AutomaticDistribution)
            .where(AutomaticDistribution.id == queued_id, AutomaticDistribution.status == "pending")
            .with_for_update(skip_locked=True)
        )
        if queued is None:
            return 0
        queued.attempts += 1
        made = await session.scalar(select(Distribution.id).where(
            Distribution.app_id == queued.app_id, Distribution.period == queued.period,
            Distribution.currency == queued.currency))
        if made is not None:  # distributed by hand first
            queued.status, queued.distribution_id = "skipped", made
            return 1
        try:
            async with session.begin_nested():
                app = await get_app(session, queued.app_id)
                plan = await plan_for_app(session, rt, app, DistributionIn(period=queued.period,
                                                                           currency=queued.currency))
                distribution = await write_distribution(session, rt, AUTOMATION, plan, queued.period)
        except AppError as refusal:
            queued.last_error = redact(refusal.message)[:1000]
            if queued.attempts >= MAX_ATTEMPTS:
                queued.status = "skipped"
                log.warning("automatic distribution %s %s %s not made: %s", queued.app_id, queued.period,
                            queued.currency, refusal.message)
            else:
                queued.available_at = utcnow() + outbox.backoff(
                    queued.attempts, first=FIRST_RETRY_SECONDS, most=LONGEST_RETRY_SECONDS)
            return 1
        queued.status, queued.distribution_id, queued.last_error = "done", distribution.id, None
        return 1
