"""The database engine: SQLite under `CHORUS_DATA_DIR` by default, PostgreSQL when `DATABASE_URL` says so.

`Database.open()` creates the async engine (aiosqlite or asyncpg) and brings the schema to the
newest Alembic revision. `transaction()` is the one way to use it: a connection in a transaction
that commits on success and rolls back on any error, which comes out as a `StorageError` naming
the fault (locked, disk full, unreachable). The database's health is tracked here, so an outage is
one warning line when it starts and one info line when it ends, not a line per failed write.

SQLite runs in WAL mode (readers never wait for the writer) with a busy timeout; PostgreSQL
connections are checked before use, so a server restart costs one failed operation at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from runtime.database_url import database_url
from storage.errors import StorageError, as_storage_error

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000
POSTGRES_CONNECT_TIMEOUT_S = 5.0
POSTGRES_COMMAND_TIMEOUT_S = 15.0
PROBE_S = 5.0  # while the database is unavailable, how often it is asked whether it is back
# PostgreSQL: the tables whose deleted rows `scrub_deleted` rewrites away, and how long it waits for their lock
SCRUBBED_TABLES = ("memories", "memory_sources", "member_privacy", "storage_meta")
SCRUB_LOCK_TIMEOUT_MS = 5000


class Database:
    """One engine per process, shared by the guild store and memory."""

    def __init__(self, url: str, *, sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        self.sqlite_busy_timeout_ms = sqlite_busy_timeout_ms
        self.engine: AsyncEngine | None = None
        self.healthy = False
        self.last_fault: StorageError | None = None
        self._fault_since: float | None = None
        self._failures = 0
        self.probe_s = PROBE_S
        self._probe: asyncio.Task | None = None
        self._scrub_lock = asyncio.Lock()
        self._scrubs_asked = 0
        self._scrubs_begun_done = 0  # requests covered by the last finished scrub (those made before it began)

    @classmethod
    def from_settings(cls, settings: Any) -> "Database":
        return cls(database_url(settings.database_url, settings.data_dir))

    def describe(self) -> str:
        """Where the data lives, without a password."""
        if self.dialect == "sqlite":
            return f"SQLite file {self.url.database}"
        return f"PostgreSQL {self.url.render_as_string(hide_password=True)}"

    @property
    def sqlite_path(self) -> Path | None:
        return Path(self.url.database) if self.dialect == "sqlite" and self.url.database else None

    # -- lifecycle -------------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the engine and migrate the schema. Raises StorageError (one clear line) on failure."""
        try:
            if self.engine is None:
                self.engine = self._create_engine()  # (creates the SQLite file's folder: may fail too)
            async with self.engine.begin() as conn:
                await conn.run_sync(_upgrade_to_head)
        except Exception as exc:
            error = as_storage_error(exc)
            self._fault(error)
            raise error from None
        self._ok()
        log.info("database: %s (schema at the newest revision)", self.describe())

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

    def _create_engine(self) -> AsyncEngine:
        if self.dialect == "sqlite":
            path = self.sqlite_path
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            # No pool: a SQLite connection is cheap to open (~1 ms), and none outlives its transaction (an idle
            # one would hold an aiosqlite thread tied to the event loop that opened it).
            engine = create_async_engine(
                self.url, poolclass=NullPool, connect_args={"timeout": self.sqlite_busy_timeout_ms / 1000.0}
            )
            busy = self.sqlite_busy_timeout_ms

            @sa.event.listens_for(engine.sync_engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute(f"PRAGMA busy_timeout={int(busy)}")
                cursor.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten, not left in free pages
                cursor.close()

            return engine
        return create_async_engine(
            self.url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=5,
            connect_args={"timeout": POSTGRES_CONNECT_TIMEOUT_S, "command_timeout": POSTGRES_COMMAND_TIMEOUT_S},
        )

    # -- use ----------------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction (commit on success). Errors come out as StorageError."""
        if self.engine is None:
            raise StorageError("unreachable", "the database is not open")
        try:
            async with self.engine.begin() as conn:
                yield conn
        except (asyncio.CancelledError, StorageError):
            raise
        except Exception as exc:
            error = as_storage_error(exc)
            self._fault(error)
            raise error from None
        self._ok()

    async def scrub_deleted(self) -> None:
        """After deleting personal data: leave no copy of it in the database's files. Best effort: a failure is
        logged (the rows themselves are gone either way). Requests made while a scrub runs share the next one.

        SQLite: `secure_delete` zeroes the freed pages; the full-text index is merged (its old segments still
        hold the deleted words) and the WAL checkpointed and truncated (it holds the pages as they were).
        PostgreSQL: a plain VACUUM leaves a deleted row's bytes in the page's free space and its words in the
        GIN index (measured), so the tables that hold personal data are rewritten (`VACUUM FULL`, outside a
        transaction; it locks them for the rewrite, so it gives up after `SCRUB_LOCK_TIMEOUT_MS` waiting for
        the lock). The server's WAL keeps the old pages until its segments are reused (docs/privacy.md)."""
        if self.engine is None or self.dialect not in ("sqlite", "postgresql"):
            return
        self._scrubs_asked += 1
        asked = self._scrubs_asked
        async with self._scrub_lock:
            if self._scrubs_begun_done >= asked:
                return  # a scrub that began after this request covered it
            begun = self._scrubs_asked
            try:
                await (self._scrub_sqlite() if self.dialect == "sqlite" else self._scrub_postgresql())
            except Exception as exc:
                log.warning("database: deleted data not scrubbed from the files yet (%s)", as_storage_error(exc).kind)
            self._scrubs_begun_done = begun

    async def _scrub_sqlite(self) -> None:
        assert self.engine is not None
        async with self.engine.begin() as conn:
            await conn.exec_driver_sql("INSERT INTO memories_fts(memories_fts) VALUES ('optimize')")
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    async def _scrub_postgresql(self) -> None:
        assert self.engine is not None
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM refuses a transaction
            await conn.exec_driver_sql(f"SET lock_timeout = {int(SCRUB_LOCK_TIMEOUT_MS)}")
            try:
                await conn.exec_driver_sql("VACUUM FULL " + ", ".join(SCRUBBED_TABLES))
            finally:
                await conn.exec_driver_sql("RESET lock_timeout")  # the connection goes back to the pool

    # -- health -------------------------------------------------------------------------------------
    def _fault(self, error: StorageError) -> None:
        self._failures += 1
        self.last_fault = error
        if self.healthy or self._fault_since is None:
            self._fault_since = time.monotonic()
            log.warning(
                "database %s: %s; the bot goes on without memory, writes are retried or dropped (counted)",
                self.describe(),
                error,
            )
        self.healthy = False
        self._start_probe()

    def _start_probe(self) -> None:
        """While unhealthy, ask the database every PROBE_S whether it is back: health is probed, not left to
        the next write (one failed read would otherwise switch recall off until some write succeeded)."""
        if self._probe is not None and not self._probe.done():
            return
        try:
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_back(), name="database-probe")
        except RuntimeError:  # no loop (a synchronous caller): the next operation tells
            self._probe = None

    async def _probe_until_back(self) -> None:
        while not self.healthy and self.engine is not None:
            await asyncio.sleep(self.probe_s)
            if self.engine is None:
                return
            try:
                async with self.engine.connect() as conn:
                    await conn.exec_driver_sql("SELECT 1")
            except Exception:
                continue
            self._ok()

    def _ok(self) -> None:
        if not self.healthy and self._fault_since is not None:
            log.info("database %s is back after %.0f s", self.describe(), time.monotonic() - self._fault_since)
        self.healthy = True
        self._fault_since = None


