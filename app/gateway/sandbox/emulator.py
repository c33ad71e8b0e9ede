"""The Sandbox: an in-process emulator of Paystack's API, served over HTTP by the routes of `router`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import httpx
from fastapi import FastAPI

from app.gateway.sandbox.faults import SandboxFaults
from app.gateway.sandbox.records import (
    ChargeOutcome,
    Dispute,
    DisputeResolution,
    Recipient,
    Refund,
    Transaction,
    Transfer,
)
from app.gateway.sandbox.router import MOUNT_PREFIX, SANDBOX_ROUTES, SandboxWiring
from app.gateway.sandbox.settlement import Settlements
from app.gateway.sandbox.state import SandboxState
from app.gateway.sandbox.tasks import TaskTracker
from app.gateway.sandbox.webhooks import WebhookSender


class Sandbox:
    """Paystack as the service sees it: API, checkout page, settlements and signed webhooks.

    `serve_from(app)` serves it from an app, under MOUNT_PREFIX. Charges settle when the customer
    chooses an outcome at checkout (or `settle_charge`); refunds and transfers settle by
    themselves `settle_delay` seconds after they are made. Webhooks go to `webhook_url`,
    retried after each of `webhook_retry_delays` seconds when not answered with 2xx.
    """

    def __init__(
        self,
        *,
        secret_key: str,
        public_base_url: str,
        webhook_url: str,
        settle_delay: float = 1.0,
        webhook_retry_delays: Sequence[float] = (5, 15, 60, 180),
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        transfer_otp: bool = False,
    ) -> None:
        retry_delays = tuple(webhook_retry_delays)
        if settle_delay < 0 or any(delay < 0 for delay in retry_delays):
            raise ValueError("delays must not be negative")
        self.faults = SandboxFaults()
        self._state = SandboxState(self.faults)
        self._state.transfer_otp = transfer_otp
        self._tracker = TaskTracker()
        self._webhooks = WebhookSender(
            url=webhook_url,
            secret_key=secret_key,
            retry_delays=retry_delays,
            tracker=self._tracker,
            transport=webhook_transport,
        )
        self._settlements = Settlements(
            state=self._state, tracker=self._tracker, webhooks=self._webhooks, settle_delay=settle_delay
        )
        self.wiring = SandboxWiring(
            state=self._state,
            faults=self.faults,
            tracker=self._tracker,
            settlements=self._settlements,
            secret_key=secret_key,
            checkout_base_url=f"{public_base_url.rstrip('/')}{MOUNT_PREFIX}/checkout",
        )

    def serve_from(self, app: FastAPI) -> None:
        """Add the sandbox's routes (Paystack's API, checkout, control) to `app`, under MOUNT_PREFIX and out of its
        OpenAPI schema. The routes are the same objects in every app; they find this sandbox in `app.state`."""
        app.state.sandbox = self
        app.router.routes.insert(0, SANDBOX_ROUTES)

    @property
    def transactions(self) -> Mapping[str, Transaction]:
        """By reference."""
        return self._state.transactions

    @property
    def transfers(self) -> Mapping[str, Transfer]:
        """By reference."""
        return self._state.transfers

    @property
    def transfer_history(self) -> Sequence[Transfer]:
        """Every transfer made, oldest first, retries of one reference included (`transfers` keeps the latest)."""
        return self._state.transfer_history

    @property
    def refunds(self) -> Mapping[int, Refund]:
        """By refund id."""
        return self._state.refunds

    @property
    def recipients(self) -> Mapping[str, Recipient]:
        """By recipient code."""
        return self._state.recipients

    @property
    def customer_pays_fees(self) -> bool:
        """Paystack's integration setting: charges made while it is on add their fees to what the
        customer pays (verify's `amount` = `requested_amount` + `fees`). Off by default."""
        return self._state.customer_pays_fees

    @customer_pays_fees.setter
    def customer_pays_fees(self, value: bool) -> None:
        self._state.customer_pays_fees = value

    @property
    def transfer_otp(self) -> bool:
        """Paystack's integration setting: transfers answer `otp` and wait for POST /transfer/finalize_transfer
        with the test OTP (`TEST_TRANSFER_OTP`, 123456); bulk transfers are refused. Off by default."""
        return self._state.transfer_otp

    @transfer_otp.setter
    def transfer_otp(self, value: bool) -> None:
        self._state.transfer_otp = value

    @property
    def balances(self) -> Mapping[str, int]:
        """What GET /balance shows per currency, in subunits; transfers draw on it."""
        return self._state.balances

    def set_balance(self, currency: str, amount: int) -> None:
        """Set the integration's balance in `currency` (subunits). ValueError: unknown currency or bad amount."""
        self._state.set_balance(currency, amount)

    @property
    def otp_resends(self) -> Mapping[str, int]:
        """Transfer code -> how many times its OTP was sent again."""
        return self._state.otp_resends

    @property
    def disputes(self) -> Mapping[str, Dispute]:
        """The latest dispute of each transaction, by transaction reference."""
        return self._state.disputes

    # `timeout` also decides which pending retries count as due, so asyncio.timeout around the call cannot replace it.
    async def wait_idle(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait for every settlement and webhook delivery, retries due within `timeout` included.

        Retries due later are left pending. TimeoutError if work due in time is still running.
        """
        await self._tracker.wait_idle(timeout)

    async def aclose(self) -> None:
        await self._tracker.aclose()
        await self._webhooks.aclose()

    def settle_charge(self, reference: str, outcome: ChargeOutcome, *, send_webhook: bool = True) -> None:
        """What the checkout POST does. KeyError: unknown reference; ValueError: already settled.

        The charge.success webhook is delivered in the background (see wait_idle).
        """
        self._settlements.settle_charge(reference, outcome, send_webhook=send_webhook, launch=self._tracker.launch)

    async def reverse_transfer(self, reference: str, *, send_webhook: bool = True) -> None:
        """The receiving bank sends a successful transfer back (`transferred_at` stays set).

        Returns once transfer.reversed has been delivered or given up on.
        KeyError: unknown reference; ValueError: not a successful transfer.
        """
        transfer = self._state.reverse_transfer(reference)
        if send_webhook:
            await self._deliver("transfer.reversed", transfer.webhook_data())

    async def open_dispute(self, reference: str, *, amount: int | None = None) -> None:
        """Open a chargeback on a successful charge (default: its whole amount).

        Returns once charge.dispute.create has been delivered or given up on.
        KeyError: unknown reference; ValueError: not a successful charge, or a dispute is already open.
        """
        dispute = self._state.open_dispute(reference, amount)
        await self._deliver("charge.dispute.create", dispute.webhook_data())

    async def resolve_dispute(self, reference: str, *, resolution: DisputeResolution) -> None:
        """Close the open dispute; returns once charge.dispute.resolve has been delivered or given up on.

        KeyError: unknown reference; ValueError: no open dispute.
        """
        dispute = self._state.resolve_dispute(reference, resolution)
        await self._deliver("charge.dispute.resolve", dispute.webhook_data())

    async def _deliver(self, event: str, data: Mapping[str, Any]) -> None:
        # A tracked task, so aclose stops it; shielded, so a caller that gives up does not cancel it.
        await asyncio.shield(self._tracker.launch(partial(self._webhooks.deliver, event, data)))
