"""Group commit for escrow movements.

Releases and refunds asked for at the same time wait here; one task per
process takes all that are waiting, runs each job's `prepare` in one
transaction, applies their movements at once (`movements.apply`), lets each
accepted job `finish` in that transaction, and commits once. An escrow account
that everybody is moving money out of is then locked once per batch, not once
per movement.

A job refused on its own (an `AppError` from its `prepare` or from `apply`)
fails alone and writes nothing. If the batch as a whole fails, every job in it
runs again alone, so each gets its own answer. Jobs with the same key (one
release executed twice at once) never share a batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core import metrics
from app.core.errors import AppError
from app.escrow.movements import Movement, Outcome, apply
from app.runtime import Runtime

# What a job does once its movement is applied (in the same transaction); returns the job's answer.
Finish = Callable[[Outcome], Awaitable[Any]]
# Reads and checks, writing nothing (a refusal raises an AppError); returns the movement and its finish.
Prepare = Callable[[AsyncSession], Awaitable[tuple[Movement, Finish]]]

MAX_BATCH = 64


@dataclass
class _Job:
    prepare: Prepare
    key: str | None
    answer: asyncio.Future[Any]


class EscrowQueue:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._waiting: list[_Job] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, prepare: Prepare, *, key: str | None = None) -> Any:
        """Run one job in the next batch and return what its finish returned (or raise its refusal)."""
        job = _Job(prepare, key, asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await job.answer

    async def _drain(self) -> None:
        while self._waiting:
            batch: list[_Job] = []
            keys: set[str] = set()
            later: list[_Job] = []
            for job in self._waiting:
                if len(batch) == MAX_BATCH or (job.key is not None and job.key in keys):
                    later.append(job)
                    continue
                batch.append(job)
                if job.key is not None:
                    keys.add(job.key)
            self._waiting = later
            try:
                await self._run(batch)
            except BaseException as error:  # cancelled with the app: nobody may wait forever
                for job in [*batch, *self._waiting]:
                    if not job.answer.done():
                        job.answer.set_exception(error)
                self._waiting = []
                raise

    async def _run(self, batch: list[_Job]) -> None:
        try:
            answers = await self.rt.db.run(lambda session: self._work(session, batch))
        except Exception as error:
            if len(batch) > 1:
                for job in batch:
                    await self._run([job])
                return
            answers = [error]
        else:
            metrics.ESCROW_BATCH_SIZE.observe(len(batch))
        for job, answer in zip(batch, answers, strict=True):
            if job.answer.done():  # the caller went away
                continue
            if isinstance(answer, BaseException):
                job.answer.set_exception(answer)
            else:
                job.answer.set_result(answer)

    async def _work(self, session: AsyncSession, batch: list[_Job]) -> list[Any]:
        answers: list[Any] = [None] * len(batch)
        prepared: list[tuple[int, Movement, Finish]] = []
        # in key order: two batches preparing the same releases lock their rows in the same order
        for index, job in sorted(enumerate(batch), key=lambda pair: pair[1].key or ""):
            try:
                movement, finish = await job.prepare(session)
            except AppError as refusal:
                answers[index] = refusal
                continue
            prepared.append((index, movement, finish))
        prepared.sort(key=lambda item: item[0])  # movements apply in the order they were asked for
        outcomes = await apply(session, self.rt, [movement for _, movement, _ in prepared])
        for (index, _, finish), outcome in zip(prepared, outcomes, strict=True):
            answers[index] = outcome if isinstance(outcome, AppError) else await finish(outcome)
        return answers
