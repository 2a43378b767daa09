"""Recall respects the room: whose memories a reply may use is a server setting (`/memory recall`).

`present` (the default): the memories of every member in the call, never of one who is not there. `speaker`:
only of the member whose line the reply answers, so another member cannot ask the bot what someone told it.
On SQLite and PostgreSQL, with the real store and recall; the model is left out (what matters is the memory
block handed to it, recorded here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conversation.room_lines import RoomLine
from memory.extract import Fact
from memory.responder import RememberingResponder
from tests.fixtures_memory import memory_service
from tests.fixtures_storage import db_url, postgres_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.asyncio

GUILD, ALICE, BOB, CHEN = 7101, 701, 702, 703


class ModelInput:
    """Where the reply's prompt would go: keeps the memory block it was given."""

    def __init__(self) -> None:
        self.memory: list[str] = []

    async def respond(
        self,
        persona: Any,
        history: Any,
        *,
        situation: str,
        sink: Any,
        member_names: Any = None,
        memory: str = "",
        **kwargs: Any,
    ) -> None:
        self.memory.append(memory)


def line(seq: int, user_id: int | None, name: str, text: str) -> RoomLine:
    return RoomLine(seq, user_id, name, text, float(seq), float(seq) + 1, user_id is None)


async def test_recall_scope_present_and_speaker(db_url: str, tmp_path: Path) -> None:
    service = await memory_service(db_url, tmp_path)
    await service.store.remember_facts(GUILD, ALICE, [Fact("likes:jazz", "loves jazz")], now=1.0)
    await service.store.remember_facts(GUILD, BOB, [Fact("rel:sister", "sister is called Maya")], now=1.0)
    await service.store.remember_facts(GUILD, CHEN, [Fact("likes:chess", "plays chess")], now=1.0)
    model = ModelInput()
    responder = RememberingResponder(model, service, GUILD, members=lambda: [(ALICE, "Alice"), (BOB, "Bob")])
    bob_asks = [line(1, ALICE, "Alice", "I love jazz."), line(2, BOB, "Bob", "What is my sister called?")]
    alice_asks = [line(1, BOB, "Bob", "Hi."), line(2, ALICE, "Alice", "What is Bob's sister called? And chess?")]

    await responder.respond(None, alice_asks, situation="", sink=None)
    assert "Maya" in model.memory[-1]  # present: Bob is in the call, Alice may hear his memories
    assert "chess" not in model.memory[-1]  # Chen is not in the call

    await service.guild_store.set_recall(GUILD, "speaker")
    await responder.respond(None, alice_asks, situation="", sink=None)
    assert "Maya" not in model.memory[-1]  # speaker: only Alice's own
    await responder.respond(None, bob_asks, situation="", sink=None)
    assert "Maya" in model.memory[-1] and "jazz" not in model.memory[-1]

    again = await memory_service(db_url, tmp_path / "again")  # saved for the server
    assert again.recall_scope(GUILD) == "speaker"
    with pytest.raises(ValueError):
        await service.guild_store.set_recall(GUILD, "everyone")
    for s in (service, again):
        await s.close()
        await s.db.close()


async def test_a_database_from_before_the_setting_upgrades_to_present(db_url: str, tmp_path: Path) -> None:
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from storage.db import MIGRATIONS_DIR, Database
    from runtime.database_url import database_url

    db = Database(database_url(db_url, tmp_path / "data"))
    db.engine = db._create_engine()

    def to_0001(conn: Any) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(
            sa.text(
                "INSERT INTO guild_settings (guild_id, persona, memory_enabled, updated_at) "
                "VALUES (5, 'Trixie', true, 0)"
            )
        )

    async with db.engine.begin() as conn:
        await conn.run_sync(to_0001)
    await db.close()
    service = await memory_service(db_url, tmp_path)  # the new version starts: 0001 -> 0002
    assert service.guild_store.get(5).persona == "Trixie" and service.recall_scope(5) == "present"
    await service.close()
    await service.db.close()
