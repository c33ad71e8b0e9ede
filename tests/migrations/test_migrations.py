"""Alembic migrations against the models, on SQLite and (with TEST_DATABASE_URL) PostgreSQL.

1. upgrade head -> downgrade base -> upgrade head works, and leaves exactly the model tables;
2. autogenerate sees no difference between the migrated database and `Base.metadata`;
3. the naming convention reached the database (`pk_payments`, `uq_...`, `fk_...`, `ck_...`, `ix_...`).
4. what autogenerate does not compare: payouts' times default to the database's clock (0012).

The PostgreSQL variant runs in a database of this test process's own (`test_migrations_<pid>`,
created if missing and emptied first), so it never touches the tables of the main test database
and two runs on one server never empty each other's. `env.py` calls
`asyncio.run`, so Alembic commands run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pprint
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CheckConstraint, ForeignKeyConstraint, Table, UniqueConstraint, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from app.models import Base

ROOT = Path(__file__).resolve().parents[2]
PG_DATABASE = f"test_migrations_{os.getpid()}"
MODEL_TABLES = set(Base.metadata.tables)


def _config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = url
    cfg.attributes["configure_logger"] = False
    return cfg


async def _alembic(fn: Callable[..., Any], url: str, revision: str) -> None:
    await asyncio.to_thread(fn, _config(url), revision)


async def _on_sync(url: str, fn: Callable[[Connection], Any]) -> Any:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def _fresh_postgres(base_url: str) -> str:
    """URL of an empty `PG_DATABASE` database on the server of `base_url`."""
    url = make_url(base_url)
    admin_dsn = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DATABASE)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # created concurrently
                await conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    finally:
        await conn.close()

    target = url.set(database=PG_DATABASE)
    conn = await asyncpg.connect(target.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        names = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for row in names:
            await conn.execute(f'DROP TABLE IF EXISTS public."{row["tablename"]}" CASCADE')
    finally:
        await conn.close()
    return target.render_as_string(hide_password=False)


@pytest.fixture(scope="module", autouse=True)
def _drop_own_postgres_database() -> Any:
    """This run's migration database goes once the module's tests are done."""
    yield
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        return

    async def drop() -> None:
        admin = make_url(base).set(drivername="postgresql", database="postgres")
        conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("PostgreSQL migration tests: set TEST_DATABASE_URL (postgresql+asyncpg://...)")
    return await _fresh_postgres(base)


async def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    head = ScriptDirectory.from_config(_config(db_url)).get_current_head()
    assert await _on_sync(db_url, _tables) == set()

    await _alembic(command.upgrade, db_url, "head")
    assert await _on_sync(db_url, _tables) == MODEL_TABLES | {"alembic_version"}
    assert await _on_sync(db_url, _current_revision) == head

    await _alembic(command.downgrade, db_url, "base")
    assert await _on_sync(db_url, _tables) <= {"alembic_version"}
    assert await _on_sync(db_url, _current_revision) is None

    await _alembic(command.upgrade, db_url, "head")
    assert await _on_sync(db_url, _tables) == MODEL_TABLES | {"alembic_version"}
    assert await _on_sync(db_url, _current_revision) == head


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(
        conn,
        opts={"compare_type": True, "render_as_batch": conn.dialect.name == "sqlite"},
    )
    return compare_metadata(context, Base.metadata)


async def test_autogenerate_finds_no_difference(db_url: str) -> None:
    await _alembic(command.upgrade, db_url, "head")
    diff = await _on_sync(db_url, _diff)
    assert diff == [], "migrations and models differ:\n" + pprint.pformat(diff, width=110)


def _names(conn: Connection) -> dict[str, dict[str, Any]]:
    """Constraint and index names per model table, as the database reports them."""
    inspector = inspect(conn)
    found: dict[str, dict[str, Any]] = {}
    for table in MODEL_TABLES:
        found[table] = {
            "pk": inspector.get_pk_constraint(table).get("name"),
            "uq": sorted(str(uq["name"]) for uq in inspector.get_unique_constraints(table)),
            "fk": sorted(str(fk["name"]) for fk in inspector.get_foreign_keys(table)),
            "ck": sorted(str(ck["name"]) for ck in inspector.get_check_constraints(table)),
            "ix": sorted(
                str(ix["name"])
                for ix in inspector.get_indexes(table)
                if not ix.get("duplicates_constraint")  # PostgreSQL: the index behind a UNIQUE
            ),
        }
    return found


def _constraint_names(table: Table, kind: type) -> list[str]:
    return sorted(str(c.name) for c in table.constraints if isinstance(c, kind))


def _expected_names() -> dict[str, dict[str, Any]]:
    """The same, from the models (names already expanded by the naming convention)."""
    expected: dict[str, dict[str, Any]] = {}
    for name, table in Base.metadata.tables.items():
        expected[name] = {
            "pk": str(table.primary_key.name),
            "uq": _constraint_names(table, UniqueConstraint),
            "fk": _constraint_names(table, ForeignKeyConstraint),
            "ck": _constraint_names(table, CheckConstraint),
            "ix": sorted(str(ix.name) for ix in table.indexes),
        }
    return expected


def _fillfactor_of_ledger_accounts(conn: Connection) -> list[str] | None:
    return conn.exec_driver_sql("SELECT reloptions FROM pg_class WHERE relname = 'ledger_accounts'").scalar()


async def test_naming_convention_applied(db_url: str) -> None:
    await _alembic(command.upgrade, db_url, "head")
    found = await _on_sync(db_url, _names)

    # the convention itself, spelled out for a few well-known objects
    assert found["payments"]["pk"] == "pk_payments"
    assert "uq_payments_reference" in found["payments"]["uq"]
    assert "ix_payments_user_id" in found["payments"]["ix"]
    assert "fk_release_items_release_id_release_requests" in found["release_items"]["fk"]
    assert found["postings"]["fk"] == []  # on purpose: see app.models.ledger.Posting
    assert "ck_apps_share_price_positive" in found["apps"]["ck"]
    assert found["holdings"]["uq"] == ["uq_holdings_app_id_user_id"]

    if db_url.startswith("postgresql"):  # storage parameters of the models reach the database too
        assert await _on_sync(db_url, _fillfactor_of_ledger_accounts) == ["fillfactor=70"]

    # and every named object of the models, as the database reports it
    expected = _expected_names()
    mismatches = {t: {"db": found[t], "models": expected[t]} for t in found if found[t] != expected[t]}
    assert not mismatches, pprint.pformat(mismatches, width=110)


PAYOUT_TIMES = ("available_at", "created_at", "updated_at")
_UNTIMED_PAYOUT = text(
    "INSERT INTO payouts (id, user_id, amount, currency, status, reference, reason, source_id, attempts) "
    "VALUES ('po_1', 'investor-1', 100, 'NGN', 'pending', 'payout-1', 'distribution', 'dst_1', 0)")


def _payout_time_defaults(conn: Connection) -> dict[str, Any]:
    return {c["name"]: c["default"] for c in inspect(conn).get_columns("payouts") if c["name"] in PAYOUT_TIMES}


def _untimed_payout_written(conn: Connection) -> Any:
    conn.execute(_UNTIMED_PAYOUT)
    return conn.execute(text(f"SELECT {', '.join(PAYOUT_TIMES)} FROM payouts")).one()


async def test_payouts_take_their_times_from_the_database_when_left_out(db_url: str) -> None:
    """Migration 0012: a distribution COPYs its payouts without their times, and the database fills them."""
    await _alembic(command.upgrade, db_url, "head")
    assert all(await _on_sync(db_url, _untimed_payout_written))

    await _alembic(command.downgrade, db_url, "0011")
    assert set((await _on_sync(db_url, _payout_time_defaults)).values()) == {None}
    await _alembic(command.upgrade, db_url, "head")
    assert None not in (await _on_sync(db_url, _payout_time_defaults)).values()
