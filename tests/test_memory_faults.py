"""Database faults: SQLite locked, disk full, PostgreSQL down and restarting. One clear log line per outage,
the voice side goes on without memory (recall gives nothing at once), writes are retried or dropped with a
count, and nothing already stored is damaged."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from memory.extract import Fact
from memory.writer import WriteQueue
from storage.errors import DISK_FULL, LOCKED, UNREACHABLE, StorageError
from tests.fixtures_memory import GUILD, memory_service
from tests.fixtures_storage import postgres_server, require_postgres  # noqa: F401 (fixtures)

ALICE = 11
FAST = dict(backoff_s=(0.1, 0.2), max_age_s=30.0)


def outage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "storage.db" and r.levelno == logging.WARNING]


@pytest.mark.asyncio
async def test_sqlite_locked_writes_wait_and_then_land(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    service = await memory_service("", tmp_path)
    service.db.sqlite_busy_timeout_ms = 100
    await service.db.close()
    await service.db.open()  # reconnect with the short busy timeout
    service.writes = WriteQueue(**FAST)
    await service.store.remember_facts(GUILD, ALICE, [Fact("home", "lives in Oslo")])

    blocker = sqlite3.connect(service.db.sqlite_path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    with caplog.at_level(logging.INFO):
        service.queue_facts(GUILD, ALICE, [Fact("likes:jazz", "loves jazz")])
        await asyncio.sleep(0.8)
        assert service.writes.pending == 1 and service.writes.stats.retried >= 1
        assert service.db.last_fault is not None and service.db.last_fault.kind == LOCKED
        t0 = time.monotonic()
        assert await service.recall(GUILD, [(ALICE, "Alice")], "jazz", timeout=0.3) == ""  # no wait for memory
        assert time.monotonic() - t0 < 0.35
        blocker.rollback()
        blocker.close()
        assert await service.writes.drain(10)
    assert service.writes.stats.written == 1 and service.writes.stats.dropped == {}
    assert {m.text for m in await service.about(GUILD, ALICE)} == {"lives in Oslo", "loves jazz"}
    warnings = outage_warnings(caplog)
    assert len(warnings) == 1 and "locked" in warnings[0] and "without memory" in warnings[0]
    assert any("is back" in r.getMessage() for r in caplog.records if r.name == "storage.db")
    await service.close()
    await service.db.close()


@pytest.mark.asyncio
async def test_disk_full_keeps_what_is_stored_and_retries(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    service = await memory_service("", tmp_path)
    service.writes = WriteQueue(**FAST)
    await service.store.remember_facts(GUILD, ALICE, [Fact("home", "lives in Oslo")])
    async with service.db.transaction() as conn:
        pages = (await conn.exec_driver_sql("PRAGMA page_count")).scalar_one()

    def disk_full(dbapi_conn, _record) -> None:  # SQLite's own limit: the same SQLITE_FULL as a full disk
        dbapi_conn.cursor().execute(f"PRAGMA max_page_count={pages}")

    sa.event.listen(service.db.engine.sync_engine, "connect", disk_full)
    big = [Fact(f"plan:{i}", "is going to " + "very far away " * 200) for i in range(40)]
    with caplog.at_level(logging.INFO):
        with pytest.raises(StorageError) as info:
            await service.store.remember_facts(GUILD, ALICE, big)
        assert info.value.kind == DISK_FULL and "disk" in str(info.value)
        service.queue_facts(GUILD, ALICE, [Fact("likes:jazz", "loves jazz " + "and more " * 2000)])
        await asyncio.sleep(0.5)
        assert service.writes.pending == 1 and service.writes.stats.retried >= 1
        sa.event.remove(service.db.engine.sync_engine, "connect", disk_full)  # space freed
        assert await service.writes.drain(10)
    texts = {m.text[:10] for m in await service.about(GUILD, ALICE)}
    assert texts == {"lives in O", "loves jazz"}  # the failed transaction left nothing half-written
    async with service.db.transaction() as conn:
        assert (await conn.exec_driver_sql("PRAGMA integrity_check")).scalar_one() == "ok"
    assert len(outage_warnings(caplog)) == 1
    await service.close()
    await service.db.close()


@pytest.mark.asyncio
async def test_writes_older_than_their_limit_are_dropped_and_counted(tmp_path: Path) -> None:
    service = await memory_service("", tmp_path)
    service.db.sqlite_busy_timeout_ms = 50
    await service.db.close()
    await service.db.open()
    service.writes = WriteQueue(backoff_s=(0.1,), max_age_s=0.5)
    blocker = sqlite3.connect(service.db.sqlite_path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    service.queue_facts(GUILD, ALICE, [Fact("likes:jazz", "loves jazz")])
    service.queue_facts(GUILD, ALICE, [Fact("home", "lives in Oslo")])
    assert await service.writes.drain(10)
    assert service.writes.stats.dropped == {"expired": 2} and service.writes.stats.written == 0
    blocker.rollback()
    blocker.close()
    assert await service.store.count_about(GUILD, ALICE) == 0
    service.queue_facts(GUILD, ALICE, [Fact("home", "lives in Oslo")])  # and it works again
    assert await service.writes.drain(10) and service.writes.stats.written == 1
    await service.close()
    await service.db.close()


@pytest.mark.asyncio
async def test_postgres_down_and_restarting(postgres_server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = require_postgres(postgres_server)
    url = await server.create_database()
    service = await memory_service(url, tmp_path)
    service.writes = WriteQueue(backoff_s=(0.2, 0.5), max_age_s=60.0)
    await service.store.remember_facts(GUILD, ALICE, [Fact("home", "lives in Oslo")])
    try:
        with caplog.at_level(logging.INFO):
            server.stop("fast")  # the server goes away under open pooled connections
            service.queue_facts(GUILD, ALICE, [Fact("likes:jazz", "loves jazz")])
            await asyncio.sleep(1.0)
            assert service.writes.pending == 1
            assert service.db.last_fault is not None and service.db.last_fault.kind == UNREACHABLE
            assert await service.recall(GUILD, [(ALICE, "Alice")], "jazz", timeout=0.3) == ""
            with pytest.raises(StorageError) as info:
                await service.guild_store.set_persona(GUILD, "Trixie")
            assert info.value.kind == UNREACHABLE and "cannot be reached" in str(info.value)
            assert service.guild_store.get(GUILD).persona is None  # memory did not drift from the database
            await asyncio.to_thread(server.start)  # restarted
            assert await service.writes.drain(30)
    finally:
        if service.db.last_fault is not None and not service.db.healthy:
            await asyncio.to_thread(server.start)
    assert service.writes.stats.dropped == {} and service.writes.stats.retried >= 1
    assert {m.text for m in await service.about(GUILD, ALICE)} == {"lives in Oslo", "loves jazz"}
    hits = await service.store.search(GUILD, [ALICE], "jazz")
    assert [h.text for h in hits] == ["loves jazz"]
    assert len(outage_warnings(caplog)) == 1
    await service.close()
    await service.db.close()


def test_every_fault_reads_as_one_clear_line() -> None:
    from storage.errors import as_storage_error, classify

    assert classify(sqlite3.OperationalError("database is locked")) == LOCKED
    assert classify(sqlite3.OperationalError("database or disk is full")) == DISK_FULL
    assert classify(ConnectionRefusedError(111, "Connect call failed")) == UNREACHABLE
    error = as_storage_error(sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked")))
    assert error.kind == LOCKED and "\n" not in str(error) and error.transient
    assert not as_storage_error(sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint"))).transient
