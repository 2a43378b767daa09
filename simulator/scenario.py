"""A scenario on the loopback voice channel: the real chorus bot, joined by /join, with scripted members.

    async with bot_in_channel(settings, [ALICE, BOB]) as sc:     # server, ChorusBot, /join, VoiceSession
        said = await sc.say("Alice", "Juniper, what should I cook tonight?")   # real time, Opus + DAVE
        trace = await sc.wait_trace(lambda t: t.kind == "respond_now", done=True)
        sc.ears["Alice"].voiced_between(said.true_end, ...)     # the bot's audio as the member heard it

Everything on the bot side is the production path (`VoiceCog.join` → `connect_voice` →
`ChorusBot.start_voice_session` → `PrompterCog.make_session` → `VoiceSession` with the real receiver,
listener, responder and player). Members speak lines synthesized by chorus' own TTS engines
(`simulator.voices`), cached per process. Used by the scenario tests and the turn-taking benchmark.

`BotEars` records, per member, the arrival time of every voiced 20 ms packet of the bot (after DAVE
decryption and Opus decoding, what `SimMember.received_pcm` holds), so one can tell when the bot's voice
started and stopped reaching a member. `ListenerTap` records what reached the session's Listener (frames
per user, SpeakingEvents).

Settings (`scenario_settings`): greetings off, no topic starts, short cooldown and replies, one llama.cpp
thread (see BASE_ENV); each scenario turns on what it exercises. Timing is real time throughout: the
pipeline (VAD, STT, LLM, TTS, discord.py's 20 ms player) runs on real clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Sequence
from typing import cast as type_cast

import numpy as np

from runtime.settings import Settings, load_settings
from simulator import audio_files
from simulator.harness import connected_client
from simulator.member import FRAME_SECONDS, SimMember
from simulator.join_command import JoinInteraction, join_with_command, leave_voice
from simulator.server import LoopbackVoiceServer
from simulator.voices import ALICE, BOB, CHEN, CastMember, SpokenLine, synthesize_line, voiced_frames

log = logging.getLogger(__name__)

__all__ = [
    "ALICE",
    "BOB",
    "CHEN",
    "BotEars",
    "JoinInteraction",
    "ListenerTap",
    "Said",
    "Scenario",
    "bot_in_channel",
    "clip_voiced",
    "join_with_command",
    "scenario_settings",
    "spoken_line",
    "voiced_span",
    "write_persona",
]

# Waits are generous: on a loaded 2-core CI machine the LLM's first token can take seconds.
REPLY_TIMEOUT_S = 90.0
POLL_S = 0.02
SPEAKING_ACTIONS = ("respond_now", "start_topic", "notice", "greet", "farewell")

BASE_ENV = {
    "PROMPTER_GREET": "false",
    "PROMPTER_IDLE_TOPIC_S": "600",
    "PROMPTER_COOLDOWN_S": "2",
    "LLM_MAX_TOKENS": "48",
    # One llama.cpp thread: on 2 shared cores (CI) two spinning threads wait on each other whenever STT, TTS or
    # the event loop take a core, and generation becomes 20-100x slower (measured: 31 tokens in 5.4 s with one
    # thread, 111 s with two, on this 2-core machine under load).
    "LLM_THREADS": "1",
    # The spoken listening notice on /join is off unless a scenario exercises it (its audio would precede the
    # bot's first line in what members hear); the text notice is always posted.
    "PRIVACY_NOTICE_SPOKEN": "false",
}


def scenario_settings(tmp_path: Path, **env: str) -> Settings:
    """Settings for a scenario: greetings off and no topic starts unless asked, data in ``tmp_path``."""
    merged = {**BASE_ENV, **env}
    return load_settings(env=merged, env_file=None).replace(data_dir=tmp_path / "data")


def write_persona(folder: Path, *, max_words: int, max_sentences: int, source: Path | None = None) -> Path:
    """A copy of the default persona (Juniper) with a different reply length, in ``folder``."""
    from runtime.settings import PROJECT_ROOT

    source = source or PROJECT_ROOT / "personas" / "juniper.toml"
    text = source.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^max_words = \d+$", f"max_words = {max_words}", text)
    text = re.sub(r"(?m)^max_sentences = \d+$", f"max_sentences = {max_sentences}", text)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / source.name
    out.write_text(text, encoding="utf-8")
    return out


# --- member speech ---------------------------------------------------------------------------------------------

_LINES: dict[tuple[Any, str], SpokenLine] = {}
_LINES_LOCK = threading.Lock()


def spoken_line(settings: Settings, member: CastMember, text: str) -> SpokenLine:
    """The member's line, synthesized once per process (blocking: call it in a thread)."""
    key = (member.voice, text)
    with _LINES_LOCK:
        cached = _LINES.get(key)
    if cached is None:
        cached = synthesize_line(settings, member.voice, text)
        with _LINES_LOCK:
            _LINES[key] = cached
    return cached


