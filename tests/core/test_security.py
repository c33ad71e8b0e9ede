"""Tokens (HS256, RS256, the dev CLI), settings that refuse unsafe modes, and encryption at rest."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import select

from app import wiring
from app.__main__ import main as cli_main
from app.core.config import DEV_ENCRYPTION_KEY, DEV_JWT_SECRET, Settings, get_settings
from app.core.crypto import FieldCipher
from app.main import create_app
from app.models import Payment
from app.runtime import build_runtime
from tests.conftest import BASE_URL
from tests.helpers import get_payment, invest, pay, put_app

ROOT = Path(__file__).resolve().parents[2]
Auth = Callable[..., dict[str, str]]
APP_BODY = {"name": "Farm Tools", "owner_id": "owner-1", "currency": "NGN", "share_price": "1000.00",
            "total_shares": 1000}
# Settings the CLI must not pick up from the developer's shell
SETTINGS_ENV = ("PAYMENT_GATEWAY_MODE", "PAYSTACK_SECRET_KEY", "JWT_SECRET", "JWT_ALGORITHM", "JWT_PUBLIC_KEY",
                "ENCRYPTION_KEYS")


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings, loopback=True)
    async with (
        LifespanManager(application, startup_timeout=30, shutdown_timeout=30),
        httpx.AsyncClient(transport=httpx.ASGITransport(application), base_url=BASE_URL) as http,
    ):
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hs256(secret: str, **claims: Any) -> str:
    return jwt.encode({"sub": "user-1", "roles": [], "exp": int(time.time()) + 600, **claims}, secret, "HS256")


# HS256 and RS256


async def test_hs256_token_is_accepted_with_its_claims(client: httpx.AsyncClient, settings: Settings) -> None:
    secret = settings.jwt_secret.get_secret_value()
    response = await client.put("/v1/apps/app-1", json=APP_BODY, headers=bearer(hs256(secret, roles=["admin"])))
    assert response.status_code == 200, response.text
    # the same user without the admin role is refused
    refused = await client.put("/v1/apps/app-1", json=APP_BODY, headers=bearer(hs256(secret)))
    assert refused.status_code == 403
    # a token signed with 'none' is not a token
    unsigned = jwt.encode({"sub": "user-1", "roles": ["admin"], "exp": int(time.time()) + 600}, None, "none")
    assert (await client.get("/v1/payments", headers=bearer(unsigned))).status_code == 401


async def test_expired_token_is_401(client: httpx.AsyncClient, settings: Settings) -> None:
    token = hs256(settings.jwt_secret.get_secret_value(), exp=int(time.time()) - 5)
    response = await client.get("/v1/payments", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


async def test_rs256_option(make_settings: Callable[..., Settings]) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    settings = make_settings(jwt_algorithm="RS256", jwt_public_key=public_pem)
    claims = {"sub": "rs-admin", "roles": ["admin"], "exp": int(time.time()) + 600}

    async with serve(settings) as http:
        good = jwt.encode(claims, key, algorithm="RS256")
        response = await http.put("/v1/apps/app-1", json=APP_BODY, headers=bearer(good))
        assert response.status_code == 200, response.text
        assert (await http.get("/v1/apps/app-1", headers=bearer(good))).status_code == 200

        rejected = [
            # HS256 with the (still configured) shared secret: not the configured algorithm
            hs256(settings.jwt_secret.get_secret_value(), roles=["admin"]),
            # HS256 keyed with the public key text: the classic algorithm-confusion attack
            jwt.encode(claims, public_pem.encode(), algorithm="HS256") if _hmac_with_pem_allowed() else None,
            # RS256 signed by someone else's key
            jwt.encode(claims, other_key, algorithm="RS256"),
            # RS256, but expired
            jwt.encode({**claims, "exp": int(time.time()) - 5}, key, algorithm="RS256"),
        ]
        for token in filter(None, rejected):
            response = await http.get("/v1/apps/app-1", headers=bearer(token))
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "UNAUTHENTICATED"


def _hmac_with_pem_allowed() -> bool:
    """PyJWT refuses to HMAC with a PEM key; only build that token if this version lets us."""
    try:
        jwt.encode({"sub": "x"}, b"-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----", algorithm="HS256")
    except jwt.InvalidKeyError:
        return False
    return True


# The dev token CLI


@pytest.fixture
def default_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """get_settings() is the default sandbox configuration, uncached, for the duration of the test."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("default_env")
@pytest.mark.parametrize("settings_overrides", [{"jwt_secret": DEV_JWT_SECRET}])  # the app's default, as the CLI's
async def test_cli_token_is_accepted_by_the_app(
    client: httpx.AsyncClient, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET  # the app runs the default secret too
    assert cli_main(["token", "--sub", "cli-admin", "--role", "admin"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.count(".") == 2
    response = await client.put("/v1/apps/app-1", json=APP_BODY, headers=bearer(token))
    assert response.status_code == 200, response.text  # authenticated, and the admin role came through

    assert cli_main(["token", "--sub", "cli-user"]) == 0
    user_token = capsys.readouterr().out.strip()
    refused = await client.put("/v1/apps/app-1", json=APP_BODY, headers=bearer(user_token))
    assert refused.status_code == 403


def _run_cli(tmp_path: Path, extra_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    env.update(extra_env, PYTHONPATH=str(ROOT))
    # run outside the checkout so no .env file is read
    return subprocess.run(
        [sys.executable, "-m", "app", "token", *args], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_cli_token_subprocess(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, {}, "--sub", "U", "--role", "admin", "--email", "u@example.com")
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), DEV_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "U"
    assert claims["roles"] == ["admin"]
    assert claims["email"] == "u@example.com"
    assert 3500 <= claims["exp"] - time.time() <= 3600


def test_cli_token_refused_in_live_mode(tmp_path: Path) -> None:
    live = {
        "PAYMENT_GATEWAY_MODE": "live",
        "PAYSTACK_SECRET_KEY": "sk_live_x",
        "JWT_SECRET": "a-production-secret-that-is-not-the-default-0123456789",
        "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    result = _run_cli(tmp_path, live, "--sub", "U", "--role", "admin")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout.strip() == ""
    assert "refused" in result.stderr


# Settings validation


STRONG_JWT_SECRET = "a-production-secret-that-is-not-the-default-0123456789"


def live_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "payment_gateway_mode": "live",
        "paystack_secret_key": "sk_live_x",
        "jwt_secret": STRONG_JWT_SECRET,
        "encryption_keys": Fernet.generate_key().decode(),
        **overrides,
    }
    return Settings(_env_file=None, **values)


def test_live_settings_with_real_secrets_are_accepted() -> None:
    settings = live_settings()
    assert settings.gateway_base_url == "https://api.paystack.co"
    assert not settings.is_sandbox


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"paystack_secret_key": "sk_test_abc"}, "sk_live_"),
        ({"jwt_secret": DEV_JWT_SECRET}, "JWT_SECRET"),
        ({"encryption_keys": DEV_ENCRYPTION_KEY}, "ENCRYPTION_KEYS"),
        ({"encryption_keys": f"{Fernet.generate_key().decode()},{DEV_ENCRYPTION_KEY}"}, "ENCRYPTION_KEYS"),
    ],
)
def test_live_mode_refuses_development_secrets(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match="live mode refused") as info:
        live_settings(**overrides)
    assert problem in str(info.value)


