"""Removing the bot from a server deletes everything it keeps about that server (settings, opt-outs, memories)
after REMOVAL_GRACE_DAYS, unless it is added back meanwhile. On SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from memory.extract import Fact
from tests.fixtures_memory import memory_service
from tests.fixtures_storage import db_url, postgres_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.asyncio

GONE, BACK, STAYS, ALICE, BOB = 6001, 6002, 6003, 601, 602


async def test_removed_servers_are_deleted_after_the_grace_period(db_url: str, tmp_path: Path) -> None:
    service = await memory_service(db_url, tmp_path, REMOVAL_GRACE_DAYS="7")
    store = service.store
    for guild in (GONE, BACK, STAYS):
        await service.guild_store.set_persona(guild, "Trixie")
        await store.remember_facts(guild, ALICE, [Fact("home", "lives in Oslo")])
        await service.opt_out(guild, BOB, ["Bob"])
    eight_days_ago = time.time() - 8 * 86400
    await store.mark_guild_removed(GONE, now=eight_days_ago)
    await store.mark_guild_removed(BACK, now=eight_days_ago)
    await service.guild_returned(BACK)  # added back within the grace period
    await service.guild_removed(STAYS)  # removed just now: still within it
    await service.purge_now()
    assert await store.count_about(GONE, ALICE) == 0 and GONE not in await store.opted_out()
    assert service.guild_store.get(GONE).persona is None and not service.is_opted_out(GONE, BOB)
    for guild in (BACK, STAYS):
        assert await store.count_about(guild, ALICE) == 1 and BOB in (await store.opted_out())[guild]
    again = await memory_service(db_url, tmp_path / "again")  # a fresh process reads the same database
    assert again.guild_store.get(GONE).persona is None and again.guild_store.get(STAYS).persona == "Trixie"
    for s in (service, again):
        await s.close()
        await s.db.close()


async def test_no_grace_deletes_at_once(db_url: str, tmp_path: Path) -> None:
    service = await memory_service(db_url, tmp_path, REMOVAL_GRACE_DAYS="0")
    await service.store.remember_facts(GONE, ALICE, [Fact("home", "lives in Oslo")])
    await service.guild_removed(GONE)
    assert await service.store.count_about(GONE, ALICE) == 0
    await service.close()
    await service.db.close()
