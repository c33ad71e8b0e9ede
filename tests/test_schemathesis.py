"""Schemathesis over every operation of the app's OpenAPI schema, in-process: no input, however hostile, gets a
server error, every client error is the contract's envelope with the contract's status, and every status answered
is one the operation's schema declares (schemathesis's status_code_conformance).

Schemathesis generates the cases (valid and invalid data, a fixed seed, a few per operation and mode); they are
sent through the ASGI app on the suite's engine (SQLite, or PostgreSQL with TEST_DATABASE_URL), as an admin and
as an investor. So that generated requests get past "not found" and reach the services and the database, string
fields often take values from dictionaries: the seeded app, users, currencies, amounts, periods, and
placeholders for the ids of seeded objects (a paid investment, its deposit, a milestone, a release, a share
offer, a dispute, a distribution and its payout), swapped for the real ids before sending. The gateway is the
in-process sandbox: no network.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, seed
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import FailedHealthCheck, Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode

from app.core.config import Settings
from tests.conftest import BASE_URL, SUMMARY_PROPERTY
from tests.helpers import OWNER, invest, pay, put_app, settle

Auth = Callable[..., dict[str, str]]

SEED = 20260801
EXAMPLES_PER_MODE = 10  # per operation and generation mode: keeps a run within about a minute per engine
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
PERIOD = "2026-05"
# The contract's error codes and their statuses (docs/api.md), and the framework's 405.
STATUS_OF_CODE = {
    "PAYMENT_FAILED": 402, "INVALID_SIGNATURE": 400, "INSUFFICIENT_FUNDS": 409, "INVALID_AMOUNT": 422,
    "UNAUTHORIZED": 403, "UNAUTHENTICATED": 401, "VALIDATION_ERROR": 422, "NOT_FOUND": 404, "INVALID_STATE": 409,
    "FUNDS_FROZEN": 409, "SHARES_UNAVAILABLE": 409, "CURRENCY_NOT_SUPPORTED": 422, "FEATURE_DISABLED": 403,
    "IDEMPOTENCY_CONFLICT": 422, "IDEMPOTENCY_IN_PROGRESS": 409, "RATE_LIMITED": 429, "INVALID_BANK_ACCOUNT": 422,
    "PAYLOAD_TOO_LARGE": 413, "METHOD_NOT_ALLOWED": 405,
}
# Placeholders generated for the ids of seeded objects, by the parameter and body field names that carry them.
PLACEHOLDERS = {
    "reference": "known-reference",
    "transaction_id": "known-transaction",
    "milestone_id": "known-milestone",
    "release_id": "known-release",
    "transfer_id": "known-transfer",
    "share_transfer_id": "known-transfer",
    "dispute_id": "known-dispute",
    "distribution_id": "known-distribution",
    "payout_id": "known-payout",
}
DICTIONARIES: dict[str, tuple[list[Any], list[str]]] = {
    # name: (values, parameters and body fields that draw from it)
    "apps": (["app-1"], ["app_id", "body.app_id"]),
    "users": (["investor-1", OWNER, "admin-1", "buyer-1"],
              ["investor_id", "user_id", "body.owner_id", "body.buyer_id", "body.approvers[*]"]),
    "currencies": (["NGN", "ngn", "USD", "XYZ"], ["currency", "body.currency"]),
    "amounts": (["1000.00", "5000", "1000", "2000.50", "0.01"],
                ["body.amount", "body.share_price", "body.price_per_share"]),
    "percentages": (["25", "2.50", "100", "0"], ["body.release_percentage", "body.platform_fee_percentage"]),
    "periods": ([PERIOD, "2025-12"], ["body.period"]),
    "emails": (["investor@example.com"], ["body.email"]),
    "urls": (["https://example.com/return", "http://example.com/return"], ["body.callback_url"]),
    "banks": (["057"], ["body.bank_code"]),
    "accounts": (["0123456789", "0000000000"], ["body.account_number"]),
    "counts": ([1, 2, 5], ["body.shares", "body.required_approvals"]),
    "years": ([2026, 2025], ["year"]),
    **{f"id-{name}": ([placeholder], [name, f"body.{name}"]) for name, placeholder in PLACEHOLDERS.items()},
}
DICTIONARY_PROBABILITY = 0.5


@dataclass
class Outcome:
    operations: int = 0
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    # Operation label -> statuses it answered that its schema does not declare (schemathesis's
    # status_code_conformance): a client generated from the schema cannot read those answers.
    undocumented: dict[str, set[int]] = field(default_factory=dict)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"escrow_release_threshold": "10000"}


_operations: list[APIOperation] = []


def operations(app: FastAPI) -> list[APIOperation]:
    """The schema's operations, loaded once per process (every app serves the same schema)."""
    if not _operations:
        _operations.extend(load_operations(app.openapi()))
    return _operations


