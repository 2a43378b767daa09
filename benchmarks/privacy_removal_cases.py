"""The removal cases of the privacy fault matrix (`benchmarks.privacy_faults`): the bot removed from a server, and
members leaving one. Past `REMOVAL_GRACE_DAYS` nothing about the server (or the member) may be left; coming back
within it keeps everything."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

from benchmarks.privacy_cases import ALICE, BOB, GUILD, Result, _service

WAIT_S = 10.0


async def case_bot_removed(tmp: Path) -> Result:
    """The bot is removed from a server: past the grace period nothing about that server is left (settings,
    opt-outs, memories); a server that added it back within the grace period keeps everything."""
    from memory.extract import Fact

    service = await _service(tmp / "removed")
    await service.db.open()
    await service.guild_store.load()
    back = GUILD + 1
    for guild in (GUILD, back):
        await service.guild_store.set_persona(guild, "Trixie")
        await service.store.remember_facts(guild, ALICE, [Fact("home", "lives in Oslo")])
        await service.opt_out(guild, BOB, ["Bob"])
    past = time.time() - (service.settings.removal_grace_days + 1) * 86400
    await service.store.mark_guild_removed(GUILD, now=past)
    await service.store.mark_guild_removed(back, now=past)
    await service.guild_returned(back)
    await service.purge_now()
    left = (
        await service.store.count_about(GUILD, ALICE)
        + len((await service.store.opted_out()).get(GUILD, ()))
        + int(service.guild_store.get(GUILD).persona is not None)
    )
    kept = await service.store.count_about(back, ALICE)
    await service.db.close()
    return {"built": True, "leaks": left, "late_replies": 0, "rows_left": left, "readded_server_rows_kept": kept}


async def case_member_leaves_server(tmp: Path) -> Result:
    """Members leave a server (GUILD_MEMBER_REMOVE as Discord sends it, through discord.py's parser and the bot's
    listener; FORGET_MEMBERS_WHO_LEAVE on): within the grace period nothing is deleted; past it nothing about those
    who left is left (their rows, their opt-out, others' call summaries made from their lines, their name in
    others' facts, the departure marks; in the database, the SQLite file's bytes, the log lines above DEBUG); a
    member who rejoined meanwhile keeps everything, and so does the member in another server."""
    from bot.client import ChorusBot
    from runtime.settings import load_settings
    from memory.extract import Fact
    from simulator.privacy_witness import LogTap

    settings = load_settings(
        env={"CHORUS_DATA_DIR": str(tmp / "left"), "MEMORY_SUMMARY": "extractive", "FORGET_MEMBERS_WHO_LEAVE": "true"},
        env_file=None,
    )
    carol, dan, other = BOB + 1, BOB + 2, GUILD + 1
    words = ("Zanzibar", "quokkas", "lighthouse")  # what Bob told, and what was said in his call
    with LogTap() as logs:
        async with ChorusBot(settings, optional_extensions=()) as bot:  # the loop discord.py dispatches events on
            await bot.setup_hook()
            memory, store = bot.memory, bot.memory.store
            await store.remember_facts(
                GUILD, BOB, [Fact("home", "lives in Zanzibar"), Fact("likes:quokkas", "adores quokkas")]
            )
            await store.remember_facts(other, BOB, [Fact("home", "lives in Lisbon")])  # a server he stays in
            memory.queue_summary(
                GUILD, ALICE, "call:c1:0", 'said "we rowed out past the lighthouse"', heard={ALICE: "Alice", BOB: "Bob"}
            )  # as the recorder queues it
            await memory.writes.drain(WAIT_S)
            await store.remember_facts(GUILD, ALICE, [Fact("friend", "goes climbing with Bob")])
            await store.remember_facts(GUILD, dan, [Fact("home", "lives in Oslo")])
            await memory.opt_out(GUILD, carol, ["Carol"])

            async def marked() -> set[int]:
                return {uid for _, uid, _ in await store.departed_members(time.time() + 1)}

            for uid, name in ((BOB, "bob"), (carol, "carol"), (dan, "dan")):
                payload: Any = {
                    "guild_id": str(GUILD),
                    "user": {
                        "id": str(uid),
                        "username": name,
                        "discriminator": "0",
                        "avatar": None,
                        "global_name": name.title(),
                    },
                }
                bot._connection.parse_guild_member_remove(payload)  # as the gateway's GUILD_MEMBER_REMOVE
            all_marked = await _until(marked, lambda m: m == {BOB, carol, dan})
            bot.dispatch("member_join", SimpleNamespace(guild=SimpleNamespace(id=GUILD), id=dan))  # Dan rejoins
            rejoined = await _until(marked, lambda m: m == {BOB, carol})
            await memory.purge_now()  # the hourly purge, within the grace period
            kept_within_grace = await store.count_about(GUILD, BOB) == 2 and len(await memory.about(GUILD, ALICE)) == 2
            past = time.time() + (settings.removal_grace_days + 1) * 86400
            gone = await memory.purge_departed_members(now=past)  # the purge, past the grace period
            alice = [m.text for m in await memory.about(GUILD, ALICE)]
            path = bot.storage.sqlite_path
            raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*")) if path is not None else b""
            found = {
                "rows": await store.count_about(GUILD, BOB) + await store.count_about(GUILD, carol),
                "opt_out_rows": len((await store.opted_out()).get(GUILD, set()) & {BOB, carol}),
                "opted_out_in_memory": int(memory.is_opted_out(GUILD, carol)),
                "others_rows_with_their_words_or_name": sum(1 for t in alice if "Bob" in t or "lighthouse" in t),
                "marks": len(await store.departed_members(past)),
                "file_bytes": sum(1 for w in words if w.encode() in raw),
            }
            kept = {
                "rejoined_member_rows": await store.count_about(GUILD, dan),
                "rows_in_the_server_he_stays_in": await store.count_about(other, BOB),
                "others_rows": alice,
            }
    found["log_lines"] = sum(1 for _, line in logs.records if any(w in line for w in words))
    return {
        "built": True,
        "leaks": sum(found.values()),
        "late_replies": 0,
        "found": found,
        "marks_seen": all_marked and rejoined,
        "kept_within_grace": kept_within_grace,
        "erased": sorted(uid for _, uid in gone),
        **kept,
    }


async def _until(read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool]) -> bool:
    """Whether `done(await read())` came true within WAIT_S (discord.py runs the listeners as tasks)."""
    deadline = time.monotonic() + WAIT_S
    while not done(await read()):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


REMOVAL_CASES: list[tuple[str, Callable[[Path], Awaitable[Result]]]] = [
    ("bot_removed", case_bot_removed),
    ("member_leaves_server", case_member_leaves_server),
]
