"""The one-paragraph "situation" handed to the LLM with each line: why the bot speaks now.

`situation_for` returns a `Situation`: the text itself (a `str`, for a model that follows the full
persona prompt), a `short` form for small models (one plain sentence, or nothing when the member's
line speaks for itself: a small model answers a line better without a bracketed note), and the
`addressee`, the member the reply is for (None when it is for the whole room), which the reply's
screen uses to drop names addressing anyone else.
"""

from __future__ import annotations

from typing import Any

from conversation.text_words import words
from conversation.decision import Action, Decision
from conversation.room import Room

RECENT_TOPIC_LINES = 30


class Situation(str):
    """The situation text, with its `short` form and the reply's `addressee`."""

    short: str
    addressee: str | None

    def __new__(cls, text: str, *, short: str | None = None, addressee: str | None = None) -> "Situation":
        obj = super().__new__(cls, text)
        obj.short = short if short is not None else text
        obj.addressee = addressee
        return obj


def _present(room: Room) -> str:
    names = [m.name for m in room.members.values()]
    if not names:
        return "Nobody else is in the voice channel."
    if len(names) == 1:
        return f"In the voice channel with you: {names[0]}."
    return f"In the voice channel with you: {', '.join(names[:-1])} and {names[-1]}."


def pick_topic(room: Room, topics: tuple[str, ...] | list[str]) -> str | None:
    """The first persona topic not touched on in recent lines; else rotate through them."""
    if not topics:
        return None
    recent = [line for line in list(room.history)[-RECENT_TOPIC_LINES:]]
    said = set()
    for line in recent:
        said.update(words(line.text))
    for topic in topics:
        keys = [w for w in words(topic) if len(w) > 3]
        if keys and not any(k in said for k in keys):
            return topic
    bot_lines = sum(1 for line in room.history if line.is_bot)
    return topics[bot_lines % len(topics)]


def situation_for(decision: Decision, room: Room, persona: Any, now: float) -> Situation:
    """Plain-language situation for the prompt builder (`build_messages(..., situation=...)`)."""
    present = _present(room)
    if decision.action is Action.RESPOND_NOW:
        line = room.line(decision.reply_to_seq)
        speaker = line.name if line is not None else room.name_of(decision.member_id or 0)
        if decision.addressed:
            return Situation(
                f"{present} {speaker} is talking to you; reply to {speaker}.", short="", addressee=speaker
            )  # the line itself names the bot: nothing to add
        return Situation(
            f"{present} {speaker} said something to the group, not to you in particular. Add one "
            f"short, friendly remark that fits, or a question to keep it going.",
            short=f"{speaker} says this to the group. Join in with one short remark.",
            addressee=speaker,
        )
    if decision.action is Action.START_TOPIC:
        quiet = now - room.last_activity()
        topic = pick_topic(room, tuple(getattr(persona, "topics", ()) or ()))
        last_human = room.last_human_line()
        hooks = []
        if topic:
            hooks.append(f"for example: {topic}")
        if last_human is not None:
            hooks.append(f'or come back to what {last_human.name} said earlier ("{last_human.text[:120]}")')
        idea = (" " + ", ".join(hooks) + ".") if hooks else "."
        about = f" about {topic}" if topic else ""
        return Situation(
            f"{present} Nobody has spoken for {quiet:.0f} seconds. Bring the room back to life with a "
            f"light, open question or topic{idea}",
            short=f"The room has gone quiet. Ask everyone a light question{about}.",
            addressee=None,
        )
    if decision.action is Action.GREET:
        if decision.member_id is None:
            greeting = getattr(persona, "greeting", "") or ""
            hint = f' Your usual greeting: "{greeting}"' if greeting else ""
            return Situation(
                f"You just joined the voice channel. {present} Say hello to everyone briefly.{hint}",
                short="You just joined the voice chat. Say hello to everyone.",
                addressee=None,
            )
        name = room.name_of(decision.member_id)
        return Situation(
            f"{name} just joined the voice channel. {present} Greet {name} by name in one short sentence.",
            short=f"{name} just joined. Say hello to {name}.",
            addressee=name,
        )
    if decision.action is Action.FAREWELL:
        name = next((d.name for d in room.departures if d.user_id == decision.member_id), "Someone")
        return Situation(
            f"{name} just left the voice channel. {present} Say a brief goodbye to {name} or note it in one line.",
            short=f"{name} just left. Say goodbye to {name}.",
            addressee=name,
        )
    return Situation(present, short=present, addressee=None)
