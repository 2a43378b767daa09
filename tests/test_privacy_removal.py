"""Removing the bot from a server deletes everything it keeps about that server (settings, opt-outs, memories)
after REMOVAL_GRACE_DAYS, unless it is added back meanwhile. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from memory.extract import Fact
from runtime import executors
from tests.fixtures_memory import CallUnderTest, memory_service
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


async def test_removed_during_a_call_the_calls_last_writes_never_land(db_url: str, tmp_path: Path) -> None:
    """The bot is removed in the middle of a call (REMOVAL_GRACE_DAYS=0): its removal ends the call, whose last
    facts are queued and whose last summary starts; the purge cancels both, so nothing of the server is written
    after its rows were deleted."""
    service = await memory_service(db_url, tmp_path, REMOVAL_GRACE_DAYS="0")
    call = CallUnderTest({ALICE: "Alice", BOB: "Bob"})
    service.attach(GONE, call)
    call.says(BOB, "I love quokkas and I keep two of them in my garden.")
    call.says(ALICE, "We sailed a catamaran to the island last summer and I love sailing.")
    held, busy = asyncio.Event(), threading.Event()
    service.writes.submit("hold", held.wait)  # the queue is busy: the call's facts wait in it
    blocker = asyncio.ensure_future(executors.run("memory", busy.wait, 30))  # the summary waits for the thread
    await service.end_call(GONE)  # what on_guild_remove's stop of the session does first
    assert service.writes.pending > 1 and any(
        t.get_name().startswith("memory-summary") and not t.done() for t in service._tasks
    )
    await service.guild_removed(GONE)
    held.set()
    busy.set()
    await blocker
    await asyncio.gather(*list(service._tasks), return_exceptions=True)
    assert await service.writes.drain(10)
    assert await service.store.count_about(GONE, ALICE) == 0 and await service.store.count_about(GONE, BOB) == 0
    assert service.writes.stats.dropped.get("guild removed", 0) >= 1
    await service.close()
    await service.db.close()
