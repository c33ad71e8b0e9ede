"""The HTTP request metrics middleware, on a small app of its own: templates, statuses, failures."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from app.core.metrics import instrument_http


async def item(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.path_params["item_id"], status_code=201)


async def broken(_: Request) -> PlainTextResponse:
    raise RuntimeError("a bug")


def answered(handler: str, method: str, status: str) -> float:
    return REGISTRY.get_sample_value(
        "http_requests_total", {"handler": handler, "method": method, "status": status}) or 0.0


async def test_requests_are_counted_by_template_method_and_status_with_a_failure_as_500() -> None:
    app = Starlette(routes=[Route("/metrics-test/items/{item_id}", item, methods=["POST"]),
                            Route("/metrics-test/broken", broken)])
    instrument_http(app)
    cases = [("/metrics-test/items/{item_id}", "POST", "201"), ("/metrics-test/items/{item_id}", "GET", "405"),
             ("/metrics-test/broken", "GET", "500"), ("none", "GET", "404"), ("none", "other", "404")]
    before = {case: answered(*case) for case in cases}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.post("/metrics-test/items/it-41")).status_code == 201
        assert (await client.get("/metrics-test/items/it-41")).status_code == 405
        assert (await client.get("/metrics-test/broken")).status_code == 500
        assert (await client.get("/metrics-test/nowhere/42")).status_code == 404
        assert (await client.request("BREW", "/metrics-test/nowhere")).status_code == 404
    assert {case: answered(*case) - before[case] for case in cases} == dict.fromkeys(cases, 1.0)
    timed = REGISTRY.get_sample_value("http_request_duration_seconds_count", {
        "handler": "/metrics-test/items/{item_id}", "method": "POST", "status": "201"})
    assert timed is not None and timed >= 1
