"""Signed webhook delivery with Paystack's retry behaviour (its schedule, compressed)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from app.gateway.client import tls_context
from app.gateway.sandbox.tasks import TaskTracker
from app.gateway.signature import sign

logger = logging.getLogger(__name__)

DELIVERY_TIMEOUT_SECONDS = 10.0


def encode_event(event: str, data: Mapping[str, Any]) -> bytes:
    # Compact and UTF-8 like Paystack's bodies; receivers must hash these exact bytes.
    return json.dumps({"event": event, "data": data}, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookSender:
    def __init__(
        self,
        *,
        url: str,
        secret_key: str,
        retry_delays: tuple[float, ...],
        tracker: TaskTracker,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self._url = url
        self._secret_key = secret_key
        self._retry_delays = retry_delays
        self._tracker = tracker
        self._client = httpx.AsyncClient(transport=transport, timeout=DELIVERY_TIMEOUT_SECONDS, verify=tls_context())

    async def deliver(self, event: str, data: Mapping[str, Any]) -> None:
        """Post the event until it is accepted (2xx) or the retry schedule runs out."""
        body = encode_event(event, data)
        headers = {"content-type": "application/json", "x-paystack-signature": sign(body, self._secret_key)}
        attempts = len(self._retry_delays) + 1
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await self._tracker.sleep(self._retry_delays[attempt - 2])
            try:
                response = await self._client.post(self._url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return
                problem = f"HTTP {response.status_code}"
            logger.warning("sandbox webhook %s attempt %d/%d failed: %s", event, attempt, attempts, problem)
        logger.error("sandbox webhook %s not delivered after %d attempts; giving up", event, attempts)

    async def aclose(self) -> None:
        await self._client.aclose()
