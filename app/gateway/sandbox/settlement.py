"""What happens after a request: charges, refunds and transfers settle and announce themselves by webhook."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

from app.gateway.sandbox.records import ChargeOutcome, Transaction
from app.gateway.sandbox.state import SandboxState
from app.gateway.sandbox.tasks import Launch, TaskTracker
from app.gateway.sandbox.webhooks import WebhookSender


class Settlements:
    def __init__(
        self, *, state: SandboxState, tracker: TaskTracker, webhooks: WebhookSender, settle_delay: float
    ) -> None:
        self._state = state
        self._tracker = tracker
        self._webhooks = webhooks
        self._settle_delay = settle_delay

    def settle_charge(
        self, reference: str, outcome: ChargeOutcome, *, send_webhook: bool, launch: Launch
    ) -> Transaction:
        """The customer's choice at checkout. Paystack has no webhook for failed or abandoned charges."""
        tx = self._state.settle_charge(reference, outcome)
        if tx.status == "success" and send_webhook:
            self.notify("charge.success", tx.verify_data(), launch)
        return tx

    def refund_created(self, refund_id: int, launch: Launch) -> None:
        launch(partial(self._settle_refund, refund_id))

    def transfers_created(self, references: Iterable[str], launch: Launch) -> None:
        for reference in references:
            launch(partial(self._settle_transfer, reference))

    def notify(self, event: str, data: Mapping[str, Any], launch: Launch) -> None:
        launch(partial(self._webhooks.deliver, event, data))

    async def _settle_refund(self, refund_id: int) -> None:
        await self._tracker.sleep(self._settle_delay)
        refund = self._state.settle_refund(refund_id)
        await self._webhooks.deliver(f"refund.{refund.status}", refund.webhook_data())

    async def _settle_transfer(self, reference: str) -> None:
        await self._tracker.sleep(self._settle_delay)
        transfer = self._state.settle_transfer(reference)
        await self._webhooks.deliver(f"transfer.{transfer.status}", transfer.webhook_data())
        if transfer.outcome == "reversed_after_success":
            await self._tracker.sleep(self._settle_delay)
            if transfer.status == "success":  # not reversed by hand meanwhile
                self._state.reverse_transfer(reference)
                await self._webhooks.deliver("transfer.reversed", transfer.webhook_data())
