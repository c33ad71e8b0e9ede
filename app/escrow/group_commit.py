"""Group commit for escrow movements.

Releases and refunds asked for at the same time share a transaction
(`app.core.batching.GroupCommit`): each job's `prepare` runs, then the
movements of all of them are applied at once (`movements.apply`), then each
accepted job's `finish`, and the batch commits once. An escrow account that
everybody is moving money out of is then locked once per batch, not once per
movement. A job refused on its own (an `AppError` from its `prepare` or from
`apply`) fails alone and writes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import metrics
from app.core.errors import AppError
from app.escrow.movements import Movement, Outcome, apply
from app.models import audit
from app.runtime import Runtime

# What a job does once its movement is applied (in the same transaction); returns the job's answer.
Finish = Callable[[Outcome], Awaitable[Any]]
# Reads and checks, writing nothing (a refusal raises an AppError); returns the movement and its finish.
Prepare = Callable[[AsyncSession], Awaitable[tuple[Movement, Finish]]]


async def run(rt: Runtime, prepare: Prepare, *, key: str | None = None) -> Any:
    """Run one job in the next batch and return what its finish returned (or raise its refusal).
    Jobs with the same key (one release executed twice at once) never share a batch."""
    commits = rt.group_commit("escrow movements", lambda session, batch: _work(session, rt, batch),
                              committed=metrics.ESCROW_BATCH_SIZE.observe)
    return await commits.submit(prepare, key=key)


async def _work(session: AsyncSession, rt: Runtime, batch: list[Prepare]) -> list[Any]:
    answers: list[Any] = [None] * len(batch)
    prepared: list[tuple[int, Movement, Finish]] = []
    async with audit.recorded_together(session):  # a row per movement, written in one statement
        for index, prepare in enumerate(batch):
            try:
                movement, finish = await prepare(session)
            except AppError as refusal:
                answers[index] = refusal
                continue
            prepared.append((index, movement, finish))
        outcomes = await apply(session, rt, [movement for _, movement, _ in prepared])
        for (index, _, finish), outcome in zip(prepared, outcomes, strict=True):
            answers[index] = outcome if isinstance(outcome, AppError) else await finish(outcome)
    return answers
