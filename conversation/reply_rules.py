"""The rules that decide whether a member's line is for the bot, and when to answer it.

A line is for the bot when it says the bot's name (weighed against the names of everyone present, so
"Jennifer, pass the salt" is for Jennifer), when it answers the bot's question, when it is a question to
the bot from the member it just answered (a follow-up), or when the member is alone with the bot. A line
naming another member, or two people talking back and forth, is not. In a group the bot does not join in
on remarks meant for the room: a person at a table of friends does not answer every sentence; it waits
for a long silence (`rule_idle_topic`) to bring something up itself. A question or a request for talk put
to the room that no one takes up is another matter: after a short silence the bot takes it, as a person
would (`rule_room_question`).

When: after a short silence if the member sounds finished (the semantic end-of-turn model, the words),
after a longer one (`incomplete_wait_s`) if they stopped mid-sentence or only called the bot's name, and
in between (`unsure_wait_s`) when the words read finished but the end-of-turn model heard an unfinished voice.
"""

from __future__ import annotations

from conversation.asking import asks_the_room
from conversation.vocative import CALL_WORDS, head_slot
from conversation.text_words import words
from conversation.line_shape import QUESTION_OPENERS, asks_question, is_backchannel, looks_complete, looks_like_question
from conversation.decision import Action, Decision
from conversation.rule_context import Ctx
from conversation.room_lines import RoomLine


def addressed_reason(ctx: Ctx, line: RoomLine) -> str | None:
    """Why `line` is spoken to the bot, or None if it is not."""
    names = ctx.names_in(line.text, line.user_id)
    if names.bot:
        return f"{line.name} said the bot's name"
    if ctx.members_called(line):
        return None  # spoken to someone else by name (one only talked about leaves the line open: "Did Alice…")
    previous = next(ctx.room.lines_before(line.seq), None)
    alone = ctx.alone_with()
    # The greeting's "What are we all up to?" is small talk to a group: what follows is the members' own (with one
    # member, or to a member who joined later, it was theirs to answer)
    if (
        previous is not None
        and previous.is_bot
        and (not previous.opening or alone is not None or previous.addressee == line.user_id)
    ):
        gap = line.start - previous.end
        if asks_question(previous.text) and gap <= ctx.policy.question_answer_window_s:
            return f"{line.name} answered the bot's question"
        if (
            previous.addressee == line.user_id
            and looks_like_question(line.text)
            and gap <= ctx.policy.follow_up_window_s
        ):
            return f"{line.name} asked the bot a follow-up"
    if alone is not None and alone.user_id == line.user_id and looks_like_question(line.text):
        return f"{line.name} asked a question and the bot is the only other one here"
    return None


def ignorable(ctx: Ctx, line: RoomLine) -> str | None:
    """A line that is not a bid for the bot's turn: a backchannel, or a short sound over the bot."""
    if is_backchannel(line.text):
        previous = next(ctx.room.lines_before(line.seq), None)
        if not (previous is not None and previous.is_bot and previous.text.rstrip().endswith("?")):
            return f"{line.name}'s line is a backchannel"
    if line.overlapped_bot and line.end - line.start < ctx.policy.barge_in_s:
        return f"{line.name} spoke briefly over the bot"
    return None


def only_a_call(ctx: Ctx, line: RoomLine) -> bool:
    """The line is just the bot's name, maybe with "hey": a call for attention, not the request."""
    rest = [w for w in words(line.text) if w not in CALL_WORDS]
    return (
        0 < len(rest) <= 3
        and ctx.names_bot(line)
        and not any(w in QUESTION_OPENERS for w in rest)
        and len(rest) <= len(words(ctx.room.bot_name)) + 1
    )


def silence_until(ctx: Ctx, line: RoomLine, silence_s: float) -> float:
    """`silence_s` after the line and after anyone else's latest speech: the room must be quiet.

    The speaker's own end is the line's end (the speech end the transcript carries); the VAD's
    speaking → silent event comes one end-of-speech silence later and would delay every reply.
    """
    ends = [line.end] + [
        m.last_speech_end
        for m in ctx.room.members.values()
        if m.last_speech_end is not None and m.user_id != line.user_id
    ]
    return max(ends) + silence_s


def reply_silence(ctx: Ctx, line: RoomLine) -> float:
    """How long the room must be quiet before the bot answers `line`: short when its speaker sounds
    finished, longest when they stopped mid-sentence or only called the bot's name, and in between when
    the words read as a finished sentence but the end-of-turn model heard the voice as unfinished."""
    policy = ctx.policy
    if only_a_call(ctx, line):
        return max(policy.reply_silence_s, policy.incomplete_wait_s)
    if ctx.turn_finished(line.text, line.end_of_turn):
        return policy.reply_silence_s
    wait = policy.unsure_wait_s if looks_complete(line.text) else policy.incomplete_wait_s
    return max(policy.reply_silence_s, min(wait, policy.incomplete_wait_s))


