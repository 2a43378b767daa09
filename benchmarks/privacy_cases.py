"""The database and command cases of the privacy fault matrix (`benchmarks.privacy_faults`): each provokes one
fault on the real code (a SQLite file that goes away, a write lock held on it, a migration that dies) and returns
what was left behind (`leaks`) and the late answers (`late_replies`). `/memory forget` during call summaries:
`benchmarks.privacy_summary_cases`; the bot removed and members leaving: `benchmarks.privacy_removal_cases`."""

from __future__ import annotations

import asyncio
import importlib
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

from benchmarks.privacy_rig import (
    ALICE,
    BOB,
    GUILD,
    FileAway,
    Result,
    _bot,
    _loaded,
    _service,
    _TimedInteraction,
    late,
    member,
    run_command,
)


async def case_restart_with_database_down(tmp: Path) -> Result:
    """Bob opted out; the bot restarts while the database is away: nobody is decoded until the choices are known."""
    rx: Any = importlib.import_module("tests.fixtures_receive")  # the receive rig of the tests (real UDP, DAVE)
    Member, Rig, make_dave_group, speechlike, wait_for = (
        rx.Member,
        rx.Rig,
        rx.make_dave_group,
        rx.speechlike,
        rx.wait_for,
    )

    data_dir = tmp / "restart"
    first = await _loaded(data_dir)
    await first.opt_out(GUILD, BOB, ["Bob"])
    await first.db.close()
    rig = Rig(asyncio.get_running_loop())
    try:
        with FileAway(data_dir):
            service = await _service(data_dir)
            try:
                await service.db.open()
            except Exception:
                pass
            await service.start()
            rig.rx.set_drop_predicate(service.drop_check(GUILD))
            group = make_dave_group([ALICE, BOB], rig.conn.state.dave_session)
            a, b = Member(ALICE, 5001, rig.conn.key, group[ALICE]), Member(BOB, 5002, rig.conn.key, group[BOB])
            await rig.conn.speaking(ALICE, a.ssrc)
            await rig.conn.speaking(BOB, b.ssrc)
            rig.conn.send(a.packets(speechlike(0.4, seed=7)) + b.packets(speechlike(0.4, seed=8)))
            await wait_for(lambda: rig.rx.stats["received"] == 40)
            down = await rig.settled()
        await service.db.open()
        await service.guild_store.load()
        await wait_for(lambda: service.privacy_loaded, 10)
        rig.conn.send(a.packets(speechlike(0.4, seed=9)) + b.packets(speechlike(0.4, seed=10)))
        await wait_for(lambda: rig.rx.stats["received"] == 80)
        up = await rig.settled()
        bob_decoded = len(rig.col.frames.get(BOB, []))
        await service.close()
        await service.db.close()
        return {
            "built": True,
            "leaks": bob_decoded,
            "late_replies": 0,
            "decoded_while_down": down["decoded"],
            "dropped_while_down": down["dropped_opted_out"],
            "alice_decoded_after": len(rig.col.frames.get(ALICE, [])),
            "bob_decoded": bob_decoded,
            "decoded_after": up["decoded"],
        }
    finally:
        rig.close()


