"""Who is calling: JWT bearer tokens from the platform's identity service.

One place for authentication and the role checks every router uses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated

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


def _verification_key(settings: Settings) -> str:
    if settings.jwt_algorithm == "RS256":
        assert settings.jwt_public_key is not None
        return settings.jwt_public_key
    return settings.jwt_secret.get_secret_value()


def decode_token(token: str, settings: Settings) -> Principal:
    try:
        claims = jwt.decode(
            token,
            _verification_key(settings),
            algorithms=[settings.jwt_algorithm],
            options={"require": ["sub", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("Token expired") from None
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
    principal = decode_token(token, request.app.state.settings)
    request.state.principal = principal
    return principal


def requires_authentication(path: str) -> bool:
    """Every /v1/ route but Paystack's webhooks (which carry a signature instead) authenticates its caller."""
    return path.startswith("/v1/") and not path.startswith(WEBHOOKS_PREFIX)


def authentication_error_for(request: Request) -> Unauthenticated | None:
    """The 401 an authenticated route owes this request, if any: checked before its body is read."""
    if not requires_authentication(request.url.path):
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
