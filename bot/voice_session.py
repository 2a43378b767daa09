"""One guild's voice session: receive → listener → room → prompter → the bot's lines → player.

`VoiceSession` wires the parts and owns the room: it feeds what it hears (frames, speaking events,
transcripts, members joining and leaving) into the room and pokes the prompter (`bot.prompter_loop`),
which decides and acts through the `LineRunner` (`bot.line_runner`). Every part is injectable (receiver,
listener, responder, player, clock), so the session can be driven by tests and by the loopback simulator.

Its first lines are spoken as written, not generated: the listening notice (`notice`, when the settings
say it out loud) and one of the persona's greetings; whoever speaks over them has the floor.

A member's transcript that is mostly the bot's own recent words (its voice picked up by a member's
microphone and sent back) is dropped before it reaches the room (`echoes`): the bot never answers itself.

Threading: the listener and receiver call back on the event loop thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections import deque
from typing import Any, Callable, Iterable, Protocol

from audio.types import MemberFrame, SpeakingEvent, Utterance
from runtime import executors
from bot.captions import CaptionQueue, CaptionSink
from bot.line_runner import LineRunner, PlayerLike, ResponderLike
from bot.prefill import ReplyPrefill, asks_the_room, reply_prompt
from bot.prompter_loop import TICK_S, PrompterLoop
from bot.session_members import SessionMembers
from bot.turn_sink import TurnTrace
from bot.voice_output import VoiceOutput
from conversation.listen_for import NameQuery, names_to_listen_for
from conversation.clock import Clock, MonotonicClock
from conversation.decision import Action, Decision, Policy
from conversation.greeting import greeting_line
from conversation.room import MERGE_GAP_S, Room
from conversation.rule_context import bot_matcher
from conversation.rules import RULES, Rule
from conversation.echo import ECHO_LAG_S, echoes

log = logging.getLogger(__name__)


class ListenerLike(Protocol):
    def feed(self, frame: MemberFrame) -> None: ...
    def forget(self, user_id: int) -> None: ...
    async def close(self) -> None: ...


class VoiceSession(SessionMembers):
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
        notice: str | None = None,
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
        self.captions = captions
        self.metrics = metrics  # runtime.metrics.GuildMetrics: queue depths and each line's stage times
        self.room = Room(
            bot_name=persona.name,
            bot_user_id=bot_user_id,
            now=self.clock.now(),
            bot_aliases=tuple(getattr(persona, "aliases", ()) or ()),
            merge_gap_s=max(MERGE_GAP_S, self.policy.incomplete_wait_s + 0.2),
        )
        for user_id, name in members:
            if user_id != bot_user_id:
                self.room.member_joined(user_id, name, self.clock.now(), initial=True)
        self.notice = notice  # the spoken listening notice: the session's first line (`bot.notice`)
        self.room.notice_pending = bool(notice)
        leave_out = getattr(responder, "leave_out_of_prompts", None)
        if notice and leave_out is not None:
            leave_out(notice)  # an announcement, not the persona talking: in a prompt it pulls replies off-voice
        self._greetings = random.Random()  # which of the persona's greetings opens this call
        self._make_listener = make_listener
        self._make_receiver = make_receiver
        self.listener: ListenerLike | None = None
        self.receiver: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.output = VoiceOutput(player, voice_client, name=f"guild {guild_id}")
        self._loop_task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        # no prefill where it does not pay (an LLM server keeps its own prompt cache)
        prefill = getattr(responder, "prefill", None) if getattr(responder, "prefill_pays", True) else None
        self.prefill = ReplyPrefill(
            prefill,
            self._reply_prompt_for,
            lambda: self.persona,
            spawn=self._spawn,
            name=f"guild {guild_id}",
            group=guild_id,
        )
        self.caption_queue = CaptionQueue(lambda: self.captions, spawn=self._spawn, label=f"guild {guild_id}")
        self.lines = LineRunner(
            room=self.room,
            clock=self.clock,
            responder=responder,
            player=player,
            output=self.output,
            prefill=self.prefill,
            persona=lambda: self.persona,
            caption=self._caption,
            poke=self._poke,
            guild_id=guild_id,
            metrics=metrics,
            script=self._script_for,
        )
        self.prompter = PrompterLoop(
            room=self.room,
            clock=self.clock,
            policy=self.policy,
            lines=self.lines,
            rules=rules,
            tick_s=tick_s,
            guild_id=guild_id,
        )
        self.traces: deque[TurnTrace] = self.lines.traces  # each line's stage times, newest last
        self.decisions: deque[tuple[float, Decision]] = self.prompter.decisions  # acted-on, for tests/debug
        self._closed = False
        self.opted_out: set[int] = set()  # members who opted out during this session (see `opt_out`)
        self.echoes_ignored = 0  # member transcripts dropped as the bot's own words

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self, *, run_loop: bool = True) -> "VoiceSession":
        self._loop = asyncio.get_running_loop()
        self.lines.attach_loop()
        if self.listener is None:
            make = self._make_listener or self._default_listener
            # Built in a thread: the first one loads the shared Whisper and VAD models.
            self.listener = await executors.run(
                "models",
                make,
                self.settings,
                name_of=self.room.name_of,
                on_speaking=self.on_speaking,
                on_utterance=self.on_utterance,
            )
        if hasattr(self.listener, "on_quiet"):
            self.listener.on_quiet = self.on_quiet
        self._watch_queues()
        self.player.on_first_packet = self.lines.first_packet_threadsafe
        if self.voice_client is not None:
            if self.receiver is None:
                make_rx = self._make_receiver or _default_receiver
                self.receiver = make_rx(
                    self.voice_client,
                    on_frame=self.on_frame,
                    on_member_left=self._receiver_member_left,
                    own_user_id=self.bot_user_id,
                )
            self.receiver.start()
        if run_loop and self._loop_task is None:
            self._loop_task = asyncio.create_task(self.prompter.run(), name=f"prompter-{self.guild_id}")
        log.info(
            "guild %s: voice session started as %s with %d member(s)",
            self.guild_id,
            self.persona.name,
            len(self.room.members),
        )
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
        await self.lines.cancel("session closing", discard=True)
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
            self.room.member_joined(
                frame.user_id, self._name(frame.user_id, self._discord_name(frame.user_id)), frame.t
            ).greeted = True
        self.listener.feed(frame)

    def on_speaking(self, event: SpeakingEvent) -> None:
        self.room.on_speaking(event)
        if event.speaking:
            self.prefill.request(event.user_id)
        self._poke()

    def on_quiet(self, user_id: int, since: float | None) -> None:
        self.room.on_quiet(user_id, since)
        self._poke()

    def _reply_prompt_for(self, user_id: int) -> tuple[list[Any], str] | None:
        """What a prefill for the member's reply evaluates (`reply_prompt`); None once the session closed."""
        if self._closed:
            return None
        return reply_prompt(self.room, user_id, self.policy, self.persona, self.clock.now())

    def on_utterance(self, utt: Utterance) -> None:
        if utt.text.strip() and self._is_echo(utt):
            self.echoes_ignored += 1
            member = self.room.members.get(utt.user_id)
            if member is not None:
                member.echo_prone = True  # their sound over the bot no longer pauses it
            log.info(
                "guild %s: %s's %s transcript is the bot's own words (its voice picked up by a microphone): ignored",
                self.guild_id,
                utt.name,
                "final" if utt.final else "partial",
            )
            log.debug(
                "guild %s: echo transcript (DEBUG only: transcripts stay out of INFO logs): %r", self.guild_id, utt.text
            )
            if not utt.final:
                return
            utt = dataclasses.replace(utt, text="")  # close the member's segment, add no line
        line = self.room.on_utterance(utt)
        if not utt.final and utt.text.strip():
            self.prefill.request(utt.user_id)
        elif line is not None and utt.final and asks_the_room(self.room, line, self.policy, self.clock.now()):
            self.prefill.request(utt.user_id)  # the reply is prepared while the room has its chance to answer
        if utt.final and utt.text.strip():
            self._caption(f"**{utt.name}**: {utt.text.strip()}", utt.user_id)
        if line is not None:
            log.debug("guild %s: heard %s: %r", self.guild_id, line.name, line.text)
        self._poke()

    def _is_echo(self, utt: Utterance) -> bool:
        """The bot's own recent words, heard again from a member (a microphone near the speakers)."""
        room = self.room
        recent = [line.text for line in room.history if line.is_bot and line.end >= utt.start - ECHO_LAG_S]
        if room.turn is not None and room.turn.speaking_since is not None:
            recent.append(room.turn.text)
        return echoes(utt.text, recent)

    # --- the prompter --------------------------------------------------------------------------
    async def step(self) -> Decision:
        """Evaluate the rules once and act on the decision (the loop calls this; tests may too)."""
        return await self.prompter.step()

    # --- helpers ---------------------------------------------------------------------------------
    def _script_for(self, decision: Decision) -> str | None:
        """The words of a line spoken as written: the listening notice, the persona's greeting to the room."""
        if decision.action is Action.NOTICE:
            return self.notice
        if decision.action is Action.GREET and decision.member_id is None:
            return greeting_line(self.persona, [m.name for m in self.room.members.values()], self._greetings)
        return None

    def _poke(self) -> None:
        """Something happened: evaluate the rules now."""
        self.prompter.poke()

    def _default_listener(self, settings: Any, **callbacks: Any) -> ListenerLike:
        from audio.listener import Listener

        ignore = (self.bot_user_id,) if self.bot_user_id is not None else ()
        return Listener(settings, ignore_user_ids=ignore, names_for=self._names_to_listen_for, **callbacks)

    def _names_to_listen_for(self, user_id: int, text: str) -> NameQuery | None:
        """On the STT worker: what the listener's second look for the bot's name listens for in a final (the
        bot's names, the others'), or None when the text names a member or mentions the bot."""
        room = self.room
        try:
            members = tuple((m.user_id, m.name) for m in list(room.members.values()) if m.user_id != user_id)
        except RuntimeError:  # the room changed under us (the loop owns it): no second look this time
            return None
        if not members:
            return None  # alone with the bot, every line is for it: no name to look for, no delay to the final
        return names_to_listen_for(
            text, bot_matcher(room.bot_name, room.bot_aliases, self.policy), room.bot_name, room.bot_aliases, members
        )

    def _caption(self, text: str, member: int | None = None) -> None:
        if self.captions is None or self._loop is None:
            return
        self.caption_queue.put(text, member)

    def _spawn(self, coro: Any, name: str) -> None:
        """A background task the session cancels when it closes."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _default_receiver(voice_client: Any, **kwargs: Any) -> Any:
    from audio.receive import VoiceReceiver

    return VoiceReceiver(voice_client, **kwargs)