def test_live_mode_lists_every_problem() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(_env_file=None, payment_gateway_mode="live")
    message = str(info.value)
    assert "sk_live_" in message and "JWT_SECRET" in message and "ENCRYPTION_KEYS" in message


def settings_in_test_mode(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"payment_gateway_mode": "test", "paystack_secret_key": "sk_test_x",
                              "jwt_secret": STRONG_JWT_SECRET, **overrides}
    return Settings(_env_file=None, **values)


def test_test_mode_refuses_live_key() -> None:
    with pytest.raises(ValidationError, match="test mode refused"):
        settings_in_test_mode(paystack_secret_key="sk_live_x")
    assert settings_in_test_mode().gateway_base_url == "https://api.paystack.co"


def test_sandbox_mode_refuses_live_key() -> None:
    # the sandbox's checkout page lets anyone settle their own charge: never with a key that moves real money
    with pytest.raises(ValidationError, match="sandbox mode refused") as info:
        Settings(_env_file=None, payment_gateway_mode="sandbox", paystack_secret_key="sk_live_x")
    assert "sk_live_" in str(info.value)
    assert Settings(_env_file=None, payment_gateway_mode="sandbox", paystack_secret_key="sk_test_x").is_sandbox


@pytest.mark.parametrize("mode", ["test", "live"])
@pytest.mark.parametrize(
    ("jwt_secret", "problem"),
    [("x", "at least 32 bytes"), ("s" * 31, "at least 32 bytes"), (DEV_JWT_SECRET, "development default")],
)
def test_outside_the_sandbox_a_weak_jwt_secret_is_refused(mode: str, jwt_secret: str, problem: str) -> None:
    make = live_settings if mode == "live" else settings_in_test_mode
    with pytest.raises(ValidationError, match=f"{mode} mode refused") as info:
        make(jwt_secret=jwt_secret)
    assert "JWT_SECRET" in str(info.value) and problem in str(info.value)
    assert make(jwt_secret="s" * 32).jwt_secret.get_secret_value() == "s" * 32  # 32 bytes are enough


