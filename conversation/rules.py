"""Turn-taking rules: pure functions of the room and a clock time.

`decide(room, now, policy)` runs `RULES` in order; the first rule that has an opinion wins.
Each rule is a small function `(Ctx) -> Decision | None` with its reason spelled out, so the
decision log says why the bot spoke or kept quiet. Rules never change the room: the voice
session acts on the decision and records what happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Callable, Sequence

from conversation.addressing import (
    QUESTION_OPENERS,
    NameMatcher,
    is_backchannel,
    looks_complete,
    looks_like_question,
    mentioned_members,
    texts_differ,
    words,
)
from conversation.decision import Action, Decision, Policy
from conversation.room import BotState, Member, Room, RoomLine


@lru_cache(maxsize=64)
def _bot_matcher(name: str, aliases: tuple[str, ...], spelling: float, sound: float) -> NameMatcher:
    return NameMatcher.for_name(name, aliases, spelling_threshold=spelling, sound_threshold=sound)


@dataclass(frozen=True)
class Ctx:
    room: Room
    now: float
    policy: Policy

    @cached_property
    def bot_name(self) -> NameMatcher:
        p = self.policy
        return _bot_matcher(self.room.bot_name, self.room.bot_aliases, p.name_spelling_threshold, p.name_sound_threshold)

    @cached_property
    def open_line(self) -> RoomLine | None:
        """The latest human line the bot has neither answered nor spoken after (backchannels skipped)."""
        room = self.room
        for line in reversed(room.history):
            if line.is_bot or line.seq <= room.responded_to_seq:
                return None
            if not is_backchannel(line.text) or self.names_bot(line.text):
                return line
        return None

    def names_bot(self, text: str) -> bool:
        return self.bot_name.find(text)

    def alone_with(self) -> Member | None:
        humans = self.room.humans
        return humans[0] if len(humans) == 1 else None


def addressed_reason(ctx: Ctx, line: RoomLine) -> str | None:
    """Why `line` is spoken to the bot, or None if it is not."""
    if ctx.names_bot(line.text):
        return f"{line.name} said the bot's name"
    previous = next(ctx.room.lines_before(line.seq), None)
    if (previous is not None and previous.is_bot and looks_like_question(previous.text)
            and line.start - previous.end <= ctx.policy.question_answer_window_s):
        return f"{line.name} answered the bot's question"
    alone = ctx.alone_with()
    if alone is not None and alone.user_id == line.user_id and looks_like_question(line.text):
        return f"{line.name} asked a question and the bot is the only other one here"
    return None


def _ignorable(ctx: Ctx, line: RoomLine) -> str | None:
    """A line that is not a bid for the bot's turn: a backchannel, or a short sound over the bot."""
    if is_backchannel(line.text):
        return f"{line.name}'s {line.text!r} is a backchannel"
    if line.overlapped_bot and line.end - line.start < ctx.policy.barge_in_s:
        return f"{line.name} spoke briefly over the bot"
    return None


CALL_WORDS = frozenset("hey hi hello oi yo ok okay so um uh excuse me".split())


def _only_a_call(ctx: Ctx, text: str) -> bool:
    """The line is just the bot's name, maybe with "hey": a call for attention, not the request."""
    rest = [w for w in words(text) if w not in CALL_WORDS]
    return 0 < len(rest) <= 3 and ctx.names_bot(text) and not any(
        w in QUESTION_OPENERS for w in rest) and len(rest) <= len(words(ctx.room.bot_name)) + 1


def _silence_until(ctx: Ctx, line: RoomLine, silence_s: float) -> float:
    """`silence_s` after the line and after anyone else's latest speech: the room must be quiet.

    The speaker's own end is the line's end (the speech end the transcript carries); the VAD's
    speaking → silent event comes one end-of-speech silence later and would delay every reply.
    """
    ends = [line.end] + [m.last_speech_end for m in ctx.room.members.values()
                         if m.last_speech_end is not None and m.user_id != line.user_id]
    return max(ends) + silence_s


# --- the rules, in the order they are tried ---------------------------------------------------------

