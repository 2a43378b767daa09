"""The prompter: evaluate the pure turn-taking rules (`conversation.rules.decide`) and act on the decision.

It evaluates on every event (`poke`) and on a timer tick while something is in motion (speech, a bot line),
and sleeps while the room is idle. Each decision is acted on through the `LineRunner`: start a line,
confirm an early start, turn its voice down, pause, resume, or yield the floor.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from bot.line_runner import LineRunner
from bot.wakeup import Wakeup
from conversation.clock import Clock
from conversation.decision import Action, Decision, Policy
from conversation.floor_rules import holds_new_runs
from conversation.room import Room
from conversation.rules import RULES, Rule, decide

log = logging.getLogger(__name__)

TICK_S = 0.05
IDLE_S = 30.0  # nothing due: sleep until an event pokes the loop (or this long, as a safety net)


class PrompterLoop:
    def __init__(
        self,
        *,
        room: Room,
        clock: Clock,
        policy: Policy,
        lines: LineRunner,
        rules: tuple[Rule, ...] = RULES,
        tick_s: float = TICK_S,
        guild_id: int = 0,
    ) -> None:
        self.room = room
        self.clock = clock
        self.policy = policy
        self.lines = lines
        self.rules = rules
        self.tick_s = tick_s
        self.guild_id = guild_id
        self.decisions: deque[tuple[float, Decision]] = deque(maxlen=200)  # acted-on decisions, for tests/debug
        self._wakeup = Wakeup()
        self._last_logged: tuple[str, str] | None = None
        self._holding_runs = False

    def poke(self) -> None:
        """Something happened: evaluate the rules now."""
        self._wakeup.poke()

    async def run(self) -> None:
        """Evaluate on every event, tick while something is in motion, sleep when the room is idle."""
        while True:
            try:
                decision = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("guild %s: prompter step failed", self.guild_id)
                decision = None
            await self._wakeup.sleep(self._next_look_in(decision))

    def _next_look_in(self, decision: Decision | None) -> float:
        """Seconds until the rules may decide differently without a new event."""
        if decision is None or self.room.turn is not None or self.room.speaking_members():
            return self.tick_s  # speech overlaps grow, playback drains: keep looking
        if decision.until is not None:
            return max(0.0, decision.until - self.clock.now())
        return IDLE_S

    async def step(self) -> Decision:
        """Evaluate the rules once and act on the decision (the loop calls this; tests may too)."""
        now = self.clock.now()
        decision = decide(self.room, now, self.policy, self.rules)
        self._log_decision(decision)
        action = decision.action
        if action is Action.YIELD_FLOOR:
            await self.lines.cancel(decision.reason, discard=False)
        elif action is Action.DUCK:
            self.lines.duck(decision, now)
        elif action is Action.PAUSE:
            self.lines.pause(decision, now)
        elif action is Action.RESUME:
            self.lines.resume(now)
        elif action is Action.RESPOND_NOW and decision.confirm:
            self.lines.confirm(decision, now)
        elif decision.speaks and self.room.turn is None:
            if not decision.prepared or self.lines.may_prepare(decision):
                self.lines.begin(decision, now)  # (not prepared: the reply is made when the wait ends)
        self._sync_hold()
        return decision

    def _sync_hold(self) -> None:
        """The player holds the next run of the bot's voice while someone it turned down for still voices."""
        hold = holds_new_runs(self.room, self.clock.now(), self.policy)
        if hold != self._holding_runs:
            self._holding_runs = hold
            self.lines.output.hold_new_runs(hold)
            log.debug("guild %s: the bot's next run of voice %s", self.guild_id, "held" if hold else "let go")

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
