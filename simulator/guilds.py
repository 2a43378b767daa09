"""One real chorus bot in many guilds, each with its own loopback voice server and members (in the world process).

    casts = [guild_cast(g, 3) for g in range(4)]
    async with bot_in_guilds(settings, casts) as run:        # world process, ChorusBot, /join in every guild
        for guild in run.guilds:
            said = await run.world.say(guild.guild_id, guild.cast[0].name, "Juniper, what should I cook?")
            guild.session.traces ...                          # the real VoiceSession of that guild

Everything on the bot side is the production path, as in `simulator.scenario`: `VoiceCog.join` →
`connect_voice` → `ChorusBot.start_voice_session` → `PrompterCog.make_session` → `VoiceSession`; the models
are shared by every guild of the process. Used by the load and soak benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Sequence

from runtime.settings import Settings
from simulator.harness import connected_client
from simulator.replies import ReplyWatch
from simulator.join_command import join_with_command, leave_voice
from simulator.voices import DEFAULT_CAST, CastMember
from simulator.world_client import RemoteServer, World, cast_spec

log = logging.getLogger(__name__)

GUILD_BASE = 800_000_000_000_000_000
NAMES = ("Alice", "Bob", "Chen", "Dana", "Eli", "Farah", "Gus", "Hana", "Ivo", "Jude", "Kim", "Lena")
WARM_UP_TIMEOUT_S = 120.0


def guild_cast(index: int, size: int) -> list[CastMember]:
    """`size` members for guild `index`: distinct user ids and names, the stock voices in turn."""
    out = []
    for i in range(size):
        voice = DEFAULT_CAST[(index + i) % len(DEFAULT_CAST)].voice
        name = NAMES[(index * 3 + i) % len(NAMES)]
        out.append(CastMember(GUILD_BASE + 1000 * (index + 1) + i + 1, name, voice))
    return out


@dataclass
class GuildRun:
    index: int
    guild_id: int
    cast: list[CastMember]
    server: RemoteServer
    guild: Any  # discord.Guild
    session: Any  # bot.voice_session.VoiceSession

    def watch(self, world: World, *, reply_timeout_s: float, unprompted_watch_s: float) -> ReplyWatch:
        ears = world.ears[self.guild_id]
        return ReplyWatch(
            self.session,
            ears.first_voiced_after,
            reply_timeout_s=reply_timeout_s,
            unprompted_watch_s=unprompted_watch_s,
        )


@dataclass
class GuildsRun:
    world: World
    bot: Any  # bot.client.ChorusBot
    guilds: list[GuildRun]


def guild_spec(index: int, cast: Sequence[CastMember], *, present: Sequence[bool] | None = None) -> dict[str, Any]:
    guild_id = GUILD_BASE + 1000 * (index + 1)
    flags = present or [True] * len(cast)
    return {
        "guild_id": guild_id,
        "channel_id": guild_id + 999,
        "members": [cast_spec(c, present=p) for c, p in zip(cast, flags)],
    }


@contextlib.asynccontextmanager
async def bot_in_guilds(
    settings: Settings,
    casts: Sequence[Sequence[CastMember]],
    *,
    world_env: dict[str, str],
    world_log: Path | None = None,
    present: Sequence[Sequence[bool]] | None = None,
    connect_timeout_s: float | None = None,
    warm: bool = True,
) -> AsyncIterator[GuildsRun]:
    """The world with one guild per cast, a ChorusBot that joined every guild by /join (the first present member
    of each asks), DAVE settled everywhere and (``warm``) the sessions' warm-ups done."""
    from bot.client import ChorusBot
    from bot.voice_session import VoiceSession

    specs = [guild_spec(i, cast, present=present[i] if present else None) for i, cast in enumerate(casts)]
    async with World.start(world_env, specs, log_path=world_log) as world:
        bot = ChorusBot(settings)
        async with connected_client(world.servers, client=bot):
            await bot.setup_hook()
            voice_cog = bot.get_cog("VoiceCog")
            if connect_timeout_s is not None and voice_cog is not None:
                voice_cog.connect_timeout_s = connect_timeout_s  # type: ignore[attr-defined]
            runs: list[GuildRun] = []
            try:
                for i, (spec, cast) in enumerate(zip(specs, casts)):
                    guild = bot.get_guild(spec["guild_id"])
                    asker = next(m for m, on in zip(cast, present[i] if present else [True] * len(cast)) if on)
                    session = await asyncio.wait_for(join_with_command(bot, guild, asker.user_id), 120)
                    assert isinstance(session, VoiceSession), type(session)
                    runs.append(
                        GuildRun(i, spec["guild_id"], list(cast), world.by_guild[spec["guild_id"]], guild, session)
                    )
                for run in runs:
                    await world.server(run.guild_id, "wait_dave_settled", 60)
                if warm:
                    await _warm_ups_done(bot)
                yield GuildsRun(world, bot, runs)
            finally:
                for run in runs:
                    await leave_voice(bot, run.guild)


async def _warm_ups_done(bot: Any) -> None:
    """Until the prompter cog's background warm-ups (voice loaded, persona prompt cached) have finished."""
    cog = bot.get_cog("PrompterCog")
    if cog is not None and not await cog.warmed_up(WARM_UP_TIMEOUT_S):
        log.warning("warm-ups still running after %.0f s; going on", WARM_UP_TIMEOUT_S)
