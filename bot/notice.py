"""The listening notice: on /join the bot says once that it listens and transcribes, and how to opt out.

In text (posted in the channel where /join was used, for everyone) and, with `PRIVACY_NOTICE_SPOKEN`,
as a short spoken line in the voice channel before the bot starts listening.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from bot import executors

log = logging.getLogger(__name__)

SPOKEN_TIMEOUT_S = 20.0
POLL_S = 0.05


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


async def speak_notice(voice_client: Any, responder: Any, persona: Any, text: str, *, scheduler: Any = None) -> float:
    """Say `text` in the persona's voice on `voice_client` and wait until it was played. Returns seconds played
    (0 when it could not be said: the session starts anyway)."""
    tts_for = getattr(responder, "tts_for", None)
    if tts_for is None or voice_client is None or not hasattr(voice_client, "play"):
        return 0.0
    from audio.playback import StreamPlayer

    player = StreamPlayer()
    cancel = threading.Event()

    def synthesize() -> None:
        tts = tts_for(persona)
        hold = scheduler.hold("tts", owner="listening-notice", cancel=cancel) if scheduler is not None else None
        if hold is not None:
            hold.__enter__()
        try:
            for pcm, rate in tts.synthesize(text, cancel):
                player.feed(pcm, rate)
        finally:
            if hold is not None:
                hold.__exit__(None, None, None)
        player.end_of_utterance()

    try:
        await executors.run("speech", synthesize)
        if not voice_client.is_connected():
            return 0.0
        voice_client.play(player)
        deadline = time.monotonic() + SPOKEN_TIMEOUT_S
        await asyncio.sleep(POLL_S)
        while player.is_playing_audio and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
        return player.seconds_played
    except Exception as exc:
        log.warning("the spoken listening notice failed (%s: %s); the text notice stands", type(exc).__name__, exc)
        return 0.0
    finally:
        cancel.set()
        try:
            if voice_client.is_playing():
                voice_client.stop()
        except Exception:
            log.debug("stopping the notice's playback failed", exc_info=True)
        player.close()