def _upgrade_to_head(sync_conn: sa.Connection) -> None:
    from alembic import command
    from alembic.config import Config

    logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-start housekeeping lines; ours say what ran
    if sync_conn.dialect.name == "sqlite":
        # Python's sqlite3 runs DDL outside any transaction unless one was begun explicitly: a migration killed
        # half-way would leave tables without their alembic_version (and every later start failing). With an
        # explicit BEGIN the whole migration commits or rolls back as one (SQLite's DDL is transactional).
        sync_conn.exec_driver_sql("BEGIN IMMEDIATE")
    before = current_revision(sync_conn)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = sync_conn
    command.upgrade(config, "head")
    after = current_revision(sync_conn)
    if after != before:
        log.info("database schema migrated from revision %s to %s", before or "(empty)", after)


def current_revision(sync_conn: sa.Connection) -> str | None:
    """The schema revision stored in the database (None before the first migration)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(sync_conn).get_current_revision()


def upsert(dialect: str, table: sa.Table, values: dict[str, Any], keys: list[str], update: list[str]) -> Any:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET update-columns, on SQLite or PostgreSQL."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(**values)
    if not update:
        return statement.on_conflict_do_nothing(index_elements=keys)
    return statement.on_conflict_do_update(index_elements=keys, set_={col: statement.excluded[col] for col in update})
