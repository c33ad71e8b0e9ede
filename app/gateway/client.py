"""Async client for the Paystack API (and the in-process sandbox that mimics it).

One pooled `httpx.AsyncClient` per `PaystackClient`. Network errors and 5xx are retried with
exponential backoff only for calls that are safe to repeat; 429 is retried for every call because
Paystack did not process the request. A failure to connect at all is `GatewayNotReached`: the
request never left, which callers of unsafe calls (refunds) may treat as "not sent". Every answer is
checked against the documented envelope and turned into the typed results of `app.gateway.types`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import ssl
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import quote

import httpx

from app.gateway.errors import (
    GatewayError,
    GatewayNotReached,
    GatewayProtocolError,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
)
from app.gateway.types import (
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

logger = logging.getLogger(__name__)

_BANKS_PER_PAGE: Final = 100  # Paystack's maximum; the default of 50 would cut the NGN list short.
_MAX_BANK_PAGES: Final = 50  # A cursor that never ends is a gateway bug, not a reason to loop forever.
_RECORDS_PER_PAGE: Final = 100
# 100,000 records in one window: past that, reconcile a shorter one rather than page on for ever.
_MAX_RECORD_PAGES: Final = 1000


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default certificate verification, set up once per process and shared by every client: loading
    the CA bundle takes about 40 ms, which each client made without a transport of its own paid again."""
    return httpx.create_ssl_context()


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
            # every connection stays open for reuse: closing the ones over a smaller keep-alive
            # limit meant a new TCP connection for most calls under load
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                                keepalive_expiry=30.0),
            transport=transport,
            verify=tls_context(),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

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
        items = await self._every_page("/transaction", params)
        return [_transaction_record(_Fields(item, "transaction")) for item in items]

    async def fetch_transaction_record(self, reference: str) -> TransactionRecord:
        """One charge by reference, in the list's terms (verify answers with the same object)."""
        path = f"/transaction/verify/{_segment(reference)}"
        return _transaction_record(_Fields(await self._data("GET", path, retry_safe=True)))

    async def list_transfers(self, *, start: datetime, end: datetime) -> list[TransferRecord]:
        """Transfers created from `start` to `end` (GET /transfer), every page of them."""
        items = await self._every_page("/transfer", {"from": _paystack_time(start), "to": _paystack_time(end)})
        return [_transfer_record(_Fields(item, "transfer")) for item in items]

    async def list_refunds_between(self, *, start: datetime, end: datetime) -> list[RefundResult]:
        """Refunds created from `start` to `end` (GET /refund), every page of them, whatever the charge."""
        items = await self._every_page("/refund", {"from": _paystack_time(start), "to": _paystack_time(end)})
        return [_refund(_Fields(item, "refund")) for item in items]

    async def _every_page(self, path: str, params: dict[str, str | int]) -> list[Any]:
        """Offset pagination (`page`, `perPage`): until `meta.pageCount`, or a short page when the
        answer has no page count."""
        items: list[Any] = []
        for page in range(1, _MAX_RECORD_PAGES + 1):
            body = await self._call("GET", path, params={**params, "perPage": _RECORDS_PER_PAGE, "page": page},
                                    retry_safe=True)
            found = _list(body["data"], "data")
            items += found
            page_count = _Fields(body.get("meta") or {}, "meta").opt_int("pageCount")
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
        data = _Fields(await self._data("POST", "/transaction/initialize", json_body=body, retry_safe=True))
        return InitializeResult(
            authorization_url=data.req_str("authorization_url"),
            access_code=data.req_str("access_code"),
            reference=data.req_str("reference"),
        )

    async def verify_transaction(self, reference: str) -> VerifiedTransaction:
        path = f"/transaction/verify/{_segment(reference)}"
        return _verified_transaction(_Fields(await self._data("GET", path, retry_safe=True)))

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
        # happened with list_refunds (by the merchant_note it sent) or fetch_refund.
        data = await self._data("POST", "/refund", json_body=body, retry_safe=False)
        return _refund(_Fields(data))

    async def fetch_refund(self, refund_id: int | str) -> RefundResult:
        return _refund(
            _Fields(await self._data("GET", f"/refund/{_segment(str(refund_id))}", retry_safe=True))
        )

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
        body = await self._call("GET", "/refund", params=params, retry_safe=True)
        items = [_refund(_Fields(item, "refund")) for item in _list(body["data"], "data")]
        meta = _Fields(body.get("meta") or {}, "meta")
        page_count = meta.opt_int("pageCount")
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
        data = _Fields(await self._data("POST", "/transferrecipient", json_body=body, retry_safe=True))
        details = data.opt_obj("details")
        account_number_seen = details.opt_str("account_number") if details else None
        return TransferRecipient(
            recipient_code=data.req_str("recipient_code"),
            name=data.req_str("name"),
            bank_code=details.opt_str("bank_code") if details else None,
            account_last4=account_number_seen[-4:] if account_number_seen else None,
        )

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
        data = _Fields(await self._data("POST", "/transfer", json_body=body, retry_safe=True))
        return _transfer(data, reference=reference)

    async def verify_transfer(self, reference: str) -> TransferResult:
        path = f"/transfer/verify/{_segment(reference)}"
        return _transfer(_Fields(await self._data("GET", path, retry_safe=True)), reference=reference)

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
        data = await self._data("POST", "/transfer/bulk", json_body=body, retry_safe=True)
        return _bulk_results([_Fields(item, "data[]") for item in _list(data, "data")], transfers)

    async def list_banks(self, currency: str) -> list[Bank]:
        params: dict[str, str | int] = {
            "currency": currency,
            "perPage": _BANKS_PER_PAGE,
            "use_cursor": "true",
        }
        banks: list[Bank] = []
        for _ in range(_MAX_BANK_PAGES):
            body = await self._call("GET", "/bank", params=params, retry_safe=True)
            for item in _list(body["data"], "data"):
                bank = _Fields(item, "bank")
                banks.append(
                    Bank(
                        name=bank.req_str("name"),
                        code=bank.req_str("code"),
                        currency=bank.req_str("currency"),
                    )
                )
            meta = _Fields(body.get("meta") or {}, "meta")
            cursor = meta.opt_str("next")
            if not cursor:
                return banks
            params = {**params, "next": cursor}
        raise GatewayProtocolError(f"bank list did not end after {_MAX_BANK_PAGES} pages")

    async def fetch_balance(self) -> list[Balance]:
        """The integration's balance in each of its currencies."""
        data = await self._data("GET", "/balance", retry_safe=True)
        balances = [_Fields(item, "data[]") for item in _list(data, "data")]
        return [Balance(currency=item.req_str("currency"), balance=item.req_int("balance")) for item in balances]

    async def resolve_account(self, *, account_number: str, bank_code: str) -> ResolvedAccount:
        params = {"account_number": account_number, "bank_code": bank_code}
        data = _Fields(await self._data("GET", "/bank/resolve", params=params, retry_safe=True))
        return ResolvedAccount(
            account_number=data.req_str("account_number"),
            account_name=data.req_str("account_name"),
            bank_id=data.opt_int("bank_id"),
        )

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
    ) -> dict[str, Any]:
        """Send with retries; return the success envelope (`status: true`, with `data`)."""
        attempt = 0
        while True:
            is_last = attempt >= self._max_retries
            failure: GatewayError
            try:
                async with asyncio.timeout(self._timeout):
                    response = await self._http.request(method, path, json=json_body, params=params)
            # TimeoutError: the overall deadline, which also covers transports that ignore httpx timeouts.
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                failure = GatewayNotReached(f"could not connect to Paystack: {type(exc).__name__}: {exc}")
                failure.__cause__ = exc
            except (httpx.TimeoutException, TimeoutError) as exc:
                failure = GatewayTimeout(f"Paystack did not answer {method} {path} within {self._timeout}s")
                failure.__cause__ = exc
            except httpx.TransportError as exc:
                failure = GatewayUnavailable(f"could not reach Paystack: {type(exc).__name__}: {exc}")
                failure.__cause__ = exc
            except httpx.DecodingError as exc:
                raise GatewayProtocolError(f"Paystack answered with an undecodable body: {exc}") from exc
            else:
                if response.status_code == 429:
                    wait = _rate_limit_wait(response)
                    if wait is None:
                        wait = self._backoff(attempt)
                    error_body = _error_body(response)
                    if is_last or wait > self._max_rate_limit_wait:
                        raise GatewayUnavailable(
                            _message(error_body, response.status_code),
                            status_code=429,
                            gateway_code=_code(error_body),
                            retry_after=wait,
                        )
                    logger.warning(
                        "Paystack rate limit on %s %s; retry %d of %d in %.2fs",
                        method,
                        path,
                        attempt + 1,
                        self._max_retries,
                        wait,
                    )
                    await self._sleep(wait)
                    attempt += 1
                    continue
                if response.status_code < 500:
                    return _envelope(response)
                error_body = _error_body(response)
                failure = GatewayUnavailable(
                    _message(error_body, response.status_code),
                    status_code=response.status_code,
                    gateway_code=_code(error_body),
                )
            if is_last or not retry_safe:
                raise failure
            delay = self._backoff(attempt)
            logger.warning(
                "Paystack %s %s failed (%s); retry %d of %d in %.2fs",
                method,
                path,
                failure.message,
                attempt + 1,
                self._max_retries,
                delay,
            )
            await self._sleep(delay)
            attempt += 1

    def _backoff(self, attempt: int) -> float:
        delay = self._backoff_base * 2**attempt
        # Jitter spreads out workers that failed together so they do not retry in lockstep.
        return delay + random.uniform(0, delay / 10)


