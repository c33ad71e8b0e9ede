"""Typed settings, read from the environment (and `.env`).

Each setting is documented once, by its `Field(description=...)`; `python -m app settings env` and
`python -m app settings markdown` turn that into `.env.example` and docs/configuration.md (see
`app.core.settings_docs`). `json_schema_extra` may add `section` (a heading that starts with this setting),
`allowed` (the values taken, when the type does not say) and `example` (the placeholder of a setting left
commented out: secrets and settings unset by default).
"""

from __future__ import annotations

import os
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.core.money import CURRENCIES

# Development defaults: fine on a laptop, refused in live mode.
DEV_PAYSTACK_SECRET_KEY = "sk_test_sandbox_0000000000000000000000000000"
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktZmVybmV0LWtleS1jaGFuZ2UtbWUhISE="

GatewayMode = Literal["sandbox", "test", "live"]
JwtAlgorithm = Literal["HS256", "RS256", "ES256"]
# The project directory of a source checkout (an editable install): the directory holding the `app` package and
# pyproject.toml. Not a source checkout (a wheel in site-packages) when that file is not there.
PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_PORT = 8000
MIN_JWT_SECRET_BYTES = 32  # HS256 keys shorter than its 256-bit output can be brute-forced from one token
RATE_LIMIT_VALUES = "N/second, N/minute, N/hour or N/day (slowapi)"


