"""Fail closed: a bot restarted while its database is down decodes no one until it knows who opted out.

The first run saves Bob's opt-out. The database goes away (the SQLite file cannot be opened: its volume is
gone; PostgreSQL stopped), the bot starts again: the receive layer (real UDP, DAVE, Opus) drops every
member's packets before decoding, counted, and nothing is remembered. When the database is back and the
choices are read, Alice is decoded and Bob still is not. A write queued before an opt-out or `/memory off`
is checked again when it runs.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
import pytest_asyncio

from storage.guild_store import GuildStore
from runtime.settings import load_settings
from memory.extract import Fact
from memory.service import MemoryService
from storage.db import Database
from runtime.database_url import database_url
from storage.errors import StorageError
from tests.fixtures_memory import memory_service
from tests.fixtures_receive import Member, Rig, make_dave_group, speechlike, wait_for
from tests.fixtures_storage import postgres_server, require_postgres  # noqa: F401  (fixture)

pytestmark = pytest.mark.asyncio

GUILD, A, B = 7001, 301, 302


@pytest_asyncio.fixture
async def rig():
    r = Rig(asyncio.get_running_loop())
    yield r
    r.close()


class Outage:
    """Takes the database away and brings it back: the SQLite file's folder replaced by an empty file (the
    volume is gone), or the PostgreSQL server stopped."""

    def __init__(self, backend: str, data_dir: Path, server) -> None:
        self.backend, self.data_dir, self.server = backend, data_dir, server
        self.away = data_dir.with_name("data-away")

    async def start(self) -> None:
        if self.backend == "sqlite":
            self.data_dir.rename(self.away)
            self.data_dir.write_text("")  # not a folder: the database file cannot be opened
        else:
            await asyncio.to_thread(self.server.stop, "fast")

    async def end(self) -> None:
        if self.backend == "sqlite":
            self.data_dir.unlink()
            self.away.rename(self.data_dir)
        else:
            await asyncio.to_thread(self.server.start)


async def send_both(rig: Rig, a: Member, b: Member, seed: int) -> dict[str, int]:
    before = rig.rx.stats["received"]
    rig.conn.send(a.packets(speechlike(0.4, seed=seed)) + b.packets(speechlike(0.4, seed=seed + 1)))
    assert await wait_for(lambda: rig.rx.stats["received"] == before + 40)
    return await rig.settled()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_restart_with_the_database_down_decodes_no_one_until_the_choices_are_known(
    backend: str, tmp_path: Path, rig: Rig, request: pytest.FixtureRequest
) -> None:
    server = require_postgres(request.getfixturevalue("postgres_server")) if backend == "postgresql" else None
    url = "" if server is None else await server.create_database()
    first = await memory_service(url, tmp_path)  # the first run: Bob opts out, saved
    await first.opt_out(GUILD, B, ["Bob"])
    await first.close()
    await first.db.close()

    data_dir = tmp_path / "data"
    outage = Outage(backend, data_dir, server)
    await outage.start()
    try:
        settings = load_settings(env={"CHORUS_DATA_DIR": str(data_dir), "MEMORY_SUMMARY": "extractive"}, env_file=None)
        db = Database(database_url(url, data_dir))
        with pytest.raises(StorageError):
            await db.open()  # the restarted bot: no database
        store = GuildStore(db, data_dir=data_dir)
        service = MemoryService(settings, db, store)
        service.privacy_retry_s = 0.2
        await service.start()
        rig.rx.set_drop_predicate(service.drop_check(GUILD))
        group = make_dave_group([A, B], rig.conn.state.dave_session)
        a, b = Member(A, 3001, rig.conn.key, group[A]), Member(B, 3002, rig.conn.key, group[B])
        await rig.conn.speaking(A, a.ssrc)
        await rig.conn.speaking(B, b.ssrc)

        d = await send_both(rig, a, b, seed=61)
        assert d["decoded"] == 0 and d["dropped_opted_out"] == 40, d  # no one: the choices are unknown
        assert not rig.col.frames
        assert not service.privacy_known(GUILD) and not service.remembers(GUILD)
        service.queue_facts(GUILD, A, [Fact("home", "lives in Oslo")])  # memory is not known to be on: not kept
    finally:
        await outage.end()

    await db.open()
    await store.load()
    assert await wait_for(lambda: service.privacy_loaded, 10)
    assert service.privacy_known(GUILD) and service.remembers(GUILD)
    d = await send_both(rig, a, b, seed=63)
    assert d["decoded"] == 20 and d["dropped_opted_out"] == 60, d  # Alice heard again; Bob never
    assert rig.col.count(A) == 20 and B not in rig.col.frames
    assert await service.writes.drain(10)
    assert await service.store.count_about(GUILD, A) == 0  # the write queued while unknown was not kept
    await service.close()
    await db.close()
    shutil.rmtree(tmp_path / "data-away", ignore_errors=True)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_queued_writes_are_checked_again_when_they_run(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = require_postgres(request.getfixturevalue("postgres_server")) if backend == "postgresql" else None
    url = "" if server is None else await server.create_database()
    service = await memory_service(url, tmp_path)
    held = asyncio.Event()
    service.writes.submit("hold", held.wait)  # the queue is busy: what follows waits
    service.queue_facts(GUILD, A, [Fact("home", "lives in Oslo")])
    service.queue_summary(GUILD, B, "call:c1:0", "talked about sailing")
    service.queue_facts(GUILD + 1, A, [Fact("likes:jazz", "loves jazz")])
    service._set_opted_out(GUILD, A, True)  # opted out in this process; not saved (the database refused)
    await service.guild_store.set_memory_enabled(GUILD + 1, False)
    held.set()
    assert await service.writes.drain(10)
    assert await service.store.count_about(GUILD, A) == 0
    assert await service.store.count_about(GUILD + 1, A) == 0
    assert await service.store.count_about(GUILD, B) == 1  # the others' writes land
    # inside the write's transaction too: another process turned memory off, this one did not hear of it
    other = GuildStore(service.db)
    await other.set_memory_enabled(GUILD, False)
    assert service.remembers(GUILD)  # this process's copy is stale
    assert await service.store.remember_facts(GUILD, B, [Fact("likes:tea", "loves tea")]) == 0
    await service.close()
    await service.db.close()


async def test_health_is_probed_not_left_to_the_next_write(tmp_path: Path) -> None:
    """One failed read marks the database unhealthy (recall goes without it); once the file is back the probe
    says so by itself: recall works again without any write having succeeded."""
    service = await memory_service("", tmp_path)
    await service.store.remember_facts(GUILD, A, [Fact("likes:jazz", "loves jazz")])
    service.db.probe_s = 0.1
    outage = Outage("sqlite", tmp_path / "data", None)
    await outage.start()
    assert await service.recall(GUILD, [(A, "Alice")], "jazz", timeout=2.0) == ""  # the one failed read
    assert not service.db.healthy
    await outage.end()
    assert await wait_for(lambda: service.db.healthy, 10)
    assert "jazz" in await service.recall(GUILD, [(A, "Alice")], "jazz", timeout=2.0)
    await service.close()
    await service.db.close()
