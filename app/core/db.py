"""Engine, sessions and the unit of work.

One unit of work per request or job: `async with db.unit_of_work() as session`
begins a transaction, commits it on success and rolls it back on error.
Services take the session and never commit.
"""

from __future__ import annotations

import asyncio
import random
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Select, Table, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.core.config import Settings

T = TypeVar("T")

# PostgreSQL serialization failure and deadlock: safe to retry the whole unit.
RETRYABLE_SQLSTATES = {"40001", "40P01"}


def prepare_sqlite_directory(url: str) -> None:
    """SQLite creates its file but not the directory holding it (DATA_DIR by default)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def database_problem(error: BaseException, url: str) -> str | None:
    """One line saying what is wrong with the database at `url` and what to do, for an error that means it
    cannot be used at all (no such database, server not reached, refused login); None for any other error."""
    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    host, port = parsed.host or "localhost", parsed.port or 5432
    where = f"{host}:{port}"
    causes: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(causes) < 10:
        causes.append(current)
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    names = {type(cause).__name__ for cause in causes}
    if "InvalidCatalogNameError" in names:
        return (f"database {parsed.database!r} does not exist on {where}: create it "
                f"(createdb -h {host} -p {port} -U {parsed.username or 'postgres'} "
                f"{parsed.database}) or point DATABASE_URL at one that does ({shown})")
    if names & {"InvalidPasswordError", "InvalidAuthorizationSpecificationError"}:
        return f"the database server at {where} refused the login: check DATABASE_URL's user and password ({shown})"
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return f"the database host {parsed.host!r} is not known: check DATABASE_URL ({shown})"
    if any(isinstance(cause, (ConnectionError, TimeoutError)) for cause in causes) or (
        any(isinstance(cause, OSError) and cause.errno is not None for cause in causes)
        and parsed.get_backend_name() == "postgresql"
    ):
        return f"cannot reach the database server at {where}: start PostgreSQL there or fix DATABASE_URL ({shown})"
    if parsed.get_backend_name() == "sqlite" and any(
        isinstance(cause, OSError) or (isinstance(cause, sqlite3.OperationalError) and "unable to open" in str(cause))
        for cause in causes
    ):
        return (f"cannot create or open the SQLite file {parsed.database}: set DATA_DIR (or DATABASE_URL) to a "
                "writable place")
    return None


async def check_database(url: str) -> None:
    """Connects once and runs SELECT 1: raises what the connection raised."""
    prepare_sqlite_directory(url)
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


def make_engine(settings: Settings) -> AsyncEngine:
    # hide_parameters: a statement's parameters (a webhook's body, an encrypted account number) stay
    # out of SQL error messages, which end up in tracebacks, logs and error columns.
    url = settings.database_url
    if url.startswith("sqlite"):
        prepare_sqlite_directory(url)
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        _configure_sqlite(engine)
        return engine
    # No pre-ping: it costs a round trip on every transaction. A connection found dead raises
    # once, and SQLAlchemy then invalidates every connection of the pool older than it.
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # The connection returned last is taken first: a group commit's transactions, one after another, run
        # on the same connection, whose prepared statements (one per batch size) are ready, instead of
        # preparing each batch size again on each of the pool's connections in turn.
        pool_use_lifo=True,
        pool_recycle=1800,
        hide_parameters=True,
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE so a read-then-write never fails with 'locked'."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def on_postgres(session: AsyncSession) -> bool:
    """Whether the session's database is PostgreSQL (SQLite otherwise): where a statement differs by engine."""
    return session.bind.dialect.name == "postgresql"


def insert_on_conflict(session: AsyncSession, table: Any) -> postgresql.Insert | sqlite.Insert:
    """The engine's own INSERT into `table`, which takes `on_conflict_do_nothing` and `on_conflict_do_update`
    (the same arguments on PostgreSQL and SQLite)."""
    return postgresql.insert(table) if on_postgres(session) else sqlite.insert(table)


def sqlstate_of(error: DBAPIError) -> str | None:
    """PostgreSQL's error code for `error` (None on SQLite)."""
    return getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)


def is_retryable(error: BaseException) -> bool:
    if isinstance(error, DBAPIError):
        if sqlstate_of(error) in RETRYABLE_SQLSTATES:
            return True
        if isinstance(error, OperationalError) and "database is locked" in str(error.orig):
            return True
    return False


