"""Everything that connects the domains, in one place and as literal tables: the payment types, what each
webhook event does, what happens when a refund ends, the worker's jobs and the routers.

Lower layers define the table types (`PaymentTypes` in payments, `EventHandlers` in webhooks,
`RefundSettledHooks` in payments); the domains above provide the entries; `create_app` and the worker
import this module and hand `EXTENSIONS` to the runtime. Nothing registers itself by being imported.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter

from app.apps.router import router as apps_router
from app.audit.router import router as audit_router
from app.distributions.automatic import make_automatic_distributions
from app.distributions.declarations import RevenueDeclarationPayment
from app.distributions.revenue import RevenuePayment
from app.distributions.router import router as distributions_router
from app.escrow.disputes_router import router as disputes_router
from app.escrow.investment import InvestmentPayment
from app.escrow.refunds import on_refund_settled
from app.escrow.router import router as escrow_router
from app.escrow.tasks import flag_overdue_milestones, handle_chargeback, handle_chargeback_resolved
from app.events.delivery import deliver_events
from app.events.router import router as events_router
from app.ledger.flows import reconcile_recent
from app.ledger.router import router as ledger_router
from app.ops import router as ops_router
from app.payments.gateway_refunds import RefundSettledHooks
from app.payments.router import router as payments_router
from app.payments.router import webhook_router
from app.payments.tasks import (
    REFUND_EVENT_HANDLERS,
    check_refunds,
    handle_charge_success,
    reconcile_pending,
    send_pending_refunds,
)
from app.payments.types import PaymentTypes
from app.payouts.router import router as payouts_router
from app.payouts.tasks import handle_transfer_event, reconcile_payouts, send_pending_payouts
from app.runtime import Extensions, Runtime
from app.shares.router import router as shares_router
from app.shares.tasks import expire_transfers
from app.shares.transfers import ShareTransferPayment
from app.webhooks.inbox import EventHandlers
from app.webhooks.tasks import process_inbox

Job = Callable[[Runtime], Awaitable[int]]

# `payment_type` of a payment -> how it is priced and what a successful charge does (`revenue_declaration`
# payments are opened by POST /v1/apps/{app_id}/revenue-declarations, not by POST /v1/payments).
PAYMENT_TYPES = PaymentTypes.of(
    InvestmentPayment(), ShareTransferPayment(), RevenuePayment(), RevenueDeclarationPayment())

# Paystack event -> its handler. Events not named here are stored and marked ignored.
EVENT_HANDLERS = EventHandlers({
    "charge.success": handle_charge_success,
    "charge.dispute.create": handle_chargeback,
    "charge.dispute.resolve": handle_chargeback_resolved,
    "transfer.success": handle_transfer_event,
    "transfer.failed": handle_transfer_event,
    "transfer.reversed": handle_transfer_event,
    **REFUND_EVENT_HANDLERS,
})

# Run in the refund's settling transaction: the escrow deposit follows its refund.
REFUND_SETTLED = RefundSettledHooks((on_refund_settled,))

EXTENSIONS = Extensions(PAYMENT_TYPES, EVENT_HANDLERS, REFUND_SETTLED)

# Queues the worker drains on every tick, in this order.
# Automatic distributions before the payouts, so that a pass sends the payouts it made.
JOBS: tuple[Job, ...] = (
    process_inbox, make_automatic_distributions, send_pending_refunds, check_refunds, send_pending_payouts,
    expire_transfers, deliver_events,
)
# Once a minute: payments and payouts left pending are asked about at the gateway; milestones past due.
RECONCILERS: tuple[Job, ...] = (reconcile_pending, reconcile_payouts, flag_overdue_milestones)
# Every RECONCILIATION_INTERVAL_SECONDS: the books against the gateway's own records.
GATEWAY_RECONCILIATION = reconcile_recent

ROUTERS: tuple[APIRouter, ...] = (
    ops_router, apps_router, payments_router, webhook_router, escrow_router, disputes_router, payouts_router,
    shares_router, ledger_router, distributions_router, audit_router, events_router,
)
