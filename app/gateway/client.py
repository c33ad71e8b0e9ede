"""Async client for the Paystack API (and the in-process sandbox that mimics it).

One pooled `httpx.AsyncClient` per `PaystackClient`. Retries (tenacity): network errors and 5xx are
retried with exponential backoff only for calls that are safe to repeat; 429 is retried for every call
because Paystack did not process the request. A failure to connect at all is `GatewayNotReached`: the
request never left, which callers of unsafe calls (refunds) may treat as "not sent". Every answer is
checked against the documented envelope, then read with the strict models of `app.gateway.answers` into
the typed results of `app.gateway.types`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from http.cookiejar import CookieJar
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from app.core import metrics
from app.gateway.answers import (
    AnswerList,
    BalanceAnswer,
    BankAnswer,
    BulkTransferAnswerItem,
    InitializeAnswer,
    RecipientAnswer,
    RefundAnswer,
    ResolveAnswer,
    TransactionListItem,
    TransferAnswer,
    TransferListItem,
    ValidateAnswer,
    VerifyAnswer,
    bulk_results,
    parse,
)
from app.gateway.errors import (
    GatewayError,
    GatewayNotReached,
    GatewayProtocolError,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
)
from app.gateway.transport import AiohttpTransport
from app.gateway.types import (
    AccountValidation,
    Balance,
    Bank,
    BulkTransferItem,
    InitializeResult,
    RefundPage,
    RefundResult,
    ResolvedAccount,
    TransactionRecord,
    TransferRecipient,
    TransferRecord,
    TransferResult,
    VerifiedTransaction,
)

Item = TypeVar("Item", bound=BaseModel)

logger = logging.getLogger(__name__)

_BANKS_PER_PAGE: Final = 100  # Paystack's maximum; the default of 50 would cut the NGN list short.
_MAX_BANK_PAGES: Final = 50  # A cursor that never ends is a gateway bug, not a reason to loop forever.
_RECORDS_PER_PAGE: Final = 100
# 100,000 records in one window: past that, reconcile a shorter one rather than page on for ever.
_MAX_RECORD_PAGES: Final = 1000
KEEPALIVE_SECONDS: Final = 30.0  # an idle connection to the gateway is kept this long


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default certificate verification, set up once per process and shared by every client: loading
    the CA bundle takes about 40 ms, which each client made without a transport of its own paid again."""
    return httpx.create_ssl_context()


class _NoCookies(CookieJar):
    """Paystack's API is authenticated by the secret key alone: a cookie an answer sets (a CDN's, say) is not
    kept, so no call carries state from an earlier one (and no answer's cookies are parsed)."""

    def extract_cookies(self, response: object, request: object) -> None:
        return None


