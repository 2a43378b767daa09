"""Turn-taking rules: pure functions of the room and a clock time.

`decide(room, now, policy)` runs `RULES` in order; the first rule that has an opinion wins.
Each rule is a small function `(Ctx) -> Decision | None` with its reason spelled out, so the
decision log says why the bot spoke or kept quiet. Rules never change the room: the voice
session acts on the decision and records what happened.

The rules while the bot holds the floor (pause, go on, yield) are in `conversation.floor_rules`; whether
a line is for the bot and when to answer it, in `conversation.reply_rules`; greetings, farewells, waiting
for transcripts, the spoken listening notice and starting a topic in a quiet room are here, and so is
preparing a reply during the wait before it (`prepare_in_wait`, `rule_prepared_check`).
"""

from __future__ import annotations

from typing import Callable, Sequence

from conversation.decision import Action, Decision, Policy
from conversation.floor_rules import rule_bot_busy, rule_floor, rule_preemptive_check
from conversation.reply_rules import (
    addressed_reason,
    only_a_call,
    rule_humans_talking,
    rule_join_in,
    rule_preemptive_start,
    rule_respond_when_addressed,
    rule_room_question,
)
from conversation.line_shape import ends_unfinished
from conversation.room import Room
from conversation.rule_context import Ctx

__all__ = ["RULES", "Ctx", "Rule", "addressed_reason", "decide"]


def rule_nobody_here(ctx: Ctx) -> Decision | None:
    if not ctx.room.members:
        return Decision(Action.STAY_SILENT, "no humans in the channel", "nobody_here")
    return None


def rule_someone_speaking(ctx: Ctx) -> Decision | None:
    talking = ctx.room.speaking_members()
    if talking:
        names = ", ".join(m.name for m in talking)
        return Decision(
            Action.WAIT, f"{names} speaking: never talk over anyone", "someone_speaking", until=ctx.now + 0.05
        )
    return None


def rule_awaiting_final(ctx: Ctx) -> Decision | None:
    """Someone just finished speaking: what they said is still being transcribed."""
    for member in ctx.room.members.values():
        if member.segment_open and not member.speaking and member.last_speech_end is not None:
            until = member.last_speech_end + ctx.policy.final_timeout_s
            if ctx.now < until:
                return Decision(
                    Action.WAIT, f"waiting for {member.name}'s final transcript", "awaiting_final", until=until
                )
    return None


def rule_notice(ctx: Ctx) -> Decision | None:
    """The spoken listening notice comes first, once someone is here (never over anyone: the rules before
    this one wait for quiet). Whoever speaks over it gets the floor (`conversation.floor_rules`)."""
    if not ctx.room.notice_pending or not ctx.room.members:
        return None
    return Decision(Action.NOTICE, "the bot joined: it says that it listens, and how to opt out", "notice")


def rule_greet_room(ctx: Ctx) -> Decision | None:
    room = ctx.room
    if room.room_greeted or not ctx.policy.greet_members or not room.members:
        return None
    if ctx.now - room.started_at > ctx.policy.greet_window_s or room.last_human_line() is not None:
        return None  # too late, or someone already spoke (over the notice, say): answer them instead
    if ctx.now - room.last_activity() < ctx.policy.reply_silence_s:
        return Decision(
            Action.WAIT,
            "greeting the room after a moment of quiet",
            "greet_room",
            until=room.last_activity() + ctx.policy.reply_silence_s,
        )
    return Decision(Action.GREET, "the bot just joined a channel with people in it", "greet_room")


def rule_greet_member(ctx: Ctx) -> Decision | None:
    if not ctx.policy.greet_members:
        return None
    for member in ctx.room.members.values():
        if member.greeted or ctx.now - member.joined_at > ctx.policy.greet_window_s:
            continue
        if ctx.now - ctx.room.last_activity() < ctx.policy.reply_silence_s:
            return Decision(
                Action.WAIT,
                f"{member.name} joined; greeting after a moment of quiet",
                "greet_member",
                until=ctx.room.last_activity() + ctx.policy.reply_silence_s,
                member_id=member.user_id,
            )
        return Decision(Action.GREET, f"{member.name} joined the channel", "greet_member", member_id=member.user_id)
    return None


def rule_farewell(ctx: Ctx) -> Decision | None:
    if not ctx.policy.greet_members or not ctx.room.members:
        return None
    for departure in ctx.room.departures:
        if departure.handled or not departure.spoke or ctx.now - departure.t > ctx.policy.farewell_window_s:
            continue
        if ctx.now - ctx.room.last_activity() < ctx.policy.reply_silence_s:
            return Decision(
                Action.WAIT,
                f"{departure.name} left; noting it after a moment of quiet",
                "farewell",
                until=ctx.room.last_activity() + ctx.policy.reply_silence_s,
                member_id=departure.user_id,
            )
        return Decision(
            Action.FAREWELL, f"{departure.name} left after taking part", "farewell", member_id=departure.user_id
        )
    return None