async def case_memory_off_during_outage(tmp: Path) -> Result:
    """The database goes away in the middle of a call; Bob's facts from before wait in the write queue; an admin
    runs /memory off (the real command): it answers in time, memory is off at once (unsaved), the waiting facts
    and what Bob says next never land, and the setting is saved once the database is back."""
    data_dir = tmp / "memory-off"
    async with _bot(data_dir) as bot:
        memory = bot.memory
        session = SimpleNamespace(room=_room(), persona=SimpleNamespace(name="Juniper"), responder=None)
        memory.attach(GUILD, session)
        with FileAway(data_dir):
            await bot.storage.close()
            _say(session.room, BOB, "Bob", "I love sailing and I keep bees behind the old stone house.", 1.0)
            memory.recorders[GUILD].poll()  # his facts are queued (and held back: the database is away)
            queued = memory.writes.pending
            admin = _TimedInteraction(member(ALICE, "Alice", manage_guild=True), GUILD)
            cog: Any = bot.get_cog("MemoryCog")
            await cog.off.callback(cog, admin)
            _say(session.room, BOB, "Bob", "My sister loves kayaking on the fjord every weekend.", 8.0)
            memory.recorders[GUILD].poll()
        await bot.open_storage()  # what the retry does once the file is back
        await memory.writes.drain(30)
        rows = await memory.store.count_about(GUILD, BOB)
        memory.recorders.pop(GUILD).drop_everything()
    saved = await _fresh_memory_enabled(data_dir)
    report = admin.report("/memory off")
    return {
        "built": True,
        "leaks": rows + (saved is not False),
        "late_replies": late([report]),
        "rows": rows,
        "writes_queued_before_off": queued,
        "saved_setting_memory_enabled": saved,
        "commands": [{k: v for k, v in report.items() if k != "text"}],
    }


def _room() -> Any:
    from conversation.room import Room

    room = Room(bot_name="Juniper", now=0.0)
    for uid, name in ((ALICE, "Alice"), (BOB, "Bob")):
        room.member_joined(uid, name, 0.0, initial=True)
    return room


def _say(room: Any, user_id: int, name: str, text: str, t: float) -> None:
    from audio.types import Utterance

    room.on_utterance(
        Utterance(user_id=user_id, name=name, text=text, start=t, end=t + 1.0, final=True, confidence=0.9, timings={})
    )


async def _fresh_memory_enabled(data_dir: Path) -> Any:
    other = await _loaded(data_dir)
    value = other.guild_store.get(GUILD).memory_enabled
    await other.db.close()
    return value


async def case_reconnect_after_failed_save(tmp: Path) -> Result:
    """Bob's /privacy optout (the real command) while the database is away: it answers in time and holds; then
    the database is back and a gateway reconnect refreshes the guild (GUILD_CREATE: `on_guild_available`): the
    opt-out still holds, and it is saved."""
    data_dir = tmp / "reconnect"
    async with _bot(data_dir) as bot:
        with FileAway(data_dir):
            await bot.storage.close()
            asked = _TimedInteraction(member(BOB, "Bob"), GUILD)
            cog: Any = bot.get_cog("PrivacyCog")
            await cog.optout.callback(cog, asked)
        await bot.open_storage()
        bot.dispatch("guild_available", SimpleNamespace(id=GUILD, name="Server"))  # a reconnect's GUILD_CREATE
        running = [t for t in asyncio.all_tasks() if t.get_name() == "discord.py: on_guild_available"]
        await asyncio.wait(running, timeout=30) if running else None
        held = bot.memory.is_opted_out(GUILD, BOB)
        saved = BOB in (await bot.memory.store.opted_out(GUILD)).get(GUILD, set())
    report = asked.report("/privacy optout")
    return {
        "built": True,
        "leaks": int(not held) + int(not saved),
        "late_replies": late([report]),
        "held": held,
        "saved": saved,
        "commands": [{k: v for k, v in report.items() if k != "text"}],
    }


async def case_overlapping_setting_commands(tmp: Path) -> Result:
    """Two bot processes on one database; at once, an admin runs /persona set and /memory off on one and /captions
    on on the other (the real commands): every change lands (written field by field, not read-modify-write),
    memory stays off, and each command answered in time."""
    data_dir = tmp / "overlap"
    admin = member(ALICE, "Alice", manage_guild=True)
    async with _bot(data_dir, prompter=True) as one, _bot(data_dir, prompter=True) as two:
        reports = await asyncio.gather(
            run_command(one, "PersonaCog", "set_persona", admin, "/persona set (process 1)", name="Trixie"),
            run_command(two, "PrompterCog", "captions", admin, "/captions on (process 2)", mode="on"),
            run_command(one, "MemoryCog", "off", admin, "/memory off (process 1)"),
        )
    fresh = await _loaded(data_dir)
    state = fresh.guild_store.get(GUILD)
    await fresh.db.close()
    lost = int(state.persona != "Trixie") + int(state.captions_channel_id != 77) + int(state.memory_enabled)
    return {
        "built": True,
        "leaks": int(state.memory_enabled),
        "late_replies": late(list(reports)),
        "lost_updates": lost,
        "state": {
            "persona": state.persona,
            "captions_channel_id": state.captions_channel_id,
            "memory_enabled": state.memory_enabled,
        },
        "commands": [{k: v for k, v in r.items() if k != "text"} for r in reports],
    }


