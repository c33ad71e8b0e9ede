"""HTTP face of the sandbox: Paystack's API paths, the checkout page and the control routes.

The routes are built once per process, under MOUNT_PREFIX, and work on the sandbox of the app that
serves them (`Sandbox.serve_from`): FastAPI's analysis of each route is paid once instead of once per
sandbox, and FastAPI's caches keyed by endpoint keep no sandbox (nor its app) alive.

Annotations are evaluated at import (no `from __future__ import annotations`) because
FastAPI reads the endpoints' signatures.
"""

import asyncio
import hmac
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute

from app.core.routing import RoutesUnder
from app.gateway.sandbox import fields
from app.gateway.sandbox.banks import (
    ACCOUNT_TYPES,
    DOCUMENT_TYPES,
    VALIDATING_COUNTRIES,
    find_bank,
    list_banks,
    resolve_account_name,
    resolving_bank,
    validation_failure,
)
from app.gateway.sandbox.checkout import checkout_page, message_page, result_page
from app.gateway.sandbox.envelope import PaystackError, invalid, not_found, ok
from app.gateway.sandbox.faults import SandboxFaults
from app.gateway.sandbox.listing import ListQuery
from app.gateway.sandbox.records import DISPUTE_RESOLUTIONS, parse_charge_outcome
from app.gateway.sandbox.settlement import Settlements
from app.gateway.sandbox.state import SandboxState
from app.gateway.sandbox.tasks import AfterResponse, TaskTracker

# Where a host app serves the sandbox; checkout URLs are built under it.
MOUNT_PREFIX = "/sandbox/paystack"
Handler = Callable[[Request], Coroutine[Any, Any, Response]]
DISCONNECT_POLL_SECONDS = 0.1
# An answer cut short: the start of a success envelope.
MALFORMED_BODY = b'{"status":true,"message":"OK","data":{"id":'
# What access logs show for a request whose caller went away first (nginx's convention); never sent.
CLIENT_CLOSED_REQUEST = 499


@dataclass(frozen=True)
class SandboxWiring:
    """What the routes work on: the parts of one sandbox."""

    state: SandboxState
    faults: SandboxFaults
    tracker: TaskTracker
    settlements: Settlements
    secret_key: str
    checkout_base_url: str


def _wiring(request: Request) -> SandboxWiring:
    """The sandbox of the app serving the request (`Sandbox.serve_from` put it in the app's state)."""
    wiring: SandboxWiring = request.app.state.sandbox.wiring
    return wiring


async def _after_response(request: Request) -> AsyncIterator[AfterResponse]:
    """FastAPI dependency giving a request an AfterResponse.

    FastAPI closes request-scoped dependencies after the response has been sent, and
    also when the request is cancelled (a client that gave up), so held work always starts.
    """
    pending = AfterResponse(_wiring(request).tracker)
    try:
        yield pending
    finally:
        pending.release()


def _invalid_key() -> PaystackError:
    return PaystackError(
        401,
        "Invalid key",
        code="invalid_key",
        next_step="Ensure that you provide the correct authorization key for the request",
    )


def _injected_failure(status: int) -> PaystackError:
    if status == 429:
        return PaystackError(
            429,
            "Rate limit exceeded",
            error_type="api_error",
            code="rate_limit_exceeded",
            next_step="Retry after the number of seconds in x-ratelimit-reset",
            headers={"x-ratelimit-reset": "1"},
        )
    return PaystackError(
        status,
        f"Sandbox fault: injected HTTP {status}",
        error_type="api_error" if status >= 500 else "validation_error",
        code="unknown" if status >= 500 else "invalid_params",
        next_step="Try again later",
    )


async def _withhold_answer(request: Request, delay: float) -> None:
    """The call has taken effect; holding its answer makes the client give up not knowing the outcome.

    Stops early once the client has hung up, so that the work held until the request is
    over (settlement, webhooks) starts about when it would have at Paystack.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    while (remaining := deadline - loop.time()) > 0:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(remaining, DISCONNECT_POLL_SECONDS))


def _authorized(request: Request, secret_key: str) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    try:
        given = credentials.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(given, secret_key.encode())


class _EnvelopeRoute(APIRoute):
    """Renders PaystackError itself: the host app's handlers would reshape an HTTPException. A caller
    that hangs up before its body has arrived (a service killed mid-call) changed nothing and is
    answered by no one: not an error of the sandbox's."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except PaystackError as exc:
                return exc.response()
            except ClientDisconnect:
                return Response(status_code=CLIENT_CLOSED_REQUEST)

        return handle


