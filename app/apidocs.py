"""What the app's routes are for and who may call them, derived from their dependencies plus one `NOTES` entry per
route; app/openapi.py puts it into the OpenAPI schema and `python -m app docs api` renders docs/api.md from it
(tests/test_api_docs.py fails when the file differs from what `render()` makes).

The schema gives paths, methods, parameters, bodies and answers; the routes' dependencies give the role a
route requires and its rate limit. What neither can tell (a summary, a caller narrower than the role, the
domain's error codes) is in `NOTES`, one entry per route.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.core.errors import (
    _STATUS_CODES,
    AppError,
    CurrencyNotSupported,
    FeatureDisabled,
    FundsFrozen,
    GatewayFailure,
    IdempotencyConflict,
    IdempotencyInProgress,
    InsufficientFunds,
    InvalidAmount,
    InvalidBankAccount,
    InvalidOtp,
    InvalidSignature,
    InvalidState,
    NotFound,
    PayloadTooLarge,
    PaymentFailed,
    RateLimited,
    SharesUnavailable,
    Unauthenticated,
    Unauthorized,
    ValidationFailed,
)
from app.core.ratelimit import check_default_limit, limiter
from app.core.security import (
    WEBHOOKS_PREFIX,
    admin_or_service_principal,
    admin_principal,
    current_principal,
    requires_authentication,
)

try:  # FastAPI keeps included routers nested in app.routes since 0.137; this walks them with their dependencies
    from fastapi.routing import iter_route_contexts
except ImportError:  # earlier versions copy every included route, dependencies and all, onto app.routes

    def iter_route_contexts(routes: Any) -> Any:  # type: ignore[no-redef]
        return iter(routes)


IDEMPOTENCY_HEADER = "Idempotency-Key"
API_DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"
COMMAND = "python -m app docs api"

ANYONE = "anyone"
PAYSTACK = "Paystack (signed webhook)"
SIGNED_IN = "signed in"
ADMIN = "admin"
ADMIN_OR_SERVICE = "admin or service"
# The role dependency a route declares -> who may call it (checked before the route runs).
ROLE_DEPENDENCIES: dict[Callable[..., Any], str] = {
    admin_principal: ADMIN,
    admin_or_service_principal: ADMIN_OR_SERVICE,
    current_principal: SIGNED_IN,
}


@dataclass(frozen=True)
class RouteNotes:
    summary: str  # a few words, for the table of routes
    details: str = ""  # what else a caller needs to know
    # Who may call it when the service admits fewer callers than the route's role (checked inside).
    callers: str = ""
    # The domain's refusals; those any route of its kind can answer (authentication, role, validation,
    # body size, rate limit, Idempotency-Key) are derived from the route and its schema.
    errors: tuple[type[AppError], ...] = ()
    # Successful answers besides the route's own status code: status -> when.
    answers: tuple[tuple[int, str], ...] = ()


OWNER_OR_ADMIN = "the app's owner or an admin"
OVERSEERS = "the app's owner, its approvers or an admin"

NOTES: dict[tuple[str, str], RouteNotes] = {
    # operations
    ("GET", "/healthz"): RouteNotes("Liveness", "200 without touching any dependency."),
    ("GET", "/readyz"): RouteNotes(
        "Readiness",
        "Checks the database, the webhook inbox (`webhook_backlog`: fails when a due event has waited longer "
        "than `WEBHOOK_BACKLOG_MAX_AGE_SECONDS`, i.e. no worker is taking them; it shows the events waiting and "
        "the age of the last one accepted), the ledger's sum, the in-flight accounts, Redis when configured and "
        "the gateway. 503 with `failing` naming the failing checks (that body is not the error envelope)."),
    ("GET", "/metrics"): RouteNotes(
        "Prometheus metrics",
        "The text exposition format: among others `http_requests_total` and `http_request_duration_seconds` "
        "by route template, method and status, and `gateway_call_duration_seconds` by gateway endpoint "
        "template and outcome."),
    ("GET", "/v1/admin/audit-log"): RouteNotes(
        "The audit trail",
        "Who changed a money rule or moved money (apps created and updated with each changed field's `before` "
        "and `after`, milestones, releases asked for, approved, rejected and executed, escrow refunds, dispute "
        "resolutions, payout retries, distributions), newest first: `at`, `actor_id`, `actor_roles`, "
        "`action`, `resource_type`, `resource_id`, the `request_id` (`X-Request-ID`) and `changes` (amounts in "
        "minor units). Filters: `actor` (user id), `resource` (a type, `release`, or a type and an id, "
        "`release:rel_...`), `action`, `from` (inclusive) and `to` (exclusive), times in UTC when they carry "
        "no offset. Append-only: nothing updates or deletes an entry."),
    ("GET", "/v1/admin/integrity"): RouteNotes(
        "Integrity of the books",
        "The books recomputed from the postings and the business rules checked against the money rows: `ok`, "
        "and one entry per check with a sample of offenders."),
    ("GET", "/v1/admin/reconciliation"): RouteNotes(
        "Reconciliation with Paystack",
        "What the books say moved against what Paystack lists (charges, transfers, refunds) over `from`..`to` "
        "(ISO dates or timestamps; default the last 7 days; at most 31). It only reads: nothing is corrected.",
        errors=(GatewayFailure,)),
    # apps
    ("PUT", "/v1/apps/{app_id}"): RouteNotes(
        "Create or update an app",
        "Owner, approvers and required approvals, currency, share price, total shares, lock-in days, platform "
        "fee. Currency and share price are fixed once shares are issued.",
        errors=(InvalidAmount, CurrencyNotSupported, InvalidState)),
    ("GET", "/v1/apps"): RouteNotes(
        "List apps",
        "Paginated (`limit`, `cursor`; by id, last first), each with `shares_issued` and `shares_available`.",
        callers="an admin (every app); anyone else: the apps they own or approve"),
    ("GET", "/v1/apps/{app_id}"): RouteNotes(
        "Read an app", "With `shares_issued` and `shares_available`.", errors=(NotFound,)),
    # payments
    ("POST", "/v1/payments"): RouteNotes(
        "Start a payment",
        "`investment`, `share_transfer` or `revenue`: the server computes the amount, opens the charge at "
        "Paystack and answers `reference` and `payment_url`. `revenue` pays an investor pool directly: the "
        "`amount` given is what is shared out over the holders (less the platform fee) by a distribution of its "
        "`period`; to pay the investors' part of what the app earned, declare the revenue instead "
        "(`POST /v1/apps/{app_id}/revenue-declarations`, whose payments read `revenue_declaration`).",
        callers="`revenue`: the app's owner or an admin; `share_transfer`: the transfer's buyer",
        errors=(NotFound, Unauthorized, InvalidAmount, CurrencyNotSupported, InvalidState, SharesUnavailable,
                GatewayFailure)),
    ("GET", "/v1/payments"): RouteNotes(
        "List payments", "Filtered by `status`, `payment_type`, `app_id`.",
        callers="the caller's own payments; an admin's: everyone's"),
    ("GET", "/v1/payments/{reference}"): RouteNotes(
        "Read a payment", callers="the payer or an admin (anyone else: 404)", errors=(NotFound,)),
    ("POST", "/v1/payments/{reference}/verify"): RouteNotes(
        "Verify a payment now", "Asks Paystack about the charge and applies a success exactly once; answers the "
        "payment, or 402 PAYMENT_FAILED (details: reference, status, gateway_response) when the charge failed or "
        "was abandoned (the customer may still retry on the same checkout; a later success is credited then).",
        callers="the payer or an admin (anyone else: 404)", errors=(NotFound, PaymentFailed, GatewayFailure)),
    ("GET", "/v1/refunds/{refund_id}"): RouteNotes(
        "Read a refund", "Status `pending`, `sent`, `processed`, `failed`, `unknown` or `needs_attention`.",
        callers="the payer of the refunded payment or an admin (anyone else: 404)", errors=(NotFound,)),
    ("POST", "/v1/webhooks/paystack"): RouteNotes(
        "Paystack's webhook",
        "The signature (`x-paystack-signature`, HMAC-SHA512) is checked on the raw body, the event stored once "
        "and applied by the worker; 200 `{\"status\": \"ok\"}`, duplicates included. Bodies over 1 MB are "
        "refused.",
        callers="from `WEBHOOK_IP_ALLOWLIST` when it is set",
        errors=(InvalidSignature, Unauthorized, ValidationFailed)),
    # escrow
    ("GET", "/v1/escrow/transactions"): RouteNotes(
        "List escrow transactions", "Deposits, releases and refunds, filtered by `app_id`, `investor_id`, "
        "`type`, `status`.", callers="investors see their own, owners and approvers their apps', admins all"),
    ("GET", "/v1/escrow/transactions/{transaction_id}"): RouteNotes(
        "Read an escrow transaction", "A deposit shows `released`, `refunded`, `frozen` and `remaining`.",
        callers="the investor, the app's owner or approvers, or an admin (anyone else: 404)", errors=(NotFound,)),
    ("POST", "/v1/escrow/transactions/{transaction_id}/refunds"): RouteNotes(
        "Refund a deposit",
        "Part (`amount`) or all that remains goes back to the investor through Paystack: 201 with the refund, "
        "`pending` until Paystack settles it.",
        callers="an admin (a caller who can see the deposit: 403; anyone else: 404)",
        errors=(NotFound, Unauthorized, InvalidAmount, InsufficientFunds, FundsFrozen, InvalidState)),
    ("GET", "/v1/apps/{app_id}/escrow"): RouteNotes(
        "An app's escrow", "Per currency: deposited, released, refunded, held, frozen, available.",
        callers=OVERSEERS, errors=(NotFound, Unauthorized)),
    ("GET", "/v1/apps/{app_id}/escrow/statement"): RouteNotes(
        "An app's escrow statement", "Over `from`..`to`, with opening and closing balances; `format=csv` for CSV.",
        callers=OVERSEERS, errors=(NotFound, Unauthorized)),
    ("POST", "/v1/apps/{app_id}/milestones"): RouteNotes(
        "Add a milestone", "With its release percentage (an app's milestones add up to at most 100%) and an "
        "optional `due_date`; a milestone still pending after its due date shows `overdue: true` and "
        "`overdue_at` (set once by the worker).",
        callers=OWNER_OR_ADMIN, errors=(NotFound, Unauthorized)),
    ("GET", "/v1/apps/{app_id}/milestones"): RouteNotes("List an app's milestones", errors=(NotFound,)),
    ("POST", "/v1/milestones/{milestone_id}/complete"): RouteNotes(
        "Complete a milestone", "A pending milestone becomes `completed`, with its evidence.",
        callers="the app's owner only", errors=(NotFound, Unauthorized, InvalidState)),
    ("POST", "/v1/escrow/releases"): RouteNotes(
        "Ask for a release",
        "A completed milestone's percentage of the app's deposits (or of one deposit): 201 with the release, "
        "`pending_approval`, and its items per deposit.",
        callers=OWNER_OR_ADMIN, errors=(NotFound, Unauthorized, InvalidState, InsufficientFunds, FundsFrozen)),
    ("GET", "/v1/escrow/releases"): RouteNotes(
        "List releases", "Filtered by `app_id` and `status`.",
        callers="releases of the apps the caller owns or approves for; an admin's: all"),
    ("GET", "/v1/escrow/releases/{release_id}"): RouteNotes(
        "Read a release", "With its approvals and items.", callers=f"{OVERSEERS} (anyone else: 404)",
        errors=(NotFound,)),
    ("POST", "/v1/escrow/releases/{release_id}/approvals"): RouteNotes(
        "Approve or reject a release",
        "Once per approver. The quorum (and an admin's approval at or above `ESCROW_RELEASE_THRESHOLD`) makes "
        "it `approved`, a rejection `rejected`.",
        callers="the app's approvers or an admin, never its owner (the owner: 403; anyone else: 404)",
        errors=(NotFound, Unauthorized, InvalidState)),
    ("POST", "/v1/escrow/releases/{release_id}/execute"): RouteNotes(
        "Execute a release",
        "An approved release moves the money from escrow to the owner's payable account and queues the owner's "
        "payout.",
        callers="an admin (the app's owner or approvers: 403; anyone else: 404)",
        errors=(NotFound, Unauthorized, InvalidState, InsufficientFunds, FundsFrozen)),
    # disputes
    ("POST", "/v1/disputes"): RouteNotes(
        "Open a dispute", "On a deposit (`amount`, default all that is free): the disputed money is frozen.",
        callers="the deposit's investor (the app's owner or approvers: 403; anyone else: 404)",
        errors=(FeatureDisabled, NotFound, Unauthorized, InvalidAmount, InsufficientFunds)),
    ("GET", "/v1/disputes"): RouteNotes(
        "List disputes", "Filtered by `status` and `app_id`.",
        callers="the caller's own and those of the apps they own or approve for; an admin's: all",
        errors=(FeatureDisabled,)),
    ("GET", "/v1/disputes/{dispute_id}"): RouteNotes(
        "Read a dispute", callers="the investor, the app's owner or approvers, or an admin (anyone else: 404)",
        errors=(FeatureDisabled, NotFound)),
    ("POST", "/v1/disputes/{dispute_id}/resolve"): RouteNotes(
        "Resolve a dispute",
        "`refund`, `partial_refund` (with `amount`), `release` to the owner, `dismiss`, or `chargeback` "
        "(chargebacks only): unfreezes and applies the outcome in one transaction.",
        callers="an admin (a caller who can see the dispute: 403; anyone else: 404)",
        errors=(FeatureDisabled, NotFound, Unauthorized, InvalidState, InvalidAmount, InsufficientFunds,
                FundsFrozen)),
    # payouts
    ("GET", "/v1/banks"): RouteNotes(
        "List banks and mobile-money operators", "The gateway's list for `currency` (and the recipient `type`, "
        "e.g. `nuban`, `ghipss`, `mobile_money`, `basa`): `code`, `name`, `type`, `currency`. Read from the "
        "gateway at most once an hour per process; `refresh=true` reads it again.",
        callers="any signed-in user", errors=(CurrencyNotSupported, GatewayFailure)),
    ("POST", "/v1/payout-accounts"): RouteNotes(
        "Add a payout account",
        "`currency`, `type` (`nuban` NGN, `ghipss` GHS, `mobile_money` GHS or KES, `mobile_money_business` KES "
        "M-PESA till, `kepss` KES, `basa` ZAR; by default the currency's bank account, KES: `mobile_money`), "
        "`bank_code` (from `GET /v1/banks`), `account_number`, `account_name` (required where the gateway has "
        "no lookup: Kenya, mobile money, South Africa), and for ZAR `account_type`, `document_type`, "
        "`document_number`. Verified the way Paystack verifies the country (Nigerian and Ghanaian bank "
        "accounts resolved, South African ones validated with the holder's document, none elsewhere) and "
        "registered as a transfer recipient; the number is shown by its last four digits, the document "
        "number never. The first account of a currency becomes its default, and payouts that waited for one "
        "go out. The same account again answers 200 with the existing one. USD: `CURRENCY_NOT_SUPPORTED` "
        "(Paystack pays out no USD for this integration; money owed in USD stays payable).",
        callers="the caller's own", answers=((200, "the same account again: the existing one, unchanged"),),
        errors=(ValidationFailed, CurrencyNotSupported, InvalidBankAccount, GatewayFailure)),
    ("GET", "/v1/payout-accounts/me"): RouteNotes(
        "List one's payout accounts",
        "`items`, by currency then age, each with `is_default`; account numbers show only their last four digits.",
        callers="the caller's own (none registered: no items)"),
    ("PUT", "/v1/payout-accounts/me"): RouteNotes(
        "Set the default payout account of a currency",
        "The body of `POST /v1/payout-accounts` (`type` optional): the account is verified and registered as "
        "there, or found again when already registered, and becomes the default of its currency; pending "
        "payouts in it go to it.",
        callers="the caller's own",
        errors=(ValidationFailed, CurrencyNotSupported, InvalidBankAccount, GatewayFailure)),
    ("POST", "/v1/payout-accounts/{account_id}/default"): RouteNotes(
        "Make a payout account the default of its currency",
        "Pending payouts in that currency go to it from now on.",
        callers="the caller's own (anyone else's: 404)", errors=(NotFound, InvalidState)),
    ("DELETE", "/v1/payout-accounts/{account_id}"): RouteNotes(
        "Delete a payout account",
        "Refused while a payout on its way (`processing`, `awaiting_otp`) uses it. Deleting the default makes "
        "the oldest other account of the currency the default; with none, pending payouts wait "
        "(`awaiting_payout_account`).",
        callers="the caller's own (anyone else's: 404)", errors=(NotFound, InvalidState)),
    ("GET", "/v1/payouts/me"): RouteNotes(
        "List one's payouts", "Filtered by `status`. A pending payout with no default account in its currency "
        "shows `awaiting_payout_account`.", callers="the caller's own"),
    ("GET", "/v1/payouts"): RouteNotes(
        "List all payouts", "Filtered by `status` (`awaiting_payout_account` included) and `user_id`."),
    ("POST", "/v1/payouts/{payout_id}/retry"): RouteNotes(
        "Retry a payout", "A payout that failed conclusively (`failed` or `reversed`) goes out again, to the "
        "payee's default account in its currency.",
        callers="an admin (the payee: 403; anyone else: 404)",
        errors=(NotFound, Unauthorized, InvalidState, ValidationFailed)),
    ("POST", "/v1/payouts/{payout_id}/finalize"): RouteNotes(
        "Finalize a payout awaiting its OTP",
        "Sends the OTP Paystack texted to the business (`{\"otp\": \"...\"}`) to complete the transfer it holds; "
        "the payout goes on (`processing`, then `paid`). A refused OTP is 422 `INVALID_OTP` and the payout still "
        "awaits its OTP. Of calls at the same time, one reaches the gateway; the others get 409. The OTP is "
        "neither stored nor logged.",
        callers="an admin (the payee: 403; anyone else: 404)",
        errors=(NotFound, Unauthorized, InvalidState, InvalidOtp, GatewayFailure)),
    ("POST", "/v1/payouts/{payout_id}/resend-otp"): RouteNotes(
        "Have the OTP of a payout sent again",
        "Asks Paystack to send the OTP of the transfer it holds for an `awaiting_otp` payout once more.",
        callers="an admin (the payee: 403; anyone else: 404)",
        errors=(NotFound, Unauthorized, InvalidState, GatewayFailure)),
    # shares
    ("GET", "/v1/holdings/me"): RouteNotes(
        "List one's holdings", "Per app, with the shares reserved in pending offers.", callers="the caller's own"),
    ("GET", "/v1/apps/{app_id}/cap-table"): RouteNotes(
        "An app's cap table", "Now, or at any past instant (`as_of`), with percentages adding up to 100.00.",
        callers=OWNER_OR_ADMIN, errors=(NotFound, Unauthorized)),
    ("POST", "/v1/share-transfers"): RouteNotes(
        "Offer shares to a buyer",
        "At a price per share: the shares are reserved until the buyer pays (a `share_transfer` payment), either "
        "side cancels or the offer expires.",
        callers="the seller, out of shares it holds unreserved and past their lock-in",
        errors=(NotFound, InvalidAmount, SharesUnavailable, InvalidState)),
    ("GET", "/v1/share-transfers"): RouteNotes(
        "List share transfers", "Filtered by `status` and `app_id`.",
        callers="those the caller sells or buys; an admin's: all"),
    ("GET", "/v1/share-transfers/{transfer_id}"): RouteNotes(
        "Read a share transfer", callers="the seller, the buyer or an admin (anyone else: 404)",
        errors=(NotFound,)),
    ("POST", "/v1/share-transfers/{transfer_id}/cancel"): RouteNotes(
        "Cancel a share transfer", "A pending transfer ends and the seller's shares are unreserved.",
        callers="the seller or the buyer (an admin: 403; anyone else: 404)",
        errors=(NotFound, Unauthorized, InvalidState)),
    # distributions
    ("POST", "/v1/apps/{app_id}/revenue-declarations"): RouteNotes(
        "Declare an app's revenue for a period",
        "`gross_revenue` earned in `period` (YYYY-MM, UTC; the current month may be declared, a future one is "
        "422). The investors' `pool` = gross x `investor_shares` / `total_shares`, rounded down to the minor "
        "unit, where investors are all holders but the app's owner, with the holdings at the end of the period "
        "(at the declaration while it runs). Answers a payment of exactly the pool that the owner pays at "
        "`payment_url` (`payment_type` `revenue_declaration`); its success distributes the pool over those "
        "investors, platform fee first, once. A pool of zero is `recorded`, with no payment. One live "
        "declaration per app, period and currency: a new one replaces an unpaid one (`replaced`; its payment, "
        "if paid anyway, is refunded to the owner), a paid one cannot be replaced (409).",
        callers=OWNER_OR_ADMIN,
        errors=(NotFound, Unauthorized, ValidationFailed, InvalidAmount, CurrencyNotSupported, InvalidState,
                GatewayFailure)),
    ("GET", "/v1/apps/{app_id}/revenue-declarations"): RouteNotes(
        "List an app's revenue declarations", "Newest first, replaced ones included.", callers=OWNER_OR_ADMIN,
        errors=(NotFound, Unauthorized)),
    ("POST", "/v1/apps/{app_id}/distributions"): RouteNotes(
        "Distribute a period's revenue",
        "Over the holders, platform fee first, to the minor unit; one per app, period and currency. "
        "`dry_run`: 200 with the same figures, nothing written.",
        callers=OWNER_OR_ADMIN, answers=((200, "a dry run: the same figures, nothing written"),),
        errors=(NotFound, Unauthorized, InvalidState, CurrencyNotSupported, InvalidAmount, InsufficientFunds)),
    ("GET", "/v1/apps/{app_id}/distributions"): RouteNotes(
        "List an app's distributions", "Latest period first.", callers=OWNER_OR_ADMIN,
        errors=(NotFound, Unauthorized)),
    ("GET", "/v1/distributions/me"): RouteNotes(
        "List one's allocations", "Across distributions, with their payout status.", callers="the caller's own"),
    ("GET", "/v1/distributions/{distribution_id}"): RouteNotes(
        "Read a distribution", callers=f"{OWNER_OR_ADMIN} (anyone else: 404)", errors=(NotFound,)),
    ("GET", "/v1/distributions/{distribution_id}/allocations"): RouteNotes(
        "A distribution's allocations", "Per holder, with their payout status.",
        callers=f"{OWNER_OR_ADMIN} (anyone else: 404)", errors=(NotFound,)),
    ("GET", "/v1/reports/revenue/monthly"): RouteNotes(
        "Monthly revenue report",
        "For a `year` (default: the current year, UTC): collected, distributed, platform fees, paid out, owed, "
        "recipients, and the live declarations' `declared_gross_revenue` and `investor_pool`; `format=csv` for "
        "CSV, as an attachment (`Content-Disposition`, `revenue-[APP-]YEAR.csv`).",
        callers="an admin (any app, or all); an app's owner (that app: `app_id` required)",
        errors=(Unauthorized, NotFound, CurrencyNotSupported)),
    # outbound events (docs/events.md)
    ("POST", "/v1/admin/webhook-endpoints"): RouteNotes(
        "Register a webhook endpoint",
        "`url` (https and a public address; http and loopback too in the sandbox), `events` (types from "
        "docs/events.md, or `[\"*\"]`), `description`. The answer shows the signing secret (`whsec_...`) this "
        "once."),
    ("GET", "/v1/admin/webhook-endpoints"): RouteNotes("List webhook endpoints", "Without their secrets."),
    ("GET", "/v1/admin/webhook-endpoints/{endpoint_id}"): RouteNotes(
        "Read a webhook endpoint", errors=(NotFound,)),
    ("PATCH", "/v1/admin/webhook-endpoints/{endpoint_id}"): RouteNotes(
        "Change a webhook endpoint",
        "`url`, `events`, `description`, `disabled` (a disabled endpoint is sent nothing); `rotate_secret`: a "
        "new secret, shown in this answer only, signs every delivery from now on.", errors=(NotFound,)),
    ("DELETE", "/v1/admin/webhook-endpoints/{endpoint_id}"): RouteNotes(
        "Remove a webhook endpoint", "With its deliveries; 204.", errors=(NotFound,)),
    ("GET", "/v1/admin/webhook-endpoints/{endpoint_id}/deliveries"): RouteNotes(
        "An endpoint's deliveries",
        "Newest first, filtered by `status` (`pending`, `delivered`, `failed`), each with its attempts: HTTP "
        "status, latency, error.", errors=(NotFound,)),
    ("POST", "/v1/admin/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/retry"): RouteNotes(
        "Send a delivery again",
        "Now, whatever it came to, with a fresh retry window; the receiver gets the same `webhook-id`.",
        errors=(NotFound,)),
    ("GET", "/v1/events"): RouteNotes(
        "List events",
        "Oldest first after `after` (an event id; pass the last one seen), filtered by `type`; `next_cursor` is "
        "the `after` of the next page."),
    ("GET", "/v1/events/me"): RouteNotes(
        "List the events about oneself",
        "As `GET /v1/events`, only those about the caller: their payments, payouts, refunds, deposits, disputes "
        "and share transfers; for an app's owner or approver, its releases, deposits, disputes and "
        "distributions.", callers="the caller's own"),
}

# When each error code is answered; every code of the error tree needs one.
WHEN: dict[str, str] = {
    "INVALID_SIGNATURE": "the webhook's signature does not match its body",
    "PAYMENT_FAILED": "the charge failed at the gateway",
    "UNAUTHENTICATED": "no bearer token, or one that is invalid or expired (checked before the body is read)",
    "UNAUTHORIZED": "the caller may not take this action on something it can see",
    "FEATURE_DISABLED": "the feature is switched off in the settings (`ENABLE_DISPUTE_RESOLUTION`)",
    "NOT_FOUND": "no such object, or someone else's that the caller may not see",
    "METHOD_NOT_ALLOWED": "the path exists but not with this method; `Allow` names the methods it has",
    "INSUFFICIENT_FUNDS": "more money than the account or deposit holds",
    "INVALID_STATE": "the object's status does not allow this (already done, not yet possible)",
    "FUNDS_FROZEN": "the money is frozen by an open dispute",
    "SHARES_UNAVAILABLE": "not enough shares available (unissued, or held unreserved)",
    "IDEMPOTENCY_IN_PROGRESS": "a request with this `Idempotency-Key` is still running",
    "PAYLOAD_TOO_LARGE": "the body is larger than `MAX_REQUEST_BODY_BYTES`",
    "INVALID_AMOUNT": "an amount that is not a valid positive decimal in the currency, or out of bounds",
    "VALIDATION_ERROR": "a parameter, header or body that does not validate (`details.fields` says where)",
    "CURRENCY_NOT_SUPPORTED": "a currency the service, the app or the transfer does not take",
    "IDEMPOTENCY_CONFLICT": "this `Idempotency-Key` was used with another body",
    "INVALID_BANK_ACCOUNT": "bank details the gateway could not verify",
    "INVALID_OTP": "the gateway refused the OTP of a transfer it holds; the payout still awaits its OTP",
    "RATE_LIMITED": "too many requests; `Retry-After` says when to try again",
    "INTERNAL_ERROR": "a fault of the service",
    "GATEWAY_ERROR": "the payment gateway did not complete the call (`details` has its message)",
}

# Limits a route carries through `limiter.limit(...)` instead of the default (see check_default_limit).
_OWN_LIMITS = limiter._dynamic_route_limits


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    tag: str
    spec: dict[str, Any]
    route: Any  # the route as included (path, methods, endpoint, and a dependant with its routers' dependencies)
    notes: RouteNotes

    @property
    def role(self) -> str:
        declared = [ROLE_DEPENDENCIES[call] for call in _calls(self.route.dependant) if call in ROLE_DEPENDENCIES]
        if ADMIN in declared:
            return ADMIN
        if ADMIN_OR_SERVICE in declared:
            return ADMIN_OR_SERVICE
        if declared or requires_authentication(self.path):  # the request guard authenticates every /v1/ path
            return SIGNED_IN
        return PAYSTACK if self.path.startswith(WEBHOOKS_PREFIX) else ANYONE

    @property
    def callers(self) -> str:
        return f"{self.role}: {self.notes.callers}" if self.notes.callers else self.role

    @property
    def rate_limit(self) -> str | None:
        """The setting that limits it, or None for a route without a limit."""
        if f"{self.route.endpoint.__module__}.{self.route.endpoint.__name__}" in _OWN_LIMITS:
            return "RATE_LIMIT_WEBHOOKS" if self.path.startswith(WEBHOOKS_PREFIX) else "RATE_LIMIT_PAYMENTS"
        return "RATE_LIMIT_DEFAULT" if check_default_limit in _calls(self.route.dependant) else None

    @property
    def idempotent(self) -> bool:
        """Whether it honours an Idempotency-Key header."""
        return IDEMPOTENCY_HEADER in _headers(self.route.dependant)

    @property
    def authenticated(self) -> bool:
        return self.role not in (ANYONE, PAYSTACK)

    @property
    def errors(self) -> list[type[AppError]]:
        parameters = self.spec.get("parameters", [])
        derived: list[type[AppError]] = []
        if requires_authentication(self.path):
            derived.append(Unauthenticated)
        if self.role in (ADMIN, ADMIN_OR_SERVICE):
            derived.append(Unauthorized)
        if parameters or "requestBody" in self.spec:
            derived.append(ValidationFailed)
        if "requestBody" in self.spec and self.role != PAYSTACK:  # the webhook bounds its own body (422)
            derived.append(PayloadTooLarge)
        if self.rate_limit:
            derived.append(RateLimited)
        if self.idempotent:
            derived += [IdempotencyConflict, IdempotencyInProgress]
        unique = {error.code: error for error in (*derived, *self.notes.errors)}
        return sorted(unique.values(), key=lambda error: (error.status_code, error.code))


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _headers(dependant: Dependant) -> Iterator[str]:
    """The names of the headers a route's dependencies read."""
    yield from (param.alias for param in dependant.header_params)
    for dependency in dependant.dependencies:
        yield from _headers(dependency)


