"""Group commit: concurrent units of work share a transaction, and each caller still gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.batching import MAX_BATCH, GroupCommit
from app.core.config import Settings
from app.core.db import Database
from app.models import JournalEntry

Job = Callable[[AsyncSession], Awaitable[Any]]


async def in_sequence(session: AsyncSession, jobs: list[Job]) -> list[Any]:
    return [await job(session) for job in jobs]


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings)
    yield database
    await database.dispose()


def writes(memo: str, *, fails: bool = False) -> Job:
    async def job(session: AsyncSession) -> str:
        session.add(JournalEntry(kind="test", memo=memo))
        await session.flush()
        if fails:
            raise RuntimeError(f"{memo} failed")
        return memo

    return job


async def written(db: Database) -> list[str]:
    async with db.unit_of_work() as session:
        return sorted((await session.scalars(select(JournalEntry.memo))).all())


async def test_jobs_waiting_together_commit_together(db: Database) -> None:
    sizes: list[int] = []
    commits = GroupCommit(db, in_sequence, committed=sizes.append)
    answers = await asyncio.gather(*(commits.submit(writes(name)) for name in ("a", "b", "c")))
    assert answers == ["a", "b", "c"]
    assert sizes == [3]
    assert await written(db) == ["a", "b", "c"]


async def test_a_batch_carries_at_most_max_batch_jobs_and_the_rest_commit_next(db: Database) -> None:
    sizes: list[int] = []
    commits = GroupCommit(db, in_sequence, committed=sizes.append)
    names = [f"job-{i:03d}" for i in range(MAX_BATCH + 5)]
    assert await asyncio.gather(*(commits.submit(writes(name)) for name in names)) == names
    assert sizes == [MAX_BATCH, 5]
    assert await written(db) == names


async def test_a_failing_job_fails_alone_and_leaves_nothing_behind(db: Database) -> None:
    sizes: list[int] = []
    commits = GroupCommit(db, in_sequence, committed=sizes.append)
    answers = await asyncio.gather(commits.submit(writes("a")), commits.submit(writes("b", fails=True)),
                                   commits.submit(writes("c")), return_exceptions=True)
    assert answers[0] == "a" and answers[2] == "c"
    assert isinstance(answers[1], RuntimeError) and str(answers[1]) == "b failed"
    assert sizes == [1, 1]  # the batch of three rolled back; a and c committed on their own
    assert await written(db) == ["a", "c"]


async def test_jobs_with_one_key_never_share_a_batch(db: Database) -> None:
    sizes: list[int] = []
    commits = GroupCommit(db, in_sequence, committed=sizes.append)
    await asyncio.gather(commits.submit(writes("a"), key="k"), commits.submit(writes("b"), key="k"),
                         commits.submit(writes("c")))
    assert sizes == [2, 1]
    assert await written(db) == ["a", "b", "c"]
