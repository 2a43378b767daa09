"""The database and command cases of the privacy fault matrix (`benchmarks.privacy_faults`): each provokes one
fault on the real code (a SQLite file that goes away, a write lock held on it, a migration that dies) and returns
what was left behind (`leaks`) and the late answers (`late_replies`). The bot removed from a server and a member
leaving one: `benchmarks.privacy_removal_cases`."""

from __future__ import annotations

import asyncio
import importlib
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

DISCORD_ACK_S = 3.0
GUILD, ALICE, BOB = 8101, 501, 502

Result = dict[str, Any]


# --- database faults -----------------------------------------------------------------------------------------------


async def _service(data_dir: Path) -> Any:
    from storage.guild_store import GuildStore
    from runtime.settings import load_settings
    from memory.service import MemoryService
    from storage.db import Database
    from runtime.database_url import database_url

    settings = load_settings(env={"CHORUS_DATA_DIR": str(data_dir), "MEMORY_SUMMARY": "extractive"}, env_file=None)
    db = Database(database_url("", data_dir))
    store = GuildStore(db, data_dir=data_dir)
    service = MemoryService(settings, db, store)
    service.privacy_retry_s = 0.2
    return service


async def _loaded(data_dir: Path, *, start: bool = False) -> Any:
    """A memory service over `data_dir` with its database open and the guild settings read (and started)."""
    service = await _service(data_dir)
    await service.db.open()
    await service.guild_store.load()
    if start:
        await service.start()
    return service


