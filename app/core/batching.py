"""Group commit: the jobs that concurrent callers submit share one transaction.

`GroupCommit.submit(job)` queues the job and waits for its answer. One task per
instance takes every job waiting and hands the batch to `work(session, jobs)`
in one unit of work, so a hot row (an app's escrow account, its share count)
is locked once per batch instead of once per job. `work` returns an answer per
job; an exception in that list is raised to that job's caller alone. If the
batch fails as a whole, every job in it runs again in a batch of its own, so
each caller gets its own answer. Jobs with the same key never share a batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database

J = TypeVar("J")
# Crediting batches of up to 128 verified charges, rather than 64, cost a worker process a tenth less CPU
# per charge under a webhook burst (docs/performance.md); a bigger batch holds its hot rows' locks longer.
MAX_BATCH = 128


@dataclass
class _Waiting(Generic[J]):
    job: J
    key: str | None
    answer: asyncio.Future[Any]


class GroupCommit(Generic[J]):
    def __init__(
        self,
        db: Database,
        work: Callable[[AsyncSession, list[J]], Awaitable[list[Any]]],
        *,
        committed: Callable[[int], None] = lambda size: None,
    ) -> None:
        self.db = db
        self.work = work
        self.committed = committed  # told the size of every batch that commits
        self._waiting: list[_Waiting[J]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, job: J, *, key: str | None = None) -> Any:
        """Run `job` in the next batch; returns its answer, or raises the error it answered."""
        waiting = _Waiting(job, key, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await waiting.answer

    async def _drain(self) -> None:
        while self._waiting:
            batch: list[_Waiting[J]] = []
            keys: set[str] = set()
            later: list[_Waiting[J]] = []
            for waiting in self._waiting:
                if len(batch) == MAX_BATCH or (waiting.key is not None and waiting.key in keys):
                    later.append(waiting)
                    continue
                batch.append(waiting)
                if waiting.key is not None:
                    keys.add(waiting.key)
            self._waiting = later
            try:
                await self._run(batch)
            except BaseException as error:  # cancelled with the app: nobody may wait forever
                for waiting in [*batch, *self._waiting]:
                    if not waiting.answer.done():
                        waiting.answer.set_exception(error)
                self._waiting = []
                raise

    async def _run(self, batch: list[_Waiting[J]]) -> None:
        jobs = [waiting.job for waiting in batch]
        try:
            answers = await self.db.run(lambda session: self.work(session, jobs))
        except Exception as error:
            if len(batch) > 1:
                for waiting in batch:
                    await self._run([waiting])
                return
            answers = [error]
        else:
            self.committed(len(batch))
        for waiting, answer in zip(batch, answers, strict=True):
            if waiting.answer.done():  # the caller went away
                continue
            if isinstance(answer, BaseException):
                waiting.answer.set_exception(answer)
            else:
                waiting.answer.set_result(answer)
