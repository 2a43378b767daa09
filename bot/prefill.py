"""Prefill: while a member speaks to the bot, put the prompt of its reply in the LLM's cache.

`Responder.prefill` evaluates the prompt the reply will have (history with the member's latest partial,
the situation), so when the bot does answer, llama.cpp only evaluates the words after the last partial.
The LLM is one per process and its cache holds one prompt, so a prefill is spent only where it pays:

* only where a reply is likely (`reply_likely`): the member says the bot's name, answers its question, asks a
  follow-up, or is alone with it. Not while the bot is in a line, nor while several members speak at once;
* at most one in flight per session; while it runs the newest request waits, replacing older ones;
* background work under the model scheduler (`bot.priority`): it waits while any guild's reply is being
  made, and a reply of another guild cancels it (preempted). One that waited so long that a newer request
  came meanwhile gives way to that one (superseded). Preempted and superseded prefills are work shed under
  load (`ShedLog` "prefill");
* cancelled when stale: the member left, the bot began a line that is not the reply it prepares, the
  session closed.

It runs on the "prefill" executor (`runtime.executors`): one thread for the process, as the LLM computes one
prompt at a time. With an LLM server (`LLM_BACKEND=openai`) there is no prefill at all: the server's own
prompt cache (`cache_prompt`) reuses the shared prefix, and a request per partial would only cost requests.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from runtime import executors
from runtime.shedding import ShedLog
from bot.turn_sink import history_lines
from conversation.decision import Action, Decision, Policy
from conversation.reply_rules import addressed_reason, open_to_the_room
from conversation.room import MERGE_GAP_S, Room
from conversation.room_lines import RoomLine
from conversation.rule_context import Ctx
from conversation.situation import situation_for

log = logging.getLogger(__name__)

PromptFor = Callable[[int], "tuple[list[Any], str] | None"]  # member id -> (history, situation), None: not now


def reply_likely(room: Room, user_id: int, policy: Policy, now: float) -> str | None:
    """Why a reply to `user_id`'s words so far is likely (the turn-taking rules' own reasons), or None."""
    member = room.members.get(user_id)
    if member is None:
        return None
    ctx = Ctx(room, now, policy)
    alone = ctx.alone_with()
    if alone is not None and alone.user_id == user_id:
        return f"{member.name} is alone with the bot"
    if member.partial is not None and member.partial.text.strip():
        line = room.history_with(member.partial)[-1]
    else:  # no words yet: their line so far is their last one if this continues it, else an empty new one
        last = room.last_line()
        if (
            last is not None
            and not last.is_bot
            and last.user_id == user_id
            and now - last.end <= MERGE_GAP_S
            and last.seq > room.responded_to_seq
        ):
            line = last
        else:
            seq = last.seq + 1 if last is not None else 1
            line = RoomLine(seq, user_id, member.name, "", now, now, False)
    why = addressed_reason(ctx, line)
    if why is None and line.text.strip() and open_to_the_room(ctx, line):
        return f"{member.name} asked the room: the bot answers if nobody does"
    return why


def asks_the_room(room: Room, line: RoomLine, policy: Policy, now: float) -> bool:
    """A final line the bot answers only if nobody else does (`open_to_the_room`): worth a prefill during the
    wait, which a member who takes it up makes stale."""
    ctx = Ctx(room, now, policy)
    return addressed_reason(ctx, line) is None and open_to_the_room(ctx, line)


def reply_prompt(room: Room, user_id: int, policy: Policy, persona: Any, now: float) -> tuple[list[Any], str] | None:
    """History and situation of a reply to the member's words so far, as `LineRunner.begin` will build them
    (None when no prefill should run now: no reply is likely, the bot is in a line, or several members
    speak at once)."""
    if room.turn is not None or user_id not in room.members:
        return None
    if len(room.speaking_members()) > 1:
        return None
    if reply_likely(room, user_id, policy, now) is None:
        return None
    member = room.members[user_id]
    lines = room.history_with(member.partial) if member.partial is not None else room.history
    decision = Decision(Action.RESPOND_NOW, "prefill", member_id=user_id, addressed=True)
    return history_lines(lines), situation_for(decision, room, persona, now)


@dataclass
class PrefillStats:
    requested: int = 0
    not_likely: int = 0  # requests where no reply was likely, or not now (the bot in a line, several speaking)
    started: int = 0
    completed: int = 0
    preempted: int = 0  # cancelled by another guild's reply
    superseded: int = 0  # waited behind replies until a newer request came
    stale: int = 0  # cancelled: the member left, the bot began another line
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class ReplyPrefill:
    def __init__(
        self,
        prefill: Callable[..., Any] | None,
        prompt_for: PromptFor,
        persona: Callable[[], Any],
        *,
        spawn: Callable[[Any, str], Any],
        name: str = "prefill",
        group: Any = None,
    ) -> None:
        self._prefill = prefill
        self._prompt_for = prompt_for
        self._persona = persona
        self._spawn = spawn
        self._name = name
        self._group = group  # the guild: its own reply does not preempt it
        self.stats = PrefillStats()
        self.shedding = ShedLog("prefill", label=name, level=logging.INFO)
        self._running = False
        self._running_for: int | None = None
        self._run_cancel: threading.Event | None = None
        self._stale_cancel: threading.Event | None = None  # the run `stale()` cancelled (not preempted)
        self._wanted: int | None = None  # member whose words the next prefill covers
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self._prefill is not None

    @property
    def running(self) -> bool:
        return self._running

    def request(self, user_id: int) -> None:
        """Prefill a reply to `user_id`'s words so far (now, or after the prefill in flight)."""
        if self._prefill is None or self._closed:
            return
        self.stats.requested += 1
        self._wanted = user_id
        if not self._running:
            self._start()

    def stale(self, reason: str, *, member: int | None = None, unless_for: int | None = None) -> None:
        """What is in flight or waiting no longer prepares a reply: cancel it. `member`: only what prepares the
        reply to that member (they left); `unless_for`: all but what prepares the reply to that member (the bot
        began a line)."""

        def covered(user_id: int | None) -> bool:
            return user_id is not None and (user_id == member if member is not None else user_id != unless_for)

        if covered(self._wanted):
            self._wanted = None
        cancel = self._run_cancel
        if self._running and cancel is not None and covered(self._running_for) and not cancel.is_set():
            self._stale_cancel = cancel
            cancel.set()
            self.stats.stale += 1
            log.debug("%s: prefill cancelled (%s)", self._name, reason)

    def close(self) -> None:
        self._closed = True
        self._wanted = None
        if self._run_cancel is not None:
            self._run_cancel.set()
        self.shedding.flush()

    def _start(self) -> None:
        user_id, self._wanted = self._wanted, None
        if user_id is None or self._closed:
            return
        prompt = self._prompt_for(user_id)
        if prompt is None:
            self.stats.not_likely += 1
            return
        history, situation = prompt
        prefill, persona = self._prefill, self._persona()
        if prefill is None:
            return
        cancel = self._run_cancel = threading.Event()
        self._running, self._running_for = True, user_id
        self.stats.started += 1

        def work() -> str | None:
            newer = lambda: self._wanted is not None  # noqa: E731  (read from the worker thread)
            return prefill(persona, history, cancel, situation=situation, group=self._group, give_way=newer)

        async def run() -> None:
            try:
                outcome = await executors.run("prefill", work)
                self._count(outcome, cancel)
            except Exception:  # only latency is lost; the reply reports real LLM errors
                self.stats.failed += 1
                log.debug("%s failed", self._name, exc_info=True)
            finally:
                self._running, self._running_for, self._run_cancel = False, None, None
                self._start()

        self._spawn(run(), self._name)

    def _count(self, outcome: Any, cancel: threading.Event) -> None:
        """`Responder.prefill`'s outcome: "done" (or None), "superseded" (gave way to a newer request) or
        "cancelled" (by `stale()`, by `close()`, or preempted by another guild's reply)."""
        if outcome in ("done", None):
            self.stats.completed += 1
        elif outcome == "superseded":
            self.stats.superseded += 1
            self.shedding.shed("superseded")
        elif not self._closed and cancel is not self._stale_cancel:
            self.stats.preempted += 1
            self.shedding.shed("preempted")
