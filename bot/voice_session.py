"""One guild's voice session: receive → listener → room → prompter → responder → player.

`VoiceSession` owns the room and a prompter loop (an asyncio task) that evaluates the pure
turn-taking rules (`conversation.rules.decide`) on every speech event and on a timer tick, and
acts on the decision: start a reply (Responder.respond streaming into the StreamPlayer through a
`TurnSink`), confirm or drop an early start, or yield the floor (flush the player and cancel the
generation). Every part is injectable (receiver, listener, responder, player, clock), so the
session can be driven by tests and by the loopback simulator.

A member's transcript that is mostly the bot's own recent words (its voice picked up by a member's
microphone and sent back) is dropped before it reaches the room (`echoes`): the bot never answers itself.

Threading: the listener and receiver call back on the event loop thread; the responder may call
its sink from worker threads, so the sink hops to the loop with `call_soon_threadsafe` for room
bookkeeping, and feeds the (thread-safe) player directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import threading
from collections import deque
from typing import Any, Callable, Iterable, Protocol

import numpy as np

from audio.types import MemberFrame, SpeakingEvent, Utterance
from bot import executors
from bot.captions import CaptionQueue, CaptionSink
from bot.prefill import ReplyPrefill, reply_likely
from bot.turn_sink import TurnSink, TurnTrace, history_lines
from bot.voice_output import VoiceOutput
from bot.wakeup import Wakeup
from conversation.bot_turn import BotTurn
from conversation.clock import Clock, MonotonicClock
from conversation.decision import Action, Decision, Policy
from conversation.room import MERGE_GAP_S, Room, RoomLine
from conversation.rules import RULES, Rule, decide
from conversation.situation import situation_for
from conversation.echo import ECHO_WINDOW_S, echoes

log = logging.getLogger(__name__)

TICK_S = 0.05
IDLE_S = 30.0  # nothing due: sleep until an event pokes the loop (or this long, as a safety net)
MAX_TRACES = 100
DRAIN_POLL_S = 0.02
DRAIN_MARGIN_S = 3.0


class ListenerLike(Protocol):
    def feed(self, frame: MemberFrame) -> None: ...
    def forget(self, user_id: int) -> None: ...
    async def close(self) -> None: ...


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


class VoiceSession:
    """Turn-taking for one guild's voice channel.

    Build it with injected parts; `start()` wires them and starts the prompter loop, `close()`
    stops everything. `make_listener(settings, name_of=, on_speaking=, on_utterance=)` and
    `make_receiver(voice_client, on_frame=, on_member_left=, own_user_id=)` default to the real
    `audio.listener.Listener` and `audio.receive.VoiceReceiver`.
    """

    def __init__(
        self,
        *,
        settings: Any,
        persona: Any,
        responder: ResponderLike,
        player: PlayerLike,
        guild_id: int = 0,
        voice_client: Any = None,
        bot_user_id: int | None = None,
        members: Iterable[tuple[int, str]] = (),
        make_listener: Callable[..., ListenerLike] | None = None,
        make_receiver: Callable[..., Any] | None = None,
        clock: Clock | None = None,
        policy: Policy | None = None,
        rules: tuple[Rule, ...] = RULES,
        captions: CaptionSink | None = None,
        tick_s: float = TICK_S,
        metrics: Any = None,
    ) -> None:
        self.settings = settings
        self.persona = persona
        self.responder = responder
        self.player = player
        self.guild_id = guild_id
        self.voice_client = voice_client
        self.bot_user_id = bot_user_id
        self.clock: Clock = clock or MonotonicClock()
        self.policy = policy or Policy.from_settings(settings)
        self.rules = rules
        self.captions = captions
        self.tick_s = tick_s
        self.metrics = metrics  # bot.metrics.GuildMetrics: each line's stage times, when metrics are on
        self.room = Room(bot_name=persona.name, bot_user_id=bot_user_id, now=self.clock.now(),
                         bot_aliases=tuple(getattr(persona, "aliases", ()) or ()),
                         merge_gap_s=max(MERGE_GAP_S, self.policy.incomplete_wait_s + 0.2))
        for user_id, name in members:
            if user_id != bot_user_id:
                self.room.member_joined(user_id, name, self.clock.now(), initial=True)
        self._names_kw = _accepts(responder.respond, "member_names")  # stop strings for everyone present
        self._make_listener = make_listener
        self._make_receiver = make_receiver
        self.listener: ListenerLike | None = None
        self.receiver: Any = None
        self.traces: deque[TurnTrace] = deque(maxlen=MAX_TRACES)
        self.decisions: deque[tuple[float, Decision]] = deque(maxlen=200)  # acted-on decisions, for tests/debug
        self._turn_task: asyncio.Task | None = None
        self._sink: TurnSink | None = None
        self._trace: TurnTrace | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wakeup = Wakeup()
        self.output = VoiceOutput(player, voice_client, name=f"guild {guild_id}")
        self._loop_task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        # no prefill where it does not pay (an LLM server keeps its own prompt cache)
        prefill = getattr(responder, "prefill", None) if getattr(responder, "prefill_pays", True) else None
        self.prefill = ReplyPrefill(prefill, self._reply_prompt_for, lambda: self.persona, spawn=self._spawn,
                                    name=f"guild {guild_id}", group=guild_id)
        self.caption_queue = CaptionQueue(lambda: self.captions, spawn=self._spawn, label=f"guild {guild_id}")
        self._last_logged: tuple[str, str] | None = None
        self._closed = False
        self.echoes_ignored = 0  # member transcripts dropped as the bot's own words

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self, *, run_loop: bool = True) -> "VoiceSession":
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self.listener is None:
            make = self._make_listener or self._default_listener
            # Built in a thread: the first one loads the shared Whisper and VAD models.
            self.listener = await executors.run("models", make, self.settings, name_of=self.room.name_of,
                                                on_speaking=self.on_speaking, on_utterance=self.on_utterance)
        self._watch_queues()
        self.player.on_first_packet = self._first_packet_threadsafe
        if self.voice_client is not None:
            if self.receiver is None:
                make_rx = self._make_receiver or _default_receiver
                self.receiver = make_rx(self.voice_client, on_frame=self.on_frame,
                                        on_member_left=self._receiver_member_left, own_user_id=self.bot_user_id)
            self.receiver.start()
        if run_loop and self._loop_task is None:
            self._loop_task = asyncio.create_task(self._prompter_loop(), name=f"prompter-{self.guild_id}")
        log.info("guild %s: voice session started as %s with %d member(s)", self.guild_id, self.persona.name,
                 len(self.room.members))
        return self

    def _watch_queues(self) -> None:
        """Name this guild's lane on the shared transcription worker; report the queue depths to the metrics."""
        lane = getattr(self.listener, "scheduler", None)
        if lane is not None and hasattr(lane, "label"):
            lane.label = f"guild {self.guild_id}"
        if self.metrics is not None:
            if lane is not None and hasattr(lane, "pending_finals"):
                self.metrics.watch_queue("stt_finals", lane.pending_finals)
            self.metrics.watch_queue("captions", lambda: len(self.caption_queue))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.prefill.close()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await self._cancel_turn("session closing", discard=True)
        if self.receiver is not None:
            try:
                self.receiver.stop()
            except Exception:
                log.exception("guild %s: receiver stop failed", self.guild_id)
        if self.listener is not None:
            await self.listener.close()
        close_player = getattr(self.player, "close", None)
        if close_player is not None:
            close_player()  # StreamPlayer: read() returns b"" so discord.py's player ends
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.voice_client is not None and hasattr(self.voice_client, "play"):
            try:
                if self.voice_client.is_playing():
                    self.voice_client.stop()
            except Exception:
                log.debug("voice client stop failed", exc_info=True)
        log.info("guild %s: voice session closed", self.guild_id)

    def set_persona(self, persona: Any) -> None:
        """Switch persona live: the next line uses it (a line being spoken finishes in the old voice)."""
        old = self.persona.name
        self.persona = persona
        self.room.bot_name = persona.name
        self.room.bot_aliases = tuple(getattr(persona, "aliases", ()) or ())
        log.info("guild %s: persona %s → %s", self.guild_id, old, persona.name)
        self._poke()

    # --- inputs (all on the event loop thread) -------------------------------------------------------
    def on_frame(self, frame: MemberFrame) -> None:
        if frame.user_id == self.bot_user_id or self.listener is None:
            return  # the bot never transcribes itself
        if frame.user_id not in self.room.members:
            self.room.member_joined(frame.user_id, self._discord_name(frame.user_id), frame.t).greeted = True
        self.listener.feed(frame)

    def on_speaking(self, event: SpeakingEvent) -> None:
        self.room.on_speaking(event)
        if event.speaking:
            self.prefill.request(event.user_id)
        self._poke()

    def _reply_prompt_for(self, user_id: int) -> tuple[list[Any], str] | None:
        """History and situation of a reply to the member's words so far, as `_begin_turn` will build them
        (None when no prefill should run now: no reply is likely, the bot is in a line, or several members
        speak at once)."""
        if self.room.turn is not None or self._closed or user_id not in self.room.members:
            return None
        if len(self.room.speaking_members()) > 1:
            return None
        if reply_likely(self.room, user_id, self.policy, self.clock.now()) is None:
            return None
        member = self.room.members[user_id]
        lines = self.room.history_with(member.partial) if member.partial is not None else self.room.history
        decision = Decision(Action.RESPOND_NOW, "prefill", member_id=user_id, addressed=True)
        return history_lines(lines), situation_for(decision, self.room, self.persona, self.clock.now())

    def on_utterance(self, utt: Utterance) -> None:
        if utt.text.strip() and self._is_echo(utt):
            self.echoes_ignored += 1
            member = self.room.members.get(utt.user_id)
            if member is not None:
                member.echo_prone = True  # their sound over the bot no longer pauses it
            log.info("guild %s: %s's %s transcript is the bot's own words (its voice picked up by a microphone): "
                     "ignored", self.guild_id, utt.name, "final" if utt.final else "partial")
            log.debug("guild %s: echo transcript (DEBUG only: transcripts stay out of INFO logs): %r",
                      self.guild_id, utt.text)
            if not utt.final:
                return
            utt = dataclasses.replace(utt, text="")  # close the member's segment, add no line
        line = self.room.on_utterance(utt)
        if not utt.final and utt.text.strip():
            self.prefill.request(utt.user_id)
        if utt.final and utt.text.strip():
            self._caption(f"**{utt.name}**: {utt.text.strip()}")
        if line is not None:
            log.debug("guild %s: heard %s: %r", self.guild_id, line.name, line.text)
        self._poke()

    def _is_echo(self, utt: Utterance) -> bool:
        """The bot's own recent words, heard again from a member (a microphone near the speakers)."""
        room = self.room
        recent = [line.text for line in room.history if line.is_bot and line.end >= utt.start - ECHO_WINDOW_S]
        if room.turn is not None and room.turn.speaking_since is not None:
            recent.append(room.turn.text)
        return echoes(utt.text, recent)

    def member_joined(self, user_id: int, name: str) -> None:
        if user_id == self.bot_user_id:
            return
        self.room.member_joined(user_id, name, self.clock.now())
        self._poke()

    def member_left(self, user_id: int) -> None:
        self.prefill.stale("the member left", member=user_id)
        if self.room.member_left(user_id, self.clock.now()) is not None and self.listener is not None:
            self.listener.forget(user_id)
        self._poke()

    def sync_members(self, members: Iterable[tuple[int, str]]) -> None:
        """Make the room's members exactly `members` (after the bot moved to another channel)."""
        wanted = {uid: name for uid, name in members if uid != self.bot_user_id}
        for uid in [uid for uid in self.room.members if uid not in wanted]:
            self.member_left(uid)
        for uid, name in wanted.items():
            if uid in self.room.members:
                self.room.rename(uid, name)
            else:
                self.room.member_joined(uid, name, self.clock.now(), initial=True)
        self._poke()

    def _receiver_member_left(self, user_id: int) -> None:
        # The voice gateway says the member's stream is gone (op 13); the guild's voice state
        # update (from the cog) is the authority on presence, so only the listener forgets.
        if self.listener is not None:
            self.listener.forget(user_id)

    # --- the prompter --------------------------------------------------------------------------
    async def _prompter_loop(self) -> None:
        """Evaluate on every event, tick while something is in motion, sleep when the room is idle."""
        while True:
            try:
                decision = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("guild %s: prompter step failed", self.guild_id)
                decision = None
            await self._sleep_until_next(decision)

    def _next_look_in(self, decision: Decision | None) -> float:
        """Seconds until the rules may decide differently without a new event."""
        if decision is None or self.room.turn is not None or self.room.speaking_members():
            return self.tick_s  # speech overlaps grow, playback drains: keep looking
        if decision.until is not None:
            return max(0.0, decision.until - self.clock.now())
        return IDLE_S

    async def _sleep_until_next(self, decision: Decision | None) -> None:
        await self._wakeup.sleep(self._next_look_in(decision))

    async def step(self) -> Decision:
        """Evaluate the rules once and act on the decision (the loop calls this; tests may too)."""
        now = self.clock.now()
        decision = decide(self.room, now, self.policy, self.rules)
        self._log_decision(decision)
        action = decision.action
        if action is Action.YIELD_FLOOR:
            await self._cancel_turn(decision.reason, discard=False, decision=decision)
        elif action is Action.PAUSE:
            self._pause(decision, now)
        elif action is Action.RESUME:
            self._resume(now)
        elif action is Action.RESPOND_NOW and decision.confirm:
            self._confirm(decision, now)
        elif decision.speaks and self.room.turn is None:
            self._begin_turn(decision, now)
        return decision

    def _log_decision(self, decision: Decision) -> None:
        key = (decision.rule, decision.action.value)
        if decision.action in (Action.WAIT, Action.STAY_SILENT):
            if key != self._last_logged:
                log.debug("guild %s: %s", self.guild_id, decision.log_fields())
            self._last_logged = key
            return
        self._last_logged = key
        self.decisions.append((self.clock.now(), decision))
        log.info("guild %s decision: %s", self.guild_id, decision.log_fields())

    def _begin_turn(self, decision: Decision, now: float) -> None:
        room = self.room
        basis_text = None
        lines: Iterable[RoomLine] = room.history
        if decision.preemptive and decision.member_id is not None:
            member = room.members[decision.member_id]
            basis_text = member.partial.text if member.partial else ""
            if member.partial is not None:
                lines = room.history_with(member.partial)
        # a prefill prepares the reply to one member: any other line makes it stale
        replying_to = decision.member_id if decision.action is Action.RESPOND_NOW else None
        self.prefill.stale("the bot began another line", unless_for=replying_to)
        turn = room.bot_begin(decision.action.value, now, reply_to_seq=decision.reply_to_seq,
                              preemptive=decision.preemptive, basis_user_id=decision.member_id if decision.preemptive else None,
                              basis_text=basis_text)
        if decision.action is Action.GREET:
            if decision.member_id is None:
                room.room_greeted = True
                for member in room.members.values():  # the room's hello covers everyone here now
                    member.greeted = True
            elif decision.member_id in room.members:
                room.members[decision.member_id].greeted = True
        elif decision.action is Action.FAREWELL:
            for departure in room.departures:
                if departure.user_id == decision.member_id:
                    departure.handled = True
        trace = TurnTrace(decision.action.value, decision.reason, now)
        trace.times["decided"] = now
        self._add_speech_times(trace, decision)
        self.traces.append(trace)
        self._trace = trace
        situation = situation_for(decision, room, self.persona, now)
        history = history_lines(lines)
        sink = TurnSink(self, turn, trace, hold=decision.preemptive)
        self._sink = sink
        self._turn_task = asyncio.create_task(self._run_turn(decision, turn, sink, trace, history, situation),
                                              name=f"turn-{self.guild_id}")

    def _add_speech_times(self, trace: TurnTrace, decision: Decision) -> None:
        member = self.room.members.get(decision.member_id) if decision.member_id is not None else None
        if member is None:
            return
        if decision.preemptive:
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

    def _pause(self, decision: Decision, now: float) -> None:
        """Someone speaks over the line: its voice stops now (what is queued stays), the room listens."""
        if self.room.turn is None or decision.member_id is None:
            return
        self.room.bot_pause(now, decision.member_id)
        self.output.pause()
        if self._trace is not None:
            self._trace.times.setdefault("paused", now)
            self._trace.pauses += 1

    def _resume(self, now: float) -> None:
        """It was a backchannel: the line goes on where its voice stopped."""
        self.room.bot_resume()
        self.output.resume()
        if self._trace is not None:
            self._trace.times["resumed"] = now

    def _confirm(self, decision: Decision, now: float) -> None:
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

    async def _run_turn(self, decision: Decision, turn: BotTurn, sink: TurnSink, trace: TurnTrace,
                        history: list[Any], situation: str) -> None:
        try:
            trace.times["request"] = self.clock.now()
            extra = {"member_names": [m.name for m in self.room.members.values()]} if self._names_kw else {}
            scheduler = getattr(self.responder, "scheduler", None)  # a reply: background LLM work gives way
            foreground = scheduler.foreground(self.guild_id) if scheduler is not None else contextlib.nullcontext()
            with foreground:
                result = await self.responder.respond(self.persona, history, situation=situation, sink=sink, **extra)
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
            log.error("guild %s: reply failed (%s: %s)", self.guild_id, type(exc).__name__, exc,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            sink.close()
            self.player.flush()
            self._finish(turn)

    def _finish(self, turn: BotTurn, *, discard: bool = False, keep_answered: bool = False,
                seconds_played: float | None = None, interrupted: bool = False) -> RoomLine | None:
        if self.room.turn is not turn:
            return None
        reply_to = turn.reply_to_seq
        line = self.room.bot_end(self.clock.now(), seconds_played=seconds_played, discard=discard,
                                 interrupted=interrupted)
        if keep_answered and reply_to is not None:
            self.room.responded_to_seq = max(self.room.responded_to_seq, reply_to)
        trace = self._trace
        if trace is not None:
            trace.times["end"] = self.clock.now()
            trace.text = line.text if line is not None else ""
            trace.audio_s = round(turn.audio_s, 3)
            log.info("guild %s turn %s (%s): %s | %d words | %s", self.guild_id, trace.kind, trace.outcome,
                     trace.reason, len(trace.text.split()), trace.relative_ms())
            log.debug("guild %s: the bot said (DEBUG only): %r", self.guild_id, trace.text[:200])
            if self.metrics is not None:
                self.metrics.observe_turn(trace.times, trace.outcome)
        if line is not None:
            self._caption(f"**{line.name}**: {line.text}")
        self._sink = None
        self._turn_task = None
        self._trace = None
        self._poke()
        return line

    async def _cancel_turn(self, reason: str, *, discard: bool, decision: Decision | None = None) -> None:
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
        log.info("guild %s: yielding (%s); %.2f s played, %.2f s dropped", self.guild_id, reason, played, dropped)
        self._finish(turn, discard=discard or not speaking, seconds_played=played if speaking else None,
                     interrupted=speaking)

    # --- helpers ---------------------------------------------------------------------------------
    def _audio_out(self, turn: BotTurn) -> None:
        if self.room.turn is turn and turn.speaking_since is None:
            now = self.clock.now()
            self.room.bot_audio_started(now)
            if self._trace is not None:
                self._trace.times.setdefault("audio_to_player", now)
            self.output.ensure_playing()

    def _first_packet_threadsafe(self, t: float) -> None:
        self._on_loop(self._record_first_packet, t)

    def _record_first_packet(self, t: float) -> None:
        if self._trace is not None:
            self._trace.times.setdefault("first_packet", t)

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is None or threading.get_ident() == self._loop_thread:
            fn(*args)
            return
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed: the session is gone
            pass

    def _poke(self) -> None:
        """Something happened: evaluate the rules now."""
        self._wakeup.poke()

    def _default_listener(self, settings: Any, **callbacks: Any) -> ListenerLike:
        from audio.listener import Listener

        ignore = (self.bot_user_id,) if self.bot_user_id is not None else ()
        return Listener(settings, ignore_user_ids=ignore, **callbacks)

    def _discord_name(self, user_id: int) -> str:
        guild = getattr(getattr(self.voice_client, "channel", None), "guild", None)
        member = guild.get_member(user_id) if guild is not None else None
        return member.display_name if member is not None else f"member {user_id}"

    def _caption(self, text: str) -> None:
        if self.captions is None or self._loop is None:
            return
        self.caption_queue.put(text)

    def _spawn(self, coro: Any, name: str) -> None:
        """A background task the session cancels when it closes."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())




def _default_receiver(voice_client: Any, **kwargs: Any) -> Any:
    from audio.receive import VoiceReceiver

    return VoiceReceiver(voice_client, **kwargs)