def first_voiced_frame(pcm: np.ndarray) -> int:
    voiced = voiced_frames(pcm)
    return int(np.argmax(voiced)) if voiced.any() else 0


def clip_voiced(line: SpokenLine, seconds: float) -> np.ndarray:
    """The line cut to its first ``seconds`` of voice (plus the lead-in), with a 20 ms fade-out."""
    start = first_voiced_frame(line.pcm) * audio_files.FRAME_SAMPLES
    end = min(line.pcm.shape[0], start + int(seconds * audio_files.DISCORD_RATE))
    out = line.pcm[:end].astype(np.float32)
    fade = min(960, end - start)
    out[end - fade :] *= np.linspace(1.0, 0.0, fade)[:, None]
    return out.astype(np.int16)


@dataclass(frozen=True)
class Said:
    """One line a member sent: when its voice began and ended (send times of the packets, monotonic)."""

    name: str
    text: str
    start: float  # first packet due
    onset: float  # packet carrying the first voiced frame
    true_end: float  # packet carrying the last voiced frame (end)
    sent: int
    frames: int


# --- what a member hears of the bot --------------------------------------------------------------------------------


class BotEars:
    """Arrival times of the bot's voiced packets at one member (wraps `SimMember._on_bot_frame`)."""

    def __init__(self, member: SimMember) -> None:
        self.member = member
        self.voiced: list[float] = []
        self.packets: list[float] = []
        original = member._on_bot_frame

        def tap(from_user_id: int, ssrc: int, frame: bytes, arrival: float) -> None:
            before = member._heard.get(from_user_id)
            last = before.last_voiced if before is not None else None
            original(from_user_id, ssrc, frame, arrival)
            self.packets.append(arrival)
            heard = member._heard.get(from_user_id)
            if heard is not None and heard.last_voiced == arrival and heard.last_voiced != last:
                self.voiced.append(arrival)

        member._on_bot_frame = tap  # type: ignore[method-assign]

    def voiced_between(self, start: float, end: float = float("inf")) -> list[float]:
        return [t for t in self.voiced if start <= t < end]

    def voiced_seconds(self, start: float, end: float = float("inf")) -> float:
        return len(self.voiced_between(start, end)) * FRAME_SECONDS

    def first_after(self, t: float) -> float | None:
        later = self.voiced_between(t)
        return later[0] if later else None

    def pcm(self) -> np.ndarray:
        return self.member.received_pcm()


def voiced_span(pcm: np.ndarray) -> np.ndarray:
    """``pcm`` (48 kHz stereo int16) from its first to its last voiced 20 ms frame."""
    voiced = voiced_frames(pcm)
    if not voiced.any():
        return pcm[:0]
    n = audio_files.FRAME_SAMPLES
    first = int(np.argmax(voiced))
    last = int(len(voiced) - 1 - np.argmax(voiced[::-1]))
    return np.ascontiguousarray(pcm[first * n : (last + 1) * n])


