"""The one-paragraph "situation" handed to the LLM with each line: why the bot speaks now."""

from __future__ import annotations

from typing import Any

from conversation.addressing import words
from conversation.decision import Action, Decision
from conversation.room import Room

RECENT_TOPIC_LINES = 30


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


def situation_for(decision: Decision, room: Room, persona: Any, now: float) -> str:
    """Plain-language situation for the prompt builder (`build_messages(..., situation=...)`)."""
    present = _present(room)
    if decision.action is Action.RESPOND_NOW:
        line = next((ln for ln in reversed(room.history) if ln.seq == decision.reply_to_seq), None)
        speaker = line.name if line is not None else room.name_of(decision.member_id or 0)
        if decision.addressed:
            return f"{present} {speaker} is talking to you; reply to {speaker}."
        return (f"{present} {speaker} said something to the group, not to you in particular. Add one short, "
                f"friendly remark that fits, or a question to keep it going.")
    if decision.action is Action.START_TOPIC:
        quiet = now - room.last_activity()
        topic = pick_topic(room, tuple(getattr(persona, "topics", ()) or ()))
        last_human = room.last_human_line()
        hooks = []
        if topic:
            hooks.append(f"for example: {topic}")
        if last_human is not None:
            hooks.append(f"or come back to what {last_human.name} said earlier (\"{last_human.text[:120]}\")")
        idea = (" " + ", ".join(hooks) + ".") if hooks else "."
        return (f"{present} Nobody has spoken for {quiet:.0f} seconds. Bring the room back to life with a light, "
                f"open question or topic{idea}")
    if decision.action is Action.GREET:
        if decision.member_id is None:
            greeting = getattr(persona, "greeting", "") or ""
            hint = f" Your usual greeting: \"{greeting}\"" if greeting else ""
            return f"You just joined the voice channel. {present} Say hello to everyone briefly.{hint}"
        name = room.name_of(decision.member_id)
        return f"{name} just joined the voice channel. {present} Greet {name} by name in one short sentence."
    if decision.action is Action.FAREWELL:
        name = next((d.name for d in room.departures if d.user_id == decision.member_id), "Someone")
        return f"{name} just left the voice channel. {present} Say a brief goodbye to {name} or note it in one line."
    return f"{present}"
