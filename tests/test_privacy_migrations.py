"""A schema migration killed half-way leaves nothing half-made: the next start migrates from scratch and works.
On SQLite (whose DDL Python's sqlite3 would run outside the transaction) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.operations import Operations

from storage.db import Database
from runtime.database_url import database_url
from storage.errors import StorageError
from tests.fixtures_storage import db_url, postgres_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.asyncio


async def table_names(db: Database) -> set[str]:
    assert db.engine is not None
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def test_a_migration_killed_half_way_rolls_back_whole(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(*_args, **_kwargs):
        raise RuntimeError("the process was killed here")

    db = Database(database_url(db_url, tmp_path / "data"))
    with monkeypatch.context() as patch:
        patch.setattr(Operations, "create_index", killed)  # after three tables were created
        with pytest.raises(StorageError):
            await db.open()
    assert not await table_names(db) & {"guild_settings", "member_privacy", "memories", "alembic_version"}
    await db.close()

    again = Database(database_url(db_url, tmp_path / "data"))  # the next start
    await again.open()
    assert {"guild_settings", "member_privacy", "memories", "storage_meta", "alembic_version"} <= await table_names(
        again
    )
    async with again.transaction() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO memories (guild_id, user_id, kind, key, text, created_at, updated_at) "
                "VALUES (1, 2, 'fact', 'k', 'loves jazz', 0, 0)"
            )
        )
    await again.close()
