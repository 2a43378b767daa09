"""The removal cases of the privacy fault matrix (`benchmarks.privacy_faults`): the bot removed from a server, and
members leaving one. Past `REMOVAL_GRACE_DAYS` nothing about the server (or the member) may be left; coming back
within it keeps everything."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

from benchmarks.privacy_rig import ALICE, BOB, GUILD, Result, _bot

WAIT_S = 10.0


async def case_bot_removed(tmp: Path) -> Result:
    """The bot is removed from a server (GUILD_DELETE through the bot's `on_guild_remove`) in the middle of a call
    whose last facts and summary are still on their way: with REMOVAL_GRACE_DAYS=0 nothing about that server is
    left afterwards (settings, opt-outs, memories, the call's late writes; rows, SQLite bytes, log lines above
    DEBUG). With the default grace period nothing goes within it, a server that added the bot back keeps
    everything, and the other server's rows go once it ended."""
    from simulator.privacy_witness import LogTap

    words = ("zanzibar", "quokkas", "catamaran")  # said in the call, kept before the removal
    with LogTap() as logs:
        async with _bot(tmp / "removed-now", REMOVAL_GRACE_DAYS="0") as bot:
            memory, store = bot.memory, bot.memory.store
            await _kept_about(bot, GUILD)
            session = SimpleNamespace(room=_call(), persona=SimpleNamespace(name="Juniper"), responder=None)
            bot.voice_sessions[GUILD] = session
            memory.attach(GUILD, session)  # the call is recorded; its last read and summary come at its end
            bot.dispatch("guild_remove", SimpleNamespace(id=GUILD, name="Server"))  # as GUILD_DELETE does
            await _handled(bot, "on_guild_remove")
            await _settled(memory)
            path = bot.storage.sqlite_path
            raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*")).lower() if path else b""
            found = {
                "rows": sum([await store.count_about(GUILD, uid) for uid in (ALICE, BOB)]),
                "opt_out_rows": len((await store.opted_out()).get(GUILD, ())),
                "settings": int(bot.guild_store.get(GUILD).persona is not None),
                "file_bytes": sum(1 for w in words if w.encode() in raw),
            }
    found["log_lines"] = sum(1 for _, line in logs.records if any(w in line.lower() for w in words))
    async with _bot(tmp / "removed-later") as bot:
        back = GUILD + 1
        for guild in (GUILD, back):
            await _kept_about(bot, guild)
            bot.dispatch("guild_remove", SimpleNamespace(id=guild, name="Server"))
        await _handled(bot, "on_guild_remove")
        await bot.memory.purge_now()  # the hourly purge, within the grace period
        within = [await bot.memory.store.count_about(g, ALICE) for g in (GUILD, back)]
        bot.dispatch("guild_join", SimpleNamespace(id=back, name="Server"))  # added back within it
        await _handled(bot, "on_guild_join")
        past = time.time() + (bot.settings.removal_grace_days + 1) * 86400
        purged = await bot.memory.purge_removed_guilds(now=past)
        left_after_grace = (
            await bot.memory.store.count_about(GUILD, ALICE)
            + len((await bot.memory.store.opted_out()).get(GUILD, ()))
            + int(bot.guild_store.get(GUILD).persona is not None)
        )
        kept = await bot.memory.store.count_about(back, ALICE)
    found["rows_left_after_grace"] = left_after_grace
    return {
        "built": True,
        "leaks": sum(found.values()),
        "late_replies": 0,
        "found": found,
        "kept_within_grace": within,
        "purged_after_grace": purged,
        "readded_server_rows_kept": kept,
    }


async def _kept_about(bot: Any, guild: int) -> None:
    """A server's settings, an opt-out and a member's facts."""
    from memory.extract import Fact

    await bot.guild_store.set_persona(guild, "Trixie")
    await bot.memory.store.remember_facts(guild, ALICE, [Fact("home", "lives in Zanzibar")])
    await bot.memory.opt_out(guild, BOB + 1, ["Carol"])


def _call() -> Any:
    from audio.types import Utterance
    from conversation.room import Room

    room = Room(bot_name="Juniper", now=0.0)
    for uid, name in ((ALICE, "Alice"), (BOB, "Bob")):
        room.member_joined(uid, name, 0.0, initial=True)
    for t, (uid, name, text) in enumerate(
        [
            (BOB, "Bob", "I love quokkas and I keep two of them in my garden."),
            (ALICE, "Alice", "We sailed a catamaran to the island last summer and I love sailing."),
        ]
    ):
        room.on_utterance(
            Utterance(
                user_id=uid,
                name=name,
                text=text,
                start=t * 5.0,
                end=t * 5.0 + 1,
                final=True,
                confidence=0.9,
                timings={},
            )
        )
    return room


async def _handled(bot: Any, event: str) -> None:
    """Wait for discord.py's tasks running the bot's `event` listeners (dispatch runs them as tasks)."""
    running = [t for t in asyncio.all_tasks() if t.get_name() == f"discord.py: {event}"]
    if running:
        await asyncio.wait(running, timeout=WAIT_S)


async def _settled(memory: Any) -> None:
    """The summaries under way done and the write queue empty."""
    summaries = [t for t in list(memory._tasks) if t.get_name().startswith("memory-summary")]
    if summaries:
        await asyncio.wait(summaries, timeout=WAIT_S)
    await memory.writes.drain(WAIT_S)


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