def rule_preemptive_check(ctx: Ctx) -> Decision | None:
    """An early start on a partial transcript: keep it, or drop it when the member goes on or said otherwise."""
    turn = ctx.room.turn
    if turn is None or not turn.preemptive:
        return None
    member = ctx.room.members.get(turn.basis_user_id) if turn.basis_user_id is not None else None
    if member is None:
        return Decision(Action.YIELD_FLOOR, "early start dropped: the member left", "preemptive_check")
    if member.speaking and member.speaking_since is not None and (member.speaking_since >= turn.started
                                                                   or not member.paused):
        # spoke again after the early start, or (it was made in their pause) their pause is over
        return Decision(Action.YIELD_FLOOR, f"early start dropped: {member.name} kept speaking", "preemptive_check",
                        member_id=member.user_id)
    if member.paused and member.partial is not None and texts_differ(turn.basis_text or "", member.partial.text):
        return Decision(Action.YIELD_FLOOR, f"early start dropped: {member.name}'s words so far now read "
                        f"{member.partial.text!r}", "preemptive_check", member_id=member.user_id)
    if member.finals > turn.basis_finals and member.last_final is not None:
        final = member.last_final.text
        if texts_differ(turn.basis_text or "", final):
            return Decision(Action.YIELD_FLOOR, f"early start dropped: final {final!r} differs from partial "
                            f"{turn.basis_text!r}", "preemptive_check", member_id=member.user_id)
        line = ctx.room.last_human_line()
        seq = line.seq if line is not None and line.user_id == member.user_id else None
        return Decision(Action.RESPOND_NOW, f"early start confirmed by {member.name}'s final transcript",
                        "preemptive_check", member_id=member.user_id, reply_to_seq=seq, addressed=True,
                        confirm=True)
    if ctx.now - turn.started > ctx.policy.final_timeout_s:
        return Decision(Action.YIELD_FLOOR, "early start dropped: no final transcript came", "preemptive_check")
    return None


def rule_barge_in(ctx: Ctx) -> Decision | None:
    """Someone speaking over the bot longer than barge_in takes the floor; shorter is a backchannel.

    The speech over the bot is the member's latest run of speaking spans since the bot took the
    floor, with gaps shorter than `barge_in_gap_s` bridged (`Member.speech_since`).
    """
    room = ctx.room
    turn = room.turn
    if turn is None:
        return None
    floor_from = turn.speaking_since if room.bot_state is BotState.SPEAKING else turn.started
    if floor_from is None:
        return None
    if room.bot_state is BotState.THINKING and turn.reply_to_seq is not None:
        # The member being answered goes on talking before a word of the reply was heard: their
        # turn was not over ("Juniper, ... what's the time?"). Drop the reply; answer the whole thing.
        line = next((ln for ln in reversed(room.history) if ln.seq == turn.reply_to_seq), None)
        member = room.members.get(line.user_id) if line is not None and line.user_id is not None else None
        if member is not None and member.speaking_since is not None and member.speaking_since >= line.end:
            return Decision(Action.YIELD_FLOOR, f"{member.name} kept talking before the reply was heard", "barge_in",
                            member_id=member.user_id)
    for member in room.members.values():
        if turn.preemptive and member.user_id == turn.basis_user_id:
            continue  # an early start made in their pause: preemptive_check drops it if they go on
        # Bursts add up: "Wait, <pause> wait, <pause> hold on" is a takeover even though each
        # burst is shorter than barge_in; one isolated "mm-hm" is not.
        overlap = member.speech_since(floor_from, ctx.now, ctx.policy.barge_in_gap_s, ctx.policy.speech_tail_s)
        if overlap >= ctx.policy.barge_in_s:
            doing = "speaking" if room.bot_state is BotState.SPEAKING else "preparing a reply"
            return Decision(Action.YIELD_FLOOR, f"{member.name} took the floor ({overlap * 1000:.0f} ms over the "
                            f"bot {doing})", "barge_in", member_id=member.user_id)
    return None


def rule_bot_busy(ctx: Ctx) -> Decision | None:
    room = ctx.room
    if room.bot_state is BotState.IDLE:
        return None
    talking = room.speaking_members()
    if talking and room.bot_state is BotState.SPEAKING:
        return Decision(Action.STAY_SILENT, f"bot speaking; {talking[0].name}'s short sound is not a takeover (yet)",
                        "bot_busy")
    return Decision(Action.STAY_SILENT, f"bot is {room.bot_state.value}", "bot_busy")


def rule_nobody_here(ctx: Ctx) -> Decision | None:
    if not ctx.room.members:
        return Decision(Action.STAY_SILENT, "no humans in the channel", "nobody_here")
    return None


def rule_someone_speaking(ctx: Ctx) -> Decision | None:
    talking = ctx.room.speaking_members()
    if talking:
        names = ", ".join(m.name for m in talking)
        return Decision(Action.WAIT, f"{names} speaking: never talk over anyone", "someone_speaking",
                        until=ctx.now + 0.05)
    return None


