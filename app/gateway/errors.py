"""What can go wrong when talking to Paystack (or the sandbox).

The HTTP layer renders every GatewayError as 502 GATEWAY_ERROR with the gateway's
message in `details`; callers that must tell "rejected" from "unknown outcome"
(payouts, refunds) catch the subclasses.
"""

from __future__ import annotations

from app.core.errors import UpstreamError


class GatewayError(UpstreamError):
    """The gateway did not give a usable answer."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        gateway_code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.gateway_code = gateway_code
        self.retry_after = retry_after

    def details(self) -> dict[str, object]:
        details: dict[str, object] = {"gateway_message": self.message}
        if self.status_code is not None:
            details["gateway_status"] = self.status_code
        if self.gateway_code:
            details["gateway_code"] = self.gateway_code
        if self.retry_after is not None:
            details["retry_after"] = self.retry_after
        return details


class GatewayRejected(GatewayError):
    """Paystack answered and said no (`status: false`, 4xx): the call had no effect."""

    @property
    def refuses_our_credentials(self) -> bool:
        """A refusal of our secret key or integration (401, 403), not of what the call asked: an error of ours
        to fix, never one for the caller to correct."""
        return self.status_code in (401, 403)


class GatewayUnavailable(GatewayError):
    """Network error, 5xx or 429 after the allowed retries: the call may or may not have taken effect."""


class GatewayTimeout(GatewayUnavailable):
    """No answer in time: the outcome is unknown, never a failure."""


class GatewayNotReached(GatewayUnavailable):
    """No connection to Paystack could be made: the request never left, so the call had no effect."""


class GatewayProtocolError(GatewayError):
    """The answer was not what Paystack's API promises (malformed JSON, missing fields)."""