class ListenerTap:
    """What reaches the session's Listener: every fed frame (user id, frame time, feed time) and every
    SpeakingEvent with its delivery time. Installed on the listener instance (its `feed` and callback)."""

    def __init__(self, listener: Any) -> None:
        self.frames: list[tuple[int, float, float, float]] = []  # (user id, frame.t, fed at, peak)
        self.speaking: list[tuple[Any, float]] = []  # (SpeakingEvent, delivered at)
        feed, on_speaking = listener.feed, listener.on_speaking

        def tapped_feed(frame: Any) -> None:
            peak = float(np.abs(frame.pcm).max()) if getattr(frame.pcm, "size", 0) else 0.0
            self.frames.append((frame.user_id, frame.t, time.monotonic(), peak))
            feed(frame)

        def tapped_speaking(event: Any) -> None:
            self.speaking.append((event, time.monotonic()))
            on_speaking(event)

        listener.feed = tapped_feed
        listener.on_speaking = tapped_speaking

    def user_ids(self) -> set[int]:
        return {uid for uid, *_ in self.frames}

    def starts(self, user_id: int, since: float = 0.0) -> list[tuple[float, float]]:
        """(event time, delivery time) of ``user_id``'s speech starts after ``since``."""
        return [(e.t, at) for e, at in self.speaking if e.user_id == user_id and e.speaking and e.t >= since]

    def first_loud_frame(self, user_id: int, since: float, peak: float = 0.02) -> tuple[float, float] | None:
        """(frame.t, fed at) of the first frame of ``user_id`` after ``since`` with a peak above ``peak``."""
        for uid, t, fed, p in self.frames:
            if uid == user_id and t >= since and p >= peak:
                return t, fed
        return None


# --- the scenario ------------------------------------------------------------------------------------------------


