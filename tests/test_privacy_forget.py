"""Forget means forgotten: `/memory forget` and opt-out cancel what is still on its way to the database.

Writes about the member that wait in the queue are dropped (counted); a call summary under way that read their
lines is made again without them; a write running at that moment is waited for before the delete. On SQLite
and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from audio.types import Utterance
from runtime import executors
from conversation.room import Room
from memory.extract import Fact
from runtime.scheduler import ModelScheduler
from tests.fixtures_memory import memory_service
from tests.fixtures_storage import db_url, postgres_server, require_postgres  # noqa: F401  (fixtures)

pytestmark = pytest.mark.asyncio

GUILD, ALICE, BOB = 9001, 401, 402


def said(room: Room, user_id: int, name: str, text: str, t: float) -> None:
    room.on_utterance(
        Utterance(user_id=user_id, name=name, text=text, start=t, end=t + 1.0, final=True, confidence=0.9, timings={})
    )


async def test_forget_drops_queued_writes_about_the_member(db_url: str, tmp_path: Path) -> None:
    service = await memory_service(db_url, tmp_path)
    held = asyncio.Event()
    service.writes.submit("hold", held.wait)
    service.queue_facts(GUILD, BOB, [Fact("home", "lives in Lisbon")])
    service.queue_facts(GUILD, ALICE, [Fact("home", "lives in Oslo")])
    service.queue_summary(GUILD, ALICE, "call:c1:0", "talked about the harbour", heard=[BOB])
    forgetting = asyncio.create_task(service.forget(GUILD, BOB, ["Bob"]))
    await asyncio.sleep(0)
    held.set()
    assert await forgetting == 0
    assert await service.writes.drain(10)
    assert await service.store.count_about(GUILD, BOB) == 0
    assert [m.text for m in await service.about(GUILD, ALICE)] == [
        "lives in Oslo"
    ]  # the summary that heard Bob: dropped
    assert service.writes.stats.dropped.get("forgotten") == 2
    await service.close()
    await service.db.close()


async def test_forget_during_a_pending_summary(db_url: str, tmp_path: Path) -> None:
    service = await memory_service(db_url, tmp_path)
    room = Room(bot_name="Juniper", now=0.0)
    room.member_joined(ALICE, "Alice", 0.0, initial=True)
    room.member_joined(BOB, "Bob", 0.0, initial=True)
    session = SimpleNamespace(room=room, persona=SimpleNamespace(name="Juniper"), responder=None)
    recorder = service.attach(GUILD, session)
    said(room, BOB, "Bob", "We sailed to the harbour on Sunday and the wind was wild.", 1.0)
    said(room, ALICE, "Alice", "I spent Sunday baking bread for the whole street.", 5.0)
    recorder.poll()
    busy = threading.Event()
    blocker = asyncio.ensure_future(executors.run("memory", busy.wait, 30))  # the summary waits for the thread
    task = recorder._summarize_segment()
    assert task is not None
    await asyncio.sleep(0.05)
    assert not task.done()
    await service.forget(GUILD, BOB, ["Bob"])  # while the summary is under way
    busy.set()
    await blocker
    await asyncio.wait([t for t in list(service._tasks) if t.get_name().startswith("memory-summary")], timeout=30)
    assert await service.writes.drain(10)
    assert await service.store.count_about(GUILD, BOB) == 0
    alice = await service.about(GUILD, ALICE)
    assert [m.kind for m in alice] == ["summary"], alice  # made again from her lines only
    assert "harbour" not in alice[0].text and "sailed" not in alice[0].text
    recorder._ticker.cancel() if recorder._ticker is not None else None
    service.recorders.pop(GUILD, None)
    await service.close()
    await service.db.close()


class SummarizingLlm:
    """The model boundary: sums up the named member's lines of the transcript it is given, a word every 0.2 s
    (a small CPU's pace), and stops at the next word once its cancel event is set."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopped_early = threading.Event()

    def stream(self, messages, *, max_tokens, stop, cancel, temperature=None):
        prompt = messages[-1]["content"]
        name = re.search(r"what did (.+?) talk about", prompt).group(1)
        said = " ".join(line.split(": ", 1)[1] for line in prompt.splitlines() if line.startswith(f"{name}: "))
        self.started.set()
        for word in f"{name} talked about {said}".split()[:12]:
            if cancel.wait(0.2):
                self.stopped_early.set()
                return
            yield word + " "

    def count_tokens(self, text: str) -> int:
        return len(text.split())


async def test_forget_cancels_the_summary_of_a_call_that_ended(db_url: str, tmp_path: Path) -> None:
    """The call ended and its summary runs in the model's thread: `/memory forget` stops the model and nothing
    of the member is written after it, neither their summary nor their words in another's."""
    service = await memory_service(db_url, tmp_path, MEMORY_SUMMARY="llm")
    room = Room(bot_name="Juniper", now=0.0)
    room.member_joined(ALICE, "Alice", 0.0, initial=True)
    room.member_joined(BOB, "Bob", 0.0, initial=True)
    session = SimpleNamespace(room=room, persona=SimpleNamespace(name="Juniper"), responder=None)
    llm = SummarizingLlm()
    service.attach(GUILD, session, llm=llm, scheduler=ModelScheduler("pipelined"))
    said(room, BOB, "Bob", "We sailed to the harbour on Sunday and the wind was wild.", 1.0)
    said(room, ALICE, "Alice", "I spent Sunday baking bread for the whole street.", 5.0)
    await service.session_closed(GUILD, session)  # the call's last summary starts in the background
    assert GUILD not in service.recorders
    assert await asyncio.to_thread(llm.started.wait, 10)  # the model is writing Bob's summary
    await service.forget(GUILD, BOB, ["Bob"])
    assert await asyncio.to_thread(llm.stopped_early.wait, 5)  # stopped at its next word
    summaries = [t for t in list(service._tasks) if t.get_name().startswith("memory-summary")]
    await asyncio.wait(summaries, timeout=30)
    assert await service.writes.drain(10)
    assert await service.store.count_about(GUILD, BOB) == 0
    alice = await service.about(GUILD, ALICE)
    assert [m.kind for m in alice] == ["summary"], alice  # made again from her lines only
    assert "bread" in alice[0].text and "harbour" not in alice[0].text and "sailed" not in alice[0].text
    await service.close()
    await service.db.close()


async def test_forgotten_words_leave_the_sqlite_file(tmp_path: Path) -> None:
    """secure_delete, the full-text index merged, the WAL checkpointed: the bytes of the file and its WAL no
    longer hold a forgotten memory (its text nor its indexed words)."""
    service = await memory_service("", tmp_path)
    await service.store.remember_facts(GUILD, BOB, [Fact("likes:quokkas", "adores quokkas and zanzibar")])
    await service.store.remember_facts(GUILD, ALICE, [Fact("home", "lives in Oslo")])
    path = service.db.sqlite_path
    assert path is not None

    def file_bytes() -> bytes:
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))

    assert b"zanzibar" in file_bytes()
    await service.forget(GUILD, BOB, ["Bob"])
    raw = file_bytes()
    assert b"zanzibar" not in raw and b"quokkas" not in raw
    assert b"Oslo" in raw  # the others' rows stay
    hits = await service.store.search(GUILD, [ALICE], "oslo")
    assert [h.text for h in hits] == ["lives in Oslo"]  # the index still works
    await service.close()
    await service.db.close()


