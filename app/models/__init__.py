"""All ORM tables, importable from one place (Alembic reads `Base.metadata` from here)."""

from app.models.apps import App
from app.models.audit import AuditEntry
from app.models.automation import AutomaticDistribution
from app.models.base import Base
from app.models.distributions import Distribution, DistributionAllocation, RevenueDeclaration, ShareTransfer
from app.models.escrow import (
    Dispute,
    EscrowTransaction,
    Milestone,
    ReleaseApproval,
    ReleaseItem,
    ReleaseRequest,
)
from app.models.events import EventSubject, OutboundEvent, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.models.ledger import JournalEntry, LedgerAccount, Posting
from app.models.payments import IdempotencyRecord, Payment, Refund, WebhookEvent
from app.models.payouts import Payout, PayoutAccount
from app.models.shares import Holding, ShareMovement

__all__ = [
    "App",
    "AuditEntry",
    "AutomaticDistribution",
    "Base",
    "Dispute",
    "Distribution",
    "DistributionAllocation",
    "EscrowTransaction",
    "EventSubject",
    "Holding",
    "IdempotencyRecord",
    "JournalEntry",
    "LedgerAccount",
    "Milestone",
    "OutboundEvent",
    "Payment",
    "Payout",
    "PayoutAccount",
    "Posting",
    "Refund",
    "ReleaseApproval",
    "ReleaseItem",
    "ReleaseRequest",
    "RevenueDeclaration",
    "ShareMovement",
    "ShareTransfer",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
]
