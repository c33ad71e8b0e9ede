"""Hostile input never reaches a handler: control characters, oversized and endless bodies, bodies from anonymous
callers, malformed and deeply nested JSON. Each is answered in the envelope before anything is stored and before
the gateway is called (on PostgreSQL a NUL used to be a 500 after Paystack had initialised the charge)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from app.apidocs import resolved
from app.core.config import Settings
from app.core.routing import MAX_JSON_DEPTH
from app.main import create_app
from tests.conftest import BASE_URL
from tests.core.test_errors import assert_error, investment, payment_count
from tests.helpers import OWNER, invest, put_app

Auth = Callable[..., dict[str, str]]
MILESTONE = {"title": "Beta", "release_percentage": "20"}


def fields_of(response: httpx.Response) -> list[list[str]]:
    return [field["loc"] for field in assert_error(response, 422, "VALIDATION_ERROR")["details"]["fields"]]


def list_paths(app: FastAPI) -> list[str]:
    """Every GET operation with a `cursor` (the lists), path parameters filled in."""
    paths = []
    schema = app.openapi()
    for path, operations in schema["paths"].items():
        parameters = [resolved(schema, parameter) for parameter in operations.get("get", {}).get("parameters", [])]
        if any(parameter["name"] == "cursor" for parameter in parameters):
            paths.append(path.replace("{", "").replace("}", ""))
    return paths


def gateway_charges(app: FastAPI) -> int:
    return len(app.state.sandbox.transactions)


# Control characters: path, query, body, token


@pytest.mark.parametrize("path", ["/v1/payments/%00", "/v1/payments/pay-%00-x/verify", "/v1/apps/app%001",
                                  "/v1/escrow/transactions/%0A", "/v1/disputes/%7F", "/v1/share-transfers/%C2%85"])
async def test_control_character_in_the_path_is_a_validation_error(
    client: httpx.AsyncClient, auth: Auth, path: str
) -> None:
    method = client.post if path.endswith("/verify") else client.get
    assert fields_of(await method(path, headers=auth("investor-1"))) == [["path"]]


async def test_control_character_in_any_lists_cursor_is_a_validation_error(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    paths = list_paths(app)
    assert len(paths) >= 8 and "/v1/payments" in paths
    for path in paths:
        for cursor in ("\x00", "pay_\x00", "\x1b[2J", "\x85"):
            response = await client.get(path, params={"cursor": cursor}, headers=auth("admin-1", admin=True))
            assert fields_of(response) == [["query", "cursor"]], path


@pytest.mark.parametrize(
    "params",
    [{"app_id": "app-1\x00"}, {"investor_id": "\x00"}, {"status": "pending\x00"}, {"\x00": "x"},
     {"app_id": "app\n1"}, {"app_id": "app\t1"}],
)
async def test_control_character_in_a_query_parameter_is_a_validation_error(
    client: httpx.AsyncClient, auth: Auth, params: dict[str, str]
) -> None:
    response = await client.get("/v1/escrow/transactions", params=params, headers=auth("admin-1", admin=True))
    name = next(iter(params))
    assert fields_of(response) == [["query", name]]


async def test_nul_in_app_id_milestone_title_app_name_and_buyer_id_is_refused(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    app_body = {"name": "Farm\x00Tools", "owner_id": OWNER, "currency": "NGN", "share_price": "1000.00",
                "total_shares": 1000}
    assert fields_of(await client.put("/v1/apps/app-2", json=app_body, headers=admin)) == [["body", "name"]]
    owner_body = {**app_body, "name": "Farm Tools", "owner_id": "owner\x00"}
    assert fields_of(await client.put("/v1/apps/app-2", json=owner_body, headers=admin)) == [["body", "owner_id"]]
    approvers = {**app_body, "name": "Farm Tools", "approvers": ["a", "b\x00"]}
    assert fields_of(await client.put("/v1/apps/app-2", json=approvers, headers=admin)) \
        == [["body", "approvers", "1"]]
    milestone = {**MILESTONE, "title": "Beta\x00"}
    assert fields_of(await client.post("/v1/apps/app-1/milestones", json=milestone, headers=admin)) \
        == [["body", "title"]]
    assert fields_of(await client.post("/v1/payments", json=investment(shares=1, app_id="app-1\x00"),
                                       headers=investor)) == [["body", "app_id"]]
    offer = {"app_id": "app-1", "buyer_id": "buyer\x00", "shares": 1, "price_per_share": "1000"}
    assert fields_of(await client.post("/v1/share-transfers", json=offer, headers=investor)) \
        == [["body", "buyer_id"]]
    assert (await client.get("/v1/apps/app-2", headers=admin)).status_code == 404
    assert (await client.get("/v1/apps/app-1/milestones", headers=admin)).json()["items"] == []


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"email": "investor\x00@example.com"}, ["body", "email"]),
        ({"callback_url": "https://frontend.example/\x00"}, ["body", "callback_url"]),
        ({"metadata": {"note": "a\x00b"}}, ["body", "metadata", "note"]),
        ({"metadata": {"no\x00te": "x"}}, ["body", "metadata"]),  # a key
        ({"metadata": {"\x00": "x"}}, ["body", "metadata"]),
        ({"metadata": {"note": "\x7f"}}, ["body", "metadata", "note"]),
        ({"metadata": {"note": "\x9b31m"}}, ["body", "metadata", "note"]),
        ({"metadata": {"list": ["ok", "\x1b"]}}, ["body", "metadata", "list", "1"]),
    ],
)
async def test_control_character_in_a_payment_is_refused_before_the_gateway(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, fields: dict[str, Any], where: list[str]
) -> None:
    await put_app(client, auth("admin-1", admin=True))
    investor = auth("investor-1")
    assert fields_of(await client.post("/v1/payments", json=investment(shares=1, **fields), headers=investor)) \
        == [where]
    assert gateway_charges(app) == 0  # Paystack was never asked: no orphan charge at the gateway
    assert await payment_count(client, investor) == 0


async def test_lone_surrogate_in_a_body_is_refused(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))
    content = (b'{"payment_type": "investment", "app_id": "app-1", "email": "investor@example.com", '
               b'"currency": "NGN", "shares": 1, "metadata": {"note": "\\ud800"}}')
    response = await client.post("/v1/payments", content=content,
                                 headers={**auth("investor-1"), "Content-Type": "application/json"})
    assert fields_of(response) == [["body", "metadata", "note"]]
    assert gateway_charges(app) == 0


async def test_free_text_in_a_body_may_break_lines(client: httpx.AsyncClient, auth: Auth) -> None:
    admin = auth("admin-1", admin=True)
    await put_app(client, admin)
    body = {**MILESTONE, "description": "Ships the beta.\r\n\tThen:\n- feedback"}
    response = await client.post("/v1/apps/app-1/milestones", json=body, headers=admin)
    assert response.status_code == 201, response.text
    assert response.json()["description"] == body["description"]


def token(settings: Settings, **claims: Any) -> dict[str, str]:
    payload = {"sub": "investor-1", "roles": [], "exp": int(time.time()) + 600, **claims}
    return {"Authorization": f"Bearer {jwt.encode(payload, settings.jwt_secret.get_secret_value(), 'HS256')}"}


@pytest.mark.parametrize(
    "claims",
    [{"sub": "investor\x00"}, {"sub": "\x00"}, {"sub": "investor-1\n"}, {"sub": "inv\ud800"},
     {"roles": ["admin\x00"]}, {"email": "a\x00@example.com"}],
)
async def test_token_with_control_characters_in_its_claims_is_401(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, settings: Settings, claims: dict[str, Any]
) -> None:
    await put_app(client, auth("admin-1", admin=True))
    headers = token(settings, **claims)
    assert_error(await client.get("/v1/payments", headers=headers), 401, "UNAUTHENTICATED")
    assert_error(await client.post("/v1/payments", json=investment(shares=1), headers=headers),
                 401, "UNAUTHENTICATED")
    assert gateway_charges(app) == 0


# Body size


async def test_a_body_over_the_limit_is_413(client: httpx.AsyncClient, app: FastAPI, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))
    big = investment(shares=1, metadata={"note": "x" * (64 * 1024)})
    error = assert_error(await client.post("/v1/payments", json=big, headers=auth("investor-1")),
                         413, "PAYLOAD_TOO_LARGE")
    assert error["details"] == {"limit": 64 * 1024}
    assert gateway_charges(app) == 0


async def asgi_call(app: FastAPI, method: str, path: str, headers: list[tuple[bytes, bytes]],
                    chunks: list[bytes]) -> tuple[int, bytes, int]:
    """Calls the app directly: returns the status, the body and how many body chunks the app asked for."""
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        if asked <= len(chunks):
            return {"type": "http.request", "body": chunks[asked - 1], "more_body": asked < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", b"testserver"), *headers], "client": ("127.0.0.1", 1234),
             "server": ("testserver", 80)}
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), asked


async def test_a_declared_length_over_the_limit_is_refused_before_reading(app: FastAPI, auth: Auth) -> None:
    bearer = auth("investor-1")["Authorization"].encode()
    headers = [(b"authorization", bearer), (b"content-type", b"application/json"),
               (b"content-length", b"209715200")]  # 200 MB announced
    status, body, asked = await asgi_call(app, "POST", "/v1/payments", headers, [b"{" * 1024] * 4)
    assert status == 413 and b"PAYLOAD_TOO_LARGE" in body
    assert asked == 0  # not one byte read


async def test_an_anonymous_body_is_refused_before_reading(app: FastAPI) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"209715200")]
    status, body, asked = await asgi_call(app, "POST", "/v1/payments", headers, [b"{" * 1024] * 4)
    assert status == 401 and b"UNAUTHENTICATED" in body
    assert asked == 0
    small = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    status, body, asked = await asgi_call(app, "POST", "/v1/payments", small, [b"{}"])
    assert (status, asked) == (401, 0)


async def test_a_streamed_body_is_cut_off_at_the_limit(app: FastAPI, auth: Auth) -> None:
    """No Content-Length (chunked): reading stops at the limit, not at the end of 6.4 MB."""
    chunk = b" " * (64 * 1024)
    headers = [(b"authorization", auth("investor-1")["Authorization"].encode()),
               (b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    status, body, asked = await asgi_call(app, "POST", "/v1/payments", headers, [b"{" + chunk, *[chunk] * 99])
    assert status == 413 and b"PAYLOAD_TOO_LARGE" in body
    assert asked <= 3


async def test_a_streamed_body_over_the_limit_through_httpx(client: httpx.AsyncClient, auth: Auth) -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(100):
            pulled += 1
            yield b" " * (64 * 1024)

    response = await client.post("/v1/apps/app-1/milestones", content=body(),
                                 headers={**auth("admin-1", admin=True), "Content-Type": "application/json"})
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert pulled < 100


async def test_the_limit_is_a_setting(make_settings: Callable[..., Settings], auth: Auth) -> None:
    application = create_app(make_settings(max_request_body_bytes=512), loopback=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(application), base_url=BASE_URL) as http:
        admin = auth("admin-1", admin=True)
        body = {**MILESTONE, "description": "x" * 600}
        assert_error(await http.post("/v1/apps/app-1/milestones", json=body, headers=admin),
                     413, "PAYLOAD_TOO_LARGE")


async def test_the_webhook_keeps_its_own_larger_limit(client: httpx.AsyncClient) -> None:
    body = b'{"event": "charge.success", "data": {"note": "' + b"x" * 200_000 + b'"}}'
    response = await client.post("/v1/webhooks/paystack", content=body,
                                 headers={"Content-Type": "application/json", "x-paystack-signature": "0" * 128})
    assert_error(response, 400, "INVALID_SIGNATURE")  # read and checked, not refused for its size


# Malformed JSON


def nested(depth: int) -> bytes:
    """A payment whose JSON nests `depth` levels of objects: the body, then its metadata's."""
    inner = '"deep"'
    for _ in range(depth - 1):
        inner = '{"a": ' + inner + "}"
    return ('{"payment_type": "investment", "app_id": "app-1", "email": "investor@example.com", '
            f'"currency": "NGN", "shares": 1, "metadata": {inner}}}').encode()


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 30_000 + b"]" * 30_000,  # past the parser's recursion limit: was 400
        b'{"a": ' * 8_000 + b"1" + b"}" * 8_000,
        nested(MAX_JSON_DEPTH + 1),
        b'{"payment_type": "investment", "app_id": "app-1", "email": "\xff\xfe"}',  # not UTF-8
        b'{"payment_type": "investment", "metadata": {"n": NaN}}',
        b'{"payment_type": "investment", "metadata": {"n": Infinity}}',
        b'{"payment_type": "investment", "metadata": {"n": ' + b"9" * 5000 + b"}}",  # past int conversion
        b"\xef\xbb\xbf{}",  # a byte order mark
    ],
)
async def test_malformed_json_is_a_validation_error_and_anonymous_callers_get_401_first(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth, content: bytes
) -> None:
    await put_app(client, auth("admin-1", admin=True))
    json_headers = {"Content-Type": "application/json"}
    for path in ("/v1/payments", "/v1/apps/app-1/milestones", "/v1/share-transfers", "/v1/disputes"):
        response = await client.post(path, content=content, headers={**json_headers, **auth("investor-1")})
        assert_error(response, 422, "VALIDATION_ERROR")
        assert_error(await client.post(path, content=content, headers=json_headers), 401, "UNAUTHENTICATED")
    response = await client.put("/v1/apps/app-2", content=content, headers={**json_headers,
                                                                            **auth("admin-1", admin=True)})
    assert_error(response, 422, "VALIDATION_ERROR")
    assert gateway_charges(app) == 0


