"""Databases for the storage tests: a SQLite file per test, and a real PostgreSQL server per test session.

The PostgreSQL server is Debian's `postgresql` (installed by scripts/setup.sh), started here in a
temporary folder on a free localhost port with `initdb` + `pg_ctl`. PostgreSQL refuses to run as root,
so under root (CI) it runs as the `postgres` system user (or `nobody`). Each test gets a fresh database
in it. Where the server cannot start, the PostgreSQL variants skip with the reason (shown by `-ra`).
`CHORUS_TEST_DATABASE_URL=postgresql://...` uses an existing server instead.

    async def test_x(db_url): ...            # runs twice: sqlite, postgresql
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
import pytest_asyncio

START_TIMEOUT_S = 60


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and there is no `postgres` or `nobody` user to run PostgreSQL as")


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster: `stop()` and `start()` simulate an outage and a restart."""

    root: Path
    port: int
    user: str = "chorus"
    owner: tuple[int, int] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess:
        owner = self.owner

        def demote() -> None:
            if owner is not None:
                os.setgid(owner[1])
                os.setuid(owner[0])

        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        return subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, preexec_fn=demote, env=env, cwd=self.root
        )

    def init(self) -> None:
        initdb = _pg_bin("initdb")
        if initdb is None:
            raise RuntimeError("initdb not found (install Debian's `postgresql` package: scripts/setup.sh does)")
        done = self._run(initdb, "-D", str(self.datadir), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {(done.stderr or done.stdout).strip()[-400:]}")

    def start(self) -> None:
        pg_ctl = _pg_bin("pg_ctl")
        if pg_ctl is None:
            raise RuntimeError("pg_ctl not found")
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c fsync=off -c full_page_writes=off -c max_connections=60"
        )
        done = self._run(
            pg_ctl,
            "-D",
            str(self.datadir),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "start",
        )
        if done.returncode != 0:
            log = (
                (self.root / "server.log").read_text(errors="replace")[-400:]
                if (self.root / "server.log").exists()
                else ""
            )
            raise RuntimeError(f"pg_ctl start failed: {(done.stderr or done.stdout).strip()[-300:]} {log}")

    def stop(self, mode: str = "fast") -> None:
        pg_ctl = _pg_bin("pg_ctl")
        if pg_ctl is not None and self.datadir.exists():
            self._run(pg_ctl, "-D", str(self.datadir), "-m", mode, "-w", "stop")

    async def create_database(self) -> str:
        import asyncpg

        name = f"t_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user=self.user, database="postgres", timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | str]:
    """A running PostgreSQL server for this test session, or the reason there is none (a str)."""
    external = os.environ.get("CHORUS_TEST_DATABASE_URL", "").strip()
    if external:
        yield external
        return
    root = Path(tempfile.mkdtemp(prefix="chorus-pg-"))
    server: PostgresServer | None = None
    try:
        owner = _run_as()
        if owner is not None:
            os.chown(root, *owner)
        os.chmod(root, 0o755)
        server = PostgresServer(root=root, port=_free_port(), owner=owner)
        server.init()
        server.start()
    except Exception as exc:  # no server: the PostgreSQL variants skip with this reason
        yield f"PostgreSQL could not start here: {exc}"
        shutil.rmtree(root, ignore_errors=True)
        return
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def require_postgres(postgres_server: PostgresServer | str) -> PostgresServer:
    """The managed server, or skip (printing why) when there is none or it is an external URL."""
    if isinstance(postgres_server, str) and not postgres_server.startswith("postgres"):
        pytest.skip(postgres_server)
    if isinstance(postgres_server, str):
        pytest.skip("this test stops and restarts its own PostgreSQL; CHORUS_TEST_DATABASE_URL points at another")
    return postgres_server


async def _external_database(url: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database or "postgres",
        timeout=10,
    )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return parsed.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL (DATABASE_URL syntax): a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'chorus.db'}"
    server = request.getfixturevalue("postgres_server")
    if isinstance(server, str) and not server.startswith("postgres"):
        pytest.skip(server)
    if isinstance(server, str):
        return asyncio.run(_external_database(server))
    return asyncio.run(server.create_database())


@contextlib.asynccontextmanager
async def stalled_sqlite(bot: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Another process holds the bot's SQLite write lock for the block: the bot's busy timeout is cut to 0.5 s
    (SimCord waits 5 s for the bot to settle) and its background health probe is off."""
    import sqlite3

    bot.storage.sqlite_busy_timeout_ms = 500
    monkeypatch.setattr(type(bot.storage), "_start_probe", lambda self: None)  # SimCord: no background waits
    await bot.storage.engine.dispose()
    bot.storage.engine = bot.storage._create_engine()
    lock = sqlite3.connect(bot.storage.sqlite_path, timeout=0.1)
    lock.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        lock.rollback()
        lock.close()


@pytest_asyncio.fixture
async def simcord_env(simcord_env: Any) -> AsyncIterator[Any]:
    """SimCord's environment, left the way the bot leaves a loop it stops: its event handlers (e.g. a guild's
    settings read on `on_guild_available`) finish and its memory closes before SimCord cancels the bot's tasks.
    A database call cancelled mid-way leaves its aiosqlite thread to answer an event loop that is closed by then:
    an unhandled thread exception, reported in a later test."""
    yield simcord_env
    handlers = [t for t in asyncio.all_tasks() if t.get_name().startswith("discord.py: ") and not t.done()]
    if handlers:
        await asyncio.wait(handlers, timeout=START_TIMEOUT_S)
    await simcord_env.bot.memory.close()
