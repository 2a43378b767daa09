"""The rules while the bot holds the floor (preparing or speaking a line).

* An early start (made on a member's partial transcript in their pause) is confirmed by their final, or
  dropped when they go on, their words change, or the final says they are not done (end of turn).
* Anyone speaking over the bot's line turns its voice down at once (within ~0.1 s of the voice onset the
  VAD confirms) and it talks on, as a person does through a "yeah"; after `duck_s` of their voice it
  falls silent to listen (before its first sound it holds at once). Their words decide: a
  backchannel ("mm-hm", "yeah", a laugh, a sound Whisper rejects, a short burst without a cue word) lets
  the line go on where it stopped; a takeover ("wait", "sorry, what?", three words or more in 0.7 s of
  voice or more) makes the bot
  give up the line; so does speech over it longer than `barge_in_s` whatever the words (a fluent
  takeover is told before its transcript).
* Members whose microphone picks up the bot's voice (`echo_prone`, found by the session) do not pause it.
* The bot's opening lines (the spoken listening notice, a greeting) are given up as soon as anyone speaks
  over them: what they say is the conversation's real start, answered as if the bot had been quiet.

Reasons name who and how long, never what was said (decisions are logged at INFO).
"""

from __future__ import annotations

from conversation.text_words import words
from conversation.line_shape import is_backchannel, is_takeover, texts_differ
from conversation.decision import Action, Decision, Policy
from conversation.member import Member
from conversation.room import Room
from conversation.room_lines import BotState
from conversation.rule_context import Ctx


def rule_preemptive_check(ctx: Ctx) -> Decision | None:
    """An early start on a partial transcript: keep it, or drop it when the member goes on or said otherwise."""
    turn = ctx.room.turn
    if turn is None or not turn.preemptive or turn.prepared_seq is not None:
        return None  # (a reply prepared during a wait: `rules.rule_prepared_check`)
    member = ctx.room.members.get(turn.basis_user_id) if turn.basis_user_id is not None else None
    if member is None:
        return Decision(Action.YIELD_FLOOR, "early start dropped: the member left", "preemptive_check")
    if (
        member.speaking
        and member.speaking_since is not None
        and (member.speaking_since >= turn.started or not member.paused)
    ):
        # spoke again after the early start, or (it was made in their pause) their pause is over
        return Decision(
            Action.YIELD_FLOOR,
            f"early start dropped: {member.name} kept speaking",
            "preemptive_check",
            member_id=member.user_id,
        )
    if member.paused and member.partial is not None and texts_differ(turn.basis_text or "", member.partial.text):
        return Decision(
            Action.YIELD_FLOOR,
            f"early start dropped: {member.name}'s words so far read otherwise now",
            "preemptive_check",
            member_id=member.user_id,
        )
    if member.finals > turn.basis_finals and member.last_final is not None:
        final = member.last_final
        if texts_differ(turn.basis_text or "", final.text):
            return Decision(
                Action.YIELD_FLOOR,
                f"early start dropped: {member.name}'s final transcript differs from the partial",
                "preemptive_check",
                member_id=member.user_id,
            )
        if not ctx.turn_finished(final.text, final.end_of_turn):
            return Decision(
                Action.YIELD_FLOOR,
                f"early start dropped: {member.name} does not sound finished",
                "preemptive_check",
                member_id=member.user_id,
            )
        line = ctx.room.last_human_line()
        seq = line.seq if line is not None and line.user_id == member.user_id else None
        return Decision(
            Action.RESPOND_NOW,
            f"early start confirmed by {member.name}'s final transcript",
            "preemptive_check",
            member_id=member.user_id,
            reply_to_seq=seq,
            addressed=True,
            confirm=True,
        )
    if ctx.now - turn.started > ctx.policy.final_timeout_s:
        return Decision(Action.YIELD_FLOOR, "early start dropped: no final transcript came", "preemptive_check")
    return None


def _still_being_heard(ctx: Ctx, member: Member) -> bool:
    """Speaking, or stopped but their words are still being transcribed."""
    if member.speaking:
        return True
    return (
        member.segment_open
        and member.last_speech_end is not None
        and ctx.now - member.last_speech_end < ctx.policy.final_timeout_s
    )