class _PaystackApiRoute(_EnvelopeRoute):
    """Paystack's key check and the injected faults, around every emulated API endpoint."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            sandbox = _wiring(request)
            if not _authorized(request, sandbox.secret_key):
                return _invalid_key().response()
            fault = sandbox.faults.take_call_fault(request.url.path)
            if fault is not None and fault.kind == "fail":
                return _injected_failure(fault.status).response()
            response = await handler(request)
            if fault is None:
                return response
            # The call has taken effect; its answer is spoiled.
            match fault.kind:
                case "timeout":
                    await _withhold_answer(request, fault.delay)
                    return response
                case "error_after":
                    return _injected_failure(fault.status).response()
                case _:
                    return Response(MALFORMED_BODY, media_type="application/json")

        return handle


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _build_routes() -> list[BaseRoute]:
    api = APIRouter(prefix=MOUNT_PREFIX, route_class=_PaystackApiRoute, tags=["paystack sandbox"],
                    include_in_schema=False)
    checkout = APIRouter(prefix=MOUNT_PREFIX, include_in_schema=False)
    control = APIRouter(prefix=MOUNT_PREFIX, route_class=_EnvelopeRoute, include_in_schema=False)
    after_response = Depends(_after_response)

    # --- Paystack API ---------------------------------------------------------------------------

    @api.post("/transaction/initialize")
    async def initialize_transaction(request: Request) -> Response:
        sandbox = _wiring(request)
        tx = sandbox.state.initialize(await fields.json_object(request))
        data = {
            "authorization_url": f"{sandbox.checkout_base_url}/{tx.access_code}",
            "access_code": tx.access_code,
            "reference": tx.reference,
        }
        return ok("Authorization URL created", data)

    @api.get("/transaction/verify/{reference}")
    async def verify_transaction(reference: str, request: Request) -> Response:
        sandbox = _wiring(request)
        return ok("Verification successful", sandbox.state.verify(reference).verify_data())

    @api.get("/transaction")
    async def list_transactions(request: Request) -> Response:
        sandbox = _wiring(request)
        data, meta = ListQuery.parse(request.query_params).page_of(
            sandbox.state.transactions.values(), created=lambda tx: tx.created_at, status=lambda tx: tx.status,
            render=lambda tx: tx.verify_data(),
        )
        return ok("Transactions retrieved", data, meta=meta)

    @api.post("/refund")
    async def create_refund(request: Request, after: AfterResponse = after_response) -> Response:
        sandbox = _wiring(request)
        refund = sandbox.state.create_refund(await fields.json_object(request))
        sandbox.settlements.refund_created(refund.id, after.launch)
        return ok("Refund has been queued for processing", refund.create_data())

    @api.get("/refund")
    async def list_refunds(request: Request) -> Response:
        """Paystack's reference names the charge filter `transaction` (older versions: `reference`)."""
        sandbox = _wiring(request)
        query = request.query_params
        per_page = fields.query_integer(query, "perPage", 50, maximum=100)
        page = fields.query_integer(query, "page", 1)
        found = sandbox.state.list_refunds(
            transaction=query.get("transaction") or query.get("reference") or None,
            since=fields.query_time(query, "from"),
            until=fields.query_time(query, "to"),
        )
        start = (page - 1) * per_page
        meta = {
            "total": len(found),
            "skipped": start,
            "perPage": per_page,
            "page": page,
            "pageCount": max(1, -(-len(found) // per_page)),
        }
        return ok("Refunds retrieved", [refund.list_data() for refund in found[start:start + per_page]], meta=meta)

    @api.get("/refund/{refund_id}")
    async def fetch_refund(refund_id: str, request: Request) -> Response:
        sandbox = _wiring(request)
        return ok("Refund retrieved", sandbox.state.refund(refund_id).api_data())

    @api.post("/transferrecipient")
    async def create_recipient(request: Request) -> Response:
        sandbox = _wiring(request)
        recipient, _ = sandbox.state.create_recipient(await fields.json_object(request))
        return ok("Transfer recipient created successfully", recipient.api_data(), status_code=201)

    @api.post("/transfer")
    async def create_transfer(request: Request, after: AfterResponse = after_response) -> Response:
        sandbox = _wiring(request)
        transfer = sandbox.state.create_transfer(await fields.json_object(request))
        if transfer.status == "otp":
            return ok("Transfer requires OTP to continue", transfer.initiate_data())
        sandbox.settlements.transfers_created([transfer.reference], after.launch)
        return ok("Transfer has been queued", transfer.initiate_data())

    @api.post("/transfer/finalize_transfer")
    async def finalize_transfer(request: Request, after: AfterResponse = after_response) -> Response:
        sandbox = _wiring(request)
        transfer = sandbox.state.finalize_transfer(await fields.json_object(request))
        sandbox.settlements.transfers_created([transfer.reference], after.launch)
        return ok("Transfer has been queued", transfer.initiate_data())

    @api.post("/transfer/resend_otp")
    async def resend_transfer_otp(request: Request) -> Response:
        sandbox = _wiring(request)
        sandbox.state.resend_transfer_otp(await fields.json_object(request))
        return JSONResponse({"status": True, "message": "OTP has been resent"})  # Paystack's answer has no data

    @api.get("/balance")
    async def balance(request: Request) -> Response:
        sandbox = _wiring(request)
        data = [{"currency": currency, "balance": amount} for currency, amount in sandbox.state.balances.items()]
        return ok("Balances retrieved", data)

    @api.post("/transfer/bulk")
    async def create_bulk_transfer(request: Request, after: AfterResponse = after_response) -> Response:
        sandbox = _wiring(request)
        transfers = sandbox.state.create_bulk_transfer(await fields.json_object(request))
        sandbox.settlements.transfers_created([transfer.reference for transfer in transfers], after.launch)
        return ok(f"{len(transfers)} transfers queued.", [transfer.bulk_item() for transfer in transfers])

    @api.get("/transfer/verify/{reference}")
    async def verify_transfer(reference: str, request: Request) -> Response:
        sandbox = _wiring(request)
        return ok("Transfer retrieved", sandbox.state.transfer(reference).api_data())

    @api.get("/transfer")
    async def list_transfers(request: Request) -> Response:
        sandbox = _wiring(request)
        data, meta = ListQuery.parse(request.query_params).page_of(
            sandbox.state.transfers.values(), created=lambda transfer: transfer.created_at,
            status=lambda transfer: transfer.status, render=lambda transfer: transfer.api_data(),
        )
        return ok("Transfers retrieved", data, meta=meta)

    @api.get("/bank")
    async def banks(currency: str = "NGN", bank_type: str | None = Query(None, alias="type")) -> Response:
        data = [bank.api_data() for bank in list_banks(currency.upper(), bank_type)]
        return ok("Banks retrieved", data, meta={"next": None, "previous": None, "perPage": 50})

    @api.get("/bank/resolve")
    async def resolve_account(account_number: str = "", bank_code: str = "") -> Response:
        name = resolve_account_name(account_number, bank_code)
        bank = resolving_bank(bank_code)
        if name is None or bank is None:
            raise PaystackError(
                422,
                "Could not resolve account name. Check parameters or try again.",
                code="invalid_bank_details",
                next_step="Check the account number and bank code",
            )
        data = {"account_number": account_number, "account_name": name, "bank_id": bank.id}
        return ok("Account number resolved", data)

    @api.post("/bank/validate")
    async def validate_account(request: Request) -> Response:
        """South Africa's account validation: 200 once attempted, the verdict in `data.verified`."""
        body = await fields.json_object(request)
        country = fields.required_text(body, "country_code")
        bank_code = fields.required_text(body, "bank_code")
        account_number = fields.required_text(body, "account_number")
        fields.required_text(body, "account_name")
        account_type = fields.required_text(body, "account_type")
        document_type = fields.required_text(body, "document_type")
        currency = VALIDATING_COUNTRIES.get(country)
        if currency is None or find_bank(bank_code, currency=currency, bank_type="basa") is None:
            raise invalid("Invalid bank code", code="invalid_bank_code",
                          next_step="See GET /bank?currency=ZAR&enabled_for_verification=true")
        if account_type not in ACCOUNT_TYPES:
            raise invalid("account_type must be one of " + ", ".join(ACCOUNT_TYPES))
        if document_type not in DOCUMENT_TYPES:
            raise invalid("document_type must be one of " + ", ".join(DOCUMENT_TYPES))
        failure = validation_failure(account_number, account_type, document_type,
                                     fields.optional_text(body, "document_number"))
        verified = failure is None
        data = {
            "accountAcceptsDebits": verified,
            "accountAcceptsCredits": verified,
            "accountHolderMatch": verified,
            "accountOpenForMoreThanThreeMonths": verified,
            "accountOpen": verified,
            "verified": verified,
            "verificationMessage": failure or "Account is verified successfully",
        }
        return ok(f"{account_type.capitalize()} Account Verification attempted", data)

    # --- checkout (what the customer's browser sees) ----------------------------------------------

    @checkout.get("/checkout/{access_code}")
    async def show_checkout(access_code: str, request: Request) -> Response:
        sandbox = _wiring(request)
        tx = sandbox.state.transaction_by_access_code(access_code)
        if tx is None:
            return HTMLResponse(message_page("Unknown checkout", "No payment has this access code."), 404)
        return HTMLResponse(checkout_page(tx))

    @checkout.post("/checkout/{access_code}")
    async def submit_checkout(access_code: str, request: Request, after: AfterResponse = after_response) -> Response:
        sandbox = _wiring(request)
        tx = sandbox.state.transaction_by_access_code(access_code)
        if tx is None:
            return HTMLResponse(message_page("Unknown checkout", "No payment has this access code."), 404)
        outcome = parse_charge_outcome((await request.form()).get("outcome"))
        if outcome is None:
            return HTMLResponse(message_page("Choose an outcome", "Send outcome = success, failed or abandoned."), 400)
        try:
            sandbox.settlements.settle_charge(tx.reference, outcome, send_webhook=True, launch=after.launch)
        except ValueError:
            already = message_page("Payment already settled", f"This payment is already {tx.status}.")
            return HTMLResponse(already, 409)
        if tx.callback_url:
            callback = _with_query(tx.callback_url, trxref=tx.reference, reference=tx.reference)
            return RedirectResponse(callback, status_code=303)
        return HTMLResponse(result_page(tx))

    # --- control (benchmarks, manual testing) ----------------------------------------------------

    @control.post("/_control/faults")
    async def set_faults(request: Request) -> Response:
        sandbox = _wiring(request)
        body = await fields.json_object(request)
        count = fields.integer(body, "count", 1)
        path_contains = fields.optional_text(body, "path_contains")
        try:
            match body.get("action"):
                case "fail_next":
                    status = fields.integer(body, "status", 500)
                    sandbox.faults.fail_next(count, status=status, path_contains=path_contains)
                case "timeout_next":
                    delay = fields.number(body, "delay", 30.0)
                    sandbox.faults.timeout_next(count, path_contains=path_contains, delay=delay)
                case "error_after_next":
                    status = fields.integer(body, "status", 500)
                    sandbox.faults.error_after_next(count, status=status, path_contains=path_contains)
                case "malformed_next":
                    sandbox.faults.malformed_next(count, path_contains=path_contains)
                case "transfer_outcome_next":
                    sandbox.faults.transfer_outcome_next(body.get("outcome"), count)
                case "refund_outcome_next":
                    sandbox.faults.refund_outcome_next(body.get("outcome"), count)
                case "clear":
                    sandbox.faults.clear()
                case _:
                    raise ValueError(
                        "action must be fail_next, timeout_next, error_after_next, malformed_next, "
                        "transfer_outcome_next, refund_outcome_next or clear"
                    )
        except ValueError as exc:
            raise invalid(str(exc)) from exc
        return ok("Faults updated", None)

    @control.post("/_control/integration")
    async def integration_settings(request: Request) -> Response:
        """{"customer_pays_fees": bool, "transfer_otp": bool, "balances": {"NGN": subunits, ...}}, each optional:
        Paystack's setting that adds the fees to what customers pay, its setting that holds transfers for an OTP
        (finalized with the sandbox's test OTP, 123456), and what the integration's balance holds per currency."""
        sandbox = _wiring(request)
        state = sandbox.state
        body = await fields.json_object(request)
        state.customer_pays_fees = fields.boolean(body, "customer_pays_fees", state.customer_pays_fees)
        state.transfer_otp = fields.boolean(body, "transfer_otp", state.transfer_otp)
        balances = body.get("balances", {})
        if not isinstance(balances, dict):
            raise invalid("balances must be an object of currency -> subunits")
        for currency, amount in balances.items():
            try:
                state.set_balance(currency, amount)
            except ValueError as exc:
                raise invalid(str(exc)) from exc
        return ok("Integration updated", {"customer_pays_fees": state.customer_pays_fees,
                                          "transfer_otp": state.transfer_otp, "balances": state.balances})

    @control.post("/_control/charges/{reference}")
    async def settle_charge(reference: str, request: Request, after: AfterResponse = after_response) -> Response:
        sandbox = _wiring(request)
        body = await fields.json_object(request)
        outcome = parse_charge_outcome(body.get("outcome"))
        if outcome is None:
            raise invalid("outcome must be success, failed or abandoned")
        send_webhook = fields.boolean(body, "send_webhook", True)
        try:
            tx = sandbox.settlements.settle_charge(reference, outcome, send_webhook=send_webhook, launch=after.launch)
        except KeyError as exc:
            raise not_found("Transaction reference not found") from exc
        except ValueError as exc:
            raise PaystackError(409, str(exc), code="invalid_state") from exc
        return ok("Charge settled", tx.verify_data())

    @control.post("/_control/transfers/{reference}")
    async def reverse_transfer(reference: str, request: Request, after: AfterResponse = after_response) -> Response:
        """{"action": "reverse", "send_webhook": optional}: the receiving bank sends a paid transfer back."""
        sandbox = _wiring(request)
        body = await fields.json_object(request)
        if body.get("action") != "reverse":
            raise invalid("action must be reverse")
        send_webhook = fields.boolean(body, "send_webhook", True)
        try:
            transfer = sandbox.state.reverse_transfer(reference)
        except KeyError as exc:
            raise not_found("Transfer not found") from exc
        except ValueError as exc:
            raise PaystackError(409, str(exc), code="invalid_state") from exc
        if send_webhook:
            sandbox.settlements.notify("transfer.reversed", transfer.webhook_data(), after.launch)
        return ok("Transfer reversed", transfer.api_data())

    @control.post("/_control/disputes/{reference}")
    async def dispute(reference: str, request: Request, after: AfterResponse = after_response) -> Response:
        """{"action": "open", "amount": optional} or {"action": "resolve", "resolution": ...}."""
        sandbox = _wiring(request)
        body = await fields.json_object(request)
        action = body.get("action", "open")
        try:
            if action == "open":
                amount = None if body.get("amount") is None else fields.parse_amount(body.get("amount"))
                opened = sandbox.state.open_dispute(reference, amount)
                sandbox.settlements.notify("charge.dispute.create", opened.webhook_data(), after.launch)
                return ok("Dispute opened", opened.webhook_data())
            if action == "resolve":
                resolution = body.get("resolution")
                if resolution not in DISPUTE_RESOLUTIONS:
                    raise invalid(f"resolution must be one of {', '.join(DISPUTE_RESOLUTIONS)}")
                resolved = sandbox.state.resolve_dispute(reference, resolution)
                sandbox.settlements.notify("charge.dispute.resolve", resolved.webhook_data(), after.launch)
                return ok("Dispute resolved", resolved.webhook_data())
        except KeyError as exc:
            raise not_found("Transaction reference not found") from exc
        except ValueError as exc:
            raise PaystackError(409, str(exc), code="invalid_state") from exc
        raise invalid("action must be open or resolve")

    return [*api.routes, *checkout.routes, *control.routes]


# First among an app's routes (see Sandbox.serve_from): a sandbox request matches at once, any other is turned
# away by one prefix check. Appended last, each verify call in the service's app walked its ~70 routes first.
SANDBOX_ROUTES: Final = RoutesUnder(MOUNT_PREFIX, _build_routes())
