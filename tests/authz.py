"""Shared parts of the authorization-matrix tests: calling a route as a role, and a scenario
built once and copied into each test's fresh database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Generic, TypeVar

import httpx
from sqlalchemy import insert, select, text

from app.core.db import Database, on_postgres
from app.models import Base

ERROR_CODES = {401: "UNAUTHENTICATED", 403: "UNAUTHORIZED", 404: "NOT_FOUND"}
S = TypeVar("S")
Route = tuple[str, str, dict[str, Any] | None]  # (method, path, body) with `{name}` placeholders


def role_headers(auth: Callable[..., dict[str, str]], users: dict[str, str], role: str) -> dict[str, str]:
    """No header for "anonymous"; otherwise a token for the role's user (admin for "admin")."""
    return {} if role == "anonymous" else auth(users[role], admin=role == "admin")


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value


async def call_route(client: httpx.AsyncClient, route: Route, headers: dict[str, str],
                     ids: dict[str, str]) -> httpx.Response:
    method, path, body = route
    if not headers and body is not None:
        body = {"unexpected": True}  # anonymous: authentication is checked before the body
    kwargs: dict[str, Any] = {"headers": headers}
    if body is not None:
        kwargs["json"] = fill(body, ids)
    return await client.request(method, fill(path, ids), **kwargs)


async def dump_tables(db: Database) -> dict[str, list[dict[str, Any]]]:
    async with db.unit_of_work() as session:
        return {t.name: [dict(row._mapping) for row in await session.execute(select(t))]
                for t in Base.metadata.sorted_tables}


async def restore_tables(db: Database, rows: dict[str, list[dict[str, Any]]]) -> None:
    async with db.unit_of_work() as session:
        for table in Base.metadata.sorted_tables:
            if rows[table.name]:
                await session.execute(insert(table), rows[table.name])
        if on_postgres(session):  # rows came with their serial ids: move the sequences past them
            for table in Base.metadata.sorted_tables:
                for column in table.primary_key.columns:
                    if column.autoincrement is True or (column.autoincrement == "auto"
                                                        and column.type.python_type is int):
                        await session.execute(text(
                            f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                            f"COALESCE(MAX({column.name}), 0) + 1, false) FROM {table.name}"))


class ScenarioCache(Generic[S]):
    """Builds a test scenario through the API once per run; later tests get a copy of its rows
    in their own fresh database instead of building it again."""

    def __init__(self) -> None:
        self._built: tuple[S, dict[str, list[dict[str, Any]]]] | None = None

    async def get(self, db: Database, build: Callable[[], Awaitable[S]]) -> S:
        if self._built is None:
            scenario = await build()
            self._built = (scenario, await dump_tables(db))
            return scenario
        scenario, rows = self._built
        await restore_tables(db, rows)
        return replace(scenario)
