"""Typed settings, read from the environment (and `.env`).

Every setting is listed with a comment in `.env.example`.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Development defaults: fine on a laptop, refused in live mode.
DEV_PAYSTACK_SECRET_KEY = "sk_test_sandbox_0000000000000000000000000000"
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me-0123456789abcdef"
DEV_ENCRYPTION_KEY = "ZGV2LW9ubHktZmVybmV0LWtleS1jaGFuZ2UtbWUhISE="

GatewayMode = Literal["sandbox", "test", "live"]
MIN_JWT_SECRET_BYTES = 32  # HS256 keys shorter than its 256-bit output can be brute-forced from one token


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Paystack
    paystack_secret_key: SecretStr = SecretStr(DEV_PAYSTACK_SECRET_KEY)
    paystack_public_key: str = "pk_test_sandbox"
    payment_gateway_mode: GatewayMode = "sandbox"
    paystack_base_url: str | None = None
    gateway_timeout_seconds: float = Field(default=10.0, gt=0)
    gateway_max_retries: int = Field(default=3, ge=0, le=10)
    gateway_max_connections: int | None = Field(default=None, ge=1, le=1000)

    # Escrow and features
    escrow_release_threshold: Decimal = Decimal("1000000")
    enable_automatic_releases: bool = False
    enable_multi_currency: bool = True
    enable_dispute_resolution: bool = True

    # Storage
    database_url: str = "sqlite+aiosqlite:///./payments.db"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    redis_url: str | None = None

    # Security
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_public_key: str | None = None
    jwt_algorithm: Literal["HS256", "RS256"] = "HS256"
    encryption_keys: SecretStr = SecretStr(DEV_ENCRYPTION_KEY)
    webhook_ip_allowlist: str = ""
    trusted_proxies: str = ""

    # Service
    public_base_url: str = "http://127.0.0.1:8000"
    default_currency: str = "NGN"
    max_payment_amount: Decimal = Decimal("10000000.00")
    max_request_body_bytes: int = Field(default=64 * 1024, ge=1)
    log_level: str = "INFO"

    # Rate limits (slowapi strings)
    rate_limit_enabled: bool = True
    rate_limit_default: str = "120/minute"
    rate_limit_payments: str = "30/minute"
    rate_limit_webhooks: str = "1200/minute"
    # The limiter's Redis calls run on the event loop: none may wait longer than this (connect or read).
    rate_limit_redis_timeout_seconds: float = Field(default=0.03, gt=0, le=1)
    rate_limit_redis_probe_seconds: float = Field(default=1.0, gt=0)

    # Background work
    worker_in_process: bool = True
    worker_poll_interval_seconds: float = Field(default=1.0, gt=0)
    worker_batch_size: int = Field(default=100, ge=1)
    worker_lease_seconds: float = Field(default=60.0, gt=0)
    reconcile_pending_after_seconds: float = Field(default=900.0, ge=0)
    abandon_pending_after_seconds: float = Field(default=86400.0, ge=0)
    idempotency_lease_seconds: float = Field(default=300.0, gt=0)
    share_transfer_expiry_seconds: float = Field(default=172800.0, gt=0)
    bulk_transfer_batch_size: int = Field(default=100, ge=1, le=100)
    refund_check_interval_seconds: float = Field(default=300.0, ge=0)
    refund_unknown_give_up_seconds: float = Field(default=86400.0, ge=0)
    # 0 turns the periodic reconciliation with the gateway off; the lookback is at most 31 days.
    reconciliation_interval_seconds: float = Field(default=3600.0, ge=0)
    reconciliation_lookback_seconds: float = Field(default=86400.0, gt=0, le=2678400)

    # Sandbox behaviour (gateway mode `sandbox` only)
    sandbox_settle_delay_seconds: float = Field(default=1.0, ge=0)
    sandbox_webhook_retry_delays: str = "5,15,60,180"

    @field_validator("default_currency")
    @classmethod
    def _upper_currency(cls, value: str) -> str:
        return value.upper()

    @field_validator("public_base_url", "paystack_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

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
        if mode != "sandbox" and self.jwt_algorithm == "HS256":
            jwt_secret = self.jwt_secret.get_secret_value()
            if jwt_secret == DEV_JWT_SECRET:
                problems.append("JWT_SECRET is the development default")
            elif len(jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
                problems.append(f"JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes (a long random string)")
        if problems:
            raise ValueError(f"{mode} mode refused: " + "; ".join(problems))
        if self.jwt_algorithm == "RS256" and not self.jwt_public_key:
            raise ValueError("JWT_ALGORITHM=RS256 needs JWT_PUBLIC_KEY")
        return self

    @property
    def features(self) -> dict[str, bool]:
        """The seed's FEATURES dict."""
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

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