def rule_preemptive_start(ctx: Ctx) -> Decision | None:
    """A member paused, and their words so far already read as a complete address: start the reply
    now, its audio held until the final transcript confirms it (the member may go on: then it is dropped).

    "Paused" is either the VAD's end of speech with the final pending, or a pause shorter than that
    end-of-speech silence (`Member.paused`: their latest partial marked at the pause, then the
    speculative transcript of all their words): the reply is then computed while the end of their turn
    is still being confirmed, and restarted if the speculative transcript reads otherwise. A bare call
    ("Hey Juniper.") is not a request yet, and a line begun over the bot's voice (a barge-in, or an echo
    of that voice too short to recognise) waits for its final. In a group only a line naming the bot starts
    early (one "answering the bot's question" may be meant for anyone). Nobody else may be speaking.
    """
    if not ctx.policy.preemptive_start:
        return None
    members = ctx.room.members.values()
    for member in members:
        partial = member.partial
        if partial is None or any(m.speaking for m in members if m is not member):
            continue
        if member.paused:
            since = member.pause_started
        elif member.speaking or not member.segment_open or member.last_speech_end is None:
            continue
        else:
            since = member.last_speech_end
        if ctx.now - since > ctx.policy.final_timeout_s or not looks_complete(partial.text):
            continue
        line = ctx.room.history_with(partial)[-1]  # their line as it will read ("Hey Juniper." + this)
        if line.overlapped_bot:
            continue  # begun over the bot's voice: a barge-in, or that voice echoed by their microphone
        why = addressed_reason(ctx, line)
        alone = ctx.alone_with()
        named = ctx.names_bot(line.text)
        if (why is None or _only_a_call(ctx, line.text) or (not named and _ignorable(ctx, line))
                or not (named or (alone is not None and alone.user_id == member.user_id))):
            continue  # in a group, only a line naming the bot is sure enough to start before its end
        return Decision(Action.RESPOND_NOW, f"early start: {member.name} paused; {why} ({line.text!r})",
                        "preemptive_start", member_id=member.user_id, addressed=True, preemptive=True)
    return None


def rule_awaiting_final(ctx: Ctx) -> Decision | None:
    """Someone just finished speaking: what they said is still being transcribed."""
    for member in ctx.room.members.values():
        if member.segment_open and not member.speaking and member.last_speech_end is not None:
            until = member.last_speech_end + ctx.policy.final_timeout_s
            if ctx.now < until:
                return Decision(Action.WAIT, f"waiting for {member.name}'s final transcript", "awaiting_final",
                                until=until)
    return None


def rule_respond_when_addressed(ctx: Ctx) -> Decision | None:
    line = ctx.open_line
    if line is None or ctx.now - line.end > ctx.policy.addressed_max_age_s:
        return None
    why = addressed_reason(ctx, line)
    if why is None:
        return None
    if not ctx.names_bot(line.text) and _ignorable(ctx, line):
        return None
    # "Juniper." on its own is usually followed by the actual question: give it the longer silence.
    silence = ctx.policy.group_silence_s if _only_a_call(ctx, line.text) else ctx.policy.reply_silence_s
    until = _silence_until(ctx, line, silence)
    if ctx.now < until:
        return Decision(Action.WAIT, f"addressed ({why}); waiting {silence * 1000:.0f} ms of silence",
                        "respond_when_addressed", until=until, reply_to_seq=line.seq, addressed=True)
    return Decision(Action.RESPOND_NOW, why, "respond_when_addressed", reply_to_seq=line.seq, addressed=True,
                    member_id=line.user_id)


def rule_greet_room(ctx: Ctx) -> Decision | None:
    room = ctx.room
    if room.room_greeted or not ctx.policy.greet_members or not room.members:
        return None
    if ctx.now - room.started_at > ctx.policy.greet_window_s or room.history:
        return None
    if ctx.now - room.last_activity() < ctx.policy.reply_silence_s:
        return Decision(Action.WAIT, "greeting the room after a moment of quiet", "greet_room",
                        until=room.last_activity() + ctx.policy.reply_silence_s)
    return Decision(Action.GREET, "the bot just joined a channel with people in it", "greet_room")


def rule_greet_member(ctx: Ctx) -> Decision | None:
    if not ctx.policy.greet_members:
        return None
    for member in ctx.room.members.values():
        if member.greeted or ctx.now - member.joined_at > ctx.policy.greet_window_s:
            continue
        if ctx.now - ctx.room.last_activity() < ctx.policy.reply_silence_s:
            return Decision(Action.WAIT, f"{member.name} joined; greeting after a moment of quiet", "greet_member",
                            until=ctx.room.last_activity() + ctx.policy.reply_silence_s, member_id=member.user_id)
        return Decision(Action.GREET, f"{member.name} joined the channel", "greet_member", member_id=member.user_id)
    return None


