"""The call-summary cases of the privacy fault matrix (`benchmarks.privacy_faults`): `/memory forget` while a call
summary that read the member's lines is under way, in a call still going on and in one that already ended (its last
summary written by the real LLM in the background)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Awaitable, Callable, Iterator

from benchmarks.privacy_rig import ALICE, BOB, GUILD, Result, _bot, _TimedInteraction, late, member

BOB_SAID = (
    "We sailed past the lighthouse to Zanzibar on Sunday and the wind was wild.",
    "My brother steered the catamaran while I watched for dolphins.",
)
ALICE_SAID = ("I spent Sunday baking sourdough bread for the whole street.",)
WAIT_S = 60.0


def _said(room: Any, user_id: int, name: str, text: str, t: float) -> None:
    from audio.types import Utterance

    room.on_utterance(
        Utterance(user_id=user_id, name=name, text=text, start=t, end=t + 1.0, final=True, confidence=0.9, timings={})
    )


def _room_of_the_call() -> Any:
    """A room where Bob spoke first, then Alice (the summary reads Bob's lines first)."""
    from conversation.room import Room

    room = Room(bot_name="Juniper", now=0.0)
    for uid, name in ((ALICE, "Alice"), (BOB, "Bob")):
        room.member_joined(uid, name, 0.0, initial=True)
    lines = [(BOB, "Bob", text) for text in BOB_SAID] + [(ALICE, "Alice", text) for text in ALICE_SAID]
    for t, (uid, name, text) in enumerate(lines):
        _said(room, uid, name, text, t * 5.0)
    return room


async def case_forget_during_pending_summary(tmp: Path) -> Result:
    """Bob's /memory forget (the command, then its confirm button) while a summary of the call under way that
    read his lines is running and writes about him wait in the queue: the summary is made again without him, the
    writes are dropped, every answer went out within 3 s."""
    from runtime import executors
    from memory.extract import Fact

    async with _bot(tmp / "forget") as bot:
        memory = bot.memory
        session = SimpleNamespace(room=_room_of_the_call(), persona=SimpleNamespace(name="Juniper"), responder=None)
        recorder = memory.attach(GUILD, session)
        recorder.poll()
        busy = threading.Event()
        blocker = asyncio.ensure_future(executors.run("memory", busy.wait, 30))  # the summary waits for the thread
        recorder._summarize_segment()
        held = asyncio.Event()
        memory.writes.submit("hold", held.wait)  # the queue is busy: writes about Bob wait in it
        memory.queue_facts(GUILD, BOB, [Fact("likes:sailing", "loves sailing")])
        commands = await _forget_by_command(bot, BOB, "Bob")
        held.set()
        busy.set()
        await blocker
        summaries = [t for t in list(memory._tasks) if t.get_name().startswith("memory-summary")]
        if summaries:
            await asyncio.wait(summaries, timeout=30)
        await memory.writes.drain(30)
        bob_rows = await memory.store.count_about(GUILD, BOB)
        alice = [m.text for m in await memory.about(GUILD, ALICE)]
        memory.recorders.pop(GUILD).drop_everything()
    words = _his_words()
    leaked = [t for t in alice if any(w in t.lower() for w in words)]
    return {
        "built": True,
        "leaks": bob_rows + len(leaked),
        "late_replies": late(commands),
        "bob_rows": bob_rows,
        "alice_rows": len(alice),
        "summary_remade_without_bob": bool(alice) and not leaked,
        "commands": [{k: v for k, v in c.items() if k != "text"} for c in commands],
    }


async def _forget_by_command(bot: Any, user_id: int, name: str) -> list[dict[str, Any]]:
    """/memory forget, then its confirm button, as the member; the two answers' reports."""
    cog: Any = bot.get_cog("MemoryCog")
    asked = _TimedInteraction(member(user_id, name), GUILD)
    await cog.forget.callback(cog, asked)
    confirmed = _TimedInteraction(member(user_id, name), GUILD)
    await asked.view.confirm.callback(confirmed)
    return [asked.report("/memory forget"), confirmed.report("/memory forget: confirm")]


def _his_words() -> set[str]:
    """Bob's distinctive words (none of them in Alice's lines)."""
    from simulator.privacy_witness import words_of

    return words_of(BOB_SAID) - words_of(ALICE_SAID)


class _WatchedLlm:
    """The real LLM; each `stream` (one summary) is kept with the time of every token it gave, and the event loop
    is told when the first token of a summary came."""

    def __init__(self, llm: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.llm, self.loop = llm, loop
        self.first_token = asyncio.Event()
        self.streams: list[tuple[str, list[tuple[float, str]]]] = []  # (prompt, [(monotonic, token)])

    def stream(self, messages: list[dict], **kw: Any) -> Iterator[str]:
        tokens: list[tuple[float, str]] = []
        self.streams.append((messages[-1]["content"], tokens))
        for token in self.llm.stream(messages, **kw):
            tokens.append((time.monotonic(), token))
            self.loop.call_soon_threadsafe(self.first_token.set)
            yield token

    def __getattr__(self, name: str) -> Any:
        return getattr(self.llm, name)


async def case_forget_during_summary_of_ended_call(tmp: Path) -> Result:
    """The call ended (/leave) and its last summary is being written by the real LLM in the background when Bob
    runs /memory forget (the command, then its confirm button): the model stops at its next token, Alice's summary
    is made again from her lines only, and afterwards no row, summary, /memory show answer, byte of the SQLite
    file or log line above DEBUG holds a word of Bob's; every answer went to Discord within 3 s."""
    from brain.llm import make_backend
    from runtime.scheduler import ModelScheduler
    from simulator.privacy_witness import LogTap

    words = _his_words()
    with LogTap() as logs:
        async with _bot(tmp / "ended", MEMORY_SUMMARY="llm", LLM_SEED="11") as bot:
            memory, store, settings = bot.memory, bot.memory.store, bot.settings
            llm = _WatchedLlm(await asyncio.to_thread(make_backend, settings), asyncio.get_running_loop())
            session = SimpleNamespace(room=_room_of_the_call(), persona=SimpleNamespace(name="Juniper"), responder=None)
            bot.voice_sessions[GUILD] = session
            memory.attach(GUILD, session, llm=llm, scheduler=ModelScheduler.from_settings(settings))
            await bot.stop_voice_session(SimpleNamespace(id=GUILD))  # /leave: the call's last summary starts
            ended = GUILD not in memory.recorders
            await asyncio.wait_for(llm.first_token.wait(), WAIT_S)  # the model is writing Bob's summary
            forgot_at = time.monotonic()
            commands = await _forget_by_command(bot, BOB, "Bob")
            summaries = [t for t in list(memory._tasks) if t.get_name().startswith("memory-summary")]
            if summaries:
                await asyncio.wait(summaries, timeout=WAIT_S)
            drained = await memory.writes.drain(WAIT_S)
            shows = []
            for uid, name in ((BOB, "Bob"), (ALICE, "Alice")):
                shown = _TimedInteraction(member(uid, name), GUILD)
                cog: Any = bot.get_cog("MemoryCog")
                await cog.show.callback(cog, shown)
                shows.append(shown.report(f"/memory show ({name})"))
            alice = [m.text for m in await memory.about(GUILD, ALICE)]
            path = bot.storage.sqlite_path
            raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*")) if path is not None else b""
            found = {
                "rows": await store.count_about(GUILD, BOB),
                "others_rows_with_his_words": sum(1 for t in alice if any(w in t.lower() for w in words)),
                "show_answers_with_his_words": sum(1 for s in shows if any(w in s["text"].lower() for w in words)),
                "file_bytes": sum(1 for w in words if w.encode() in raw.lower()),
            }
    found["log_lines"] = sum(1 for _, line in logs.records if any(w in line.lower() for w in words))
    his = [tokens for prompt, tokens in llm.streams if "did Bob talk about" in prompt]
    commands += shows
    return {
        "built": True,
        "leaks": sum(found.values()),
        "late_replies": late(commands),
        "found": found,
        "call_ended_before_forget": ended,
        "writes_drained": drained,
        "his_summary_tokens": sum(len(t) for t in his),
        "his_summary_tokens_after_forget": sum(1 for t in his for at, _ in t if at > forgot_at),
        "summaries_written": len(llm.streams),
        "alice_rows": alice,
        "commands": [{k: v for k, v in c.items() if k != "text"} for c in commands],
    }


SUMMARY_CASES: list[tuple[str, Callable[[Path], Awaitable[Result]]]] = [
    ("forget_during_pending_summary", case_forget_during_pending_summary),
    ("forget_during_summary_of_ended_call", case_forget_during_summary_of_ended_call),
]
