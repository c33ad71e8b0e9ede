"""What a request or a job needs besides its session: settings, database, gateway, cipher."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from app.core.batching import GroupCommit, in_sequence
from app.core.config import Settings
from app.core.crypto import FieldCipher
from app.core.db import Database
from app.gateway.client import PaystackClient

if TYPE_CHECKING:
    from app.escrow.queue import EscrowQueue


@dataclass
class Runtime:
    settings: Settings
    db: Database
    gateway: PaystackClient
    cipher: FieldCipher
    # set when the in-process worker runs: wakes it as soon as there is work
    work_available: asyncio.Event = field(default_factory=asyncio.Event)

    def notify_worker(self) -> None:
        self.work_available.set()

    @cached_property
    def charge_commits(self) -> GroupCommit[Any]:
        """Verified charges applied together: each payment's own unit of work, one transaction a batch
        (every investment in an app takes the same share-count and escrow rows)."""
        return GroupCommit(self.db, in_sequence)

    @cached_property
    def inbox_commits(self) -> GroupCommit[Any]:
        """Webhooks arriving together are stored with one statement and one commit."""
        from app.payments.inbox import store_events

        return GroupCommit(self.db, store_events)

    @cached_property
    def escrow_queue(self) -> EscrowQueue:
        """Group commit for escrow releases and refunds (imported here and above: those modules need Runtime)."""
        from app.escrow.queue import EscrowQueue

        return EscrowQueue(self)