async def test_json_up_to_the_depth_limit_is_accepted(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))
    response = await client.post("/v1/payments", content=nested(MAX_JSON_DEPTH),
                                 headers={**auth("investor-1"), "Content-Type": "application/json"})
    assert response.status_code == 201, response.text


async def test_metadata_number_too_large_for_a_float_is_refused(client: httpx.AsyncClient, auth: Auth) -> None:
    await put_app(client, auth("admin-1", admin=True))
    content = nested(2).replace(b'"deep"', b"1e400")  # would be stored as Infinity, which is not JSON
    response = await client.post("/v1/payments", content=content,
                                 headers={**auth("investor-1"), "Content-Type": "application/json"})
    assert_error(response, 422, "VALIDATION_ERROR")


# 405


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("DELETE", "/v1/payments", "GET, POST"), ("PATCH", "/v1/apps/app-1", "GET, PUT"),
     ("PUT", "/v1/payout-accounts/me", None), ("PATCH", "/v1/payout-accounts/me", "GET, PUT, DELETE"),
     ("GET", "/v1/escrow/releases/r-1/execute", "POST"), ("POST", "/healthz", "GET")],
)
async def test_405_names_every_method_the_path_serves(
    client: httpx.AsyncClient, auth: Auth, method: str, path: str, allowed: str | None
) -> None:
    response = await client.request(method, path, headers=auth("investor-1"))
    if allowed is None:
        assert response.status_code != 405
        return
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == allowed


async def test_a_paid_investment_still_works_end_to_end(client: httpx.AsyncClient, auth: Auth) -> None:
    """The guard lets an ordinary request through untouched."""
    await put_app(client, auth("admin-1", admin=True))
    payment = await invest(client, auth("investor-1"), shares=2, metadata={"campaign": "spring", "n": 1.5})
    assert payment["metadata"] == {"campaign": "spring", "n": 1.5}