def test_weak_jwt_secret_is_allowed_in_the_sandbox_and_with_rs256() -> None:
    assert Settings(_env_file=None, jwt_secret="x").is_sandbox  # tests and laptops
    rs256 = settings_in_test_mode(jwt_secret="x", jwt_algorithm="RS256", jwt_public_key="-----BEGIN PUBLIC KEY-----")
    assert rs256.jwt_algorithm == "RS256"  # the HS256 secret is not used


def test_weak_jwt_secret_stops_the_process_with_a_clear_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    env.update(PAYMENT_GATEWAY_MODE="test", PAYSTACK_SECRET_KEY="sk_test_x", JWT_SECRET="x", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", "import app.main"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "test mode refused: JWT_SECRET must be at least 32 bytes" in result.stderr


async def test_gateway_pool_is_small_for_the_local_sandbox_and_larger_for_paystack() -> None:
    sandbox = Settings(_env_file=None)
    remote = settings_in_test_mode()
    assert (sandbox.gateway_connections, remote.gateway_connections) == (8, 50)
    assert Settings(_env_file=None, gateway_max_connections=20).gateway_connections == 20
    with pytest.raises(ValidationError):
        Settings(_env_file=None, gateway_max_connections=0)
    rt = build_runtime(remote, wiring.EXTENSIONS)
    try:
        assert rt.gateway.max_connections == 50
    finally:
        await rt.gateway.aclose()
        await rt.db.dispose()


def test_rs256_needs_a_public_key() -> None:
    with pytest.raises(ValidationError, match="JWT_PUBLIC_KEY"):
        Settings(_env_file=None, jwt_algorithm="RS256")


def test_features_dict_has_the_three_flags() -> None:
    settings = Settings(_env_file=None, enable_automatic_releases=True, enable_multi_currency=False,
                        enable_dispute_resolution=False)
    assert settings.features == {
        "ENABLE_AUTOMATIC_RELEASES": True,
        "ENABLE_MULTI_CURRENCY": False,
        "ENABLE_DISPUTE_RESOLUTION": False,
    }
    defaults = Settings(_env_file=None).features
    assert set(defaults) == {"ENABLE_AUTOMATIC_RELEASES", "ENABLE_MULTI_CURRENCY", "ENABLE_DISPUTE_RESOLUTION"}
    assert all(isinstance(value, bool) for value in defaults.values())


# Field encryption


def test_field_cipher_round_trip() -> None:
    cipher = FieldCipher([Fernet.generate_key().decode()])
    token = cipher.encrypt("AUTH_abc123")
    assert token != "AUTH_abc123" and "AUTH_abc123" not in token
    assert cipher.decrypt(token) == "AUTH_abc123"
    assert cipher.encrypt("AUTH_abc123") != token  # random IV: equal plaintexts do not show


def test_field_cipher_key_rotation() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    old_token = FieldCipher([old]).encrypt("AUTH_old")

    rotated = FieldCipher.from_settings(Settings(_env_file=None, encryption_keys=f"{new}, {old}"))
    assert rotated.decrypt(old_token) == "AUTH_old"  # the old key, second in the list, still decrypts
    new_token = rotated.encrypt("AUTH_new")
    assert FieldCipher([new]).decrypt(new_token) == "AUTH_new"  # the first key encrypts
    with pytest.raises(InvalidToken):
        FieldCipher([old]).decrypt(new_token)
    with pytest.raises(InvalidToken):
        FieldCipher([new]).decrypt(old_token)
    assert FieldCipher([new]).decrypt(rotated.rotate(old_token)) == "AUTH_old"


def test_field_cipher_needs_a_key() -> None:
    with pytest.raises(ValueError, match="ENCRYPTION_KEYS"):
        FieldCipher([])


async def test_authorization_code_is_stored_encrypted(
    client: httpx.AsyncClient, app: FastAPI, auth: Auth
) -> None:
    admin, investor = auth("admin-1", admin=True), auth("investor-1")
    await put_app(client, admin)
    payment = await invest(client, investor, shares=1)
    await pay(client, app, payment, "success")
    paid = await get_payment(client, investor, payment["reference"])
    assert paid["status"] == "success"
    assert "AUTH_" not in str(paid)  # never shown over the API

    runtime = app.state.runtime
    async with runtime.db.unit_of_work() as session:
        row = await session.scalar(select(Payment).where(Payment.reference == payment["reference"]))
    assert row is not None and row.authorization_code_encrypted
    stored = row.authorization_code_encrypted
    assert not stored.startswith("AUTH_") and "AUTH_" not in stored
    code = runtime.cipher.decrypt(stored)
    assert code.startswith("AUTH_") and len(code) > len("AUTH_")
    sandbox_code = app.state.sandbox.transactions[payment["reference"]].authorization["authorization_code"]
    assert code == sandbox_code
