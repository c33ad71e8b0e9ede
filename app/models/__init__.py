"""All ORM tables, importable from one place (Alembic reads `Base.metadata` from here)."""

from app.models.apps import App
from app.models.base import Base
from app.models.distributions import Distribution, DistributionAllocation, ShareTransfer
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
    "ShareMovement",
    "ShareTransfer",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
]
