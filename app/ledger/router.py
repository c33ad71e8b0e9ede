from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from app.core.ratelimit import RATE_LIMITED
from app.core.routing import ExactJSONRoute
from app.core.security import AdminUser
from app.deps import SessionDep
from app.ledger.integrity import run_checks

router = APIRouter(route_class=ExactJSONRoute, prefix="/v1/admin", tags=["operations"], dependencies=[RATE_LIMITED])


class CheckOut(BaseModel):
    name: str
    ok: bool
    details: dict[str, Any]


class IntegrityOut(BaseModel):
    ok: bool
    checks: list[CheckOut]


@router.get("/integrity", response_model=IntegrityOut)
async def integrity(_: AdminUser, session: SessionDep) -> IntegrityOut:
    checks = await run_checks(session)
    return IntegrityOut(
        ok=all(c.ok for c in checks),
        checks=[CheckOut(name=c.name, ok=c.ok, details=c.details) for c in checks],
    )
