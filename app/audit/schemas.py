"""Answers of the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.core.schemas import FromRow, Page


class AuditEntryOut(FromRow):
    id: str
    at: datetime
    actor_id: str
    actor_roles: list[str]
    action: str
    resource_type: str
    resource_id: str
    request_id: str | None
    changes: dict[str, Any]


AuditPage = Page[AuditEntryOut]
