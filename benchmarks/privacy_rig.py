"""What the cases of the privacy fault matrix (`benchmarks.privacy_faults`) share: the ids, a memory service over a
data folder, a SQLite folder that goes away, and an interaction that records when each answer to Discord went out
(so a case can run the real slash-command callbacks and judge Discord's 3 s limit)."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, AsyncIterator

DISCORD_ACK_S = 3.0
GUILD, ALICE, BOB = 8101, 501, 502

Result = dict[str, Any]


async def _service(data_dir: Path) -> Any:
    from storage.guild_store import GuildStore
    from runtime.settings import load_settings
    from memory.service import MemoryService
    from storage.db import Database
    from runtime.database_url import database_url

    settings = load_settings(env={"CHORUS_DATA_DIR": str(data_dir), "MEMORY_SUMMARY": "extractive"}, env_file=None)
    db = Database(database_url("", data_dir))
    store = GuildStore(db, data_dir=data_dir)
    service = MemoryService(settings, db, store)
    service.privacy_retry_s = 0.2
    return service


async def _loaded(data_dir: Path, *, start: bool = False) -> Any:
    """A memory service over `data_dir` with its database open and the guild settings read (and started)."""
    service = await _service(data_dir)
    await service.db.open()
    await service.guild_store.load()
    if start:
        await service.start()
    return service


@asynccontextmanager
async def _bot(data_dir: Path, *, prompter: bool = False, settings: Any = None, **env: str) -> AsyncIterator[Any]:
    """The bot (its cogs, with the prompter's (/captions) when `prompter`; the memory service; SQLite under
    `data_dir`), set up, not connected to Discord. `settings`: these instead of the defaults with `env`."""
    from bot.client import ChorusBot
    from runtime.settings import load_settings

    if settings is None:
        settings = load_settings(
            env={"CHORUS_DATA_DIR": str(data_dir), "MEMORY_SUMMARY": "extractive", **env}, env_file=None
        )
    from bot.client import OPTIONAL_COG_EXTENSIONS

    async with ChorusBot(
        settings, optional_extensions=OPTIONAL_COG_EXTENSIONS if prompter else ()
    ) as bot:  # the loop discord.py dispatches events on
        await bot.setup_hook()
        yield bot


class FileAway:
    """The SQLite file's folder is gone (a volume unmounted) and comes back."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.away = data_dir, data_dir.with_name(data_dir.name + "-away")

    def __enter__(self) -> "FileAway":
        self.data_dir.rename(self.away)
        self.data_dir.write_text("")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.data_dir.unlink()
        self.away.rename(self.data_dir)


def member(user_id: int, name: str, *, manage_guild: bool = False) -> Any:
    """What the commands read of `interaction.user`."""
    return SimpleNamespace(
        id=user_id,
        display_name=name,
        global_name=name,
        name=name.lower(),
        guild_permissions=SimpleNamespace(manage_guild=manage_guild),
    )


class _TimedInteraction:
    """What the privacy and memory commands use of a `discord.Interaction`, recording when each answer went out
    (`events`: seconds since the command, kind, text) and the view sent with an answer (`view`)."""

    def __init__(self, user: Any, guild_id: int) -> None:
        self.user, self.guild_id, self.command = user, guild_id, None
        self.guild: Any = None
        self.channel: Any = None
        self.started = time.monotonic()
        self.events: list[tuple[float, str, str]] = []
        self.view: Any = None
        outer = self

        class Response:
            def __init__(self) -> None:
                self.done = False

            def is_done(self) -> bool:
                return self.done

            async def defer(self, **_kw: Any) -> None:
                self.done = True
                outer._record("defer", "")

            async def send_message(self, content: str, **kw: Any) -> None:
                self.done = True
                outer.view = kw.get("view")
                outer._record("response", content)

            async def edit_message(self, *, content: str = "", **_kw: Any) -> None:
                self.done = True
                outer._record("edit", content)

        class Followup:
            async def send(self, content: str, **_kw: Any) -> None:
                outer._record("followup", content)

        self.response, self.followup = Response(), Followup()

    def _record(self, kind: str, text: str) -> None:
        self.events.append((time.monotonic() - self.started, kind, text))

    async def edit_original_response(self, *, content: str = "", **_kw: Any) -> None:
        self._record("edit_original", content)

    def report(self, command: str) -> dict[str, Any]:
        """When the first and last answers went out (None: never), and the text of all of them."""
        return {
            "command": command,
            "first_answer_s": round(self.events[0][0], 3) if self.events else None,
            "last_answer_s": round(self.events[-1][0], 3) if self.events else None,
            "text": " ".join(e[2] for e in self.events),
        }


def late(reports: list[dict[str, Any]]) -> int:
    """The commands not acknowledged within Discord's 3 s (or never)."""
    return sum(1 for r in reports if not isinstance(r["first_answer_s"], float) or r["first_answer_s"] > DISCORD_ACK_S)


async def _post(*_args: Any, **_kwargs: Any) -> None:
    """A text channel's `send` (captions go nowhere here)."""


async def run_command(bot: Any, cog_name: str, command: str, user: Any, label: str, **args: Any) -> dict[str, Any]:
    """The slash command's real callback as Discord would call it in GUILD's channel 77 (what it raises goes to
    the bot's error handler, as discord.py's tree does); its `_TimedInteraction.report`."""
    from discord import app_commands

    cog = bot.get_cog(cog_name)
    interaction = _TimedInteraction(user, GUILD)
    interaction.guild = SimpleNamespace(id=GUILD, roles=[])
    interaction.channel = SimpleNamespace(id=77, send=_post, mention="#captions")
    try:
        await getattr(cog, command).callback(cog, interaction, **args)
    except Exception as exc:
        name = label.lstrip("/").split(" (")[0]
        error = app_commands.CommandInvokeError(SimpleNamespace(qualified_name=name, name=name), exc)  # type: ignore[arg-type]
        await bot.on_app_command_error(interaction, error)
    return interaction.report(label)
