"""The bot's lines, one at a time: start a decided line, hold or release an early start, pause and resume
it, let it play out, end or cancel it, and keep each line's `TurnTrace`.

`LineRunner` acts on the prompter's decisions (`bot.prompter_loop`): `begin` runs `Responder.respond`
streaming into the player through a `TurnSink`; `confirm` releases an early start; `cancel` yields the floor
(flush the player, cancel the generation, keep what was heard).

Threading: the responder may call its sink from worker threads; the sink hops to the event loop with
`on_loop` for room bookkeeping and feeds the (thread-safe) player directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections import deque
from typing import Any, Callable, Iterable, Protocol

import numpy as np

from bot.prefill import ReplyPrefill
from brain.reply_result import ReplyResult
from bot.turn_sink import TurnSink, TurnTrace, history_lines
from bot.voice_output import VoiceOutput
from conversation.bot_turn import BotTurn
from conversation.clock import Clock
from conversation.decision import Action, Decision
from conversation.room import Room
from conversation.room_lines import RoomLine
from conversation.situation import situation_for
from runtime.shedding import ShedLog

log = logging.getLogger(__name__)

MAX_TRACES = 100
DRAIN_POLL_S = 0.02
DRAIN_MARGIN_S = 3.0


class PlayerLike(Protocol):
    on_first_packet: Callable[[float], None] | None

    @property
    def seconds_played(self) -> float: ...

    def feed(self, pcm: np.ndarray, rate: int) -> None: ...
    def end_of_utterance(self) -> None: ...
    def flush(self) -> float: ...
    @property
    def is_playing_audio(self) -> bool: ...
    @property
    def queued_seconds(self) -> float: ...


class ResponderLike(Protocol):
    async def respond(self, persona: Any, history: Any, *, situation: str, sink: Any) -> Any: ...


class LineRunner:
    """Speaks the bot's lines in one guild's room; `persona` is read per line (it may change live)."""

    def __init__(
        self,
        *,
        room: Room,
        clock: Clock,
        responder: ResponderLike,
        player: PlayerLike,
        output: VoiceOutput,
        prefill: ReplyPrefill,
        persona: Callable[[], Any],
        caption: Callable[[str], None],
        poke: Callable[[], None],
        guild_id: int = 0,
        metrics: Any = None,
        script: Callable[[Decision], str | None] = lambda decision: None,
    ) -> None:
        self.room = room
        self.clock = clock
        self.responder = responder
        self.player = player
        self.output = output
        self.prefill = prefill
        self.guild_id = guild_id
        self.metrics = metrics  # runtime.metrics.GuildMetrics: each line's stage times, when metrics are on
        self.shedding = ShedLog("prepare", label=f"guild {guild_id}", level=logging.INFO)  # replies not prepared
        self._not_prepared_seq: int | None = None
        self._persona = persona
        self._caption = caption
        self._poke = poke  # a line ended: the rules may decide differently now
        self._names_kw = _accepts(responder.respond, "member_names")  # stop strings for everyone present
        self._script = script  # the words of a line spoken as written (the notice, a greeting), else None
        self._script_kw = _accepts(responder.respond, "script")
        self._result_kw = _accepts(responder.respond, "result")  # the reply's timings, readable after a cancel
        self._group_kw = _accepts(responder.respond, "group")  # the guild its model work is for (scheduler)
        self._progress: ReplyResult | None = None
        self.traces: deque[TurnTrace] = deque(maxlen=MAX_TRACES)
        self._turn_task: asyncio.Task | None = None
        self._sink: TurnSink | None = None
        self._trace: TurnTrace | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def attach_loop(self) -> None:
        """Calls from other threads hop to the running event loop from now on."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    # --- acting on decisions ---------------------------------------------------------------------
    def may_prepare(self, decision: Decision) -> bool:
        """A reply prepared during a wait is extra work: not while other guilds' replies fill every model slot
        (it would queue among them, delaying theirs for one that may be dropped). Counted once per line."""
        scheduler = getattr(self.responder, "scheduler", None)
        if scheduler is None or not scheduler.slots_taken_elsewhere(self.guild_id):
            return True
        if decision.reply_to_seq != self._not_prepared_seq:
            self._not_prepared_seq = decision.reply_to_seq
            self.shedding.shed("models busy")
        return False

    def begin(self, decision: Decision, now: float) -> None:
        room = self.room
        basis_text = None
        lines: Iterable[RoomLine] = room.history
        if decision.preemptive and not decision.prepared and decision.member_id is not None:
            member = room.members[decision.member_id]
            basis_text = member.partial.text if member.partial else ""
            if member.partial is not None:
                lines = room.history_with(member.partial)
        # a prefill prepares the reply to one member: any other line makes it stale
        replying_to = decision.member_id if decision.action is Action.RESPOND_NOW else None
        self.prefill.stale("the bot began another line", unless_for=replying_to)
        turn = room.bot_begin(
            decision.action.value,
            now,
            reply_to_seq=decision.reply_to_seq,
            preemptive=decision.preemptive,
            basis_user_id=decision.member_id if decision.preemptive else None,
            basis_text=basis_text,
            to_member=decision.member_id if decision.action is Action.GREET else None,
        )
        if decision.action is Action.GREET:
            if decision.member_id is None:
                room.room_greeted = True
                for member in room.members.values():  # the room's hello covers everyone here now
                    member.greeted = True
            elif decision.member_id in room.members:
                room.members[decision.member_id].greeted = True
        elif decision.action is Action.NOTICE:
            room.notice_pending = False  # said once: whoever talks over it has the floor, the text notice stands
        elif decision.action is Action.FAREWELL:
            for departure in room.departures:
                if departure.user_id == decision.member_id:
                    departure.handled = True
        trace = TurnTrace(decision.action.value, decision.reason, now, rule=decision.rule)
        trace.times["decided"] = now
        self._add_speech_times(trace, decision)
        self.traces.append(trace)
        self._trace = trace
        situation = situation_for(decision, room, self._persona(), now)
        history = history_lines(lines)
        script = self._script(decision)
        sink = TurnSink(self, turn, trace, hold=decision.preemptive)
        self._sink = sink
        self._turn_task = asyncio.create_task(
            self._run(turn, sink, trace, history, situation, script), name=f"turn-{self.guild_id}"
        )

    def _add_speech_times(self, trace: TurnTrace, decision: Decision) -> None:
        member = self.room.members.get(decision.member_id) if decision.member_id is not None else None
        if member is None:
            return
        if decision.preemptive and not decision.prepared:  # an early start on a partial
            if member.paused and member.partial is not None:
                trace.times["speech_end"] = member.partial.end  # their last voice before this pause
            elif member.last_speech_end is not None:
                trace.times["speech_end"] = member.last_speech_end
            if member.partial is not None:
                trace.times.update({f"partial_{k}": v for k, v in member.partial.timings.items() if k != "speech_end"})
            return
        final = member.last_final
        if final is not None:
            trace.times["speech_end"] = final.timings.get("speech_end", final.end)
            trace.times.update({k: v for k, v in final.timings.items() if k != "speech_end"})

    def duck(self, decision: Decision, now: float) -> None:
        """Someone speaks over the line: its voice goes on, turned down, while the room listens."""
        if self.room.turn is None or decision.member_id is None:
            return
        self.room.bot_duck(now, decision.member_id)
        self.output.duck()
        if self._trace is not None:
            self._trace.ducks.append(now)

    def pause(self, decision: Decision, now: float) -> None:
        """Someone speaks over the line: its voice stops now (what is queued stays), the room listens."""
        if self.room.turn is None or decision.member_id is None:
            return
        self.room.bot_pause(now, decision.member_id)
        self.output.pause()
        if self._trace is not None:
            self._trace.times["paused"] = now  # the latest pause (with "resumed": its length)
            self._trace.pauses += 1

    def resume(self, now: float) -> None:
        """It was a backchannel: the line goes on where its voice stopped."""
        self.room.bot_resume()
        self.output.resume()
        if self._trace is not None:
            self._trace.times["resumed"] = now

    def confirm(self, decision: Decision, now: float) -> None:
        if self.room.turn is None or self._sink is None:
            return
        self.room.bot_confirm(decision.reply_to_seq or self.room.responded_to_seq, now)
        if self._trace is not None:
            self._trace.times["confirmed"] = now
            member = self.room.members.get(decision.member_id) if decision.member_id is not None else None
            if member is not None and member.last_final is not None:
                for key, value in member.last_final.timings.items():  # final, vad_end, stt_*: the final's own
                    if key != "speech_end":
                        self._trace.times.setdefault(key, value)
                self._trace.times.setdefault("final", now)
        self._sink.release()

    async def _run(
        self,
        turn: BotTurn,
        sink: TurnSink,
        trace: TurnTrace,
        history: list[Any],
        situation: str,
        script: str | None = None,
    ) -> None:
        try:
            trace.times["request"] = self.clock.now()
            extra: dict[str, Any] = (
                {"member_names": [m.name for m in self.room.members.values()]} if self._names_kw else {}
            )
            if script is not None and self._script_kw:
                extra["script"] = script
            if self._result_kw:
                extra["result"] = self._progress = ReplyResult()
            if self._group_kw:
                extra["group"] = self.guild_id
            scheduler = getattr(self.responder, "scheduler", None)  # a reply: background LLM work gives way
            foreground = scheduler.foreground(self.guild_id) if scheduler is not None else contextlib.nullcontext()
            with foreground:
                result = await self.responder.respond(self._persona(), history, situation=situation, sink=sink, **extra)
            for key, value in (getattr(result, "timings", None) or {}).items():
                trace.times.setdefault(key, value)
            reply_text = getattr(result, "text", None)
            if not turn.fragments and reply_text:
                turn.add_text(result.text)  # the responder did not stream text to the sink
            sink.done()
            # Wait until the line is confirmed (early start) and fully played. A player nobody pulls
            # (voice dropped) must not keep the bot "speaking" forever: give up after its length + margin.
            drain_deadline: float | None = None
            while sink.holding or self.player.is_playing_audio:
                if self.room.turn is turn and turn.paused_since is not None:
                    drain_deadline = None  # paused while someone speaks: the rules decide when it goes on
                elif not sink.holding:
                    if drain_deadline is None:
                        # What is still queued, not the line's length minus seconds_played: the player
                        # resets that only when the new line's first packet goes out.
                        drain_deadline = self.clock.now() + self.player.queued_seconds + DRAIN_MARGIN_S
                    elif self.clock.now() > drain_deadline:
                        log.warning("guild %s: playback did not drain; ending the line", self.guild_id)
                        self.player.flush()
                        break
                await self.clock.sleep(DRAIN_POLL_S)
            trace.outcome = "spoken" if turn.speaking_since is not None else "silent"
            self.output.stop_playing()
            self._finish(turn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            trace.outcome = "failed"
            log.error(
                "guild %s: reply failed (%s: %s)",
                self.guild_id,
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            sink.close()
            self.player.flush()
            self._finish(turn)

    def _finish(
        self,
        turn: BotTurn,
        *,
        discard: bool = False,
        keep_answered: bool = False,
        seconds_played: float | None = None,
        interrupted: bool = False,
    ) -> RoomLine | None:
        if self.room.turn is not turn:
            return None
        self.output.resume()  # a line that ended turned down or paused: the next one starts at full voice
        reply_to = turn.reply_to_seq
        line = self.room.bot_end(
            self.clock.now(), seconds_played=seconds_played, discard=discard, interrupted=interrupted
        )
        if keep_answered and reply_to is not None:
            self.room.responded_to_seq = max(self.room.responded_to_seq, reply_to)
        trace = self._trace
        if trace is not None:
            trace.times["end"] = self.clock.now()
            trace.text = line.text if line is not None else ""
            trace.audio_s = round(turn.audio_s, 3)
            log.info(
                "guild %s turn %s (%s): %s | %d words | %s",
                self.guild_id,
                trace.kind,
                trace.outcome,
                trace.reason,
                len(trace.text.split()),
                trace.relative_ms(),
            )
            log.debug("guild %s: the bot said (DEBUG only): %r", self.guild_id, trace.text[:200])
            if self.metrics is not None:
                self.metrics.observe_turn(trace.times, trace.outcome)
        if line is not None:
            self._caption(f"**{line.name}**: {line.text}")
        self._sink = None
        self._turn_task = None
        self._trace = None
        self._progress = None
        self._poke()
        return line

    async def cancel(self, reason: str, *, discard: bool) -> None:
        """Barge-in or a dropped early start: cut playback, cancel generation, keep what was heard."""
        turn = self.room.turn
        task, sink = self._turn_task, self._sink
        if sink is not None:
            sink.close()
        played = self.player.seconds_played
        speaking = turn is not None and turn.speaking_since is not None
        dropped = self.player.flush() if (speaking or sink is not None) else 0.0
        self.output.resume()  # nothing is queued any more; the next line must not start paused
        if speaking:
            self.output.stop_playing()
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if turn is None:
            return
        if self._trace is not None:
            self._trace.outcome = "interrupted" if speaking else "discarded"
            self._trace.times["yielded"] = self.clock.now()
            for key, value in (self._progress.timings if self._progress is not None else {}).items():
                self._trace.times.setdefault(key, value)  # how far the reply got, for its stage times
        log.info("guild %s: yielding (%s); %.2f s played, %.2f s dropped", self.guild_id, reason, played, dropped)
        self._finish(
            turn, discard=discard or not speaking, seconds_played=played if speaking else None, interrupted=speaking
        )

    # --- from the sink and the player ------------------------------------------------------------------
    def audio_out(self, turn: BotTurn) -> None:
        """The line's first audio went to the player: the bot is speaking."""
        if self.room.turn is turn and turn.speaking_since is None:
            now = self.clock.now()
            self.room.bot_audio_started(now)
            if self._trace is not None:
                self._trace.times.setdefault("audio_to_player", now)
            self.output.ensure_playing()

    def first_packet_threadsafe(self, t: float) -> None:
        self.on_loop(self._record_first_packet, t)

    def _record_first_packet(self, t: float) -> None:
        if self._trace is not None:
            self._trace.times.setdefault("first_packet", t)

    def on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn` on the event loop thread (now, when called there)."""
        if self._loop is None or threading.get_ident() == self._loop_thread:
            fn(*args)
            return
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed: the session is gone
            pass


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
