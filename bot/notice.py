"""The listening notice: before the bot hears anyone, it says that it listens and transcribes, and how to opt out.

In text (posted in the channel where /join was used, for everyone) and, with `PRIVACY_NOTICE_SPOKEN`, as a
short spoken line: the voice session's first line (`VoiceSession(notice=...)`), spoken as written, which a
member who speaks over it interrupts (they get the floor at once). Where the text could not be posted, the
spoken line is the notice itself: said in full (`speak_notice`) before the bot starts listening.

`ListeningNotice` is the gate: a member's packets are decoded only once a notice was given in the bot's
current voice channel while they were there (`covers`, read by the receive layer's drop check for every
packet). A member who joins later gets the notice posted again (at most every `REPOST_S`; within that, the
recent notice covers them); a bot moved to another channel listens to no one there until it was given again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from runtime import executors

log = logging.getLogger(__name__)

SPOKEN_TIMEOUT_S = 20.0
POLL_S = 0.05
REPOST_S = 60.0  # a member who joins within this of the last notice is covered by it (no repeated posts)


def notice_text(
    persona_name: str,
    channel_mention: str,
    *,
    memory_on: bool,
    retention_days: int = 0,
    captions_on: bool = False,
    known: bool = True,
    recall: str = "present",
) -> str:
    """What the text notice says: what is kept, for how long, who can hear it recalled, captions."""
    commands = (
        "• `/privacy optout`: your voice is ignored (never transcribed or stored); `/privacy optin` undoes it\n"
        "• `/memory show`: what it remembers about you · `/memory forget`: delete it all"
    )
    if not known:
        return (
            f"🎙️ **{persona_name} joined {channel_mention} but is not listening yet:** its database is "
            "unavailable, so it does not know who opted out. It starts listening when it does, after posting "
            f"what it keeps.\n{commands}"
        )
    kept = f" for {retention_days} days unless renewed" if retention_days > 0 else ""
    remembered = (
        " It also remembers a few things you tell it about yourself and a short summary of each call, "
        f"per member, in this server{kept}; no audio and no transcript is kept. {_who_hears(recall)}"
        if memory_on
        else " Memory is off in this server: nothing is kept."
    )
    captions = (
        " Captions are on: what you say is also posted as text in this server's captions channel."
        if captions_on
        else ""
    )
    return (
        f"🎙️ **{persona_name} is listening in {channel_mention}.** What you say there is transcribed so "
        f"{persona_name} can talk with you.{remembered}{captions}\n{commands}"
    )


def _who_hears(recall: str) -> str:
    if recall == "speaker":
        return "It brings up what you told it only when it answers you (others in the call hear that answer)."
    return "It brings up what you told it only in calls you are in, so others in that call can hear it."


class ListeningNotice:
    """Whether the notice was given in the bot's voice channel, and which members it covers (see module doc).

    `covers` is called from the receive threads: it reads one immutable set. Changes happen on the loop."""

    def __init__(self, text_channel: Any = None, *, repost_s: float = REPOST_S) -> None:
        self.text_channel = text_channel  # where the text notice goes (the channel /join was used in)
        self.repost_s = repost_s
        self.channel_id: int | None = None  # the voice channel the notice was given for
        self.given_at: float | None = None
        self.posts = 0
        self.spoken = 0
        self._covered: frozenset[int] = frozenset()

    def covers(self, user_id: int) -> bool:
        return user_id in self._covered

    def covers_anyone(self) -> bool:
        return bool(self._covered) or self.given_at is not None

    def given(self, channel_id: int, members: Any, *, spoken: bool = False) -> None:
        """The notice was posted (or said) in `channel_id` with `members` (user ids) there."""
        if self.channel_id != channel_id:
            self._covered = frozenset()
        self.channel_id = channel_id
        self.given_at = time.monotonic()
        self._covered = self._covered | frozenset(members)
        if spoken:
            self.spoken += 1

    def moved(self, channel_id: int) -> None:
        """The bot is in another voice channel now: no one there is heard until the notice was given there."""
        if channel_id != self.channel_id:
            self.channel_id = None
            self._covered = frozenset()

    def recent(self, channel_id: int) -> bool:
        return (
            self.channel_id == channel_id
            and self.given_at is not None
            and time.monotonic() - self.given_at < self.repost_s
        )

    def cover(self, user_id: int) -> None:
        """A member who joined while a recent notice stands."""
        self._covered = self._covered | {user_id}

    async def post(self, text: str, channel_id: int, members: Any, *, guild_id: Any = "?") -> bool:
        """Post `text` in the text channel; on success it covers `members` in `channel_id`."""
        if not await post_to(self.text_channel, text, guild_id=guild_id):
            return False
        self.posts += 1
        self.given(channel_id, members)
        return True


def spoken_notice(persona_name: str) -> str:
    return "Quick note: I listen and transcribe this channel to talk with you. To opt out, use slash privacy opt out."


async def post_notice(interaction: Any, text: str) -> bool:
    """Post the notice in the channel of the /join interaction (visible to everyone). False if it could not be."""
    return await post_to(getattr(interaction, "channel", None), text, guild_id=getattr(interaction, "guild_id", "?"))


async def post_to(channel: Any, text: str, *, guild_id: Any = "?") -> bool:
    """Post `text` in `channel` for everyone; False (logged) if it could not be."""
    if channel is None or not hasattr(channel, "send"):
        return False
    try:
        import discord

        await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
        return True
    except Exception as exc:  # no Send Messages permission, a deleted channel: the ephemeral reply carries it
        log.warning("guild %s: listening notice not posted in the channel (%s: %s)", guild_id, type(exc).__name__, exc)
        return False


async def speak_notice(
    voice_client: Any, responder: Any, persona: Any, text: str, *, scheduler: Any = None, group: Any = None
) -> float:
    """Say `text` in the persona's voice on `voice_client` and wait until it was played. Returns seconds played
    (0 when it could not be said: the session starts anyway). `group`: the guild (its warm-up goes on)."""
    tts_for = getattr(responder, "tts_for", None)
    if tts_for is None or voice_client is None or not hasattr(voice_client, "play"):
        return 0.0
    from audio.playback import StreamPlayer

    player = StreamPlayer()
    cancel = threading.Event()

    def synthesize() -> None:
        tts = tts_for(persona)
        hold = (
            scheduler.hold("tts", owner="listening-notice", cancel=cancel, group=group)
            if scheduler is not None
            else None
        )
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
