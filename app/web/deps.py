"""Request-scoped dependencies shared by the routers.

All are `async def`: FastAPI runs a plain `def` dependency in a thread pool, a
thread hand-off on every request for what is a dictionary lookup.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    """The app's runtime. The webhook route calls this rather than declaring `RuntimeDep`: FastAPI's
    dependency solving costs more per request than the lookup (docs/performance.md)."""
    return request.app.state.runtime


async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


async def get_settings(request: Request) -> Settings:
    return runtime_of(request).settings


async def get_session(runtime: Annotated[Runtime, Depends(get_runtime)]) -> AsyncIterator[AsyncSession]:
    """The request's unit of work. Declared with scope="function" so the commit runs
    before the response is sent: a failed commit is never answered 2xx."""
    async with runtime.db.unit_of_work() as session:
        yield session


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
