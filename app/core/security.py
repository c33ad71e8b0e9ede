"""Who is calling: JWT bearer tokens from the platform's identity service.

One place for authentication and the role checks every router uses. Tokens are checked with JWT_SECRET (HS256),
JWT_PUBLIC_KEY (RS256, ES256) or the identity provider's key set at JWT_JWKS_URL (RS256, ES256, by `kid`), and
against JWT_ISSUER and JWT_AUDIENCE when set; docs/authentication.md describes the claims.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request

from app.core.config import Settings
from app.core.errors import Unauthenticated, Unauthorized
from app.core.text import has_control_characters

ADMIN = "admin"
SERVICE = "service"
WEBHOOKS_PREFIX = "/v1/webhooks/"


@dataclass(frozen=True)
class Principal:
    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    email: str | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def is_service(self) -> bool:
        return SERVICE in self.roles


JWKS_ALGORITHMS = ["RS256", "ES256"]
JWKS_CACHE_SECONDS = 300
JWKS_FETCH_TIMEOUT_SECONDS = 5
JWKS_REFRESH_COOLDOWN_SECONDS = 30.0  # at least this long between fetches made for kids not in the set


class JwksKeys:
    """The identity provider's signing keys, through PyJWT's PyJWKClient: the key set is fetched when a token
    names a key not in the cached set, off the event loop (`load`), and kept JWKS_CACHE_SECONDS; checking a token
    (`get`) only reads the cache and never waits on the network. PyJWKClient refetches the set for an unknown
    `kid` at most once per cooldown, so tokens naming made-up kids cannot make every request fetch it; a key
    removed from the set stops being accepted when the cached set expires."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client = jwt.PyJWKClient(url, cache_jwk_set=True, lifespan=JWKS_CACHE_SECONDS,
                                       timeout=JWKS_FETCH_TIMEOUT_SECONDS,
                                       cooldown_duration=JWKS_REFRESH_COOLDOWN_SECONDS)

    def get(self, kid: str) -> jwt.PyJWK | None:
        cache = self._client.jwk_set_cache
        key_set = cache.get() if cache is not None else None
        if key_set is None:
            return None
        return next((key for key in key_set.keys if key.key_id == kid and key.public_key_use in ("sig", None)), None)

    async def load(self, kid: str) -> None:
        """Fetches the key set when `kid` is not in the cached one. Raises Unauthenticated when it cannot be read."""
        if self.get(kid) is None:
            await asyncio.to_thread(self._fetch, kid)

    def _fetch(self, kid: str) -> None:
        try:
            self._client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError:
            raise Unauthenticated(f"Could not fetch the identity provider's keys from {self.url}") from None
        except jwt.PyJWKClientError:
            pass  # not in the set (or no usable key in it): the token is refused as signed by an unknown key


@lru_cache(maxsize=8)
def jwks_keys(url: str) -> JwksKeys:
    """One key cache per JWKS URL and process (settings are immutable, so the URL names the cache)."""
    return JwksKeys(url)


def _token_kid(token: str) -> str | None:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    return kid if isinstance(kid, str) and 0 < len(kid) <= 256 else None


async def load_signing_key(request: Request) -> None:
    """Before a token from the identity provider is checked: fetch its signing key if it is not known yet, off
    the event loop (the check itself is synchronous)."""
    settings: Settings = request.app.state.settings
    if not settings.jwt_jwks_url:
        return
    token = _bearer(request)
    if token is None:
        return
    kid = _token_kid(token)
    if kid is not None:
        try:
            await jwks_keys(settings.jwt_jwks_url).load(kid)
        except Unauthenticated as error:
            request.state.authentication_error = error


