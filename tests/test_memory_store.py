"""Memory rows on SQLite and PostgreSQL: facts replace by key, full-text search by relevance, forget and
opt-out leave no row about the member, retention purges old rows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from memory.extract import Fact
from memory.store import MemoryStore, search_terms
from storage.db import Database
from runtime.database_url import database_url
from tests.fixtures_storage import db_url, postgres_server  # noqa: F401 (fixtures)

G, ALICE, BOB, CHEN = 10, 101, 202, 303


async def open_memory(url: str, tmp_path: Path) -> MemoryStore:
    db = Database(database_url(url, tmp_path))
    await db.open()
    return MemoryStore(db)


def test_search_terms_keep_the_telling_words() -> None:
    assert search_terms("Juniper, what did I tell you about my sister?") == ["sister"]
    assert search_terms("Do you remember where Maya lives, my SISTER Maya?") == ["maya", "lives", "sister"]
    assert search_terms("um yeah okay") == []


@pytest.mark.asyncio
async def test_facts_replace_by_key_and_search_finds_the_relevant_one(db_url: str, tmp_path: Path) -> None:
    store = await open_memory(db_url, tmp_path)
    await store.remember_facts(
        G,
        ALICE,
        [
            Fact("name", "wants to be called Ally"),
            Fact("rel:sister:name", "sister is called Maya"),
            Fact("likes:jazz", "loves jazz"),
        ],
        now=1000.0,
    )
    await store.remember_facts(G, ALICE, [Fact("name", "wants to be called Al")], now=2000.0)
    await store.remember_facts(
        G, BOB, [Fact("rel:sister:name", "sister is called Rosa"), Fact("home", "lives in Lisbon")], now=1500.0
    )
    await store.remember_facts(G + 1, ALICE, [Fact("rel:sister:name", "sister is called Other")])  # another guild
    await store.add_summary(G, ALICE, "call:c1:0", "talked about baking sourdough bread with her sisters", now=1200.0)

    about = await store.about(G, ALICE)
    assert [m.text for m in about if m.key == "name"] == ["wants to be called Al"]
    assert len(about) == 4

    hits = await store.search(G, [ALICE], "what did I tell you about my sister?")
    assert hits and hits[0].text == "sister is called Maya"  # stemmed: "sisters" in the summary also matches
    assert {h.text for h in hits} == {"sister is called Maya", "talked about baking sourdough bread with her sisters"}
    assert all(h.score > 0 for h in hits)
    both = await store.search(G, [ALICE, BOB], "sister")
    assert {h.user_id for h in both} == {ALICE, BOB}
    assert await store.search(G, [ALICE], "lisbon") == []  # Bob's, and Bob is not asked about
    assert (await store.search(G, [BOB], "Lisbon"))[0].text == "lives in Lisbon"
    assert await store.search(G, [ALICE], "") == []
    assert await store.search(G, [ALICE], 'odd "quotes" OR AND NOT ( * ^') == []  # no query syntax gets through
    await store.db.close()


@pytest.mark.asyncio
async def test_forget_leaves_no_row_about_the_member(db_url: str, tmp_path: Path) -> None:
    store = await open_memory(db_url, tmp_path)
    await store.remember_facts(G, ALICE, [Fact("likes:jazz", "loves jazz")])
    await store.add_summary(G, ALICE, "call:c1:0", "planned a picnic with Bob")
    await store.remember_facts(G, BOB, [Fact("home", "lives in Lisbon")])
    await store.add_summary(G, BOB, "call:c1:0", "told Alice about Lisbon")
    assert await store.forget_member(G, ALICE, names=["Alice"]) == 2
    assert await store.count_about(G, ALICE) == 0
    assert await store.search(G, [ALICE], "jazz picnic") == []
    assert [m.text for m in await store.about(G, BOB)] == ["lives in Lisbon", "told someone about Lisbon"]
    assert (await store.search(G, [BOB], "alice")) == []  # the full-text index forgot the name too
    await store.db.close()


@pytest.mark.asyncio
async def test_opt_out_deletes_and_blocks_rows_and_opt_in_removes_the_choice(db_url: str, tmp_path: Path) -> None:
    store = await open_memory(db_url, tmp_path)
    await store.remember_facts(G, CHEN, [Fact("likes:tea", "likes green tea")])
    assert await store.set_opted_out(G, CHEN, True, names=["Chen"]) == 1
    assert await store.opted_out() == {G: {CHEN}}
    assert await store.remember_facts(G, CHEN, [Fact("likes:tea", "likes green tea")]) == 0
    assert not await store.add_summary(G, CHEN, "call:c2:0", "talked")
    assert await store.count_about(G, CHEN) == 0
    await store.set_opted_out(G, CHEN, False)
    assert await store.opted_out() == {}
    assert await store.remember_facts(G, CHEN, [Fact("likes:tea", "likes green tea")]) == 1
    await store.db.close()


@pytest.mark.asyncio
async def test_purge_deletes_only_what_was_not_renewed(db_url: str, tmp_path: Path) -> None:
    store = await open_memory(db_url, tmp_path)
    now = time.time()
    await store.remember_facts(G, ALICE, [Fact("likes:jazz", "loves jazz")], now=now - 100 * 86400)
    await store.remember_facts(G, ALICE, [Fact("home", "lives in Oslo")], now=now - 100 * 86400)
    await store.remember_facts(G, ALICE, [Fact("home", "lives in Oslo")], now=now)  # said again: renewed
    assert await store.purge(now - 90 * 86400) == 1
    assert [m.text for m in await store.about(G, ALICE)] == ["lives in Oslo"]
    assert await store.search(G, [ALICE], "jazz") == []
    await store.db.close()


@pytest.mark.asyncio
async def test_scrubs_asked_while_one_runs_share_the_next(db_url: str, tmp_path: Path, monkeypatch) -> None:
    """Eight forgets at once cost two rewrites (the one under way, then one for the rest), not eight."""
    store = await open_memory(db_url, tmp_path)
    db = store.db
    scrub = db._scrub_sqlite if db.dialect == "sqlite" else db._scrub_postgresql
    runs = []

    async def counted() -> None:
        runs.append(time.monotonic())
        await scrub()

    monkeypatch.setattr(db, "_scrub_sqlite" if db.dialect == "sqlite" else "_scrub_postgresql", counted)
    await asyncio.gather(*(db.scrub_deleted() for _ in range(8)))
    assert len(runs) == 2
    await db.scrub_deleted()  # asked after both ended: a scrub of its own
    assert len(runs) == 3
    await db.close()