def rule_farewell(ctx: Ctx) -> Decision | None:
    if not ctx.policy.greet_members or not ctx.room.members:
        return None
    for departure in ctx.room.departures:
        if departure.handled or not departure.spoke or ctx.now - departure.t > ctx.policy.farewell_window_s:
            continue
        if ctx.now - ctx.room.last_activity() < ctx.policy.reply_silence_s:
            return Decision(Action.WAIT, f"{departure.name} left; noting it after a moment of quiet", "farewell",
                            until=ctx.room.last_activity() + ctx.policy.reply_silence_s, member_id=departure.user_id)
        return Decision(Action.FAREWELL, f"{departure.name} left after taking part", "farewell",
                        member_id=departure.user_id)
    return None


def rule_humans_talking(ctx: Ctx) -> Decision | None:
    """Two humans talking to each other: keep out."""
    line = ctx.open_line
    if line is None or ctx.now - line.end > ctx.policy.idle_topic_s:
        return None
    others = [(m.user_id, m.name) for m in ctx.room.members.values() if m.user_id != line.user_id]
    # Silent, but look again when the room has been quiet long enough for a topic.
    revisit = max(line.end, ctx.room.last_activity()) + ctx.policy.idle_topic_s + 0.001
    named = mentioned_members(line.text, others)
    if named:
        return Decision(Action.STAY_SILENT, f"{line.name} spoke to {ctx.room.name_of(named[0])} by name",
                        "humans_talking", until=revisit)
    previous = next(ctx.room.lines_before(line.seq), None)
    if (previous is not None and not previous.is_bot and previous.user_id != line.user_id
            and line.start - previous.end <= ctx.policy.exchange_gap_s):
        return Decision(Action.STAY_SILENT, f"{previous.name} and {line.name} are talking to each other",
                        "humans_talking", until=revisit)
    return None


def rule_join_in(ctx: Ctx) -> Decision | None:
    """An open, unaddressed line: join in after a longer silence, unless the bot spoke very recently."""
    line = ctx.open_line
    if line is None or ctx.now - line.end > ctx.policy.idle_topic_s:
        return None
    why_not = _ignorable(ctx, line)
    if why_not:
        return None
    until = _silence_until(ctx, line, ctx.policy.group_silence_s)
    last_bot = ctx.room.last_bot_line_t
    if last_bot is not None:
        until = max(until, last_bot + ctx.policy.cooldown_s)
    several = len(ctx.room.members) > 1
    if ctx.now < until:
        return Decision(Action.WAIT, f"{line.name} was not speaking to the bot; waiting for a longer silence",
                        "join_in", until=until, reply_to_seq=line.seq)
    where = "the group went quiet" if several else f"{line.name} paused"
    return Decision(Action.RESPOND_NOW, f"joining in: {where} after {line.name}'s line", "join_in",
                    reply_to_seq=line.seq, member_id=line.user_id, needs_gate=ctx.policy.llm_gate)


def rule_idle_topic(ctx: Ctx) -> Decision | None:
    room = ctx.room
    quiet = ctx.now - room.last_activity()
    due = room.last_activity() + ctx.policy.idle_topic_s
    if room.last_bot_line_t is not None:
        due = max(due, room.last_bot_line_t + ctx.policy.cooldown_s)
    in_a_row = room.bot_lines_in_a_row()
    if in_a_row >= ctx.policy.max_unprompted_in_row:
        return Decision(Action.STAY_SILENT, f"{in_a_row} bot lines without a human reply: waiting for a human",
                        "idle_topic")
    if ctx.now < due:
        return Decision(Action.WAIT, f"quiet for {quiet:.1f} s", "idle_topic", until=due)
    return Decision(Action.START_TOPIC, f"quiet for {quiet:.0f} s", "idle_topic")


Rule = Callable[[Ctx], "Decision | None"]

RULES: tuple[Rule, ...] = (
    rule_preemptive_check,
    rule_barge_in,
    rule_bot_busy,
    rule_nobody_here,
    rule_preemptive_start,  # before someone_speaking: it may start in a member's pause
    rule_someone_speaking,
    rule_awaiting_final,
    rule_respond_when_addressed,
    rule_greet_room,
    rule_greet_member,
    rule_farewell,
    rule_humans_talking,
    rule_join_in,
    rule_idle_topic,
)


def decide(room: Room, now: float, policy: Policy, rules: Sequence[Rule] = RULES) -> Decision:
    ctx = Ctx(room, now, policy)
    for rule in rules:
        decision = rule(ctx)
        if decision is not None:
            return decision
    return Decision(Action.STAY_SILENT, "no rule applies", "default")
