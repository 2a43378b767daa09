"""A scripted conversation between simulated members and the real chorus bot, on the loopback channel.

Shared by the offline demo (`simulator.demo`), the end-to-end benchmark (`benchmarks.e2e_bench`) and
`tests/test_demo_e2e.py`:

    convo = ScriptedConversation(settings, DEFAULT_CAST[:2], [
        Line("Alice", "Hey Juniper, what should I cook tonight?"),
        Line("Bob", "I think it might rain this weekend.", expect_reply=False),
    ], out_dir=Path("out/demo"), on_event=print)
    result = await convo.run()          # ConversationResult: .turns, .to_json(), channel.wav + turns.json written

What runs: `simulator.LoopbackVoiceServer`, a real `ChorusBot` with its real cogs (data in a temp folder)
wired to it by `simulator.connected_client`, and the bot joins through the `/join` command's own
callback (`VoiceCog.join` → `connect_voice` → `ChorusBot.start_voice_session` → the prompter cog's
`VoiceSession`). Member lines are synthesized up front (`simulator.voices`) and sent in real time,
Opus + DAVE + transport encryption, one member at a time; after each line the runner waits for the
bot's reply to be fully played (or a timeout) before the next line.

Per turn (`simulator.replies.ReplyWatch`) it records the TRUE end of the member's speech (the send time of the packet that carries the
last voiced 20 ms frame, from the `SpeakReport` and the synthesized audio), the session's `TurnTrace`
stages, the arrival of the bot's first voiced packet at a member (the Discord edge: the first cast
member's copy, Opus-decoded after DAVE decryption; every member gets the same packets at once), what
chorus heard (its final transcripts) and what it said. Latency of a turn = true end of speech → the
bot's first voiced packet heard by the member.

`warm_up=True` runs the session responder's `warm_up(persona)` (voice loaded, persona prompt in the LLM's
cache) before the first line, as in a bot that has been running for a while. `session_parts`, when given,
replaces `PrompterCog.session_parts` (the seam for swapping a session's responder, player or listener
factory, e.g. the benchmark's seed-style baseline).
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence, cast

import numpy as np

from runtime.settings import Settings
from simulator import audio_files
from simulator.channel_recording import WAV_RATE, ArrivalTap, channel_mix, voiced_seconds, write_wav
from simulator.harness import connected_client
from simulator.join_command import ScriptError, join_with_command, leave_voice
from simulator.member import FRAME_SECONDS, SimMember
from simulator.replies import TERMINAL, ReplyRecord, ReplyWatch, TurnRecord
from simulator.server import LoopbackVoiceServer
from simulator.voices import CastMember, SpokenLine, synthesize_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Line:
    """One scripted line. ``pause_s``: silence after the bot's reply (or after the line, when none
    comes) before the next line. ``warmup``: played but left out of statistics."""

    speaker: str
    text: str
    expect_reply: bool = True
    pause_s: float = 0.8
    warmup: bool = False


@dataclass
class ScriptEvent:
    """What the runner reports as it goes (for a live display). kind: status | ready | line | heard |
    bot_start | bot_line | unanswered | quiet (the bot let a line meant for others pass) | done."""

    kind: str
    speaker: str = ""
    text: str = ""
    latency_s: float | None = None
    detail: str = ""


@dataclass
class ConversationResult:
    label: str
    bot_name: str
    settings: dict[str, Any]
    cast: list[dict[str, Any]]
    turns: list[TurnRecord]
    bot_initiated: list[ReplyRecord]  # lines before the script (greeting)
    wall_s: float
    receive_stats: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    bot_audio_s: float = 0.0
    bot_audio_peak: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "bot": self.bot_name,
            "settings": self.settings,
            "cast": self.cast,
            "turns": [t.as_dict() for t in self.turns],
            "bot_initiated": [asdict(r) for r in self.bot_initiated],
            "wall_s": round(self.wall_s, 2),
            "bot_audio_s": round(self.bot_audio_s, 2),
            "bot_audio_peak": self.bot_audio_peak,
            "receive_stats": self.receive_stats,
            "files": self.files,
        }


SessionParts = Callable[[Any, Any], Awaitable[dict[str, Any]]]  # (cog, guild) -> VoiceSession kwargs
EventSink = Callable[[ScriptEvent], None]


# --- the runner ---------------------------------------------------------------------------------------------------


class ScriptedConversation:
    def __init__(
        self,
        settings: Settings,
        cast: Sequence[CastMember],
        script: Sequence[Line],
        *,
        out_dir: Path | None = None,
        label: str = "conversation",
        session_parts: SessionParts | None = None,
        on_event: EventSink | None = None,
        reply_timeout_s: float = 60.0,
        unprompted_watch_s: float | None = None,
        greeting_timeout_s: float = 60.0,
        connect_timeout_s: float = 60.0,
        warm_up: bool = False,
    ) -> None:
        names = {c.name for c in cast}
        missing = sorted({line.speaker for line in script} - names)
        if missing:
            raise ScriptError(f"script speakers not in the cast: {', '.join(missing)}")
        if len({c.user_id for c in cast}) != len(cast):
            raise ScriptError("cast members need distinct user ids")
        self.settings = settings
        self.cast = list(cast)
        self.script = list(script)
        self.out_dir = out_dir
        self.label = label
        self.session_parts = session_parts
        self.on_event = on_event
        self.reply_timeout_s = reply_timeout_s
        # No reply expected: how long after the line is transcribed to watch for the bot joining in anyway.
        self.unprompted_watch_s = (
            unprompted_watch_s if unprompted_watch_s is not None else settings.group_silence_ms / 1000.0 + 1.5
        )
        self.greeting_timeout_s = greeting_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.warm_up = warm_up  # load the voice and prime the LLM's prompt cache before the first line
        self._seen_lines: set[tuple[int, str]] = set()
        self._announced: dict[int, str] = {}  # id(trace) -> last stage announced

    # -- events --------------------------------------------------------------------------
    def _emit(self, kind: str, **data: Any) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(ScriptEvent(kind, **data))
        except Exception:
            log.exception("scripted conversation: event display failed")

    # -- setup ---------------------------------------------------------------------------
    def _synthesize_all(self) -> list[SpokenLine]:
        voices = {c.name: c.voice for c in self.cast}
        return [synthesize_line(self.settings, voices[line.speaker], line.text) for line in self.script]

    async def run(self) -> ConversationResult:
        started = time.monotonic()
        self._emit("status", text="synthesizing the members' lines")
        spoken = await asyncio.to_thread(self._synthesize_all)
        with tempfile.TemporaryDirectory(prefix="chorus-scripted-") as tmp:
            settings = self.settings.replace(data_dir=Path(tmp) / "data")
            result = await self._run_with(settings, spoken)
        result.wall_s = time.monotonic() - started
        if self.out_dir is not None:
            self._emit("status", text="writing the channel recording")
            result.files = await asyncio.to_thread(self._write_files, result)
        self._emit("done", text=f"{len(result.turns)} turns")
        return result

    async def _run_with(self, settings: Settings, spoken: list[SpokenLine]) -> ConversationResult:
        from bot.client import ChorusBot
        from bot.voice_session import VoiceSession

        async with LoopbackVoiceServer() as server:
            members: dict[str, SimMember] = {}
            for c in self.cast:
                members[c.name] = await server.add_member(c.user_id, c.name)
            self._listener = members[self.cast[0].name]
            tap = self._tap = ArrivalTap(self._listener)
            self._current_end: float | None = None
            bot = ChorusBot(settings)
            async with connected_client(server, client=bot):
                self._emit("status", text="loading models and joining the voice channel")
                await bot.setup_hook()  # personas and cogs, as at login
                if self.session_parts is not None:
                    cog = bot.get_cog("PrompterCog")
                    if cog is None:
                        raise ScriptError("the prompter cog did not load; cannot substitute session parts")
                    parts = self.session_parts
                    cast(Any, cog).session_parts = lambda guild, _cog=cog: parts(_cog, guild)  # instance seam
                guild = bot.get_guild(server.guild_id)
                session = await asyncio.wait_for(self._join(bot, guild), self.connect_timeout_s)
                if not isinstance(session, VoiceSession):
                    raise ScriptError(f"the bot joined but built no voice session ({type(session).__name__})")
                try:
                    await server.wait_dave_settled(self.connect_timeout_s)
                    warm = getattr(session.responder, "warm_up", None) if self.warm_up else None
                    if warm is not None:  # as a bot that has been running a while is
                        self._emit("status", text="warming up the models")
                        await asyncio.to_thread(warm, session.persona)
                    t0 = time.monotonic()
                    self._t0 = t0
                    bot_name = session.persona.name
                    self._emit("ready", speaker=bot_name, text=", ".join(c.name for c in self.cast))
                    self._watch = ReplyWatch(
                        session,
                        tap.first_voiced_after,
                        reply_timeout_s=self.reply_timeout_s,
                        unprompted_watch_s=self.unprompted_watch_s,
                        on_poll=lambda: self._poll(session),
                    )
                    greeting = await self._watch.settle(origin=None, timeout=self.greeting_timeout_s)
                    turns: list[TurnRecord] = []
                    for index, (line, audio) in enumerate(zip(self.script, spoken)):
                        turns.append(await self._play_line(index, line, audio, members[line.speaker], session))
                    receive_stats = _stats_of(session)
                    heard_pcm = self._listener.received_pcm()
                    starts = self._listener.utterance_starts()
                    self._member_audio = [(t.start_s, a.pcm) for t, a in zip(turns, spoken)]
                    self._bot_audio = (heard_pcm, starts, list(tap.arrivals))
                    gaps = np.diff(np.asarray(tap.arrivals)) if len(tap.arrivals) > 1 else np.zeros(0)
                    receive_stats["member_heard"] = {
                        "packets": len(tap.arrivals),
                        "gaps_over_100ms": int((gaps > 0.1).sum()),
                        "longest_gap_s": round(float(gaps.max()), 3) if gaps.size else 0.0,
                        "seconds": round(heard_pcm.shape[0] / audio_files.DISCORD_RATE, 2),
                        "session_s": round(time.monotonic() - t0, 2),
                        **self._listener.stats,
                    }
                finally:
                    await leave_voice(bot, guild)
        peak = int(np.abs(heard_pcm).max()) if heard_pcm.size else 0
        return ConversationResult(
            label=self.label,
            bot_name=bot_name,
            settings=_settings_summary(settings),
            cast=[{"name": c.name, "user_id": c.user_id, "voice": c.voice.describe()} for c in self.cast],
            turns=turns,
            bot_initiated=greeting,
            wall_s=0.0,
            receive_stats=receive_stats,
            bot_audio_s=voiced_seconds(heard_pcm),
            bot_audio_peak=peak,
        )

    async def _join(self, bot: Any, guild: Any) -> Any:
        """Run the /join command's callback for the first cast member (who is in the voice channel)."""
        return await join_with_command(bot, guild, self.cast[0].user_id)

    # -- one line ------------------------------------------------------------------------------
    async def _play_line(
        self, index: int, line: Line, audio: SpokenLine, member: SimMember, session: Any
    ) -> TurnRecord:
        self._emit("line", speaker=line.speaker, text=line.text)
        self._current_end = None
        report = await member.speak(audio.pcm, at=time.monotonic() + 0.02)
        self._emit("status", text=f"{session.persona.name} is listening")
        true_end = report.start + audio.last_voiced_frame * FRAME_SECONDS  # send time of the last voiced packet
        self._current_end = true_end
        turn = TurnRecord(
            index=index,
            speaker=line.speaker,
            said=line.text,
            expect_reply=line.expect_reply,
            warmup=line.warmup,
            start_s=report.start - self._t0,
            true_end_s=true_end - self._t0,
            speech_s=audio.voiced_s,
        )
        if report.sent < report.frames:
            log.warning("%s: %d of %d packets not sent", line.speaker, report.frames - report.sent, report.frames)
        await self._watch.follow(turn, user_id=member.user_id, start=report.start, true_end=true_end)
        answered = turn.answer is not None
        if turn.status == "failed":
            self._emit("unanswered", speaker=line.speaker, detail="waiting for the reply failed (see the log)")
            return turn
        if line.expect_reply and not answered:
            self._emit(
                "unanswered",
                speaker=line.speaker,
                detail=", ".join(f"{r.kind}:{r.outcome}" for r in turn.replies) or "no reply started",
            )
        elif not line.expect_reply and not answered:
            self._emit("quiet", speaker=session.persona.name, text=line.speaker)
        await asyncio.sleep(line.pause_s)
        self._poll(session)
        return turn

    # -- observation ------------------------------------------------------------------------------
    def _poll(self, session: Any) -> None:
        """Report new transcripts and the bot's lines as they happen (for the live display)."""
        for line in list(session.room.history):
            key = (line.seq, line.text)
            if not line.is_bot and key not in self._seen_lines:  # new, or grown by a merged segment
                self._seen_lines.add(key)
                self._emit("heard", speaker=line.name, text=line.text)
        for trace in list(session.traces):
            trace_key = id(trace)
            stage = self._announced.get(trace_key)
            if stage is None and "first_packet" in trace.times:
                self._announced[trace_key] = "start"
                end = self._current_end
                latency = self._heard_after(trace.times["first_packet"]) - end if end is not None else None
                self._emit("bot_start", speaker=session.persona.name, latency_s=latency, detail=trace.kind)
            if self._announced.get(trace_key) != "done" and trace.outcome in TERMINAL:
                self._announced[trace_key] = "done"
                if trace.outcome in ("spoken", "interrupted") or trace.text:
                    end = self._current_end
                    latency = (
                        self._heard_after(trace.times["first_packet"]) - end
                        if end is not None and "first_packet" in trace.times
                        else None
                    )
                    self._emit(
                        "bot_line",
                        speaker=session.persona.name,
                        text=trace.text,
                        latency_s=latency,
                        detail=f"{trace.kind}/{trace.outcome}",
                    )

    def _heard_after(self, first_packet: float) -> float:
        """Arrival of the first voiced bot packet at the first cast member after ``first_packet`` (else that)."""
        heard = self._tap.first_voiced_after(first_packet)
        return heard if heard is not None else first_packet

    # -- files ------------------------------------------------------------------------------------
    def _write_files(self, result: ConversationResult) -> dict[str, str]:
        assert self.out_dir is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        wav_path = self.out_dir / "channel.wav"
        json_path = self.out_dir / "turns.json"
        mix = channel_mix(self._member_audio, *self._bot_audio, origin=self._t0)
        write_wav(wav_path, mix, WAV_RATE)
        files = {"channel_wav": str(wav_path), "turns_json": str(json_path)}
        payload = result.to_json()
        payload["files"] = files
        json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        return files


def _stats_of(session: Any) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    receiver = getattr(session, "receiver", None)
    if receiver is not None and hasattr(getattr(receiver, "stats", None), "as_dict"):
        stats["receive"] = receiver.stats.as_dict()
    listener = getattr(session, "listener", None)
    if listener is not None and hasattr(getattr(listener, "stats", None), "as_dict"):
        stats["listener"] = listener.stats.as_dict()
    return stats


def _settings_summary(settings: Settings) -> dict[str, Any]:
    keys = (
        "default_persona",
        "stt_model",
        "stt_compute_type",
        "vad_end_silence_ms",
        "vad_threshold",
        "llm_backend",
        "llm_model",
        "llm_context",
        "llm_threads",
        "llm_max_tokens",
        "tts_engine",
        "scheduler_policy",
        "reply_silence_ms",
        "preemptive_start",
        "greet_members",
    )
    return {
        k: (str(getattr(settings, k)) if isinstance(getattr(settings, k), Path) else getattr(settings, k)) for k in keys
    }