@dataclass
class Scenario:
    settings: Settings
    server: LoopbackVoiceServer
    bot: Any
    guild: Any
    session: Any
    cast: dict[str, CastMember]
    members: dict[str, SimMember]
    ears: dict[str, BotEars] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    heard: ListenerTap | None = None

    # -- members ------------------------------------------------------------------------
    async def line(self, name: str, text: str) -> SpokenLine:
        return await asyncio.to_thread(spoken_line, self.settings, self.cast[name], text)

    async def say(self, name: str, text: str, *, at: float | None = None, audio: np.ndarray | None = None) -> Said:
        """``name`` says ``text`` (or sends ``audio``, 48 kHz stereo int16) in real time; returns when sent."""
        member = self.members[name]
        pcm = audio if audio is not None else (await self.line(name, text)).pcm
        voiced = voiced_frames(pcm)
        first = int(np.argmax(voiced)) if voiced.any() else 0
        last = int(len(voiced) - 1 - np.argmax(voiced[::-1])) if voiced.any() else 0
        report = await member.speak(pcm, at=at if at is not None else time.monotonic() + 0.02)
        log.info("scenario: %s said %r (%d/%d packets)", name, text, report.sent, report.frames)
        return Said(
            name,
            text,
            report.start,
            report.start + first * FRAME_SECONDS,
            report.start + (last + 1) * FRAME_SECONDS,
            report.sent,
            report.frames,
        )

    async def join(self, cast: CastMember) -> SimMember:
        """A member joins the channel mid-session (voice state update + DAVE group change)."""
        member = await self.server.add_member(cast.user_id, cast.name)
        self.cast[cast.name] = cast
        self.members[cast.name] = member
        self.ears[cast.name] = BotEars(member)
        return member

    # -- observation -----------------------------------------------------------------------
    def decisions(self, since: float = 0.0, actions: Iterable[str] = SPEAKING_ACTIONS) -> list[Any]:
        wanted = set(actions)
        return [d for t, d in list(self.session.decisions) if t >= since and d.action.value in wanted]

    def traces(self, since: float = 0.0) -> list[Any]:
        return [t for t in list(self.session.traces) if t.decided >= since]

    def human_lines(self, since: float = 0.0) -> list[Any]:
        return [ln for ln in self.session.room.history if not ln.is_bot and ln.end >= since]

    def bot_lines(self, since: float = 0.0) -> list[Any]:
        return [ln for ln in self.session.room.history if ln.is_bot and ln.end >= since]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = REPLY_TIMEOUT_S, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what or predicate}; {self.describe()}"
                )
            await asyncio.sleep(POLL_S)

    async def wait_trace(
        self,
        match: Callable[[Any], bool] = lambda t: True,
        *,
        since: float = 0.0,
        done: bool = True,
        timeout: float = REPLY_TIMEOUT_S,
    ) -> Any:
        """The first bot line (TurnTrace) decided after ``since`` that matches; with ``done``, once it ended."""

        def found() -> Any:
            for trace in self.traces(since):
                if match(trace) and (not done or trace.outcome != "pending"):
                    return trace
            return None

        return await self.wait_for(found, timeout, "a bot line")

    async def wait_heard(self, name: str, since: float, timeout: float = REPLY_TIMEOUT_S) -> float:
        """Arrival of the first voiced bot packet at ``name`` after ``since``."""
        ears = self.ears[name]
        return await self.wait_for(lambda: ears.first_after(since), timeout, f"the bot's voice at {name}")

    async def wait_idle(self, timeout: float = REPLY_TIMEOUT_S, quiet_s: float = 0.3) -> None:
        """Until the bot has no line in progress for ``quiet_s``."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while True:
            now = time.monotonic()
            if self.session.room.turn is None:
                quiet_since = quiet_since or now
                if now - quiet_since >= quiet_s:
                    return
            else:
                quiet_since = None
            if now > deadline:
                raise AssertionError(f"the bot did not go idle in {timeout:.0f} s; {self.describe()}")
            await asyncio.sleep(POLL_S)

    def describe(self) -> str:
        session = self.session
        return (
            f"room={session.room.describe(time.monotonic())}, "
            f"history={[(ln.name, ln.text) for ln in session.room.history]}, "
            f"decisions={[(round(t - self.started, 2), d.log_fields()) for t, d in list(session.decisions)]}, "
            f"traces={[(t.kind, t.outcome, t.text[:80]) for t in list(session.traces)]}"
        )


@contextlib.asynccontextmanager
async def bot_in_channel(
    settings: Settings,
    present: Sequence[CastMember],
    *,
    synthesize: Iterable[tuple[str, str]] = (),
    session_parts: Callable[[Any, Any], Any] | None = None,
    connect_timeout_s: float | None = None,
) -> AsyncIterator[Scenario]:
    """The loopback server with ``present`` in the channel, a real ChorusBot that joined by /join.

    ``synthesize``: (member name, text) lines to synthesize before the bot joins (off the clock).
    ``session_parts``: replaces `PrompterCog.session_parts` ((cog, guild) -> kwargs), for tests that observe a part.
    ``connect_timeout_s``: the voice cog's connect timeout (discord.py keeps it for reconnects and resumes).
    """
    from bot.client import ChorusBot
    from bot.voice_session import VoiceSession

    cast = {c.name: c for c in present}
    for name, text in synthesize:
        await asyncio.to_thread(
            spoken_line, settings, cast.get(name) or {c.name: c for c in (ALICE, BOB, CHEN)}[name], text
        )
    async with LoopbackVoiceServer() as server:
        members = {c.name: await server.add_member(c.user_id, c.name) for c in present}
        bot = ChorusBot(settings)
        async with connected_client(server, client=bot):
            await bot.setup_hook()
            if session_parts is not None:
                cog = bot.get_cog("PrompterCog")
                assert cog is not None
                type_cast(Any, cog).session_parts = lambda guild, _cog=cog: session_parts(_cog, guild)
            if connect_timeout_s is not None:
                type_cast(Any, bot.get_cog("VoiceCog")).connect_timeout_s = connect_timeout_s
            guild = bot.get_guild(server.guild_id)
            session = await asyncio.wait_for(join_with_command(bot, guild, present[0].user_id), 120)
            assert isinstance(session, VoiceSession), type(session)
            try:
                await server.wait_dave_settled(60)
                sc = Scenario(
                    settings,
                    server,
                    bot,
                    guild,
                    session,
                    dict(cast),
                    members,
                    {name: BotEars(m) for name, m in members.items()},
                    heard=ListenerTap(session.listener),
                )
                yield sc
            finally:
                await leave_voice(bot, guild)
