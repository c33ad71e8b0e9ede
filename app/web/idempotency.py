"""`Idempotency-Key` for money-moving POSTs, scoped to the caller.

Same key and same body: the first response is replayed. Same key, other body:
IDEMPOTENCY_CONFLICT. While the first request runs: IDEMPOTENCY_IN_PROGRESS.
A request that fails releases its key, so the client may try again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Update, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database, insert_on_conflict
from app.core.errors import IdempotencyConflict, IdempotencyInProgress, ValidationFailed
from app.core.security import Principal
from app.models import IdempotencyRecord
from app.models.base import utcnow

_KEY = re.compile(r"[\x21-\x7e]{1,255}")
REPLAY_HEADER = "Idempotent-Replayed"


IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


def request_fingerprint(scope: str, body: BaseModel | dict[str, Any]) -> str:
    data = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
    canonical = json.dumps({"scope": scope, "body": data}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _claim(db: Database, user_id: str, key: str, scope: str, fingerprint: str) -> JSONResponse | None:
    """Take the key for this request, or return the response to replay."""
    lease = timedelta(seconds=db.settings.idempotency_lease_seconds)
    async with db.unit_of_work() as session:
        claimed = await session.scalar(
            insert_on_conflict(session, IdempotencyRecord)
            .values(user_id=user_id, key=key, scope=scope, request_hash=fingerprint, status="in_progress",
                    locked_until=utcnow() + lease, created_at=utcnow())
            .on_conflict_do_nothing(index_elements=["user_id", "key"])
            .returning(IdempotencyRecord.id)
        )
        if claimed is not None:
            return None
        record = await session.scalar(
            select(IdempotencyRecord)
            .where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
            .with_for_update()
        )
        if record is None:  # released between our insert and this read: ask the client to retry
            raise IdempotencyInProgress()
        if record.request_hash != fingerprint:
            raise IdempotencyConflict(key=key)
        if record.status == "done":
            assert record.response_status is not None and record.response_body is not None
            return JSONResponse(
                json.loads(record.response_body), status_code=record.response_status,
                headers={REPLAY_HEADER: "true"},
            )
        if record.locked_until > utcnow():
            raise IdempotencyInProgress(key=key)
        # the first attempt died without finishing: this one takes over
        record.locked_until = utcnow() + lease
        return None


async def _claimed_or_replay(
    db: Database, principal: Principal, key: str, scope: str, body: BaseModel
) -> JSONResponse | None:
    """Claim `key` for this request (None), or the answer its first request recorded (a replay)."""
    if not _KEY.fullmatch(key):  # `$` would let a trailing newline through
        raise ValidationFailed("Idempotency-Key must be 1 to 255 printable characters", header="Idempotency-Key")
    return await _claim(db, principal.user_id, key, scope, request_fingerprint(scope, body))


def _owned(principal: Principal, key: str) -> tuple[ColumnElement[bool], ...]:
    return IdempotencyRecord.user_id == principal.user_id, IdempotencyRecord.key == key


def _done(principal: Principal, key: str, status_code: int, payload: dict[str, Any]) -> Update:
    return (
        update(IdempotencyRecord)
        .where(*_owned(principal, key))
        .values(status="done", response_status=status_code, response_body=json.dumps(payload, separators=(",", ":")))
    )


class Answer:
    """Hands a flow the means to record its answer in the transaction of its last write, so that a
    process that dies between that commit and the end of the request leaves the answer recorded: the
    client's retry is replayed instead of doing the work again."""

    def __init__(self, principal: Principal, key: str | None, status_code: int) -> None:
        self._principal, self._key, self._status_code = principal, key, status_code
        self.recorded = False

    async def record(self, session: AsyncSession, result: BaseModel) -> None:
        if self._key is not None:
            await session.execute(_done(self._principal, self._key, self._status_code, result.model_dump(mode="json")))
        self.recorded = True


async def idempotent(
    db: Database,
    principal: Principal,
    key: str | None,
    scope: str,
    body: BaseModel,
    handler: Callable[[Answer], Awaitable[BaseModel]],
    status_code: int = 201,
) -> JSONResponse:
    """For a flow that owns its transactions (it calls the gateway between them): the key is claimed,
    then the flow runs. A flow that calls `answer.record(session, result)` in its last transaction has
    its answer recorded with its work; otherwise the answer is recorded in a transaction of its own."""
    answer = Answer(principal, key, status_code)
    if key is None:
        result = await handler(answer)
        return JSONResponse(result.model_dump(mode="json"), status_code=status_code)
    if (replay := await _claimed_or_replay(db, principal, key, scope, body)) is not None:
        return replay
    try:
        result = await handler(answer)
    except BaseException:
        # Recorded means the work may have committed with its answer: keep the claim (if that commit
        # failed after all, the claim lapses after its lease and a retry does the work).
        if not answer.recorded:
            await _release(db, principal, key)
        raise
    payload = result.model_dump(mode="json")
    if not answer.recorded:
        async with db.unit_of_work() as session:
            await session.execute(_done(principal, key, status_code, payload))
    return JSONResponse(payload, status_code=status_code)


async def idempotent_in(
    session: AsyncSession,
    db: Database,
    principal: Principal,
    key: str | None,
    scope: str,
    body: BaseModel,
    work: Callable[[AsyncSession], Awaitable[BaseModel]],
    status_code: int = 201,
) -> JSONResponse:
    """For work done in one transaction, the request's `session`: the answer is recorded in that same
    transaction, so a commit that fails leaves neither the work nor a recorded answer (the claim then
    lapses after its lease and a retry does the work)."""
    if key is None:
        result = await work(session)
        return JSONResponse(result.model_dump(mode="json"), status_code=status_code)
    if (replay := await _claimed_or_replay(db, principal, key, scope, body)) is not None:
        return replay
    try:
        result = await work(session)
        payload = result.model_dump(mode="json")
        await session.execute(_done(principal, key, status_code, payload))
        await session.flush()
    except BaseException:
        # The request's transaction is given up first: on SQLite its write lock would keep the release
        # below from starting.
        await session.rollback()
        await _release(db, principal, key)
        raise
    return JSONResponse(payload, status_code=status_code)


async def _release(db: Database, principal: Principal, key: str) -> None:
    """The work failed: forget the claim so that the client's retry runs it again."""
    async with db.unit_of_work() as session:
        await session.execute(delete(IdempotencyRecord).where(*_owned(principal, key)))