def load_operations(openapi: dict[str, Any]) -> list[APIOperation]:
    config = schemathesis.Config.from_dict({
        "dictionaries": {name: {"values": values} for name, (values, _) in DICTIONARIES.items()},
        "parameters": {
            target: {"dictionary": name, "probability": DICTIONARY_PROBABILITY}
            for name, (_, targets) in DICTIONARIES.items() for target in targets
        },
    })
    schema = schemathesis.openapi.from_dict(openapi, config=config)
    return [result.ok() for result in schema.get_all_operations()]


@functools.cache
def generated_cases(operation: APIOperation, mode: GenerationMode) -> tuple[Case, ...]:
    """The cases for one operation and mode: the same on every run (fixed seed, no example database), drawn
    once per process and shared by the roles tested in it."""
    drawn: list[Case] = []

    @seed(SEED)
    @hypothesis_settings(
        max_examples=EXAMPLES_PER_MODE, database=None, deadline=None, derandomize=False,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[check for check in HealthCheck if check is not HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def draw(case: Case) -> None:
        drawn.append(case)

    # Nothing to make invalid (no parameters, or only free-form strings): no negative cases. Hypothesis says so
    # early with the filter health check, or, having tried every possible input, with Unsatisfiable.
    with contextlib.suppress(FailedHealthCheck, Unsatisfiable):
        draw()
    return tuple(drawn)


async def seed_objects(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> dict[str, str]:
    """Objects that exist, by the placeholder generated for their ids."""
    admin, owner, investor = auth("admin-1", admin=True), auth(OWNER), auth("investor-1")

    async def created(response: httpx.Response, status: int = 201) -> dict[str, Any]:
        assert response.status_code == status, response.text
        return response.json()

    await put_app(client, admin, required_approvals=1)
    payment = await invest(client, investor, shares=10)
    await pay(client, app, payment)
    deposit = (await created(await client.get("/v1/escrow/transactions", params={"type": "deposit"},
                                              headers=admin), 200))["items"][0]
    revenue = await created(await client.post("/v1/payments", headers=owner, json={
        "payment_type": "revenue", "app_id": "app-1", "email": "owner@example.com", "currency": "NGN",
        "amount": "5000.00", "period": PERIOD}))
    await pay(client, app, revenue)
    distribution = await created(await client.post("/v1/apps/app-1/distributions", headers=admin,
                                                   json={"period": PERIOD, "currency": "NGN"}))
    await settle(app)
    payout = (await created(await client.get("/v1/payouts", headers=admin), 200))["items"][0]
    milestone = await created(await client.post("/v1/apps/app-1/milestones", headers=admin,
                                                json={"title": "Beta", "release_percentage": "20"}))
    await created(await client.post(f"/v1/milestones/{milestone['id']}/complete", headers=owner,
                                    json={"evidence": "shipped"}), 200)
    release = await created(await client.post("/v1/escrow/releases", headers=admin,
                                              json={"milestone_id": milestone["id"]}))
    offer = await created(await client.post("/v1/share-transfers", headers=investor, json={
        "app_id": "app-1", "buyer_id": "buyer-1", "shares": 2, "price_per_share": "1000"}))
    dispute = await created(await client.post("/v1/disputes", headers=investor, json={
        "transaction_id": deposit["id"], "reason": "not as described", "amount": "1000.00"}))
    return {
        PLACEHOLDERS["reference"]: payment["reference"],
        PLACEHOLDERS["transaction_id"]: deposit["id"],
        PLACEHOLDERS["milestone_id"]: milestone["id"],
        PLACEHOLDERS["release_id"]: release["id"],
        PLACEHOLDERS["transfer_id"]: offer["id"],
        PLACEHOLDERS["dispute_id"]: dispute["id"],
        PLACEHOLDERS["distribution_id"]: distribution["id"],
        PLACEHOLDERS["payout_id"]: payout["id"],
    }


def with_known_ids(value: Any, known: dict[str, str]) -> Any:
    if isinstance(value, str):
        return known.get(value, value)
    if isinstance(value, dict):
        return {key: with_known_ids(item, known) for key, item in value.items()}
    if isinstance(value, list):
        return [with_known_ids(item, known) for item in value]
    return value


def request_of(case: Case, headers: dict[str, str], known: dict[str, str]) -> dict[str, Any]:
    """The case as httpx keyword arguments: placeholders swapped for the seeded ids, the role's token in place
    of any generated Authorization header."""
    kwargs = case.as_transport_kwargs(base_url=BASE_URL)
    kwargs.pop("cookies", None)
    url = urlsplit(kwargs["url"])
    path = "/".join(quote(known[segment], safe="") if segment in known else segment
                    for segment in url.path.split("/"))
    kwargs["url"] = urlunsplit(url._replace(path=path))
    kwargs["params"] = with_known_ids(kwargs.get("params") or {}, known)
    if "json" in kwargs:
        kwargs["json"] = with_known_ids(kwargs["json"], known)
    if "data" in kwargs:
        kwargs["content"] = kwargs.pop("data")
    sent_headers = {name: value for name, value in kwargs.pop("headers").items() if name.lower() != "authorization"}
    kwargs["headers"] = {**sent_headers, **headers}
    return kwargs


def problem_with(response: httpx.Response) -> str | None:
    if response.status_code >= 500:
        return "server error"
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return "error response is not JSON"
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], dict)
            and set(body["error"]) == {"code", "message", "details"} and isinstance(body["error"]["details"], dict)):
        return "error response is not the envelope"
    if STATUS_OF_CODE.get(body["error"]["code"]) != response.status_code:
        return f"error code {body['error']['code']} with status {response.status_code}"
    return None


