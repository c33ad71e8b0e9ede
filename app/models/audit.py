"""The audit trail: who changed a money rule or moved money, when, in which request, and what changed.

Append-only. `record()` is the one writer, called in the transaction of the change it records (inside
`recorded_together`, its rows go in together at the block's end); nothing updates or deletes a row, and
on PostgreSQL a trigger refuses UPDATE and DELETE outright.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import DDL, JSON, Index, String, event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, SessionTransaction, mapped_column

from app.core.db import insert_rows
from app.core.logging import redact, request_id
from app.core.security import Principal
from app.models.base import Base, UTCDateTime, new_id, utcnow

AUTOMATION = Principal(user_id="system:automation", roles=frozenset({"system"}))

# Keys whose values never reach the trail, wherever they sit in `changes`.
_SENSITIVE_KEY = re.compile(r"account_number|authorization|otp|secret|token|password|signature|cipher", re.I)
_MAX_TEXT = 1000


class AuditEntry(Base):
    """One audited action. `changes` holds the fields it changed (`{"field": {"before": .., "after": ..}}`
    for an update) or what it did; never account numbers, codes or secrets."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_actor_id_id", "actor_id", "id"),
        Index("ix_audit_log_resource", "resource_type", "resource_id", "id"),
        Index("ix_audit_log_at", "at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_id: Mapped[str] = mapped_column(String(128))
    actor_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str] = mapped_column(String(128))
    changes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# The database's own refusal, on PostgreSQL: the same statements run in migration 0006 and, through this
# event, wherever the tables are made from the models (the tests' schema).
REFUSE_CHANGES_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_log_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = 'audit_log is append-only: ' || TG_OP || ' refused';
END;
$$ LANGUAGE plpgsql
"""
REFUSE_CHANGES_TRIGGER = """
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()
"""
DROP_REFUSAL = "DROP FUNCTION IF EXISTS audit_log_refuse_change() CASCADE"

for _statement in (REFUSE_CHANGES_FUNCTION, REFUSE_CHANGES_TRIGGER):
    event.listen(AuditEntry.__table__, "after_create", DDL(_statement).execute_if(dialect="postgresql"))
event.listen(AuditEntry.__table__, "after_drop", DDL(DROP_REFUSAL).execute_if(dialect="postgresql"))


def clean(value: Any) -> Any:
    """`value` as the trail may keep it: JSON types only, sensitive keys dropped, text redacted and bounded."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items() if not _SENSITIVE_KEY.search(str(k))}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [clean(v) for v in items]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))[:_MAX_TEXT]


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fields whose value changed, each as `{"before": .., "after": ..}` (`before` None for a new field)."""
    return {
        name: {"before": before.get(name), "after": value}
        for name, value in after.items()
        if before.get(name) != value
    }


def actor_request_id() -> str | None:
    """The request being served, to capture before work moves to another task (a group commit's batch)."""
    return request_id.get()


@dataclass
class _Together:
    """Audit rows staged by `recorded_together`, and the savepoint (None: none) they were recorded in."""

    savepoint: SessionTransaction | None
    rows: list[dict[str, Any]] = field(default_factory=list)


_TOGETHER = "audit.recorded_together"


def record(
    session: AsyncSession,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: str,
    changes: dict[str, Any] | None = None,
    *,
    request: str | None = None,
) -> str:
    """Add one audit row to the caller's transaction (it commits or rolls back with the change) and return
    its id. `request` defaults to the id of the request being served (`X-Request-ID`)."""
    row = {
        "id": new_id("aud"), "at": utcnow(), "actor_id": principal.user_id, "actor_roles": sorted(principal.roles),
        "request_id": request if request is not None else request_id.get(), "action": action,
        "resource_type": resource_type, "resource_id": resource_id, "changes": clean(changes or {}),
    }
    together: _Together | None = session.info.get(_TOGETHER)
    if together is not None and together.savepoint is session.sync_session.get_nested_transaction():
        together.rows.append(row)
    else:
        session.add(AuditEntry(**row))
    return row["id"]


@asynccontextmanager
async def recorded_together(session: AsyncSession) -> AsyncIterator[None]:
    """The rows recorded in this block are written in one statement as it ends (an escrow batch records
    one per movement: as ORM objects they were about a sixth of the batch's CPU). A row recorded in a
    savepoint begun inside the block goes to the session as usual, so rolling that savepoint back still
    takes the row with it; a block that raises writes none of its rows."""
    together = _Together(savepoint=session.sync_session.get_nested_transaction())
    outer = session.info.get(_TOGETHER)
    session.info[_TOGETHER] = together
    try:
        yield
    finally:
        session.info[_TOGETHER] = outer
    await insert_rows(session, AuditEntry.__table__, together.rows)