async def test_forgotten_words_leave_the_postgresql_tables(postgres_server, tmp_path: Path) -> None:
    """The database's files on the managed server (its tables and indexes) no longer hold a forgotten memory
    once the server wrote its pages out: a plain VACUUM would leave the text in the page and the words in the
    full-text index. Its WAL still does until the segments are reused (docs/privacy.md)."""
    import asyncpg

    server = require_postgres(postgres_server)
    url = await server.create_database()
    service = await memory_service(url, tmp_path)
    await service.store.remember_facts(GUILD, ALICE, [Fact("home", "lives in Oslo")])
    await service.store.remember_facts(GUILD, BOB, [Fact("likes:quokkas", "adores quokkas and zanzibar")])
    conn = await asyncpg.connect(host="127.0.0.1", port=server.port, user=server.user, database=url.rsplit("/", 1)[1])
    try:
        folder = (
            server.datadir
            / "base"
            / str(await conn.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()"))
        )

        async def file_bytes() -> bytes:
            await conn.execute("CHECKPOINT")  # every page written out to the table files
            return b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())

        assert b"zanzibar" in await file_bytes()
        await service.forget(GUILD, BOB, ["Bob"])
        raw = await file_bytes()
    finally:
        await conn.close()
    assert b"zanzibar" not in raw and b"quokka" not in raw
    assert b"Oslo" in raw  # the others' rows stay
    assert [h.text for h in await service.store.search(GUILD, [ALICE], "oslo")] == ["lives in Oslo"]
    await service.close()
    await service.db.close()


async def test_names_are_scrubbed_as_spoken_never_as_common_words(tmp_path: Path) -> None:
    """A decorated display name matches its spoken form; a member named like a common word does not rewrite
    that word in everyone's memories."""
    service = await memory_service("", tmp_path)
    store = service.store
    await store.add_summary(GUILD, ALICE, "call:c1:0", 'said "Kat and I will meet in may"')
    await store.forget_member(GUILD, BOB, names=["~Kat~", "will", "may"])  # nicknames anyone can set
    assert [m.text for m in await store.about(GUILD, ALICE)] == ['said "someone and I will meet in may"']
    await service.close()
    await service.db.close()


async def test_names_are_removed_by_member_id_where_rows_carry_it(db_url: str, tmp_path: Path) -> None:
    """Summaries carry the ids of the members whose lines they were made from: a forgotten member's summaries
    in others' rows go by id (their words may be in them, under any name), and a summary that did not hear them
    keeps a word that only looks like their name; rows without ids (facts) lose the name's spoken forms."""
    service = await memory_service(db_url, tmp_path)
    store, may = service.store, 403
    service.queue_summary(
        GUILD, ALICE, "call:c1:0", 'said "we fixed the boat at last"', heard={ALICE: "Alice", may: "Maybelle"}
    )
    service.queue_summary(GUILD, ALICE, "call:c2:0", 'said "see you in May at the lake"', heard={ALICE: "Alice"})
    assert await service.writes.drain(10)
    await store.remember_facts(GUILD, ALICE, [Fact("friend", "goes climbing with May on Sundays")])
    assert await service.forget(GUILD, may, ["~May~", "Maybelle"]) == 0
    assert sorted(m.text for m in await service.about(GUILD, ALICE)) == [
        "goes climbing with someone on Sundays",
        'said "see you in May at the lake"',
    ]
    await store.add_summary(GUILD, ALICE, "call:c3:0", 'said "the harbour was calm"', heard=[BOB])
    await service.opt_out(GUILD, BOB, ["Bob"])  # opting out removes the same way
    assert [m.key for m in await service.about(GUILD, ALICE)] == ["friend", "call:c2:0"]
    await service.close()
    await service.db.close()