def rule_idle_topic(ctx: Ctx) -> Decision | None:
    room = ctx.room
    quiet = ctx.now - room.last_activity()
    due = room.last_activity() + ctx.policy.idle_topic_s
    if room.last_bot_line_t is not None:
        due = max(due, room.last_bot_line_t + ctx.policy.cooldown_s)
    in_a_row = room.bot_lines_in_a_row()
    if in_a_row >= ctx.policy.max_unprompted_in_row:
        return Decision(
            Action.STAY_SILENT, f"{in_a_row} bot lines without a human reply: waiting for a human", "idle_topic"
        )
    if ctx.now < due:
        return Decision(Action.WAIT, f"quiet for {quiet:.1f} s", "idle_topic", until=due)
    return Decision(Action.START_TOPIC, f"quiet for {quiet:.0f} s", "idle_topic")


Rule = Callable[[Ctx], "Decision | None"]

# The rules of a room where the bot holds no line: what it would do if it were quiet.
QUIET_RULES: tuple[Rule, ...] = (
    rule_nobody_here,
    rule_preemptive_start,  # before someone_speaking: it may start in a member's pause
    rule_someone_speaking,
    rule_awaiting_final,
    rule_notice,
    rule_respond_when_addressed,
    rule_greet_room,
    rule_greet_member,
    rule_farewell,
    rule_room_question,
    rule_humans_talking,
    rule_join_in,
    rule_idle_topic,
)

# Waits after which a reply to the line goes out (the rule, and whether its reply is an addressed one): a
# reply prepared during them is held until they end.
WAITS_BEFORE_A_REPLY = {"respond_when_addressed": True, "room_question": True, "join_in": False}


def _first_opinion(ctx: Ctx, rules: Sequence[Rule]) -> Decision:
    for rule in rules:
        decision = rule(ctx)
        if decision is not None:
            return decision
    return Decision(Action.STAY_SILENT, "no rule applies", "default")


def rule_prepared_check(ctx: Ctx) -> Decision | None:
    """A reply prepared during the wait before it (`prepare_in_wait`): it goes out exactly when the bot, quiet,
    would have begun it, and is dropped unheard whenever the quiet bot would not answer that line after all
    (the member went on, someone took up the question, anyone spoke). So preparing changes when the first
    sound can go out, never whether or when the bot speaks."""
    turn = ctx.room.turn
    if turn is None or not turn.preemptive or turn.prepared_seq is None:
        return None
    quiet = _first_opinion(ctx, QUIET_RULES)
    if quiet.reply_to_seq == turn.prepared_seq:
        if quiet.action is Action.RESPOND_NOW and not quiet.preemptive:
            return Decision(
                Action.RESPOND_NOW,
                f"prepared reply released: {quiet.reason}",
                "prepared_check",
                member_id=quiet.member_id,
                reply_to_seq=quiet.reply_to_seq,
                addressed=quiet.addressed,
                confirm=True,
            )
        if quiet.action is Action.WAIT:
            return Decision(Action.WAIT, f"prepared reply held: {quiet.reason}", "prepared_check", until=quiet.until)
    return Decision(
        Action.YIELD_FLOOR, f"prepared reply dropped: {quiet.reason}", "prepared_check", member_id=quiet.member_id
    )


def prepare_in_wait(ctx: Ctx, decision: Decision) -> Decision:
    """A wait before answering a final line (the speaker may go on; someone may take up a question to the
    room) becomes a reply prepared now, its audio held until the wait ends: the first sound then goes out at
    the wait's end instead of a reply's making later. Not for a bare call nor words broken off ("… and", "I was
    wondering": those speakers mostly go on), not for a wait too short to gain from it, and once per
    wording of a line (a prepared reply dropped for a cough is not made again for the same words)."""
    policy, room = ctx.policy, ctx.room
    seq = decision.reply_to_seq
    if (
        not policy.prepare_in_wait
        or room.turn is not None
        or decision.action is not Action.WAIT
        or decision.rule not in WAITS_BEFORE_A_REPLY
        or seq is None
        or decision.until is None
        or decision.until - ctx.now < policy.prepare_min_wait_s
    ):
        return decision
    line = room.line(seq)
    if line is None or line.is_bot or line.user_id not in room.members or (seq, line.text) in room.prepared:
        return decision
    if ends_unfinished(line.text) or only_a_call(ctx, line):
        return decision  # they most likely go on: a reply made now would be dropped
    return Decision(
        Action.RESPOND_NOW,
        f"preparing the reply during the wait ({decision.reason})",
        "prepare_in_wait",
        until=decision.until,
        member_id=line.user_id,
        reply_to_seq=seq,
        addressed=WAITS_BEFORE_A_REPLY[decision.rule],
        preemptive=True,
    )


RULES: tuple[Rule, ...] = (
    rule_prepared_check,
    rule_preemptive_check,
    rule_floor,
    rule_bot_busy,
    *QUIET_RULES,
)


def decide(room: Room, now: float, policy: Policy, rules: Sequence[Rule] = RULES) -> Decision:
    ctx = Ctx(room, now, policy)
    return prepare_in_wait(ctx, _first_opinion(ctx, rules))