class PaystackClient:
    def __init__(
        self,
        *,
        base_url: str,
        secret_key: str,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff_base: float = 0.2,
        max_rate_limit_wait: float = 10.0,
        max_connections: int = 50,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not secret_key:
            raise ValueError("secret_key is required")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self._timeout = timeout
        self._max_retries = max_retries
        self.max_connections = max_connections
        self._backoff_base = backoff_base
        self._max_rate_limit_wait = max_rate_limit_wait
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"Authorization": f"Bearer {secret_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout),
            cookies=_NoCookies(),
            # The pool and TLS are the transport's (httpx ignores its own limits and verify once a transport
            # is given). Every connection stays open for reuse: closing the ones over a smaller keep-alive
            # limit meant a new TCP connection for most calls under load.
            transport=transport or AiohttpTransport(max_connections=max_connections,
                                                    keepalive_expiry=KEEPALIVE_SECONDS, tls=tls_context()),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    @functools.cached_property
    def base_url(self) -> str:
        """Where the calls go (named in readiness checks and errors)."""
        return str(self._http.base_url).rstrip("/")

    async def reachable(self) -> bool:
        """For readiness probes: does the gateway answer HTTP at all (any status counts)?"""
        probe_seconds = min(self._timeout, 2.0)
        try:
            async with asyncio.timeout(probe_seconds):
                await self._http.get("/", timeout=probe_seconds)
        except (httpx.HTTPError, TimeoutError):
            return False
        return True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # Reconciliation: what the gateway says moved

    async def list_transactions(
        self, *, start: datetime, end: datetime, status: str | None = None
    ) -> list[TransactionRecord]:
        """Charges created from `start` to `end` (GET /transaction), every page of them."""
        params: dict[str, str | int] = {"from": _paystack_time(start), "to": _paystack_time(end)}
        if status is not None:
            params["status"] = status
        items = await self._every_page("/transaction", params, TransactionListItem)
        return [item.record() for item in items]

    async def fetch_transaction_record(self, reference: str) -> TransactionRecord:
        """One charge by reference, in the list's terms (verify answers with the same object)."""
        path = f"/transaction/verify/{_segment(reference)}"
        return parse(TransactionListItem, await self._data("GET", path, retry_safe=True)).record()

    async def list_transfers(self, *, start: datetime, end: datetime) -> list[TransferRecord]:
        """Transfers created from `start` to `end` (GET /transfer), every page of them."""
        window = {"from": _paystack_time(start), "to": _paystack_time(end)}
        return [item.record() for item in await self._every_page("/transfer", window, TransferListItem)]

    async def list_refunds_between(self, *, start: datetime, end: datetime) -> list[RefundResult]:
        """Refunds created from `start` to `end` (GET /refund), every page of them, whatever the charge."""
        window = {"from": _paystack_time(start), "to": _paystack_time(end)}
        return [item.result() for item in await self._every_page("/refund", window, RefundAnswer)]

    async def _every_page(self, path: str, params: dict[str, str | int], item: type[Item]) -> list[Item]:
        """Offset pagination (`page`, `perPage`): until `meta.pageCount`, or a short page when the
        answer has no page count."""
        items: list[Item] = []
        for page in range(1, _MAX_RECORD_PAGES + 1):
            body = await self._call("GET", path, params={**params, "perPage": _RECORDS_PER_PAGE, "page": page},
                                    retry_safe=True)
            answer = parse(AnswerList[item], body)
            found = answer.data
            items += found
            page_count = answer.page_count
            last = page >= page_count if page_count is not None else len(found) < _RECORDS_PER_PAGE
            if last or not found:
                return items
        raise GatewayProtocolError(f"{path} listed more than {_MAX_RECORD_PAGES} pages; use a shorter window")

    # Collections

    async def initialize_transaction(
        self,
        *,
        email: str,
        amount: int,
        currency: str,
        reference: str,
        callback_url: str | None = None,
        metadata: dict[str, Any] | None = None,
        channels: list[str] | None = None,
    ) -> InitializeResult:
        body: dict[str, Any] = {
            "email": email,
            "amount": amount,
            "currency": currency,
            "reference": reference,
        }
        if callback_url is not None:
            body["callback_url"] = callback_url
        if metadata is not None:
            body["metadata"] = metadata
        if channels is not None:
            body["channels"] = channels
        # Safe to repeat: Paystack refuses a second use of our reference.
        data = await self._data("POST", "/transaction/initialize", json_body=body, retry_safe=True)
        return parse(InitializeAnswer, data).result()

    async def verify_transaction(self, reference: str) -> VerifiedTransaction:
        path = f"/transaction/verify/{_segment(reference)}"
        return parse(VerifyAnswer, await self._data("GET", path, retry_safe=True)).result()

    # Refunds

    async def create_refund(
        self,
        *,
        transaction: str,
        amount: int | None = None,
        currency: str | None = None,
        customer_note: str | None = None,
        merchant_note: str | None = None,
    ) -> RefundResult:
        body: dict[str, Any] = {"transaction": transaction}
        optional = {
            "amount": amount,
            "currency": currency,
            "customer_note": customer_note,
            "merchant_note": merchant_note,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        # Never repeated on an unknown outcome (timeout, 5xx, a bad answer): Paystack takes no
        # idempotency key for refunds, so a repeat could refund twice. The caller finds out what
        # happened with list_refunds (by the merchant_note it sent) or fetch_refund. An answer off the
        # contract is a GatewayProtocolError raised after the call returned: never a reason to repeat it.
        data = await self._data("POST", "/refund", json_body=body, retry_safe=False)
        return parse(RefundAnswer, data).result()

    async def fetch_refund(self, refund_id: int | str) -> RefundResult:
        data = await self._data("GET", f"/refund/{_segment(str(refund_id))}", retry_safe=True)
        return parse(RefundAnswer, data).result()

    async def list_refunds(
        self,
        *,
        transaction: str | int,
        since: datetime | None = None,
        until: datetime | None = None,
        page: int = 1,
        per_page: int = _RECORDS_PER_PAGE,
    ) -> RefundPage:
        """One page of the refunds of a charge (`transaction`: its id, or its reference), newest first,
        optionally only those made between `since` and `until`."""
        params: dict[str, str | int] = {"transaction": str(transaction), "page": page, "perPage": per_page}
        if since is not None:
            params["from"] = _paystack_time(since)
        if until is not None:
            params["to"] = _paystack_time(until)
        answer = parse(AnswerList[RefundAnswer], await self._call("GET", "/refund", params=params, retry_safe=True))
        items = [item.result() for item in answer.data]
        page_count = answer.page_count
        has_more = page < page_count if page_count is not None else len(items) >= per_page
        return RefundPage(items=items, page=page, has_more=has_more)

    # Payouts

    async def create_transfer_recipient(
        self,
        *,
        name: str,
        account_number: str,
        bank_code: str,
        currency: str,
        type: str = "nuban",
    ) -> TransferRecipient:
        body = {
            "type": type,
            "name": name,
            "account_number": account_number,
            "bank_code": bank_code,
            "currency": currency,
        }
        # Safe to repeat: registering the same account again returns the existing recipient.
        data = await self._data("POST", "/transferrecipient", json_body=body, retry_safe=True)
        return parse(RecipientAnswer, data).result()

    async def initiate_transfer(
        self, *, amount: int, recipient: str, reference: str, reason: str, currency: str
    ) -> TransferResult:
        body = {
            "source": "balance",
            "amount": amount,
            "recipient": recipient,
            "reference": reference,
            "reason": reason,
            "currency": currency,
        }
        # Safe to repeat: Paystack will not pay the same transfer reference twice.
        data = await self._data("POST", "/transfer", json_body=body, retry_safe=True)
        return parse(TransferAnswer, data).result(reference=reference)

    async def finalize_transfer(self, *, transfer_code: str, otp: str, reference: str) -> TransferResult:
        """Complete a transfer Paystack holds for an OTP (`status: otp`); answers the transfer, now queued.

        Never repeated on an unknown outcome: ask `verify_transfer` instead. A refusal (a wrong OTP, or a
        transfer no longer waiting for one) is a GatewayRejected and changed nothing. The OTP is never logged:
        the retry log names only the method and path."""
        body = {"transfer_code": transfer_code, "otp": otp}
        data = await self._data("POST", "/transfer/finalize_transfer", json_body=body, retry_safe=False)
        answer = parse(TransferAnswer, data)
        if answer.transfer_code and answer.transfer_code != transfer_code:
            raise GatewayProtocolError(f"Paystack finalized {answer.transfer_code!r}, not {transfer_code!r}")
        return answer.result(reference=reference)

    async def resend_transfer_otp(self, *, transfer_code: str) -> None:
        """Ask Paystack to send the OTP of a transfer waiting for one again (`reason: transfer`). Paystack's
        answer carries no `data`. Safe to repeat: at worst another message is sent."""
        body = {"transfer_code": transfer_code, "reason": "transfer"}
        await self._call("POST", "/transfer/resend_otp", json_body=body, retry_safe=True, needs_data=False)

    async def verify_transfer(self, reference: str) -> TransferResult:
        path = f"/transfer/verify/{_segment(reference)}"
        return parse(TransferAnswer, await self._data("GET", path, retry_safe=True)).result(reference=reference)

    async def bulk_transfer(
        self, *, currency: str, transfers: list[BulkTransferItem]
    ) -> list[TransferResult]:
        """One result for each item of the answer that can be told to be one of `transfers`.

        A transfer left without a result has an unknown outcome: ask `verify_transfer`.
        """
        body = {
            "currency": currency,
            "source": "balance",
            "transfers": [
                {"amount": t.amount, "reference": t.reference, "reason": t.reason, "recipient": t.recipient}
                for t in transfers
            ],
        }
        # Safe to repeat: every item carries our own reference.
        answer = await self._call("POST", "/transfer/bulk", json_body=body, retry_safe=True)
        return bulk_results(parse(AnswerList[BulkTransferAnswerItem], answer).data, transfers)

    async def list_banks(self, currency: str, bank_type: str | None = None) -> list[Bank]:
        """Every bank (or mobile-money operator) of `currency`, of the recipient type `bank_type` if given."""
        params: dict[str, str | int] = {
            "currency": currency,
            "perPage": _BANKS_PER_PAGE,
            "use_cursor": "true",
            **({"type": bank_type} if bank_type else {}),
        }
        banks: list[Bank] = []
        for _ in range(_MAX_BANK_PAGES):
            answer = parse(AnswerList[BankAnswer], await self._call("GET", "/bank", params=params, retry_safe=True))
            banks += [bank.result() for bank in answer.data]
            cursor = answer.next_cursor
            if not cursor:
                return banks
            params = {**params, "next": cursor}
        raise GatewayProtocolError(f"bank list did not end after {_MAX_BANK_PAGES} pages")

    async def fetch_balance(self) -> list[Balance]:
        """The integration's balance in each of its currencies."""
        answer = parse(AnswerList[BalanceAnswer], await self._call("GET", "/balance", retry_safe=True))
        return [item.result() for item in answer.data]

    async def resolve_account(self, *, account_number: str, bank_code: str) -> ResolvedAccount:
        params = {"account_number": account_number, "bank_code": bank_code}
        data = await self._data("GET", "/bank/resolve", params=params, retry_safe=True)
        return parse(ResolveAnswer, data).result()

    async def validate_account(
        self,
        *,
        bank_code: str,
        country_code: str,
        account_number: str,
        account_name: str,
        account_type: str,
        document_type: str,
        document_number: str,
    ) -> AccountValidation:
        """South Africa's account check (POST /bank/validate): the holder's name and document against the
        bank's records. An answer with `verified: false` is a verdict, not an error."""
        body = {
            "bank_code": bank_code,
            "country_code": country_code,
            "account_number": account_number,
            "account_name": account_name,
            "account_type": account_type,
            "document_type": document_type,
            "document_number": document_number,
        }
        # Safe to repeat: a check that changes nothing at Paystack.
        data = await self._data("POST", "/bank/validate", json_body=body, retry_safe=True)
        return parse(ValidateAnswer, data).result()

    # Transport

    async def _data(
        self,
        method: str,
        path: str,
        *,
        retry_safe: bool,
        json_body: dict[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> Any:
        body = await self._call(method, path, json_body=json_body, params=params, retry_safe=retry_safe)
        return body["data"]

    async def _call(
        self,
        method: str,
        path: str,
        *,
        retry_safe: bool,
        json_body: dict[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        needs_data: bool = True,
    ) -> dict[str, Any]:
        """Send, again while `_worth_another_try` says so, at most `max_retries` more times; return the
        success envelope (`status: true`, with `data` unless `needs_data` is False), or raise the last failure."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._max_retries + 1),
            retry=retry_if_exception(partial(self._worth_another_try, retry_safe=retry_safe)),
            wait=self._wait_before_retry,
            sleep=self._sleep_before_retry,
            before_sleep=partial(self._log_retry, method, path),
            reraise=True,
        )
        # One retrying object per call: tenacity keeps its state on it.
        async for attempt in retrying:
            with attempt:
                return await self._attempt(method, path, json_body, params, attempt.retry_state.attempt_number - 1,
                                           needs_data=needs_data)
        raise AssertionError("tenacity returns the answer or raises the last failure")

    async def _attempt(
        self,
        method: str,
        path: str,
        json_body: dict[str, Any] | None,
        params: Mapping[str, str | int] | None,
        attempt: int,
        *,
        needs_data: bool = True,
    ) -> dict[str, Any]:
        """Send once; a failure is the GatewayError saying whether the request left and was answered."""
        started = time.perf_counter()
        outcome = "error"
        try:
            answer = await self._send(method, path, json_body, params, attempt, needs_data=needs_data)
            outcome = "success"
            return answer
        except GatewayError as error:
            outcome = next((_OUTCOMES[kind] for kind in type(error).__mro__ if kind in _OUTCOMES), "error")
            raise
        finally:
            metrics.GATEWAY_CALL_DURATION.labels(method, metrics.gateway_endpoint(path), outcome).observe(
                time.perf_counter() - started)

    async def _send(
        self,
        method: str,
        path: str,
        json_body: dict[str, Any] | None,
        params: Mapping[str, str | int] | None,
        attempt: int,
        *,
        needs_data: bool,
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._timeout):
                # The whole address: httpx parses a path relative to base_url once more to join them.
                response = await self._http.request(method, self.base_url + path, json=json_body, params=params)
        # TimeoutError: the overall deadline, which also covers transports that ignore httpx timeouts.
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise GatewayNotReached(
                f"could not connect to Paystack at {self._http.base_url}: {type(exc).__name__}: {exc}") from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise GatewayTimeout(
                f"Paystack at {self._http.base_url} did not answer {method} {path} within {self._timeout}s") from exc
        except httpx.TransportError as exc:
            raise GatewayUnavailable(
                f"could not reach Paystack at {self._http.base_url}: {type(exc).__name__}: {exc}") from exc
        except httpx.DecodingError as exc:
            raise GatewayProtocolError(f"Paystack answered with an undecodable body: {exc}") from exc
        if response.status_code == 429:
            # Paystack says when to come back; without that, the usual backoff.
            wait = _rate_limit_wait(response)
            error_body = _error_body(response)
            raise GatewayUnavailable(
                _message(error_body, 429),
                status_code=429,
                gateway_code=_code(error_body),
                retry_after=self._backoff(attempt) if wait is None else wait,
            )
        if response.status_code >= 500:
            error_body = _error_body(response)
            raise GatewayUnavailable(
                _message(error_body, response.status_code),
                status_code=response.status_code,
                gateway_code=_code(error_body),
            )
        return _envelope(response, needs_data=needs_data)

    def _worth_another_try(self, error: BaseException, *, retry_safe: bool) -> bool:
        """A 429 is retried for every call, Paystack did not process it, unless the wait it asks for is too
        long. Network errors, timeouts and 5xx leave the outcome unknown: only calls safe to repeat are sent
        again. Refusals (4xx) and answers off the contract are final."""
        if not isinstance(error, GatewayUnavailable):
            return False
        if error.status_code == 429:
            return error.retry_after is not None and error.retry_after <= self._max_rate_limit_wait
        return retry_safe

    def _wait_before_retry(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, GatewayUnavailable) and error.status_code == 429 and error.retry_after is not None:
            return error.retry_after
        return self._backoff(state.attempt_number - 1)

    async def _sleep_before_retry(self, seconds: float) -> None:
        # Looked up on every wait, so that tests can replace `_sleep` on a client already made.
        await self._sleep(seconds)

    def _log_retry(self, method: str, path: str, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.upcoming_sleep
        if isinstance(error, GatewayUnavailable) and error.status_code == 429:
            logger.warning("Paystack rate limit on %s %s; retry %d of %d in %.2fs",
                           method, path, state.attempt_number, self._max_retries, delay)
        else:
            logger.warning("Paystack %s %s failed (%s); retry %d of %d in %.2fs",
                           method, path, error, state.attempt_number, self._max_retries, delay)

    def _backoff(self, attempt: int) -> float:
        delay = self._backoff_base * 2**attempt
        # Jitter spreads out workers that failed together so they do not retry in lockstep.
        return delay + random.uniform(0, delay / 10)


# Answer parsing


# The outcome label of one gateway request, by the failure it ended in (its nearest class listed here).
_OUTCOMES: Final[dict[type[GatewayError], str]] = {
    GatewayRejected: "rejected",
    GatewayTimeout: "timeout",
    GatewayNotReached: "not_reached",
    GatewayUnavailable: "unavailable",
    GatewayProtocolError: "protocol_error",
}


def _envelope(response: httpx.Response, *, needs_data: bool = True) -> dict[str, Any]:
    status_code = response.status_code
    if 400 <= status_code < 500:
        error_body = _error_body(response)
        raise GatewayRejected(
            _message(error_body, status_code), status_code=status_code, gateway_code=_code(error_body)
        )
    if not 200 <= status_code < 300:
        raise GatewayProtocolError(f"unexpected HTTP {status_code} from Paystack", status_code=status_code)
    try:
        body = response.json()
    except ValueError as exc:
        raise GatewayProtocolError("Paystack answered with malformed JSON", status_code=status_code) from exc
    if not isinstance(body, dict):
        raise GatewayProtocolError(
            "Paystack answered with JSON that is not an object", status_code=status_code
        )
    if body.get("status") is False:
        raise GatewayRejected(_message(body, status_code), status_code=status_code, gateway_code=_code(body))
    if body.get("status") is not True or (needs_data and "data" not in body):
        raise GatewayProtocolError(
            f"Paystack answer lacks the success envelope: {_message(body, status_code)}",
            status_code=status_code,
        )
    return body


def _error_body(response: httpx.Response) -> dict[str, Any]:
    """An error answer's JSON object, or {} when there is none: the status code still tells the outcome."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(body: dict[str, Any], status_code: int) -> str:
    message = body.get("message")
    return message if isinstance(message, str) and message else f"Paystack answered HTTP {status_code}"


def _code(body: dict[str, Any]) -> str | None:
    code = body.get("code")
    return code if isinstance(code, str) and code else None


def _rate_limit_wait(response: httpx.Response) -> float | None:
    for header in ("x-ratelimit-reset", "retry-after"):
        raw = response.headers.get(header)
        if raw is None:
            continue
        try:
            wait = float(raw)
        except ValueError:
            continue
        if wait >= 0:
            return wait
    return None


def _segment(value: str) -> str:
    """Quote a value for use as one path segment, so a reference can never reach another endpoint."""
    if value in ("", ".", ".."):
        raise ValueError(f"invalid path segment: {value!r}")
    return quote(value, safe="")


def _paystack_time(moment: datetime) -> str:
    """A list filter's timestamp: UTC, milliseconds, `Z`, as Paystack writes its own."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