def documented(operation: APIOperation, status: int) -> bool:
    """Whether the operation's responses declare `status`, as schemathesis's status_code_conformance reads them
    (an exact code, a range such as `4XX`, or `default`)."""
    declared = {str(code).upper() for code in operation.definition.raw.get("responses", {})}
    return bool({str(status), f"{str(status)[0]}XX", "DEFAULT"} & declared)


def describe(case: Case, request: dict[str, Any], response: httpx.Response | None, problem: str) -> str:
    sent = {key: request.get(key) for key in ("url", "params", "json", "content")}
    answer = f"{response.status_code} {response.text[:300]}" if response is not None else "no response"
    return f"{case.operation.label}: {problem}: {sent!r:.600} -> {answer}"


async def run_operations(app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str],
                         known: dict[str, str]) -> Outcome:
    outcome = Outcome()
    for operation in operations(app):
        outcome.operations += 1
        if not generated_cases(operation, GenerationMode.POSITIVE):
            outcome.failures.append(f"{operation.label}: schemathesis generated no case")
        for mode in MODES:
            for case in generated_cases(operation, mode):
                outcome.cases += 1
                request = request_of(case, headers, known)
                try:
                    response = await client.request(**request)
                except Exception as error:  # the app raised through the transport: a server error
                    outcome.failures.append(describe(case, request, None, f"raised {error!r}"))
                    continue
                outcome.statuses[response.status_code] = outcome.statuses.get(response.status_code, 0) + 1
                if not documented(operation, response.status_code):
                    outcome.undocumented.setdefault(operation.label, set()).add(response.status_code)
                problem = problem_with(response)
                if problem is not None:
                    outcome.failures.append(describe(case, request, response, problem))
    return outcome


def undocumented_summary(outcome: Outcome) -> str:
    return "[" + "; ".join(f"{label} {sorted(codes)}" for label, codes in sorted(outcome.undocumented.items())) + "]"


@pytest.mark.starts_first
@pytest.mark.parametrize("role", ["admin", "investor"])
async def test_no_generated_request_gets_a_server_error(
    app: FastAPI, auth: Auth, settings: Settings, role: str, record_property: Callable[[str, object], None]
) -> None:
    started = time.perf_counter()
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        known = await seed_objects(client, app, auth)
        headers = auth("admin-1", admin=True) if role == "admin" else auth("investor-1")
        outcome = await run_operations(app, client, headers, known)
    engine = "postgresql" if settings.is_postgres else "sqlite"
    # Shown at the end of the run by conftest's pytest_terminal_summary: a test's own output is lost under xdist.
    record_property(SUMMARY_PROPERTY, f"schemathesis [{engine}, {role}]: {outcome.operations} operations, "
                    f"{outcome.cases} cases, seed {SEED}, statuses {dict(sorted(outcome.statuses.items()))}, "
                    f"{len(outcome.failures)} failures, "
                    f"undocumented statuses on {len(outcome.undocumented)} operations "
                    f"{undocumented_summary(outcome)}, {time.perf_counter() - started:.1f} s")
    undocumented = [f"{label}: answered {sorted(codes)}, which its responses do not declare (add the error to its "
                    "NOTES entry in app/apidocs.py)" for label, codes in sorted(outcome.undocumented.items())]
    assert not outcome.failures + undocumented, "\n".join((outcome.failures + undocumented)[:40])