def operations(app: FastAPI, schema: dict[str, Any] | None = None) -> list[Operation]:
    """The operations of `schema` (default: the app's) in its order, each with its route and notes; KeyError for a
    route without notes."""
    schema = schema if schema is not None else app.openapi()
    routes = {(method, context.path): context for context in iter_route_contexts(app.routes)
              if isinstance(getattr(context, "original_route", context), APIRoute) for method in context.methods or ()}
    found = []
    for path, methods in schema["paths"].items():
        for method, spec in methods.items():
            key = (method.upper(), path)
            if key not in NOTES:
                raise KeyError(f"{key[0]} {path} has no entry in NOTES (app/apidocs.py)")
            found.append(Operation(key[0], path, spec.get("tags", ["other"])[0], spec, routes[key], NOTES[key]))
    return found


def resolved(schema: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """`item`, or what its local `$ref` points to."""
    ref = item.get("$ref")
    if not ref:
        return item
    found: Any = schema
    for part in str(ref).removeprefix("#/").split("/"):
        found = found[part]
    return dict(found)


def error_codes() -> list[tuple[str, int]]:
    """(code, status) of every error the service answers with, by status."""
    classes: list[type[AppError]] = [AppError]
    for error in classes:
        classes.extend(error.__subclasses__())
    codes = {error.code: error.status_code for error in classes}
    for status, code in _STATUS_CODES.items():  # the framework's own errors, rendered in the envelope too
        codes.setdefault(code, status)
    return sorted(codes.items(), key=lambda item: (item[1], item[0]))


def _schema_name(schema: dict[str, Any]) -> str | None:
    """The name of a body or answer schema; None for one declared inline (a plain dict, CSV, text)."""
    ref = schema.get("$ref")
    return str(ref).rsplit("/", 1)[-1] if ref else None


def _answer(spec: dict[str, Any]) -> str:
    status = next(code for code in spec["responses"] if code.startswith("2"))
    content = spec["responses"][status].get("content", {}).get("application/json", {})
    name = _schema_name(content.get("schema", {}))
    return f"{status} `{name}`" if name else status


def _parameters(schema: dict[str, Any], spec: dict[str, Any]) -> str:
    parameters = [resolved(schema, p) for p in spec.get("parameters", [])]
    return ", ".join(f"`{p['name']}` ({p['in']}{', required' if p.get('required') else ''})" for p in parameters)


def _body(spec: dict[str, Any]) -> str | None:
    body = spec.get("requestBody")
    if body is None:
        return None
    name = _schema_name(body["content"]["application/json"]["schema"])
    return f"`{name}` (JSON)" if name else "JSON"


def _error_list(errors: list[type[AppError]]) -> str:
    return ", ".join(f"{error.status_code} `{error.code}`" for error in errors) or "none"


HEADER = f"""# HTTP API

Generated by `{COMMAND}` from the app's OpenAPI schema and its routes (`app/apidocs.py`): do not
edit it by hand; `tests/test_api_docs.py` fails when this file differs from what the generator makes.
A running server also serves the schema at `/openapi.json` and Swagger UI at `/docs`. The sandbox's
emulation of Paystack (`/sandbox/paystack/...`, sandbox mode only) is not part of this API.

## Conventions

- **Authentication.** `Authorization: Bearer <JWT>`, HS256 with `JWT_SECRET`, RS256 or ES256 with
  `JWT_PUBLIC_KEY`, or the identity provider's keys at `JWT_JWKS_URL`; `iss` and `aud` checked when
  `JWT_ISSUER` and `JWT_AUDIENCE` are set. Claims: `sub` (the user id), `roles` (may hold `admin` and
  `service`), `email` (optional), `exp` ([authentication.md](authentication.md) has an example). Every `/v1/`
  route but the Paystack webhook authenticates its caller before reading the body.
  `python -m app token --sub USER [--role admin]` prints a development token.
- **Who may call.** `{ANYONE}`: no token needed; `{PAYSTACK}`: no token, a valid signature
  instead; `{SIGNED_IN}`: any valid token; `{ADMIN}`, `{ADMIN_OR_SERVICE}`: a token with that role. After
  a colon, whom the route serves among those callers. Someone else's object that the caller may not see is 404
  `NOT_FOUND`; an action the caller may not take on something it can see is 403 `UNAUTHORIZED`.
- **Errors.** Every error, including validation, 404, 405, 429 and 500, is
  `{{"error": {{"code": str, "message": str, "details": object}}}}`. Each route lists the codes it answers
  with; any route may also answer 405 `METHOD_NOT_ALLOWED` and 500 `INTERNAL_ERROR`, and control characters
  in the path or query are 422 `VALIDATION_ERROR` everywhere.
- **Money.** Amounts are decimal strings in major units (`"1000.00"`) beside a `currency`; JSON numbers are
  accepted when they convert exactly. Percentages are decimal strings with at most two places.
- **Lists.** `{{"items": [...], "next_cursor": str | null}}` with `?limit=` (1..200, default 50) and
  `?cursor=` (the previous page's `next_cursor`).
- **Idempotency-Key.** Optional on the routes that list it as a parameter: 1 to 255 printable characters,
  scoped to the caller. The same key and body replay the first answer (header `Idempotent-Replayed: true`);
  another body is 422 `IDEMPOTENCY_CONFLICT`; while the first request runs, 409 `IDEMPOTENCY_IN_PROGRESS`.
- **Rate limits.** Per user when authenticated, per client IP otherwise: `RATE_LIMIT_DEFAULT` on every
  route that has a limit, `RATE_LIMIT_PAYMENTS` instead on the money-moving POSTs, `RATE_LIMIT_WEBHOOKS` on
  the webhook. Over the limit: 429 `RATE_LIMITED` with `Retry-After`.
- **Answers.** A POST that creates something answers 201 and the object; one that changes something answers
  200 and the object after the change.
"""


def render(app: FastAPI) -> str:
    schema = app.openapi()
    found = operations(app, schema)
    answered = {error.code for operation in found for error in operation.errors}
    answered |= {"METHOD_NOT_ALLOWED", "INTERNAL_ERROR"}  # any route, as the conventions say
    lines = [HEADER, "## Error codes", "", "| code | status | when |", "| --- | --- | --- |"]
    for code, status in error_codes():
        unused = "" if code in answered else " (no route answers it at present)"
        lines.append(f"| `{code}` | {status} | {WHEN[code]}{unused} |")
    lines += ["", "## Routes", "", "| method | path | summary | who may call |", "| --- | --- | --- | --- |"]
    lines += [f"| {o.method} | `{o.path}` | {o.notes.summary} | {o.callers} |" for o in found]
    for tag in dict.fromkeys(operation.tag for operation in found):
        lines += ["", f"## {tag.capitalize()}"]
        for operation in (o for o in found if o.tag == tag):
            lines += ["", f"### `{operation.method} {operation.path}`", "", f"{operation.notes.summary}."]
            if operation.notes.details:
                lines[-1] += f" {operation.notes.details}"
            lines += ["", f"- Who may call: {operation.callers}"]
            if operation.spec.get("parameters"):
                lines.append(f"- Parameters: {_parameters(schema, operation.spec)}")
            body = _body(operation.spec)
            if body:
                lines.append(f"- Body: {body}")
            lines.append(f"- Answer: {_answer(operation.spec)}")
            limit = operation.rate_limit
            lines.append(f"- Rate limit: {f'`{limit}`' if limit else 'none'}")
            lines.append(f"- Errors: {_error_list(operation.errors)}")
    return "\n".join(lines) + "\n"