class FileAway:
    """The SQLite file's folder is gone (a volume unmounted) and comes back."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.away = data_dir, data_dir.with_name(data_dir.name + "-away")

    def __enter__(self) -> "FileAway":
        self.data_dir.rename(self.away)
        self.data_dir.write_text("")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.data_dir.unlink()
        self.away.rename(self.data_dir)


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
    """/memory off while the database is away: off at once (unsaved), facts queued meanwhile never land, the
    setting is saved when the database is back."""
    from memory.extract import Fact
    from storage.errors import StorageError

    data_dir = tmp / "memory-off"
    service = await _loaded(data_dir, start=True)
    with FileAway(data_dir):
        await service.db.close()
        try:
            await service.guild_store.set_memory_enabled(GUILD, False)
        except StorageError:
            service.guild_store.apply_unsaved(GUILD, memory_enabled=False)  # what /memory off does then
        service.queue_facts(GUILD, BOB, [Fact("likes:sailing", "loves sailing")])
    await service.db.open()
    await service.guild_store.load()
    await service.writes.drain(30)
    rows = await service.store.count_about(GUILD, BOB)
    saved = await _fresh_memory_enabled(data_dir)
    await service.close()
    await service.db.close()
    return {
        "built": True,
        "leaks": rows + (saved is not False),
        "late_replies": 0,
        "rows": rows,
        "saved_setting_memory_enabled": saved,
    }


async def _fresh_memory_enabled(data_dir: Path) -> Any:
    other = await _loaded(data_dir)
    value = other.guild_store.get(GUILD).memory_enabled
    await other.db.close()
    return value


async def case_reconnect_after_failed_save(tmp: Path) -> Result:
    """An opt-out whose save failed, then a gateway reconnect refreshes the guild: the opt-out holds and is saved."""
    from storage.errors import StorageError

    data_dir = tmp / "reconnect"
    service = await _loaded(data_dir, start=True)
    with FileAway(data_dir):
        await service.db.close()
        try:
            await service.opt_out(GUILD, BOB, ["Bob"])
        except StorageError:
            pass
    await service.db.open()
    await service.refresh_privacy(GUILD)  # what on_guild_available does
    held = service.is_opted_out(GUILD, BOB)
    saved = BOB in (await service.store.opted_out(GUILD)).get(GUILD, set())
    await service.close()
    await service.db.close()
    return {"built": True, "leaks": int(not held) + int(not saved), "late_replies": 0, "held": held, "saved": saved}


async def case_forget_during_pending_summary(tmp: Path) -> Result:
    """/memory forget while a call summary that read the member's lines is under way, and writes about them wait."""
    import threading

    from audio.types import Utterance
    from runtime import executors
    from conversation.room import Room
    from memory.extract import Fact

    service = await _service(tmp / "forget")
    await service.db.open()
    await service.guild_store.load()
    await service.start()
    room = Room(bot_name="Juniper", now=0.0)
    for uid, name in ((ALICE, "Alice"), (BOB, "Bob")):
        room.member_joined(uid, name, 0.0, initial=True)
    for t, (uid, name, text) in enumerate(
        [
            (BOB, "Bob", "We sailed to the harbour on Sunday and the wind was wild."),
            (ALICE, "Alice", "I spent Sunday baking bread for the whole street."),
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
    recorder = service.attach(
        GUILD, SimpleNamespace(room=room, persona=SimpleNamespace(name="Juniper"), responder=None)
    )
    recorder.poll()
    busy = threading.Event()
    blocker = asyncio.ensure_future(executors.run("memory", busy.wait, 30))
    recorder._summarize_segment()
    held = asyncio.Event()
    service.writes.submit("hold", held.wait)
    service.queue_facts(GUILD, BOB, [Fact("likes:sailing", "loves sailing")])
    await service.forget(GUILD, BOB, ["Bob"])
    held.set()
    busy.set()
    await blocker
    summaries = [t for t in list(service._tasks) if t.get_name().startswith("memory-summary")]
    if summaries:
        await asyncio.wait(summaries, timeout=30)
    await service.writes.drain(30)
    bob_rows = await service.store.count_about(GUILD, BOB)
    alice = [m.text for m in await service.about(GUILD, ALICE)]
    leaked = [t for t in alice if "harbour" in t or "sailed" in t]
    if recorder._ticker is not None:
        recorder._ticker.cancel()
    service.recorders.pop(GUILD, None)
    await service.close()
    await service.db.close()
    return {
        "built": True,
        "leaks": bob_rows + len(leaked),
        "late_replies": 0,
        "bob_rows": bob_rows,
        "alice_rows": len(alice),
        "summary_remade_without_bob": bool(alice) and not leaked,
    }


async def case_overlapping_setting_commands(tmp: Path) -> Result:
    """Two processes change different settings of one guild at once (and one changes two at once here)."""
    data_dir = tmp / "overlap"
    one, two = await _service(data_dir), await _service(data_dir)
    for s in (one, two):
        await s.db.open()
        await s.guild_store.load()
    await asyncio.gather(
        one.guild_store.set_persona(GUILD, "Trixie"),
        two.guild_store.set_captions_channel(GUILD, 77),
        one.guild_store.set_memory_enabled(GUILD, False),
    )
    fresh = await _loaded(data_dir)
    state = fresh.guild_store.get(GUILD)
    lost = int(state.persona != "Trixie") + int(state.captions_channel_id != 77) + int(state.memory_enabled)
    for s in (one, two, fresh):
        await s.db.close()
    return {
        "built": True,
        "leaks": int(state.memory_enabled),
        "late_replies": 0,
        "lost_updates": lost,
        "state": {
            "persona": state.persona,
            "captions_channel_id": state.captions_channel_id,
            "memory_enabled": state.memory_enabled,
        },
    }


class _TimedInteraction:
    """What the privacy and memory commands use of a `discord.Interaction`, recording when each answer went out."""

    def __init__(self, user: Any, guild_id: int) -> None:
        self.user, self.guild_id, self.guild, self.channel, self.command = user, guild_id, None, None, None
        self.started = time.monotonic()
        self.events: list[tuple[float, str, str]] = []
        outer = self

        class Response:
            def __init__(self) -> None:
                self.done = False

            def is_done(self) -> bool:
                return self.done

            async def defer(self, **_kw: Any) -> None:
                self.done = True
                outer.events.append((time.monotonic() - outer.started, "defer", ""))

            async def send_message(self, content: str, **_kw: Any) -> None:
                self.done = True
                outer.events.append((time.monotonic() - outer.started, "response", content))

        class Followup:
            async def send(self, content: str, **_kw: Any) -> None:
                outer.events.append((time.monotonic() - outer.started, "followup", content))

        self.response, self.followup = Response(), Followup()


async def case_commands_during_database_stall(tmp: Path) -> Result:
    """/privacy optout, /privacy optin, /memory show, /memory off while another process holds the SQLite write
    lock for 10 s: each is acknowledged within 3 s and answers in plain words (no driver text, no paths)."""
    from bot.client import ChorusBot
    from simulator.scenario import scenario_settings

    settings = scenario_settings(tmp / "stall")
    bot = ChorusBot(settings, optional_extensions=())
    await bot.setup_hook()
    path = bot.storage.sqlite_path
    assert path is not None
    user = SimpleNamespace(
        id=BOB, display_name="Bob", global_name="Bob", name="bob", guild_permissions=SimpleNamespace(manage_guild=True)
    )
    privacy, memory = bot.get_cog("PrivacyCog"), bot.get_cog("MemoryCog")
    assert privacy is not None and memory is not None
    lock = sqlite3.connect(path, timeout=0.1)
    lock.execute("BEGIN IMMEDIATE")  # another writer holds the file for 10 s
    released = asyncio.get_running_loop().call_later(10.0, lock.rollback)
    results = []
    try:
        for name, cog, command in (
            ("privacy optout", privacy, "optout"),
            ("memory show", memory, "show"),
            ("memory off", memory, "off"),
            ("privacy optin", privacy, "optin"),
        ):
            interaction = _TimedInteraction(user, GUILD)
            try:
                await getattr(cog, command).callback(cog, interaction)
            except Exception as exc:  # the bot's error handler answers these
                from discord import app_commands

                error = app_commands.CommandInvokeError(SimpleNamespace(qualified_name=name), exc)  # type: ignore[arg-type]
                await bot.on_app_command_error(interaction, error)  # type: ignore[arg-type]
            first = interaction.events[0][0] if interaction.events else None
            text = " ".join(e[2] for e in interaction.events)
            results.append(
                {
                    "command": f"/{name}",
                    "first_answer_s": None if first is None else round(first, 3),
                    "last_answer_s": round(interaction.events[-1][0], 3) if interaction.events else None,
                    "driver_text": any(w in text for w in ("OperationalError", str(path), "sqlite3", "Error:")),
                }
            )
    finally:
        released.cancel()
        lock.rollback()
        lock.close()
        await bot.memory.close()
        await bot.storage.close()
    firsts = [r["first_answer_s"] for r in results]
    late = sum(1 for first in firsts if not isinstance(first, float) or first > DISCORD_ACK_S)
    leaks = sum(1 for r in results if r["driver_text"])
    return {"built": True, "leaks": leaks, "late_replies": late, "commands": results}


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
    ("forget_during_pending_summary", case_forget_during_pending_summary),
    ("two_overlapping_setting_commands", case_overlapping_setting_commands),
    ("slash_commands_during_10s_database_stall", case_commands_during_database_stall),
    ("migration_killed_half_way", case_migration_killed_half_way),
]