# Answer parsing


def _envelope(response: httpx.Response) -> dict[str, Any]:
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
    if body.get("status") is not True or "data" not in body:
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


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise GatewayProtocolError(f"Paystack answer: {what} is not a list")
    return value


class _Fields:
    """Typed access to one JSON object of an answer; anything off-contract is a GatewayProtocolError."""

    def __init__(self, value: object, what: str = "data") -> None:
        if not isinstance(value, dict):
            raise GatewayProtocolError(f"Paystack answer: {what} is not an object")
        self._value: dict[str, Any] = value
        self._what = what

    def _bad(self, key: str, expected: str) -> GatewayProtocolError:
        return GatewayProtocolError(f"Paystack answer: {self._what}.{key} is missing or not {expected}")

    def raw(self, key: str) -> Any:
        return self._value.get(key)

    def req_str(self, key: str) -> str:
        value = self._value.get(key)
        if not isinstance(value, str) or not value:
            raise self._bad(key, "a non-empty string")
        return value

    def opt_str(self, key: str) -> str | None:
        value = self._value.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self._bad(key, "a string")

    def req_int(self, key: str) -> int:
        value = self._value.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._bad(key, "an integer")
        return value

    def opt_int(self, key: str) -> int | None:
        if self._value.get(key) is None:
            return None
        return self.req_int(key)

    def opt_obj(self, key: str) -> _Fields | None:
        value = self._value.get(key)
        # Paystack sends null, {} or [] for an absent nested object.
        if not value:
            return None
        return _Fields(value, f"{self._what}.{key}")