class Settings(BaseSettings):
    # Environment variables and `.env` may still set retired settings (PAYSTACK_PUBLIC_KEY): ignored, not refused.
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")
    _derived_public_base_url: bool = PrivateAttr(default=False)

    paystack_secret_key: SecretStr = Field(
        default=SecretStr(DEV_PAYSTACK_SECRET_KEY),
        description="Paystack secret key: signs API calls and checks webhook signatures (HMAC-SHA512). "
        "The development default is refused in live mode.",
        json_schema_extra={
            "section": "Paystack",
            "allowed": "sk_test_... (sandbox and test mode), sk_live_... (live mode only)",
            "example": "sk_test_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        },
    )
    payment_gateway_mode: GatewayMode = Field(
        default="sandbox",
        description="Which gateway to talk to: sandbox is the built-in emulator; test and live use "
        "https://api.paystack.co.",
    )
    paystack_base_url: str | None = Field(
        default=None,
        description="Override of the gateway's base URL. Unset: {PUBLIC_BASE_URL}/sandbox/paystack in sandbox "
        "mode, https://api.paystack.co in test and live mode.",
        json_schema_extra={"allowed": "an http(s) URL", "example": "https://paystack-proxy.example.internal"},
    )
    gateway_timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one gateway call, in seconds.")
    gateway_max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Retries of a gateway call that is safe to repeat after a network error, a timeout or a 5xx "
        "(a refund is never repeated), and of any call Paystack answered 429.",
    )
    gateway_max_connections: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="Connections kept open to the gateway (about call rate x call latency). Unset: 8 in sandbox "
        "mode (it answers in about a millisecond), 50 in test and live mode.",
        json_schema_extra={"example": "50"},
    )

    escrow_release_threshold: Decimal = Field(
        default=Decimal("1000000"),
        description="Releases at or above this amount (major units of DEFAULT_CURRENCY) also need an admin's "
        "approval.",
        json_schema_extra={"section": "Escrow and features"},
    )
    escrow_release_thresholds: str = Field(
        default="",
        description="The same threshold per currency, in its major units, overriding ESCROW_RELEASE_THRESHOLD "
        "(e.g. USD=1000,GHS=100000,KES=1000000,ZAR=20000). A currency with no value here and other than "
        "DEFAULT_CURRENCY has no threshold: every release in it needs an admin.",
        json_schema_extra={"allowed": "comma-separated CURRENCY=AMOUNT pairs, or empty"},
    )
    enable_automatic_releases: bool = Field(
        default=False, description="Execute approved releases below the threshold automatically."
    )
    enable_automatic_distributions: bool = Field(
        default=False,
        description="Once a revenue payment for an app, period and currency succeeds, the worker distributes that "
        "period's revenue (exactly once per app, period and currency) and sends its payouts.",
    )
    enable_multi_currency: bool = Field(
        default=True, description="Accept apps in currencies other than DEFAULT_CURRENCY."
    )
    enable_dispute_resolution: bool = Field(
        default=True, description="Enable the dispute endpoints (off: they answer 403 FEATURE_DISABLED)."
    )

    database_url: str = Field(
        default="",
        description="Database, as an SQLAlchemy async URL. PostgreSQL is needed for several processes. Empty: "
        "SQLite in DATA_DIR/payments.db.",
        json_schema_extra={
            "section": "Storage",
            "allowed": "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB, or empty",
        },
    )
    data_dir: str = Field(
        default="",
        description="Directory of the default SQLite database (created when missing); it never depends on the "
        "directory a command runs from. Empty: data/ in the project directory (beside pyproject.toml) for a "
        "source checkout, else $XDG_DATA_HOME/payment-service (~/.local/share/payment-service).",
        json_schema_extra={"allowed": "an absolute directory path, or empty"},
    )
    db_pool_size: int = Field(
        default=20, ge=1,
        description="Connections a process keeps open once it has needed them (PostgreSQL only). Size it to the "
        "requests a process serves at once: a connection above it is closed when it is returned.",
    )
    db_max_overflow: int = Field(
        default=10, ge=0, description="Connections allowed above the pool, closed again after use (PostgreSQL only)."
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for shared rate-limit counters. Unset: in-memory counters, per process.",
        json_schema_extra={"allowed": "redis://HOST:PORT/DB or rediss://...", "example": "redis://127.0.0.1:6379/0"},
    )

    jwt_secret: SecretStr = Field(
        default=SecretStr(DEV_JWT_SECRET),
        description="HS256 secret that bearer tokens are signed with. The development default is refused in test "
        "and live mode. Generate one with "
        '`python -c "import secrets; print(secrets.token_urlsafe(48))"`.',
        json_schema_extra={
            "section": "Security",
            "allowed": "a random string; in test and live mode at least 32 bytes",
            "example": "<long random string>",
        },
    )
    jwt_public_key: str | None = Field(
        default=None,
        description="PEM public key that checks RS256 or ES256 tokens; required when JWT_ALGORITHM is one of them "
        "and JWT_JWKS_URL is unset.",
        json_schema_extra={
            "allowed": "a PEM public key",
            "example": '"-----BEGIN PUBLIC KEY-----\\n...\\n-----END PUBLIC KEY-----"',
        },
    )
    jwt_algorithm: JwtAlgorithm = Field(
        default="HS256",
        description="Token signature algorithm with JWT_SECRET (HS256) or JWT_PUBLIC_KEY (RS256, ES256). Not used "
        "when JWT_JWKS_URL is set: the key named by the token's `kid` decides (RS256 or ES256).",
    )
    jwt_jwks_url: str | None = Field(
        default=None,
        description="The identity provider's JSON Web Key Set. Set: tokens must be RS256 or ES256, signed by the "
        "key of the set named by their `kid` header; the set is fetched when a token names a key not yet known "
        "and cached (JWT_SECRET and JWT_PUBLIC_KEY are then not used).",
        json_schema_extra={"allowed": "an http(s) URL", "example": "https://id.example.com/.well-known/jwks.json"},
    )
    jwt_issuer: str | None = Field(
        default=None,
        description="Set: tokens must carry this `iss` claim exactly. Unset: `iss` is not checked.",
        json_schema_extra={"allowed": "a string (usually the identity provider's URL)",
                           "example": "https://id.example.com/"},
    )
    jwt_audience: str | None = Field(
        default=None,
        description="Set: tokens must name this service in their `aud` claim (a string or a list holding it). "
        "Unset: tokens with an `aud` claim are refused.",
        json_schema_extra={"allowed": "a string", "example": "payment-service"},
    )
    encryption_keys: SecretStr = Field(
        default=SecretStr(DEV_ENCRYPTION_KEY),
        description="Fernet keys that encrypt bank account numbers and authorization codes, comma-separated: the "
        "first encrypts, all decrypt (rotation). The development default is refused in live mode. Generate one "
        'with `python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.',
        json_schema_extra={
            "allowed": "urlsafe-base64 32-byte Fernet keys",
            "example": "<newest Fernet key>,<older Fernet key>",
        },
    )
    webhook_ip_allowlist: str = Field(
        default="",
        description="IPs or CIDR ranges allowed to post webhooks. Empty: any address (the signature is always "
        "checked).",
        json_schema_extra={"allowed": "comma-separated IPs and CIDRs"},
    )
    trusted_proxies: str = Field(
        default="",
        description="Proxies whose X-Forwarded-For is trusted for the client address. Empty: none.",
        json_schema_extra={"allowed": "comma-separated IPs and CIDRs"},
    )

    public_base_url: str = Field(
        default="",
        description="Address this service is reached at: the sandbox's checkout links and webhooks, and the "
        "sandbox gateway the API and the worker call (PUBLIC_BASE_URL/sandbox/paystack). Empty: "
        "http://127.0.0.1:PORT, derived the same way by the API and the worker.",
        json_schema_extra={"section": "Service", "allowed": "an http(s) URL, or empty"},
    )
    port: int = Field(
        default=DEFAULT_PORT,
        ge=1,
        le=65535,
        description="Port `python -m app serve` listens on (its --port wins, and then stands for PORT in that "
        "process). With PUBLIC_BASE_URL empty, the API and the worker derive it from PORT: a worker run beside an "
        "API on another port needs the same PORT.",
    )
    default_currency: str = Field(
        default="NGN",
        description="Currency used when multi-currency is off.",
        json_schema_extra={"allowed": " | ".join(CURRENCIES)},
    )
    max_payment_amount: Decimal = Field(
        default=Decimal("10000000.00"), description="Largest single payment, in major units."
    )
    max_request_body_bytes: int = Field(
        default=64 * 1024,
        ge=1,
        description="Largest request body, in bytes: larger ones are answered 413 PAYLOAD_TOO_LARGE (from "
        "Content-Length, before reading). The Paystack webhook keeps its own 1 MB limit.",
    )
    log_level: str = Field(
        default="INFO",
        description="Level of the JSON logs.",
        json_schema_extra={"allowed": "DEBUG | INFO | WARNING | ERROR | CRITICAL"},
    )

    rate_limit_enabled: bool = Field(
        default=True,
        description="Turn rate limiting on or off.",
        json_schema_extra={"section": "Rate limits"},
    )
    rate_limit_default: str = Field(
        default="120/minute",
        description="Limit on every route, per user or IP.",
        json_schema_extra={"allowed": RATE_LIMIT_VALUES},
    )
    rate_limit_payments: str = Field(
        default="30/minute",
        description="Limit on money-moving POSTs, per user.",
        json_schema_extra={"allowed": RATE_LIMIT_VALUES},
    )
    rate_limit_webhooks: str = Field(
        default="1200/minute",
        description="Limit on the webhook endpoint, per IP.",
        json_schema_extra={"allowed": RATE_LIMIT_VALUES},
    )
    rate_limit_redis_timeout_seconds: float = Field(
        default=0.03,
        gt=0,
        le=1,
        description="Connect and read timeout of one rate-limit call to Redis, in seconds. These calls run on the "
        "event loop, so a slow or hung Redis may stall every request by at most this much, once: the first failure "
        "or timeout switches counting to this process's memory until Redis answers again.",
    )
    rate_limit_redis_probe_seconds: float = Field(
        default=1.0,
        gt=0,
        description="While counting in memory, seconds between pings (off the event loop) that check whether "
        "Redis answers again.",
    )

    worker_in_process: bool = Field(
        default=True,
        description="Run the worker inside the API process (set false when running `python -m app worker` "
        "separately).",
        json_schema_extra={"section": "Background work"},
    )
    worker_poll_interval_seconds: float = Field(
        default=1.0, gt=0, description="Seconds between worker polls when idle."
    )
    worker_niceness: int = Field(
        default=10, ge=0, le=19,
        description="How far a worker process of its own (`python -m app worker`) lowers its CPU priority (Unix "
        "niceness): on a machine it shares with the API, webhooks and API requests are answered first and the "
        "crediting catches up after. 0 keeps the usual priority.",
    )
    worker_batch_size: int = Field(
        default=100, ge=1,
        description="Jobs claimed per batch (the webhook inbox claims at least twice the events it handles at once).",
    )
    worker_lease_seconds: float = Field(
        default=60.0, gt=0, description="Seconds a claimed job stays leased before another worker may take it."
    )
    reconcile_pending_after_seconds: float = Field(
        default=900.0,
        ge=0,
        description="Age in seconds after which the reconciler asks the gateway about a pending payment.",
    )
    abandon_pending_after_seconds: float = Field(
        default=86400.0, ge=0, description="Age in seconds after which a still-pending payment is marked abandoned."
    )
    webhook_backlog_max_age_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Age in seconds of the oldest unprocessed webhook event above which /readyz fails its "
        "webhook_backlog check (the worker has stopped or cannot keep up).",
    )
    idempotency_lease_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Seconds an in-progress Idempotency-Key is held before it may be retried.",
    )

    share_transfer_expiry_seconds: float = Field(
        default=172800.0,
        gt=0,
        description="Seconds an unpaid share-transfer offer stays open (172800: 48 hours) before it expires and its "
        "shares are released.",
        json_schema_extra={"section": "Shares and payouts"},
    )
    bulk_transfer_batch_size: int = Field(
        default=100, ge=1, le=100, description="Payouts per Paystack bulk transfer when a distribution pays out."
    )
    payout_funds_retry_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Seconds a payout waits as `awaiting_funds` (the gateway's balance in its currency was too "
        "low when the worker read GET /balance) before the worker reads the balance and tries it again.",
    )

    refund_check_interval_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Seconds a sent refund waits for its webhook before the worker asks Paystack "
        "(GET /refund/{id}); also the first wait between lookups of a refund whose outcome is unknown. Each "
        "further wait doubles, up to an hour.",
        json_schema_extra={"section": "Refunds (sent to Paystack at most once)"},
    )
    refund_unknown_give_up_seconds: float = Field(
        default=86400.0,
        ge=0,
        description="Seconds after sending after which a refund whose outcome is unknown, and of which Paystack "
        "still has no record, counts as failed (its money goes back). It is never sent again.",
    )

    reconciliation_interval_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="Seconds between the worker's reconciliations of the books with Paystack's records (charges, "
        "transfers); the first runs one interval after the worker starts. 0 turns them off.",
        json_schema_extra={"section": "Reconciliation with the gateway"},
    )
    reconciliation_lookback_seconds: float = Field(
        default=86400.0,
        gt=0,
        le=2678400,
        description="Seconds of history each periodic reconciliation covers, ending 10 minutes ago; at most "
        "2678400 (31 days).",
    )

    webhook_delivery_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="Seconds a webhook endpoint has to answer one delivery (connect, send and the answer, of which "
        "at most 64 KiB is read); only a 2xx within it counts as delivered.",
        json_schema_extra={"section": "Outbound events (webhook endpoints)"},
    )
    webhook_delivery_concurrency: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Endpoints one worker delivers to at once, beside the worker's other jobs; each has up to "
        "WEBHOOK_DELIVERY_WINDOW deliveries in flight.",
    )
    webhook_delivery_window: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Deliveries one endpoint has in flight at once, started in event order: when an event is "
        "sent, at most this many minus one events made before it are still on their way to the endpoint. 1 sends "
        "an endpoint's events strictly one at a time.",
    )
    webhook_delivery_max_age_seconds: float = Field(
        default=259200.0,
        gt=0,
        description="Seconds a delivery is retried (exponential backoff with jitter, from 10 seconds up to 6 "
        "hours between attempts) before it is marked failed; 259200 is three days.",
    )

    sandbox_settle_delay_seconds: float = Field(
        default=1.0,
        ge=0,
        description="Seconds before sandbox transfers and refunds settle.",
        json_schema_extra={"section": "Sandbox (PAYMENT_GATEWAY_MODE=sandbox only)"},
    )
    sandbox_transfer_otp: bool = Field(
        default=False,
        description="Start the sandbox with transfer OTP on, as a Paystack integration that confirms transfers "
        "with an OTP: every transfer answers `otp` and its payout waits as `awaiting_otp` until an admin "
        "finalizes it (POST /v1/payouts/{id}/finalize) with the sandbox's test OTP 123456 (any other is "
        "refused); bulk transfers are refused, so distributions are paid by single transfers.",
    )
    sandbox_webhook_retry_delays: str = Field(
        default="5,15,60,180",
        description="Seconds between the sandbox's webhook retries.",
        json_schema_extra={"allowed": "comma-separated numbers"},
    )

    @field_validator("default_currency")
    @classmethod
    def _upper_currency(cls, value: str) -> str:
        return value.upper()

    @field_validator("escrow_release_thresholds")
    @classmethod
    def _valid_thresholds(cls, value: str) -> str:
        _thresholds(value)  # refuses a malformed list when the settings load, not at the first release
        return value

    @field_validator("public_base_url", "paystack_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _derive_addresses(self) -> Settings:
        """The values left empty, worked out once here so that every process derives them the same way."""
        if not self.public_base_url:
            self.public_base_url = f"http://127.0.0.1:{self.port}"
            self._derived_public_base_url = True
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_path / 'payments.db'}"
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_modes(self) -> Settings:
        """Live keys move real money, and only in live mode: the sandbox's checkout lets anyone settle their own
        charge. Outside the sandbox, tokens must not be forgeable from a guessable or published secret."""
        mode, secret = self.payment_gateway_mode, self.paystack_secret_key.get_secret_value()
        problems = []
        if mode == "live":
            if not secret.startswith("sk_live_"):
                problems.append("PAYSTACK_SECRET_KEY must be an sk_live_ key")
            if DEV_ENCRYPTION_KEY in self.encryption_key_list:
                problems.append("ENCRYPTION_KEYS holds the development default")
        elif secret.startswith("sk_live_"):
            problems.append("PAYSTACK_SECRET_KEY is an sk_live_ key, which only live mode may use")
        if mode != "sandbox" and self.jwt_algorithm == "HS256" and not self.jwt_jwks_url:
            jwt_secret = self.jwt_secret.get_secret_value()
            if jwt_secret == DEV_JWT_SECRET:
                problems.append("JWT_SECRET is the development default")
            elif len(jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
                problems.append(f"JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes (a long random string)")
        if problems:
            raise ValueError(f"{mode} mode refused: " + "; ".join(problems))
        if self.jwt_algorithm != "HS256" and not (self.jwt_public_key or self.jwt_jwks_url):
            raise ValueError(f"JWT_ALGORITHM={self.jwt_algorithm} needs JWT_PUBLIC_KEY or JWT_JWKS_URL")
        return self

    @property
    def public_base_url_derived(self) -> bool:
        """True when PUBLIC_BASE_URL was left empty and derived from PORT."""
        return self._derived_public_base_url

    @property
    def data_path(self) -> Path:
        """DATA_DIR, or its default (see the setting's description)."""
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        if (PROJECT_DIR / "pyproject.toml").is_file():
            return PROJECT_DIR / "data"
        xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        return Path(xdg) / "payment-service"

    @property
    def features(self) -> dict[str, bool]:
        """The feature flags, keyed as the platform's Python interface names them (FEATURES)."""
        return {
            "ENABLE_AUTOMATIC_RELEASES": self.enable_automatic_releases,
            "ENABLE_MULTI_CURRENCY": self.enable_multi_currency,
            "ENABLE_DISPUTE_RESOLUTION": self.enable_dispute_resolution,
        }

    @property
    def gateway_base_url(self) -> str:
        if self.paystack_base_url:
            return self.paystack_base_url
        if self.payment_gateway_mode == "sandbox":
            return f"{self.public_base_url}/sandbox/paystack"
        return "https://api.paystack.co"

    @property
    def gateway_connections(self) -> int:
        """Connections kept open to the gateway: about call rate x call latency. The sandbox answers
        from this machine in about a millisecond, so a few carry hundreds of calls a second, and a
        bigger pool costs CPU on every call (httpx looks at each pooled connection); Paystack is a
        network away, so calls overlap more."""
        if self.gateway_max_connections is not None:
            return self.gateway_max_connections
        return 8 if self.is_sandbox else 50

    @property
    def is_sandbox(self) -> bool:
        return self.payment_gateway_mode == "sandbox"

    @property
    def encryption_key_list(self) -> list[str]:
        return _split(self.encryption_keys.get_secret_value())

    @property
    def webhook_allowed_ips(self) -> list[str]:
        return _split(self.webhook_ip_allowlist)

    @property
    def trusted_proxy_ips(self) -> list[str]:
        return _split(self.trusted_proxies)

    @property
    def sandbox_webhook_retry_schedule(self) -> list[float]:
        return [float(part) for part in _split(self.sandbox_webhook_retry_delays)]

    def release_threshold(self, currency_code: str) -> Decimal | None:
        """Major units of `currency_code` at or above which a release needs an admin; None: every release in
        that currency needs one (no threshold was set for it)."""
        per_currency = _thresholds(self.escrow_release_thresholds)
        if currency_code in per_currency:
            return per_currency[currency_code]
        return self.escrow_release_threshold if currency_code == self.default_currency else None

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def _thresholds(raw: str) -> dict[str, Decimal]:
    thresholds: dict[str, Decimal] = {}
    for pair in _split(raw):
        code, separator, amount = pair.partition("=")
        code = code.strip().upper()
        if not separator or code not in CURRENCIES:
            raise ValueError(f"ESCROW_RELEASE_THRESHOLDS: {pair!r} is not CURRENCY=AMOUNT with a supported currency")
        try:
            value = Decimal(amount.strip())
        except ArithmeticError:
            raise ValueError(f"ESCROW_RELEASE_THRESHOLDS: {amount.strip()!r} is not an amount") from None
        if not value.is_finite() or value < 0:
            raise ValueError(f"ESCROW_RELEASE_THRESHOLDS: {amount.strip()!r} is not an amount")
        thresholds[code] = value
    return thresholds


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
