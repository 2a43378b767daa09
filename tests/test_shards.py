"""Shards: two bot processes with different DISCORD_SHARD_IDS serve different guilds, over one shared database.

The processes are the real bot (`python -m bot` through `simulator.bot_process`), talking discord.py's own
gateway and REST code to `simulator.discord_gateway.LoopbackDiscord`, which routes each guild's events to the
shard Discord's rule gives it. A guild's state follows the guild, not the process: when another process takes
over a shard, it reads the guild's persona from the database.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from runtime.settings import SettingsError, load_settings
from simulator.discord_gateway import LoopbackDiscord, shard_for
from tests.fixtures_storage import db_url, postgres_server  # noqa: F401  (pytest fixtures)

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parent.parent
GUILDS = {(1000 << 22) + 7: "Maple", (1001 << 22) + 7: "Birch", (1002 << 22) + 9: "Cedar", (1003 << 22) + 9: "Alder"}
START_TIMEOUT_S = 120.0


def test_guilds_split_over_two_shards_by_discords_rule() -> None:
    assert sorted(shard_for(g, 2) for g in GUILDS) == [0, 0, 1, 1]


def test_shard_settings_are_checked() -> None:
    s = load_settings(env={"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "1,3"}, env_file=None)
    assert s.shard_count == 4 and s.shard_ids == (1, 3)
    with pytest.raises(SettingsError, match="not below DISCORD_SHARD_COUNT"):
        load_settings(env={"DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "2"}, env_file=None)
    with pytest.raises(SettingsError, match="DISCORD_SHARD_COUNT is 0"):
        load_settings(env={"DISCORD_SHARD_IDS": "0"}, env_file=None)


class BotProcess:
    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> "BotProcess":
        self._log = open(self.log_path, "wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simulator.bot_process", cwd=ROOT, env=self.env, stdout=self._log, stderr=self._log
        )
        return self

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.mark.asyncio
async def test_two_processes_serve_different_guilds_and_state_follows_the_guild(db_url, tmp_path) -> None:  # noqa: F811
    async with LoopbackDiscord(GUILDS) as discord_:
        base_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "CHORUS_", "LLM_", "STT_", "TTS_"))
        }
        base_env.update(
            {
                "CHORUS_LOOPBACK_DISCORD": discord_.base,
                "DISCORD_TOKEN": "loopback.shard.token",
                "DISCORD_SHARD_COUNT": "2",
                "DATABASE_URL": db_url,
                "CHORUS_DATA_DIR": str(tmp_path / "data"),
                "CHORUS_LOG_LEVEL": "info",
                "PYTHONUNBUFFERED": "1",
            }
        )
        procs = [
            BotProcess("shard0", {**base_env, "DISCORD_SHARD_IDS": "0"}, tmp_path),
            BotProcess("shard1", {**base_env, "DISCORD_SHARD_IDS": "1"}, tmp_path),
        ]
        try:
            await procs[0].start()  # one after the other: the first one creates the schema
            await discord_.wait_for_shards({0}, START_TIMEOUT_S)
            await procs[1].start()
            await discord_.wait_for_shards({0, 1}, START_TIMEOUT_S)
            assert sorted(discord_.identified) == [(0, 2), (1, 2)]  # IDENTIFY's shard field, one per process
            owned = {shard: discord_.sessions[shard].guild_ids for shard in (0, 1)}
            assert sorted(owned[0] + owned[1]) == sorted(GUILDS) and not set(owned[0]) & set(owned[1])
            a, b = owned[0][0], owned[1][0]

            # each process answers the commands of its own guilds only (Discord routes them by shard)
            shard, answer = await discord_.command(a, "persona", "set", {"name": "Trixie"})
            assert shard == 0 and "Trixie" in answer["data"]["content"], answer
            shard, answer = await discord_.command(b, "persona", "show")
            assert shard == 1 and "Juniper" in answer["data"]["content"], answer

            # shard 0 moves to a new process (a restart, or another machine): the guild's persona comes along,
            # because it lives in the shared database
            await procs[0].stop()
            await discord_.wait_for_shards({1}, START_TIMEOUT_S)
            procs.append(await BotProcess("shard0-again", {**base_env, "DISCORD_SHARD_IDS": "0"}, tmp_path).start())
            await discord_.wait_for_shards({0, 1}, START_TIMEOUT_S)
            shard, answer = await discord_.command(a, "persona", "show")
            assert shard == 0 and "Trixie" in answer["data"]["content"], answer
            shard, answer = await discord_.command(b, "persona", "show")
            assert shard == 1 and "Juniper" in answer["data"]["content"], answer
        except BaseException:
            for p in procs:
                print(f"--- {p.name} ---\n{p.log()[-3000:]}")
            raise
        finally:
            for p in procs:
                await p.stop()
    for p in procs:
        assert "Traceback" not in p.log(), p.log()[-3000:]
        assert "loopback.shard.token" not in p.log()