async def case_commands_during_database_stall(tmp: Path) -> Result:
    """Every slash command that writes or reads the database (/privacy optout|optin, /memory show|off|on|recall,
    /persona set, /captions on), used at once as another process takes the SQLite write lock for 10 s: each is
    acknowledged within 3 s and answers in plain words (no driver text, no paths)."""
    from simulator.scenario import scenario_settings

    bob = member(BOB, "Bob", manage_guild=True)
    async with _bot(tmp / "stall", prompter=True, settings=scenario_settings(tmp / "stall")) as bot:
        path = bot.storage.sqlite_path
        assert path is not None
        lock = sqlite3.connect(path, timeout=0.1)
        lock.execute("BEGIN IMMEDIATE")  # another writer holds the file for 10 s
        released = asyncio.get_running_loop().call_later(10.0, lock.rollback)
        try:  # members and admins use them at once, as the stall begins
            reports = await asyncio.gather(
                run_command(bot, "PrivacyCog", "optout", bob, "/privacy optout"),
                run_command(bot, "MemoryCog", "show", bob, "/memory show"),
                run_command(bot, "MemoryCog", "off", bob, "/memory off"),
                run_command(bot, "PrivacyCog", "optin", bob, "/privacy optin"),
                run_command(bot, "MemoryCog", "on", bob, "/memory on"),
                run_command(bot, "MemoryCog", "recall", bob, "/memory recall", scope="speaker"),
                run_command(bot, "PersonaCog", "set_persona", bob, "/persona set", name="Trixie"),
                run_command(bot, "PrompterCog", "captions", bob, "/captions on", mode="on"),
            )
        finally:
            released.cancel()
            lock.rollback()
            lock.close()
    results = [
        {
            **{k: v for k, v in r.items() if k != "text"},
            "driver_text": any(w in r["text"] for w in ("OperationalError", str(path), "sqlite3", "Error:")),
        }
        for r in reports
    ]
    leaks = sum(1 for r in results if r["driver_text"])
    return {"built": True, "leaks": leaks, "late_replies": late(list(reports)), "commands": results}


async def case_migration_killed_half_way(tmp: Path) -> Result:
    """The first migration dies after creating some tables: nothing half-made stays; the next start works."""
    from alembic.operations import Operations

    from storage.db import Database
    from runtime.database_url import database_url
    from storage.errors import StorageError

    data_dir = tmp / "migration"
    db = Database(database_url("", data_dir))
    original = Operations.create_index

    def killed(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the process was killed here")

    Operations.create_index = killed  # type: ignore[method-assign]
    try:
        await db.open()
        failed = False
    except StorageError:
        failed = True
    finally:
        Operations.create_index = original  # type: ignore[method-assign]
    await db.close()
    again = Database(database_url("", data_dir))
    try:
        await again.open()
        next_start_ok = True
    except StorageError:
        next_start_ok = False
    await again.close()
    return {
        "built": True,
        "leaks": int(not next_start_ok),
        "late_replies": 0,
        "first_start_failed": failed,
        "next_start_ok": next_start_ok,
    }


DB_CASES: list[tuple[str, Callable[[Path], Awaitable[Result]]]] = [
    ("restart_with_database_down", case_restart_with_database_down),
    ("memory_off_during_outage", case_memory_off_during_outage),
    ("reconnect_after_failed_save", case_reconnect_after_failed_save),
    ("two_overlapping_setting_commands", case_overlapping_setting_commands),
    ("slash_commands_during_10s_database_stall", case_commands_during_database_stall),
    ("migration_killed_half_way", case_migration_killed_half_way),
]
