"""Answers of the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from app.core.schemas import FromRow, Page


class AuditEntryOut(FromRow):
    id: str
    at: datetime = Field(description="When the action was taken (its transaction's time).")
    actor_id: str = Field(description="Who took it: the token's `sub`, or `system:automation` for the worker.")
    actor_roles: list[str] = Field(description="The roles the actor's token carried, sorted.")
    action: str = Field(description="What was done, as `resource.verb`, e.g. `release.approved`.")
    resource_type: str = Field(description="The kind of object acted on, e.g. `release`, `app`, `payout`.")
    resource_id: str = Field(description="The id of the object acted on.")
    request_id: str | None = Field(description="The `X-Request-ID` of the request that took the action.")
    changes: dict[str, Any] = Field(
        description="What changed: `{field: {before, after}}` for updates, or the action's facts (amounts in "
                    "minor units); nothing sensitive is kept.")


AuditPage = Page[AuditEntryOut]
