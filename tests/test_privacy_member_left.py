"""A member who leaves a server is erased there after REMOVAL_GRACE_DAYS, as `/memory forget` erases them (their
rows, others' call summaries made from their lines, their name in others' rows without sources) and their
opt-out with it, unless they rejoin meanwhile. The bot hears it through Discord's GUILD_MEMBER_REMOVE (the
privileged members intent, FORGET_MEMBERS_WHO_LEAVE). On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.client import ChorusBot
from runtime.settings import load_settings
from memory.extract import Fact
from tests.fixtures_memory import CallUnderTest, memory_service
from tests.fixtures_storage import db_url, postgres_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.asyncio

GUILD, OTHER, ALICE, BOB, CAROL, DAN, ERIN = 7001, 7002, 701, 702, 703, 704, 705
EIGHT_DAYS_AGO = time.time() - 8 * 86400


async def test_members_who_left_are_erased_after_the_grace_period(db_url: str, tmp_path: Path) -> None:
    service = await memory_service(db_url, tmp_path, REMOVAL_GRACE_DAYS="7")
    store = service.store
    for uid in (BOB, DAN, ERIN):
        await store.remember_facts(GUILD, uid, [Fact("likes:sailing", "loves sailing")])
    await store.remember_facts(OTHER, BOB, [Fact("home", "lives in Lisbon")])  # another server he did not leave
    await store.add_summary(GUILD, ALICE, "call:c1:0", 'said "we fixed the boat at last"', heard=[BOB])
    await store.add_summary(GUILD, ALICE, "call:c2:0", 'said "the bread came out well"', heard=[DAN])
    await store.remember_facts(GUILD, ALICE, [Fact("friend", "goes climbing with Bob")])  # no sources: by name
    await service.opt_out(GUILD, CAROL, ["Carol"])
    await store.mark_member_left(GUILD, BOB, ["~bob~", "Bobby"], now=EIGHT_DAYS_AGO)
    await store.mark_member_left(GUILD, CAROL, ["Carol"], now=EIGHT_DAYS_AGO)
    await store.mark_member_left(GUILD, DAN, ["Dan"], now=EIGHT_DAYS_AGO)
    await service.member_returned(GUILD, DAN)  # rejoined within the grace period
    await service.member_left(GUILD, ERIN, ["Erin"])  # left just now: still within it
    await service.purge_now()

    assert await store.count_about(GUILD, BOB) == 0 and await store.count_about(GUILD, CAROL) == 0
    assert sorted(m.text for m in await service.about(GUILD, ALICE)) == [
        "goes climbing with someone",
        'said "the bread came out well"',
    ]
    assert CAROL not in (await store.opted_out()).get(GUILD, set()) and not service.is_opted_out(GUILD, CAROL)
    assert await store.count_about(OTHER, BOB) == 1
    assert await store.count_about(GUILD, DAN) == 1 and await store.count_about(GUILD, ERIN) == 1
    assert [uid for _, uid, _ in await store.departed_members(time.time() + 1)] == [ERIN]  # Bob's, Carol's: gone
    await service.close()
    await service.db.close()


async def test_a_call_summary_made_with_their_lines_goes_with_them(db_url: str, tmp_path: Path) -> None:
    """The recorder's own path: Alice's summary of a call Bob spoke in carries his id, found when he leaves."""
    service = await memory_service(db_url, tmp_path, REMOVAL_GRACE_DAYS="0")
    call = CallUnderTest({ALICE: "Alice", BOB: "Bob"})
    recorder = service.attach(GUILD, call)
    call.says(BOB, "We sailed to the harbour on Sunday and the wind was wild.")
    call.says(ALICE, "I spent Sunday baking bread for the whole street.")
    await service.end_call(GUILD)
    await asyncio.wait([t for t in list(service._tasks) if t.get_name().startswith("memory-summary")], timeout=30)
    assert await service.writes.drain(10)
    assert [m.kind for m in await service.about(GUILD, ALICE)] == ["summary"]
    assert recorder.summaries_written == 2
    await service.member_left(GUILD, BOB, ["Bob"])  # no grace: at once
    assert await service.store.count_about(GUILD, ALICE) == 0 and await service.store.count_about(GUILD, BOB) == 0
    await service.close()
    await service.db.close()


async def test_no_grace_erases_at_once_with_what_is_still_queued(db_url: str, tmp_path: Path) -> None:
    service = await memory_service(db_url, tmp_path, REMOVAL_GRACE_DAYS="0")
    await service.store.remember_facts(GUILD, BOB, [Fact("home", "lives in Lisbon")])
    await service.opt_out(GUILD, CAROL, ["Carol"])
    held = asyncio.Event()
    service.writes.submit("hold", held.wait)
    service.queue_facts(GUILD, BOB, [Fact("likes:jazz", "loves jazz")])
    await service.member_left(GUILD, BOB, ["Bob"])  # his fact waits in the queue behind another write
    await service.member_left(GUILD, CAROL, ["Carol"])
    held.set()
    assert await service.writes.drain(10)
    assert await service.store.count_about(GUILD, BOB) == 0
    assert service.writes.stats.dropped.get("forgotten") == 1
    assert not service.is_opted_out(GUILD, CAROL) and (await service.store.opted_out()).get(GUILD) is None
    await service.close()
    await service.db.close()


async def test_the_bot_is_told_by_the_gateway(tmp_path: Path) -> None:
    """GUILD_MEMBER_REMOVE as Discord sends it, through discord.py's parser and the cog's listener."""
    settings = load_settings(
        env={"CHORUS_DATA_DIR": str(tmp_path / "data"), "FORGET_MEMBERS_WHO_LEAVE": "true", "REMOVAL_GRACE_DAYS": "7"},
        env_file=None,
    )
    async with ChorusBot(settings, optional_extensions=()) as bot:  # the loop discord.py dispatches events on
        await bot.setup_hook()
        assert bot.intents.members
        store = bot.memory.store
        await store.remember_facts(GUILD, BOB, [Fact("home", "lives in Lisbon")])
        user = {"id": str(BOB), "username": "bob", "discriminator": "0", "avatar": None, "global_name": "Bobby"}
        bot._connection.parse_guild_member_remove({"guild_id": str(GUILD), "user": user})  # type: ignore[arg-type]

        async def departed() -> list:
            return await store.departed_members(time.time() + 8 * 86400)  # as seen 8 days from now

        deadline = time.monotonic() + 10
        while not (marked := await departed()) and time.monotonic() < deadline:  # the listener runs as a task
            await asyncio.sleep(0.02)
        assert marked == [(GUILD, BOB, ["Bobby", "bob"])]
        cog = bot.get_cog("PrivacyCog")
        await cog.on_member_join(SimpleNamespace(guild=SimpleNamespace(id=GUILD), id=BOB))  # type: ignore[union-attr]
        assert await departed() == []
        assert await store.count_about(GUILD, BOB) == 1
