"""Admin routes over the books: `GET /v1/admin/integrity` and `GET /v1/admin/reconciliation`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from app.core.ratelimit import RATE_LIMITED
from app.core.routing import ExactJSONRoute
from app.core.security import AdminUser
from app.ledger.flows import reconcile
from app.ledger.integrity import run_checks
from app.ledger.reconciliation import Kind, RecordType, requested_window
from app.web.deps import RuntimeDep, SessionDep

router = APIRouter(route_class=ExactJSONRoute, prefix="/v1/admin", tags=["operations"], dependencies=[RATE_LIMITED])


class CheckOut(BaseModel):
    name: str = Field(description="The check's name.")
    ok: bool = Field(description="Whether the books pass it.")
    details: dict[str, Any] = Field(description="What it found: a sample of offenders when it fails.")


class IntegrityOut(BaseModel):
    ok: bool = Field(description="Whether every check passed.")
    checks: list[CheckOut] = Field(description="Every check, in the order run.")


@router.get("/integrity", response_model=IntegrityOut)
async def integrity(_: AdminUser, session: SessionDep) -> IntegrityOut:
    checks = await run_checks(session)
    return IntegrityOut(
        ok=all(c.ok for c in checks),
        checks=[CheckOut(name=c.name, ok=c.ok, details=c.details) for c in checks],
    )


class DifferenceOut(BaseModel):
    kind: Kind = Field(description="How the two sides differ.")
    record: RecordType = Field(description="What kind of record differs.")
    reference: str = Field(description="The record's reference at the gateway.")
    ledger: dict[str, Any] | None = Field(description="Our side (amounts in minor units), or null")
    gateway: dict[str, Any] | None = Field(description="The gateway's side (amounts in minor units), or null")


class ReconciliationOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    ok: bool = Field(description="Whether both sides agree.")
    start: datetime = Field(serialization_alias="from", description="The start of the window compared.")
    end: datetime = Field(serialization_alias="to", description="The end of the window compared.")
    differences: list[DifferenceOut] = Field(description="Every difference found.")


@router.get("/reconciliation", response_model=ReconciliationOut, response_model_by_alias=True)
async def reconciliation(
    _: AdminUser,
    rt: RuntimeDep,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
) -> ReconciliationOut:
    """What the books say moved against what the gateway says moved, over `from`..`to` (ISO dates or
    timestamps; default the last 7 days): charges and transfers. It only reads; nothing is corrected."""
    result = await reconcile(rt, requested_window(start, end))
    return ReconciliationOut(
        ok=result.ok, start=result.window.start, end=result.window.end,
        differences=[DifferenceOut(kind=d.kind, record=d.record, reference=d.reference, ledger=d.ledger,
                                   gateway=d.gateway) for d in result.differences],
    )
