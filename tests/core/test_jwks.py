"""Tokens from an identity provider: keys from its JWKS (RS256 and ES256, chosen by `kid`, fetched once and cached),
JWT_ISSUER and JWT_AUDIENCE checked. The key set is served from this machine (a local HTTP server on 127.0.0.1):
no network."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from app.core.config import Settings
from app.core.security import jwks_keys
from app.main import create_app
from tests.conftest import BASE_URL

ISSUER = "https://id.example.com/"
AUDIENCE = "payment-service"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class KeySetServer:
    """Serves {"keys": [...]} at /jwks.json and counts the fetches; `down` answers 503."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = [
            {**RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), "kid": "rsa-1", "alg": "RS256", "use": "sig"},
            {**ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True), "kid": "ec-1", "alg": "ES256", "use": "sig"},
        ]
        self.fetches = 0
        self.down = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                status, body = (503, b"{}") if owner.down else (200, json.dumps({"keys": owner.keys}).encode())
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def key_set() -> Iterator[KeySetServer]:
    server = KeySetServer()
    yield server
    server.close()
    jwks_keys.cache_clear()


@pytest.fixture
async def idp_client(
    key_set: KeySetServer, make_settings: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(jwt_jwks_url=key_set.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    application = create_app(settings, loopback=True)
    async with LifespanManager(application), httpx.AsyncClient(
        transport=httpx.ASGITransport(application), base_url=BASE_URL
    ) as http:
        yield http


def token(key: Any = RSA_KEY, algorithm: str = "RS256", kid: str | None = "rsa-1", **claims: Any) -> str:
    body = {"sub": "investor-1", "roles": [], "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600,
            **claims}
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


async def holdings(http: httpx.AsyncClient, bearer: str) -> httpx.Response:
    return await http.get("/v1/holdings/me", headers={"Authorization": f"Bearer {bearer}"})


async def test_rs256_and_es256_tokens_from_the_key_set_are_accepted(
    idp_client: httpx.AsyncClient, key_set: KeySetServer
) -> None:
    assert (await holdings(idp_client, token())).status_code == 200
    assert (await holdings(idp_client, token(EC_KEY, "ES256", "ec-1"))).status_code == 200
    admin = await idp_client.get("/v1/admin/integrity",
                                 headers={"Authorization": f"Bearer {token(sub='admin-1', roles=['admin'])}"})
    assert admin.status_code == 200, admin.text


async def test_the_key_set_is_fetched_once_and_cached(idp_client: httpx.AsyncClient, key_set: KeySetServer) -> None:
    for _ in range(5):
        assert (await holdings(idp_client, token())).status_code == 200
    assert key_set.fetches == 1
    key_set.down = True  # the provider going away does not log anyone out who has a known key
    assert (await holdings(idp_client, token(EC_KEY, "ES256", "ec-1"))).status_code == 200
    assert key_set.fetches == 1


async def test_an_unknown_kid_is_refused_and_not_fetched_again_and_again(
    idp_client: httpx.AsyncClient, key_set: KeySetServer
) -> None:
    for _ in range(3):
        refused = await holdings(idp_client, token(kid="made-up"))
        assert refused.status_code == 401
        assert refused.json()["error"] == {"code": "UNAUTHENTICATED", "message": "Invalid token: unknown signing key",
                                           "details": {}}
    assert key_set.fetches == 1


@pytest.fixture
def no_refresh_cooldown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.core.security.JWKS_REFRESH_COOLDOWN_SECONDS", 0.0)


async def test_a_key_added_to_the_set_is_found_once_the_cooldown_is_over(
    no_refresh_cooldown: None, idp_client: httpx.AsyncClient, key_set: KeySetServer
) -> None:
    assert (await holdings(idp_client, token())).status_code == 200
    key_set.keys.append({**RSAAlgorithm.to_jwk(OTHER_RSA_KEY.public_key(), as_dict=True), "kid": "rsa-2",
                         "alg": "RS256"})

    assert (await holdings(idp_client, token(OTHER_RSA_KEY, kid="rsa-2"))).status_code == 200
    assert key_set.fetches == 2


@pytest.mark.parametrize(("bad", "message"), [
    (lambda: token(iss="https://elsewhere.example.com/"), "Invalid token: wrong issuer"),
    (lambda: token(iss=None), "Invalid token"),  # iss required when JWT_ISSUER is set
    (lambda: token(aud="another-service"), "Invalid token: wrong audience"),
    (lambda: token(aud=None), "Invalid token"),  # aud required when JWT_AUDIENCE is set
    (lambda: token(OTHER_RSA_KEY), "Invalid token"),  # kid of the set, signed by another key
    (lambda: token(exp=int(time.time()) - 5), "Token expired"),
    (lambda: token(kid=None), "Invalid token: unknown signing key"),
    (lambda: token("test-suite-jwt-secret-0123456789abcdef", "HS256"), "Invalid token"),  # no HS256 with a JWKS
])
async def test_bad_tokens_are_refused(
    idp_client: httpx.AsyncClient, bad: Callable[[], str], message: str
) -> None:
    refused = await holdings(idp_client, bad())

    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == message


async def test_an_audience_list_naming_the_service_is_accepted(idp_client: httpx.AsyncClient) -> None:
    assert (await holdings(idp_client, token(aud=["other", AUDIENCE]))).status_code == 200


async def test_a_key_set_that_cannot_be_fetched_is_401_naming_it(
    idp_client: httpx.AsyncClient, key_set: KeySetServer
) -> None:
    key_set.down = True
    refused = await holdings(idp_client, token())

    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == f"Could not fetch the identity provider's keys from {key_set.url}"


async def test_issuer_and_audience_are_checked_on_hs256_tokens_too(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    secret = settings.jwt_secret.get_secret_value()
    application = create_app(settings, loopback=True)
    async with LifespanManager(application), httpx.AsyncClient(
        transport=httpx.ASGITransport(application), base_url=BASE_URL
    ) as http:
        assert (await holdings(http, token(secret, "HS256", None))).status_code == 200
        assert (await holdings(http, token(secret, "HS256", None, iss="https://other/"))).status_code == 401
        assert (await holdings(http, token(secret, "HS256", None, aud=None))).status_code == 401


def test_a_jwks_url_replaces_the_secret_outside_the_sandbox(key_set: KeySetServer) -> None:
    """Test and live mode refuse the development JWT_SECRET, unless tokens are checked with the key set."""
    with pytest.raises(ValidationError, match="JWT_SECRET is the development default"):
        Settings(_env_file=None, payment_gateway_mode="test")
    Settings(_env_file=None, payment_gateway_mode="test", jwt_jwks_url=key_set.url)
    with pytest.raises(ValidationError, match="JWT_ALGORITHM=ES256 needs JWT_PUBLIC_KEY or JWT_JWKS_URL"):
        Settings(_env_file=None, jwt_algorithm="ES256")
