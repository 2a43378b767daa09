"""The listening notice: on /join the bot says once that it listens and transcribes, and how to opt out.

In text (posted in the channel where /join was used, for everyone) and, with `PRIVACY_NOTICE_SPOKEN`,
as a short spoken line: the voice session's first line (`VoiceSession(notice=...)`), spoken as written;
a member who speaks over it gets the floor at once.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def notice_text(persona_name: str, channel_mention: str, *, memory_on: bool) -> str:
    remembered = (" It also remembers a few things you tell it about yourself and a short summary of each call, "
                  "per member, in this server." if memory_on else " Memory is off in this server: nothing is kept.")
    return (f"🎙️ **{persona_name} is listening in {channel_mention}.** What you say there is transcribed so "
            f"{persona_name} can talk with you.{remembered}\n"
            "• `/privacy optout`: your voice is ignored (never transcribed or stored); `/privacy optin` undoes it\n"
            "• `/memory show`: what it remembers about you · `/memory forget`: delete it all")


def spoken_notice(persona_name: str) -> str:
    return "Quick note: I listen and transcribe this channel to talk with you. To opt out, use slash privacy opt out."


async def post_notice(interaction: Any, text: str) -> bool:
    """Post the notice in the channel of the /join interaction (visible to everyone). False if it could not be."""
    channel = getattr(interaction, "channel", None)
    if channel is None or not hasattr(channel, "send"):
        return False
    try:
        import discord

        await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
        return True
    except Exception as exc:  # no Send Messages permission, a deleted channel: the ephemeral reply carries it
        log.warning("guild %s: listening notice not posted in the channel (%s: %s)",
                    getattr(interaction, "guild_id", "?"), type(exc).__name__, exc)
        return False
