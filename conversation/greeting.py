"""The bot's scripted lines: its first words in a room (one of the persona's own greetings, names filled in),
and the holding line it says when its answer has to wait for busy models (`brain.admission`).

A persona has a `greeting` and may have more (`greetings`: a TOML list, a Character Card's `first_mes` and
`alternate_greetings`). Each join picks one at random, so the bot does not open every call the same way.
Card placeholders are filled at that moment: `{{char}}` (or `<BOT>`) is the persona's name, `{{user}}` (or
`<USER>`) the members present ("Alice", "Alice and Bob"; "everyone" when there are more than three or none).
"""

from __future__ import annotations

import random
import re
from typing import Any, Sequence

USER_PLACEHOLDER = re.compile(r"\{\{\s*user\s*\}\}|<USER>", re.IGNORECASE)
CHAR_PLACEHOLDER = re.compile(r"\{\{\s*char\s*\}\}|<BOT>", re.IGNORECASE)
MAX_NAMED_LISTENERS = 3
# Short on purpose: cheap to synthesize (and cached per voice), and no promise the bot may not keep.
DEFAULT_HOLDING_LINES = ("One moment.", "Hmm, let me think.", "Just a sec.")


def listeners_phrase(names: Sequence[str]) -> str:
    """How a greeting names the people present: "Alice", "Alice and Bob", "Alice, Bob and Chen", "everyone"."""
    names = [n for n in names if n.strip()]
    if not names or len(names) > MAX_NAMED_LISTENERS:
        return "everyone"
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def fill_names(text: str, persona_name: str, listeners: Sequence[str]) -> str:
    """`text` with `{{char}}` / `{{user}}` (and V1 `<BOT>` / `<USER>`) replaced by the names they stand for."""
    text = CHAR_PLACEHOLDER.sub(lambda _m: persona_name, text)
    return USER_PLACEHOLDER.sub(lambda _m: listeners_phrase(listeners), text)


def greetings_of(persona: Any) -> tuple[str, ...]:
    """Every greeting the persona has, its main one first, without blanks or repeats."""
    found = [getattr(persona, "greeting", "") or "", *(getattr(persona, "greetings", ()) or ())]
    return tuple(dict.fromkeys(g.strip() for g in found if g and g.strip()))


def greeting_line(persona: Any, listeners: Sequence[str], rng: random.Random | None = None) -> str:
    """One of the persona's greetings, picked at random, with the names filled in."""
    name = getattr(persona, "name", "")
    choices = greetings_of(persona) or (f"Hi everyone, {name} here!",)
    return fill_names((rng or random).choice(choices), name, listeners)


def holding_lines(persona: Any) -> tuple[str, ...]:
    """The persona's holding lines (`holding`), or plain ones."""
    own = tuple(dict.fromkeys(h.strip() for h in (getattr(persona, "holding", ()) or ()) if h and h.strip()))
    return own or DEFAULT_HOLDING_LINES


def holding_line(persona: Any, rng: random.Random | None = None) -> str:
    """One of the persona's holding lines, picked at random."""
    return (rng or random).choice(holding_lines(persona))
