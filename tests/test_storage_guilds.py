"""Per-guild state in the database (SQLite and PostgreSQL): survives restarts, validated before writing,
and an old guilds.json is imported once and kept aside, nothing lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.guild_state import GuildState
from storage.guild_store import GuildStore
from storage.db import Database, current_revision
from runtime.database_url import database_url
from storage.legacy import legacy_import_note
from storage.schema import guild_settings
from tests.fixtures_storage import db_url, postgres_server  # noqa: F401 (fixtures)


async def open_store(url: str, data_dir: Path) -> GuildStore:
    db = Database(database_url(url, data_dir))
    await db.open()
    store = GuildStore(db, data_dir=data_dir)
    await store.load()
    return store


@pytest.mark.asyncio
async def test_schema_is_migrated_to_the_newest_revision_once(db_url: str, tmp_path: Path) -> None:
    db = Database(database_url(db_url, tmp_path))
    await db.open()
    await db.open()  # a second start finds nothing to do
    async with db.transaction() as conn:
        assert await conn.run_sync(current_revision) == "0003"
        tables = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
    assert {"guild_settings", "member_privacy", "memories", "storage_meta", "alembic_version"} <= tables
    await db.close()


@pytest.mark.asyncio
async def test_state_survives_a_restart(db_url: str, tmp_path: Path) -> None:
    store = await open_store(db_url, tmp_path)
    assert store.get(1) == GuildState()
    await store.set_persona(1, "Trixie")
    await store.set_captions_channel(1, 555)
    await store.set_persona(2, "Juniper")
    await store.set_memory_enabled(3, False)
    big = 1_234_567_890_123_456_789  # Discord ids need 64 bits
    await store.set_captions_channel(big, big)
    await store.db.close()

    reopened = await open_store(db_url, tmp_path)
    assert reopened.get(1) == GuildState(persona="Trixie", captions_channel_id=555)
    assert reopened.get(2).persona == "Juniper"
    assert reopened.get(3) == GuildState(memory_enabled=False)
    assert reopened.get(big).captions_channel_id == big
    assert reopened.get(4) == GuildState()
    await reopened.db.close()


@pytest.mark.asyncio
async def test_clearing_everything_removes_the_row(db_url: str, tmp_path: Path) -> None:
    store = await open_store(db_url, tmp_path)
    await store.set_persona(7, "Juniper")
    await store.set_persona(7, None)
    await store.set_persona(8, "Juniper")
    await store.forget(8)
    assert store.all() == {}
    async with store.db.transaction() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(guild_settings))).scalar_one() == 0
    await store.db.close()


@pytest.mark.asyncio
async def test_invalid_values_are_refused_before_writing(db_url: str, tmp_path: Path) -> None:
    store = await open_store(db_url, tmp_path)
    with pytest.raises(ValueError):
        await store.set_captions_channel(1, -4)
    with pytest.raises(ValueError):
        await store.set_persona(1, "   ")
    assert store.get(1) == GuildState()
    async with store.db.transaction() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(guild_settings))).scalar_one() == 0
    await store.db.close()


@pytest.mark.asyncio
async def test_old_guilds_json_is_imported_once_and_kept_aside(
    db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = tmp_path / "guilds.json"
    original = {
        "version": 1,
        "guilds": {
            "1": {"persona": "Trixie", "captions_channel_id": 99},
            "2": {"persona": None, "captions_channel_id": 555},
            "x": {"persona": "Juniper"},  # bad id: skipped, named in the log
            "3": {"persona": 42},  # bad value: skipped
        },
    }
    legacy.write_text(json.dumps(original), encoding="utf-8")
    with caplog.at_level(logging.INFO):
        store = await open_store(db_url, tmp_path)
    assert store.get(1) == GuildState(persona="Trixie", captions_channel_id=99)
    assert store.get(2) == GuildState(captions_channel_id=555)
    assert store.get(3) == GuildState()
    assert "entry 'x' skipped" in caplog.text and "entry '3' skipped" in caplog.text
    assert not legacy.exists()
    kept = list(tmp_path.glob("guilds.json.migrated-*"))
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == original  # nothing lost
    assert "guilds.json" in (await legacy_import_note(store.db) or "")

    await store.set_persona(1, "Juniper")  # changed after the import: the kept file is never read again
    await store.db.close()
    reopened = await open_store(db_url, tmp_path)
    assert reopened.get(1).persona == "Juniper"
    await reopened.db.close()


@pytest.mark.asyncio
async def test_a_database_row_wins_over_an_old_file(db_url: str, tmp_path: Path) -> None:
    store = await open_store(db_url, tmp_path)
    await store.set_persona(1, "Captain Hollis")
    await store.db.close()
    (tmp_path / "guilds.json").write_text(
        json.dumps({"version": 1, "guilds": {"1": {"persona": "Trixie"}, "2": {"persona": "Trixie"}}})
    )
    reopened = await open_store(db_url, tmp_path)
    assert reopened.get(1).persona == "Captain Hollis" and reopened.get(2).persona == "Trixie"
    await reopened.db.close()


@pytest.mark.asyncio
async def test_a_corrupt_old_file_is_moved_aside_and_nothing_imported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = tmp_path / "guilds.json"
    legacy.write_text('{"version": 1, "guilds": {"1": {"persona": "Jun', encoding="utf-8")
    with caplog.at_level(logging.ERROR):
        store = await open_store("", tmp_path)
    assert store.all() == {} and "corrupt" in caplog.text
    aside = list(tmp_path.glob("guilds.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text().startswith('{"version": 1')
    await store.set_persona(1, "Juniper")  # and it keeps working
    assert store.get(1).persona == "Juniper"
    await store.db.close()


@pytest.mark.asyncio
async def test_sqlite_runs_in_wal_mode_under_the_data_dir(tmp_path: Path) -> None:
    db = Database(database_url("", tmp_path / "data"))
    await db.open()
    assert db.sqlite_path == tmp_path / "data" / "chorus.db" and db.sqlite_path.is_file()
    async with db.transaction() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one() == "wal"
    await db.close()


def test_database_urls() -> None:
    data = Path("/srv/chorus")
    assert database_url("", data) == "sqlite+aiosqlite:////srv/chorus/chorus.db"
    assert database_url("postgresql://u:p@db:5432/chorus", data) == "postgresql+asyncpg://u:p@db:5432/chorus"
    assert database_url("postgres://u@db/chorus", data) == "postgresql+asyncpg://u@db/chorus"
    assert database_url("sqlite:////tmp/x.db", data) == "sqlite+aiosqlite:////tmp/x.db"
    with pytest.raises(ValueError, match="postgresql://"):
        database_url("mysql://u@db/chorus", data)
    assert "secret" not in Database("postgresql+asyncpg://u:secret@db/chorus").describe()


@pytest.mark.asyncio
async def test_refresh_reads_what_another_process_wrote_unless_this_one_wrote_meanwhile(
    db_url: str, tmp_path: Path
) -> None:
    """Two bot processes share the database; a guild's shard moves from one to the other (tests/test_shards.py
    runs the real processes)."""
    first, second = await open_store(db_url, tmp_path / "a"), await open_store(db_url, tmp_path / "b")
    try:
        await first.set_persona(42, "Trixie")
        assert second.get(42).persona is None  # loaded before the write
        assert (await second.refresh(42)).persona == "Trixie"
        await second.update(42, persona="Captain Hollis", memory_enabled=False)
        assert (await first.refresh(42)) == GuildState(persona="Captain Hollis", memory_enabled=False)
        await second.forget(42)
        assert (await first.refresh(42)) == GuildState()

        # a read that began before this process's own write is stale: the write wins
        original = first.db.transaction
        read_done, go_on = asyncio.Event(), asyncio.Event()

        @contextlib.asynccontextmanager
        async def read_then_wait():
            async with original() as conn:
                yield conn
            read_done.set()
            await go_on.wait()

        first.db.transaction = read_then_wait  # type: ignore[method-assign]
        refresh = asyncio.create_task(first.refresh(42))  # reads "no row" (the guild was forgotten above)
        await read_done.wait()
        first.db.transaction = original  # type: ignore[method-assign]
        await first.set_persona(42, "Juniper")  # written while the refresh holds its older read
        go_on.set()
        assert (await refresh).persona == "Juniper" and first.get(42).persona == "Juniper"
    finally:
        await first.db.close()
        await second.db.close()