def _voiced_over(ctx: Ctx, member: Member, since: float) -> float:
    """Seconds of their voice since `since`. While the VAD still says they speak, their voice counts up to
    the pause their latest partial was marked with, if any: a clipped "mm-hm" that Whisper wrote as three
    words is still a short burst while the VAD's end-of-speech silence runs out."""
    until = member.pause_started if member.paused and member.pause_started is not None else ctx.now
    return member.voiced_since(since, until, ctx.policy.speech_tail_s)


def _answered_member_went_on(ctx: Ctx) -> tuple[Member, str] | None:
    """The member being answered goes on with their turn: they were only pausing ("… bread, <pause> cheese
    and grapes"). Either they speak again before a word of the reply was heard, or they start within
    `own_turn_window_s` of its first sound (too soon to be answering it: no backchannel, their turn). The bot
    yields and answers the whole turn. A line whose reply was already cut so is left to the usual pause
    rules the second time: a microphone that echoes the bot's voice starts just as soon, and must not make
    the bot give up every attempt before the echo is recognised."""
    room = ctx.room
    turn = room.turn
    if turn is None or turn.reply_to_seq is None or turn.preemptive:
        return None
    line = room.line(turn.reply_to_seq)
    member = room.members.get(line.user_id) if line is not None and line.user_id is not None else None
    if member is None or line is None:
        return None
    if room.bot_state is BotState.THINKING:
        if member.speaking_since is not None and member.speaking_since >= line.end:
            return member, "kept talking before the reply was heard"
        return None
    began = member.last_speech_start
    if (
        turn.speaking_since is None
        or began is None
        or member.echo_prone
        or room.cut_unheard_seq == line.seq
        or began < line.end
    ):
        return None
    if began - turn.speaking_since < ctx.policy.own_turn_window_s:
        return member, "went on with their turn as the bot began"
    return None


def _spoke_over_opening(ctx: Ctx) -> Member | None:
    """A member who began to speak during the bot's notice or greeting (their microphone not known to echo it)."""
    turn = ctx.room.turn
    if turn is None or not turn.opening:
        return None
    return next(
        (
            m
            for m in ctx.room.members.values()
            if not m.echo_prone and m.last_speech_start is not None and m.last_speech_start >= turn.started - 0.05
        ),
        None,
    )


def rule_floor(ctx: Ctx) -> Decision | None:
    """Someone speaks while the bot prepares or speaks a line: turn it down or pause it, then go on or give up
    the floor."""
    room = ctx.room
    turn = room.turn
    if turn is None:
        return None
    policy = ctx.policy
    opener = _spoke_over_opening(ctx)
    if opener is not None:
        return Decision(
            Action.YIELD_FLOOR,
            f"{opener.name} spoke over the bot's {turn.kind}: the floor is theirs",
            "floor",
            member_id=opener.user_id,
        )
    went_on = _answered_member_went_on(ctx)
    if went_on is not None:
        member, why = went_on
        return Decision(Action.YIELD_FLOOR, f"{member.name} {why}", "floor", member_id=member.user_id)
    over: list[Member] = []
    for member in room.members.values():
        if turn.preemptive and member.user_id == turn.basis_user_id:
            continue  # an early start made in their pause: preemptive_check drops it if they go on
        if not member.speaking and (member.last_speech_start is None or member.last_speech_start < turn.started - 0.05):
            continue  # nothing said since the line began
        # Bursts add up: "Wait, <pause> wait, <pause> hold on" is one run of speech over the bot.
        run = member.speech_since(turn.started, ctx.now, policy.barge_in_gap_s, policy.speech_tail_s)
        said = turn.words_over(member.user_id)
        voiced = _voiced_over(ctx, member, turn.started)
        if is_takeover(said, voiced):
            return Decision(
                Action.YIELD_FLOOR,
                f"{member.name} took the floor ({len(words(said))} words over the bot)",
                "floor",
                member_id=member.user_id,
            )
        if run >= policy.barge_in_s and not member.echo_prone:
            return Decision(
                Action.YIELD_FLOOR,
                f"{member.name} took the floor ({run * 1000:.0f} ms over the bot)",
                "floor",
                member_id=member.user_id,
            )
        if _still_being_heard(ctx, member):
            over.append(member)
    if turn.paused_since is None:
        talking = [m for m in over if m.speaking and not m.echo_prone]
        if talking:
            if room.bot_state is BotState.SPEAKING and policy.duck_s > 0:
                return _duck_or_pause(ctx, talking)
            doing = "speaking" if room.bot_state is BotState.SPEAKING else "about to speak"
            return Decision(
                Action.PAUSE,
                f"{talking[0].name} speaks while the bot is {doing}: listening",
                "floor",
                member_id=talking[0].user_id,
            )
        if turn.ducked_since is None:
            return None
    held_since = turn.paused_since if turn.paused_since is not None else turn.ducked_since
    assert held_since is not None
    if over:
        if ctx.now - held_since > policy.max_pause_s:
            return Decision(
                Action.YIELD_FLOOR,
                f"paused {policy.max_pause_s:.0f} s for {over[0].name}: giving up the line",
                "floor",
                member_id=over[0].user_id,
            )
        how = "paused" if turn.paused_since is not None else "softer"
        return Decision(Action.STAY_SILENT, f"{how} while {over[0].name} speaks", "floor", until=ctx.now + 0.05)
    names = ", ".join(room.name_of(uid) for uid in sorted(turn.paused_for)) or "someone"
    return Decision(Action.RESUME, f"{names}: a backchannel; going on with the line", "floor")


