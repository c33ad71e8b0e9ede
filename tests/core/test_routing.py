"""Routes matched as one under their prefix (`RoutesUnder`), as the sandbox is served inside the service's app:
first among the app's routes, without changing what a request gets or how it is counted."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import REGISTRY

from app.core.errors import install_error_handlers
from app.core.metrics import instrument_http
from app.core.routing import RoutesUnder

PREFIX = "/routes-under-test"
grouped = APIRouter(prefix=PREFIX)


@grouped.get("/items/{item_id}")
async def read_item(item_id: str) -> dict[str, str]:
    return {"item": item_id}


@grouped.post("/items")
async def add_item() -> dict[str, str]:
    return {"added": "yes"}


def app_with_grouped_routes_first() -> FastAPI:
    app = FastAPI()

    @app.get("/elsewhere/{thing}")
    async def elsewhere(thing: str) -> dict[str, str]:
        return {"thing": thing}

    app.router.routes.insert(0, RoutesUnder(PREFIX, grouped.routes))
    install_error_handlers(app)
    instrument_http(app)
    return app


def counted(handler: str, method: str, status: str) -> float:
    return REGISTRY.get_sample_value(
        "http_requests_total", {"handler": handler, "method": method, "status": status}) or 0.0


async def test_requests_under_the_prefix_and_elsewhere_are_answered_and_counted_as_without_the_group() -> None:
    template = f"{PREFIX}/items/{{item_id}}"
    cases = [(template, "GET", "200"), (template, "DELETE", "405"), ("/elsewhere/{thing}", "GET", "200"),
             ("none", "GET", "404")]
    before = {case: counted(*case) for case in cases}
    transport = httpx.ASGITransport(app=app_with_grouped_routes_first())
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        read = await client.get(f"{PREFIX}/items/it-7")
        assert (read.status_code, read.json()) == (200, {"item": "it-7"})
        assert (await client.post(f"{PREFIX}/items")).json() == {"added": "yes"}
        assert (await client.delete(f"{PREFIX}/items/it-7")).status_code == 405
        assert (await client.get(f"{PREFIX}/nothing-here")).status_code == 404
        assert (await client.get("/elsewhere/x")).json() == {"thing": "x"}
    # Each route keeps its own full template as its label: the group is not a route of its own there.
    assert {case: counted(*case) - before[case] for case in cases} == dict.fromkeys(cases, 1.0)


def test_a_route_outside_the_prefix_is_refused() -> None:
    stray = APIRouter()

    @stray.get("/not-under")
    async def not_under() -> None:
        return None

    with pytest.raises(ValueError, match="outside"):
        RoutesUnder(PREFIX, [*grouped.routes, *stray.routes])