def _verified_transaction(data: _Fields) -> VerifiedTransaction:
    authorization = data.opt_obj("authorization")
    customer = data.opt_obj("customer")
    return VerifiedTransaction(
        id=data.req_int("id"),
        status=data.req_str("status"),
        reference=data.req_str("reference"),
        amount=data.req_int("amount"),
        currency=data.req_str("currency"),
        paid_at=_timestamp(data.opt_str("paid_at")),
        channel=data.opt_str("channel"),
        gateway_response=data.opt_str("gateway_response"),
        fees=data.opt_int("fees"),
        metadata=_metadata(data.raw("metadata")),
        authorization_code=authorization.opt_str("authorization_code") if authorization else None,
        customer_email=customer.opt_str("email") if customer else None,
        requested_amount=data.opt_int("requested_amount"),
    )


def _metadata(value: object) -> dict[str, Any]:
    """The charge's metadata object. Paystack answers "" or 0 (its documented charge.success body) when
    there is none: nothing the service relies on is in metadata, so anything but an object reads as empty
    rather than failing the charge."""
    if isinstance(value, str):
        # Metadata sent as a JSON string comes back as that string.
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return {}
    return value if isinstance(value, dict) else {}


def _timestamp(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise GatewayProtocolError(f"Paystack answer: unreadable timestamp {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _refund(data: _Fields) -> RefundResult:
    # Create answers with the whole transaction object; fetch and list with its id (and sometimes a
    # transaction_reference); fetch and create say createdAt, list says created_at.
    if isinstance(data.raw("transaction"), dict):
        charge = data.opt_obj("transaction")
        transaction_id = charge.opt_int("id") if charge else None
        transaction_reference = charge.opt_str("reference") if charge else None
    else:
        transaction_id = data.opt_int("transaction")
        transaction_reference = data.opt_str("transaction_reference")
    return RefundResult(
        id=data.req_int("id"),
        status=data.req_str("status"),
        amount=data.req_int("amount"),
        currency=data.req_str("currency"),
        transaction_reference=transaction_reference,
        transaction_id=transaction_id,
        merchant_note=data.opt_str("merchant_note"),
        created_at=_timestamp(data.opt_str("createdAt") or data.opt_str("created_at")),
    )


def _paystack_time(moment: datetime) -> str:
    """A list filter's timestamp: UTC, milliseconds, `Z`, as Paystack writes its own."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _transfer(data: _Fields, *, reference: str) -> TransferResult:
    """The answer about the transfer under our `reference`. Older answers (the OTP one among them)
    leave the reference out; one that names another transfer is off the contract."""
    answered = data.opt_str("reference")
    if answered and answered != reference:
        raise GatewayProtocolError(f"Paystack answered about transfer {answered!r}, not {reference!r}")
    return TransferResult(
        reference=reference,
        transfer_code=data.opt_str("transfer_code"),
        status=data.req_str("status"),
        amount=data.req_int("amount"),
        currency=data.req_str("currency"),
    )


def _bulk_results(items: list[_Fields], sent: list[BulkTransferItem]) -> list[TransferResult]:
    """Match a bulk answer's items to the transfers we sent. An item with a reference is that transfer.
    Older answers give neither reference nor status: such an item is matched only when its recipient
    and amount single out one transfer, among those sent and among the answer's unreferenced items;
    anything else is left without a result (unknown outcome), never guessed."""
    sent_references = {transfer.reference for transfer in sent}
    referenced = {reference for item in items if (reference := item.opt_str("reference"))}
    if foreign := referenced - sent_references:
        raise GatewayProtocolError(f"Paystack's bulk answer names transfers we did not send: {sorted(foreign)}")
    candidates: dict[tuple[str | None, int], list[str]] = defaultdict(list)
    for transfer in sent:
        if transfer.reference not in referenced:
            candidates[(transfer.recipient, transfer.amount)].append(transfer.reference)
    unreferenced = Counter(_recipient_and_amount(item) for item in items if not item.opt_str("reference"))
    results = []
    for item in items:
        reference = item.opt_str("reference")
        if not reference:
            key = _recipient_and_amount(item)
            if len(candidates[key]) != 1 or unreferenced[key] != 1:
                continue
            [reference] = candidates[key]
        results.append(
            TransferResult(
                reference=reference,
                transfer_code=item.opt_str("transfer_code"),
                status=item.opt_str("status") or None,
                amount=item.req_int("amount"),
                currency=item.req_str("currency"),
            )
        )
    return results


def _recipient_and_amount(item: _Fields) -> tuple[str | None, int]:
    """A bulk item's recipient code (None if the answer names it otherwise) and amount."""
    recipient = item.raw("recipient")
    return recipient if isinstance(recipient, str) else None, item.req_int("amount")


def _created_at(data: _Fields) -> datetime | None:
    # List items name it both ways, older ones only in camel case.
    return _timestamp(data.opt_str("created_at") or data.opt_str("createdAt"))


def _transaction_record(data: _Fields) -> TransactionRecord:
    return TransactionRecord(
        id=data.req_int("id"),
        reference=data.req_str("reference"),
        status=data.req_str("status"),
        amount=data.req_int("amount"),
        requested_amount=data.opt_int("requested_amount"),
        currency=data.req_str("currency"),
        paid_at=_timestamp(data.opt_str("paid_at") or data.opt_str("paidAt")),
        created_at=_created_at(data),
    )


def _transfer_record(data: _Fields) -> TransferRecord:
    return TransferRecord(
        reference=data.opt_str("reference"),
        transfer_code=data.opt_str("transfer_code"),
        status=data.req_str("status"),
        amount=data.req_int("amount"),
        currency=data.req_str("currency"),
        created_at=_created_at(data),
    )
