"""`python -m simulator.bot_process`: the real bot (`python -m bot`) in its own process, aimed at a loopback Discord.

CHORUS_LOOPBACK_DISCORD=http://127.0.0.1:PORT (a `simulator.discord_gateway.LoopbackDiscord`) replaces Discord's REST
base URL and gateway in discord.py; everything else is the bot as `scripts/run.sh` starts it (settings from the
environment, DISCORD_SHARD_COUNT / DISCORD_SHARD_IDS included). Refuses to run without the variable, so it can never
reach the real Discord by accident.
"""

from __future__ import annotations

import os
import sys

import discord
import yarl
from discord.gateway import DiscordWebSocket


def aim_discord_py_at(base: str) -> None:
    discord.http.Route.BASE = f"{base}/api/v10"
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(base.replace("http://", "ws://") + "/")


def main() -> int:
    base = os.environ.get("CHORUS_LOOPBACK_DISCORD", "")
    if not base.startswith("http://127.0.0.1:"):
        print("simulator.bot_process: set CHORUS_LOOPBACK_DISCORD=http://127.0.0.1:PORT", file=sys.stderr)
        return 2
    aim_discord_py_at(base)
    from bot.__main__ import main as bot_main

    return bot_main([])


if __name__ == "__main__":
    sys.exit(main())