def _duck_or_pause(ctx: Ctx, talking: list[Member]) -> Decision:
    """The bot is speaking and members speak over it: its voice goes down at once and it talks on (people talk
    through a "yeah" or "mm-hm"); once one of them has spoken `duck_s` since then, it falls silent to listen.
    Their words decide the rest, as for a pause (a takeover cue or a long run yields, a backchannel resumes)."""
    turn = ctx.room.turn
    assert turn is not None
    member = next((m for m in talking if m.user_id not in turn.paused_for), None)
    if turn.ducked_since is None or member is not None:
        member = member or talking[0]
        return Decision(
            Action.DUCK,
            f"{member.name} speaks while the bot is speaking: softer, listening",
            "floor",
            member_id=member.user_id,
        )
    longest, voiced = max(((m, _voiced_over(ctx, m, turn.ducked_since - 0.05)) for m in talking), key=lambda x: x[1])
    if voiced >= ctx.policy.duck_s:
        return Decision(
            Action.PAUSE,
            f"{longest.name} goes on over the bot ({voiced * 1000:.0f} ms): listening",
            "floor",
            member_id=longest.user_id,
        )
    return Decision(Action.STAY_SILENT, f"softer while {longest.name} speaks", "floor", until=ctx.now + 0.05)


def holds_new_runs(room: Room, now: float, policy: Policy) -> bool:
    """The bot's turned-down voice does not start again after a pause of its own (a sentence's end, a comma)
    while someone it turned down for is still talking: a person does not begin their next sentence over
    someone who began talking in their pause. Their talk goes on through short pauses of their own ("Excuse
    me, <0.3 s> um, <0.3 s> can I…"): it is over once they have been silent `barge_in_gap_s`, as their bursts
    over the bot add up into a takeover (`rule_floor`), or as soon as their voice stops when their words so far are a
    backchannel ("Oh wow.", "Mm-hm."). Then the voice goes on, or falls silent when they went on (`duck_s`)."""
    turn = room.turn
    if turn is None or turn.ducked_since is None or turn.paused_since is not None:
        return False
    for member in (room.members.get(uid) for uid in turn.paused_for):
        if member is None or member.echo_prone:
            continue
        silent = member.silent_for(now, policy.speech_tail_s)
        if silent <= 0.0 or (silent < policy.barge_in_gap_s and not _only_acknowledged(member, turn.ducked_since)):
            return True
    return False


def _only_acknowledged(member: Member, since: float) -> bool:
    """What the member said over the bot's line, as far as it is transcribed, is a backchannel."""
    said = member.partial if member.speaking else member.last_final
    return said is not None and said.end >= since and is_backchannel(said.text)


def rule_bot_busy(ctx: Ctx) -> Decision | None:
    room = ctx.room
    if room.bot_state is BotState.IDLE:
        return None
    return Decision(Action.STAY_SILENT, f"bot is {room.bot_state.value}", "bot_busy")