def rule_preemptive_start(ctx: Ctx) -> Decision | None:
    """A member paused, and their words so far already read as a finished request to the bot: start the
    reply now, its audio held until the final transcript confirms it (if they go on, it is dropped).

    "Paused" is either the VAD's end of speech with the final pending, or a pause shorter than that
    end-of-speech silence (`Member.paused`: their latest partial marked at the pause, then the
    speculative transcript of all their words). They must not sound unfinished: a partial the end-of-turn
    model already judged must pass it; one it has not judged yet may start (the final carries the
    judgement and confirms or drops the start, whose audio is held until then). A bare call ("Hey Juniper.") is not a request yet, and a line begun over
    the bot's voice (a barge-in, or an echo of that voice) waits for its final. In a group only a line
    naming the bot starts early (one "answering the bot's question" may be meant for anyone). Nobody
    else may be speaking.
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
        if since is None or ctx.now - since > ctx.policy.final_timeout_s:
            continue
        if not looks_complete(partial.text) or not ctx.turn_finished(partial.text, partial.end_of_turn):
            continue
        line = ctx.room.history_with(partial)[-1]  # their line as it will read ("Hey Juniper." + this)
        if line.overlapped_bot:
            continue  # begun over the bot's voice: a barge-in, or that voice echoed by their microphone
        why = addressed_reason(ctx, line)
        alone = ctx.alone_with()
        named = ctx.names_bot(line)
        if (
            why is None
            or only_a_call(ctx, line)
            or (not named and ignorable(ctx, line))
            or not (named or (alone is not None and alone.user_id == member.user_id))
        ):
            continue  # in a group, only a line naming the bot is sure enough to start before its end
        return Decision(
            Action.RESPOND_NOW,
            f"early start: {member.name} paused; {why}",
            "preemptive_start",
            member_id=member.user_id,
            addressed=True,
            preemptive=True,
        )
    return None


def rule_respond_when_addressed(ctx: Ctx) -> Decision | None:
    line = ctx.open_line
    if line is None or ctx.now - line.end > ctx.policy.addressed_max_age_s:
        return None
    why = addressed_reason(ctx, line)
    if why is None:
        return None
    if not ctx.names_bot(line) and ignorable(ctx, line):
        return None
    silence = reply_silence(ctx, line)
    until = silence_until(ctx, line, silence)
    if ctx.now < until:
        return Decision(
            Action.WAIT,
            f"addressed ({why}); waiting {silence * 1000:.0f} ms of silence",
            "respond_when_addressed",
            until=until,
            reply_to_seq=line.seq,
            addressed=True,
        )
    return Decision(
        Action.RESPOND_NOW, why, "respond_when_addressed", reply_to_seq=line.seq, addressed=True, member_id=line.user_id
    )


def _revisit(ctx: Ctx, line: RoomLine) -> float:
    """Silent, but look again when the room has been quiet long enough for a topic."""
    return max(line.end, ctx.room.last_activity()) + ctx.policy.idle_topic_s + 0.001


def rule_humans_talking(ctx: Ctx) -> Decision | None:
    """A line to another member by name, or two humans talking back and forth: keep out."""
    line = ctx.open_line
    if line is None or ctx.now - line.end > ctx.policy.idle_topic_s:
        return None
    named = ctx.members_called(line)
    if named:
        return Decision(
            Action.STAY_SILENT,
            f"{line.name} spoke to {ctx.room.name_of(named[0])} by name",
            "humans_talking",
            until=_revisit(ctx, line),
        )
    previous = next(ctx.room.lines_before(line.seq), None)
    if (
        previous is not None
        and not previous.is_bot
        and previous.user_id != line.user_id
        and line.start - previous.end <= ctx.policy.exchange_gap_s
    ):
        return Decision(
            Action.STAY_SILENT,
            f"{previous.name} and {line.name} are talking to each other",
            "humans_talking",
            until=_revisit(ctx, line),
        )
    return None


def rule_join_in(ctx: Ctx) -> Decision | None:
    """Alone with the bot, a member's remark is meant for it: answer after a longer silence (unless the
    bot spoke very recently). In a group, a remark to the room is left to the room."""
    line = ctx.open_line
    if line is None or ctx.now - line.end > ctx.policy.idle_topic_s:
        return None
    alone = ctx.alone_with()
    if alone is None or alone.user_id != line.user_id:
        return Decision(
            Action.STAY_SILENT, f"{line.name} spoke to the group, not to the bot", "join_in", until=_revisit(ctx, line)
        )
    if ignorable(ctx, line):
        return None
    silence = max(ctx.policy.group_silence_s, reply_silence(ctx, line))
    until = silence_until(ctx, line, silence)
    last_bot = ctx.room.last_bot_line_t
    if last_bot is not None:
        until = max(until, last_bot + ctx.policy.cooldown_s)
    if ctx.now < until:
        return Decision(
            Action.WAIT,
            f"{line.name} was not speaking to the bot; waiting for a longer silence",
            "join_in",
            until=until,
            reply_to_seq=line.seq,
        )
    return Decision(
        Action.RESPOND_NOW,
        f"{line.name} paused, alone with the bot",
        "join_in",
        reply_to_seq=line.seq,
        member_id=line.user_id,
    )


# --- a question put to the room ---------------------------------------------------------------------

ANSWER_OVERLAP_S = 0.2  # an answer may start this much before the question's last word (people overlap a little)


def calls_member(ctx: Ctx, line: RoomLine) -> str | None:
    """The name of the member `line` calls by name ("Bob, are you …", "…, Alice?"), not just mentions."""
    members = ctx.members_called(line)
    return ctx.room.name_of(members[0]) if members else None


def open_to_the_room(ctx: Ctx, line: RoomLine) -> bool:
    """`line` is a question or a request for talk ("tell us a fun fact") put to the room, which the bot may
    take if nobody does (`rule_room_question`'s conditions on the line itself; who answers, and when, are the
    rule's)."""
    policy, room = ctx.policy, ctx.room
    if policy.room_question_wait_s <= 0 or len(room.members) < 2:
        return False
    if not asks_the_room(line.text) or ignorable(ctx, line) or calls_member(ctx, line) is not None:
        return False
    previous = next(room.lines_before(line.seq), None)
    if (
        previous is not None
        and not previous.is_bot
        and previous.user_id != line.user_id
        and line.start - previous.end <= policy.exchange_gap_s
    ):
        return False
    if room.last_bot_start_t is not None and line.start - room.last_bot_start_t <= policy.room_question_context_s:
        return True
    # Just joined, not yet spoken (its greeting skipped because someone spoke first, or off): only a line that
    # opens with a call Whisper could not spell ("Always. What is…" for "Hollis, what is…"); whoever ran /join
    # a moment ago most likely called the newcomer. A plain question then is the members' ("How was the concert?").
    return line.start - room.started_at <= policy.room_question_context_s and head_slot(line.text) is not None


def rule_room_question(ctx: Ctx) -> Decision | None:
    """A question put to the room that no human takes up within `room_question_wait_s` of silence: the bot
    takes it, as a person at the table would (people answer within ~0.2 s; a longer silence reads as
    trouble, and someone fills it). Only when the question is for anyone:

    * with two or more humans (alone with the bot, every question is the bot's already);
    * not calling a member by name: a question put to Alice is hers, even when she stays silent (she may be
      thinking or muted; answering for her would be rude); a name only mentioned ("what did Alice want?") is
      no address;
    * not inside two members' back-and-forth (the line before it another member's, within `exchange_gap_s`):
      there it is most likely for the other one (`rule_humans_talking`);
    * in a conversation the bot takes part in (its voice began at most `room_question_context_s` before the
      question, even a line cut short, like a notice someone spoke over; or it joined that recently and the
      question opens with a call the transcript bent): members talking among themselves while the bot keeps
      quiet ask each other;
    * never once anyone else began to speak after it (an answer on its way, even before its transcript).
    """
    policy = ctx.policy
    line = ctx.open_line
    room = ctx.room
    if line is None or ctx.now - line.end > policy.addressed_max_age_s or not open_to_the_room(ctx, line):
        return None
    taker = next(
        (
            m
            for m in room.members.values()
            if m.user_id != line.user_id
            and m.last_speech_start is not None
            and m.last_speech_start >= line.end - ANSWER_OVERLAP_S
        ),
        None,
    )
    if taker is not None:
        return Decision(
            Action.STAY_SILENT,
            f"{taker.name} took up {line.name}'s question",
            "room_question",
            until=_revisit(ctx, line),
        )
    wait = max(policy.room_question_wait_s, reply_silence(ctx, line))
    until = silence_until(ctx, line, wait)
    if ctx.now < until:
        return Decision(
            Action.WAIT,
            f"{line.name} asked the room; waiting {wait * 1000:.0f} ms for a member to answer",
            "room_question",
            until=until,
            reply_to_seq=line.seq,
        )
    return Decision(
        Action.RESPOND_NOW,
        f"nobody took up {line.name}'s question to the room in {wait:.1f} s",
        "room_question",
        reply_to_seq=line.seq,
        addressed=True,
        member_id=line.user_id,
    )
