"""Fact extraction, the recall block's budget and order, the retention purge, the write queue's bounds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from memory.extract import extract_facts
from memory.recall import HEADER, candidates, fit, render_block
from memory.store import Memory
from memory.writer import WriteQueue
from storage.errors import StorageError
from tests.fixtures_memory import GUILD, memory_service


@pytest.mark.parametrize(
    "line, expected",
    [
        ("Hi, my name is Jonas.", ["wants to be called Jonas"]),
        ("just call me Bee", ["wants to be called Bee"]),
        ("I really enjoy long walks with my dog.", ["enjoys long walks with their dog"]),
        ("My brother Omar lives in Cairo.", ["brother Omar lives in Cairo"]),
        ("I have two cats named Salt and Pepper.", ["has a cat called Salt and Pepper"]),
        ("I'm moving to Glasgow next month.", ["is moving to Glasgow next month"]),
        ("My favourite movie is Arrival.", ["favorite movie is Arrival"]),
        ("I work at a bakery downtown.", ["works at a bakery downtown"]),
        ("Do you like sushi?", []),
        ("I'd like to hear a joke.", []),
        ("If I had a boat I would sail.", []),
        ("Okay sounds good.", []),
    ],
)
def test_facts_are_third_person_predicates(line: str, expected: list[str]) -> None:
    assert [f.text for f in extract_facts(line)] == expected


def test_a_new_name_replaces_the_old_one_by_key() -> None:
    (first,) = extract_facts("Call me Sam.")
    (second,) = extract_facts("Actually my name is Samantha.")
    assert first.key == second.key == "name"


def mem(i: int, uid: int, kind: str, key: str, text: str, age_days: float = 1.0) -> Memory:
    t = time.time() - age_days * 86400
    return Memory(i, GUILD, uid, kind, key, text, t, t)


def test_block_fits_its_budget_and_puts_what_matches_first() -> None:
    now = time.time()
    members = [(1, "Noor"), (2, "Felix")]
    known = [
        mem(1, 1, "fact", "name", "wants to be called Noor"),
        mem(2, 1, "fact", "k2", "sister Hana is a vet in Leeds", 5),
        mem(3, 1, "summary", "call:a", "talked about a job interview", 2),
        mem(4, 2, "fact", "k4", "lives in Hamburg", 0.1),
        *[mem(10 + i, 2, "fact", f"x{i}", f"collects old stamps number {i}", 0.5) for i in range(30)],
    ]
    hits = [known[1]]
    ordered = candidates(members, hits, known)
    assert ordered[0].id == 2 and {m.id for m in ordered[1:4]} == {1, 3, 4}
    count = lambda text: len(text.split())  # noqa: E731 - a simple token count for the test
    block = fit(members, ordered, 60, count, now)
    assert count(block) <= 60 and block.startswith(HEADER)
    assert "Noor's sister Hana is a vet in Leeds." in block and "Felix lives in Hamburg." in block
    assert "In a call yesterday, Noor talked about a job interview." in block or "2 days ago" in block
    assert fit(members, ordered, 5, count, now) == ""  # nothing fits: no block at all
    assert render_block(members, [], now) == ""


@pytest.mark.asyncio
async def test_retention_purge_runs_from_the_setting(tmp_path: Path) -> None:
    from memory.extract import Fact

    service = await memory_service("", tmp_path, MEMORY_RETENTION_DAYS="30")
    await service.store.remember_facts(GUILD, 1, [Fact("home", "lives in Oslo")], now=time.time() - 31 * 86400)
    await service.store.remember_facts(GUILD, 1, [Fact("likes:jazz", "loves jazz")])
    assert await service.purge_now() == 1
    assert [m.text for m in await service.about(GUILD, 1)] == ["loves jazz"]
    await service.close()
    await service.db.close()


@pytest.mark.asyncio
async def test_write_queue_is_bounded_and_counts_what_it_drops() -> None:
    queue = WriteQueue(max_pending=3, backoff_s=(0.05,), max_age_s=5.0)
    done: list[int] = []
    gate = asyncio.Event()

    async def write(n: int) -> None:
        await gate.wait()
        done.append(n)

    queue.submit("w0", lambda: write(0))
    await asyncio.sleep(0)  # the worker takes it: out of the queue while it runs
    for n in range(1, 5):
        queue.submit(f"w{n}", lambda n=n: write(n))
    assert queue.stats.dropped == {"overflow": 1} and queue.pending == 4

    async def broken() -> None:
        raise StorageError("error", "IntegrityError: a bug")

    queue.submit("bad", broken)
    gate.set()
    assert await queue.drain(5)
    assert done == [0, 3, 4] and queue.stats.dropped == {"overflow": 2, "error": 1}
    await queue.close()