def _verification_key(token: str, settings: Settings) -> tuple[Any, list[str]]:
    """The key that checks `token` and the algorithms it may be signed with."""
    if settings.jwt_jwks_url:
        kid = _token_kid(token)
        key = jwks_keys(settings.jwt_jwks_url).get(kid) if kid is not None else None
        if key is None:
            raise Unauthenticated("Invalid token: unknown signing key")
        return key.key, JWKS_ALGORITHMS
    if settings.jwt_algorithm != "HS256":
        assert settings.jwt_public_key is not None
        return settings.jwt_public_key, [settings.jwt_algorithm]
    return settings.jwt_secret.get_secret_value(), ["HS256"]


def decode_token(token: str, settings: Settings) -> Principal:
    key, algorithms = _verification_key(token, settings)
    required = ["sub", "exp"] + (["iss"] if settings.jwt_issuer else []) + (["aud"] if settings.jwt_audience else [])
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            options={"require": required},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("Token expired") from None
    except jwt.InvalidIssuerError:
        raise Unauthenticated("Invalid token: wrong issuer") from None
    except jwt.InvalidAudienceError:
        raise Unauthenticated("Invalid token: wrong audience") from None
    except jwt.PyJWTError:
        raise Unauthenticated("Invalid token") from None
    subject = claims.get("sub")
    roles = claims.get("roles") or []
    if not isinstance(subject, str) or not subject or len(subject) > 128 or not isinstance(roles, list):
        raise Unauthenticated("Invalid token claims")
    email = claims.get("email")
    texts = [subject, *(r for r in roles if isinstance(r, str)), *([email] if isinstance(email, str) else [])]
    if any(has_control_characters(text) for text in texts):
        raise Unauthenticated("Invalid token claims")  # the user id lands in queries and columns
    return Principal(
        user_id=subject,
        roles=frozenset(r for r in roles if isinstance(r, str)),
        email=email if isinstance(email, str) else None,
    )


def issue_token(settings: Settings, subject: str, roles: list[str], ttl_seconds: int = 3600,
                email: str | None = None) -> str:
    """Development helper (HS256 only): a token signed with the configured secret."""
    if settings.payment_gateway_mode == "live":
        raise RuntimeError("tokens are issued by the identity service in live mode")
    if settings.jwt_algorithm != "HS256":
        raise RuntimeError("issuing tokens needs JWT_ALGORITHM=HS256")
    claims: dict[str, object] = {"sub": subject, "roles": roles, "exp": int(time.time()) + ttl_seconds}
    if email:
        claims["email"] = email
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def principal_from_request(request: Request) -> Principal | None:
    """The caller, or None when anonymous. Raises for a token that is present but bad."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = _bearer(request)
    if token is None:
        return None
    failed_before = getattr(request.state, "authentication_error", None)
    if failed_before is not None:
        raise failed_before
    principal = decode_token(token, request.app.state.settings)
    request.state.principal = principal
    return principal


def requires_authentication(path: str) -> bool:
    """Every /v1/ route but Paystack's webhooks (which carry a signature instead) authenticates its caller."""
    return path.startswith("/v1/") and not path.startswith(WEBHOOKS_PREFIX)


def authentication_error_for(request: Request) -> Unauthenticated | None:
    """The 401 an authenticated route owes this request, if any: checked before its body is read."""
    # The scope's path, not `request.url.path`: building the URL costs more than the check, on every request.
    if not requires_authentication(request.scope["path"]):
        return None
    try:
        if principal_from_request(request) is None:
            return Unauthenticated()
    except Unauthenticated as error:
        return error
    return None


async def current_principal(request: Request) -> Principal:
    principal = principal_from_request(request)
    if principal is None:
        raise Unauthenticated()
    return principal


async def admin_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not principal.is_admin:
        raise Unauthorized("Admins only")
    return principal


async def admin_or_service_principal(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    if not (principal.is_admin or principal.is_service):
        raise Unauthorized("Admins or the platform service only")
    return principal


CurrentUser = Annotated[Principal, Depends(current_principal)]
AdminUser = Annotated[Principal, Depends(admin_principal)]
AdminOrService = Annotated[Principal, Depends(admin_or_service_principal)]