async def bulk_insert(
    session: AsyncSession, table: Table, columns: Sequence[str], records: Iterable[tuple[Any, ...]]
) -> None:
    """Insert many rows in the session's transaction: COPY on PostgreSQL, executemany elsewhere.

    `records` may be a generator building the rows: it is run to its end, and on PostgreSQL the rows it has
    built go to the server as it builds the next ones, so the two work at once."""
    if not on_postgres(session):
        rows = [dict(zip(columns, record, strict=True)) for record in records]
        if rows:
            await session.execute(table.insert(), rows)
        return
    if isinstance(records, Sequence) and not records:
        return
    await session.flush()
    await copy_records(session, table.name, columns, records)


async def insert_rows(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows that all name the same columns, in one statement (`bulk_insert`), as an INSERT through
    SQLAlchemy would write them: the columns they leave out take their Python-side defaults, and on
    PostgreSQL each value goes through its column type's conversion (a JSON column's value serialized, a
    time checked and put in UTC) before COPY, which converts nothing."""
    if not rows:
        return
    given = list(rows[0])
    defaults = {column.name: column.default for column in table.columns
                if column.name not in rows[0] and column.default is not None}
    filled = tuple(default.arg(None) if default.is_callable else default.arg for default in defaults.values())
    names = (*given, *defaults)
    records = [tuple(row[name] for name in given) + filled for row in rows]
    if on_postgres(session):
        dialect = session.bind.dialect
        converts = [(i, convert) for i, name in enumerate(names)
                    if (convert := table.columns[name].type.bind_processor(dialect)) is not None]
        if converts:
            records = [_converted(record, converts) for record in records]
    await bulk_insert(session, table, names, records)


def _converted(record: tuple[Any, ...], converts: Sequence[tuple[int, Callable[[Any], Any]]]) -> tuple[Any, ...]:
    values = list(record)
    for i, convert in converts:
        values[i] = convert(values[i])
    return tuple(values)


async def fetch_plain_rows(session: AsyncSession, statement: Select[Any]) -> Sequence[Sequence[Any]]:
    """All rows of a large read in the session's transaction, for columns and parameters of types the
    driver converts itself (strings, integers, booleans): on PostgreSQL straight from asyncpg, since
    SQLAlchemy's result rows cost more than the query itself on a 100,000-row cap table. A statement
    whose parameters SQLAlchemy renders at execution (an `in_()` list) goes through SQLAlchemy."""
    connection = await session.connection()
    if on_postgres(session):
        compiled = statement.compile(dialect=connection.dialect)
        if not (compiled.post_compile_params or compiled.literal_execute_params):
            raw = await connection.get_raw_connection()
            return await raw.driver_connection.fetch(compiled.string,
                                                     *(compiled.params[name] for name in compiled.positiontup))
    return (await connection.execute(statement)).all()


async def copy_records(
    session: AsyncSession, table_name: str, columns: Sequence[str], records: Iterable[tuple[Any, ...]]
) -> None:
    """COPY `records` into `table_name` in the session's transaction (PostgreSQL only): binary COPY
    encodes a value several times faster than an array parameter does."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(table_name, columns=list(columns), records=records)


BULK_WORK_MEM = "64MB"


async def tune_for_bulk(session: AsyncSession) -> None:
    """For the rest of the transaction (PostgreSQL only): no JIT compilation, which costs hundreds of
    milliseconds on a statement over 100,000 rows whose row counts the planner cannot estimate, and
    room to sort and hold such rows in memory instead of in temporary files."""
    await session.execute(text("SELECT set_config('jit', 'off', true), set_config('work_mem', :work_mem, true)"),
                          {"work_mem": BULK_WORK_MEM})


class Database:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]], *, attempts: int = 5) -> T:
        """Run `work` in its own unit of work, retrying deadlocks and serialization failures."""
        for attempt in range(attempts):
            try:
                async with self.unit_of_work() as session:
                    return await work(session)
            except DBAPIError as error:
                if not is_retryable(error) or attempt == attempts - 1:
                    raise
                await asyncio.sleep(random.uniform(0, 0.02 * 2**attempt))
        raise AssertionError("unreachable")

    async def dispose(self) -> None:
        await self.engine.dispose()
