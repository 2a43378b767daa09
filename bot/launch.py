"""Logging in and running until stopped: one plain connection or this process's shards, the token kept out of
every log line, and the metrics server beside the bot when CHORUS_METRICS_PORT is set."""

from __future__ import annotations

import logging
from typing import Any

from discord.ext import commands

from bot.client import ChorusBot
from bot.startup import Backoff, run_to_end, serve
from runtime.metrics import Metrics, MetricsServer
from runtime.settings import Settings, SettingsError

log = logging.getLogger(__name__)


class _RedactToken(logging.Filter):
    """Replaces the bot token in any log line (defence in depth: nothing should log it)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self._token:
            text = record.getMessage()
            if self._token in text:
                record.msg, record.args = text.replace(self._token, "<redacted token>"), None
        return True


class ShardedChorusBot(ChorusBot, commands.AutoShardedBot):
    """ChorusBot on discord.py's AutoShardedClient: this process runs the shards DISCORD_SHARD_IDS of
    DISCORD_SHARD_COUNT (all of them when the ids are empty), one gateway connection each. Other processes
    run the other shards; Discord sends each guild's events to one shard only, and everything a guild keeps
    lives in the shared database (DATABASE_URL)."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(
            settings, shard_count=settings.shard_count, shard_ids=list(settings.shard_ids) or None, **kwargs
        )


def make_bot(settings: Settings, **kwargs: Any) -> ChorusBot:
    """The bot for these settings: sharded when DISCORD_SHARD_COUNT is set, else one plain connection."""
    if settings.shard_count:
        return ShardedChorusBot(settings, **kwargs)
    return ChorusBot(settings, **kwargs)


def run_bot(settings: Settings, sync: bool = False, *, backoff: Backoff | None = None) -> None:
    """Log in and run until stopped. With `sync`, publish slash commands first (see `sync_commands`).

    Waits and retries while Discord cannot be reached (`bot.startup.serve`); raises `runtime.errors.StartupError`
    (one line saying what to do) for what waiting cannot fix: a rejected token, refused intents, missing access.
    """
    if not settings.discord_token:
        raise SettingsError("DISCORD_TOKEN is empty: set it in .env (Discord developer portal > Bot > Token)")
    redact = _RedactToken(settings.discord_token)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)

    async def run() -> None:
        metrics = Metrics().activate() if settings.metrics_port else None
        if settings.shard_count:
            log.info("running shard(s) %s of %d", ",".join(map(str, settings.shard_ids)) or "all", settings.shard_count)
        async with make_bot(settings, sync_on_start=sync, metrics=metrics) as bot:
            server = None
            if metrics is not None:  # before logging in: a port in use is said at once
                server = await MetricsServer(
                    metrics, host=settings.metrics_host, port=settings.metrics_port, health=bot.health
                ).start()
            try:
                await serve(bot, settings.discord_token, backoff=backoff)
            finally:
                if server is not None:
                    await server.stop()
                if metrics is not None:
                    metrics.deactivate()

    run_to_end(run())
