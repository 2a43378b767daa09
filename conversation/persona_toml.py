"""chorus' own persona format: a parsed TOML document validated strictly (unknown fields are errors, so typos show)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from conversation.persona import (
    DEFAULT_LISTENERS_TREATMENT,
    DEFAULT_LISTENERS_WHO,
    DEFAULT_SPEAKING_STYLE,
    Exchange,
    Persona,
    PersonaError,
)
from conversation.persona_fields import (
    MAX_NAME_LENGTH,
    Fields,
    first_sentence,
    kind_of,
    style_limits,
    validate_name,
    voice_from_table,
)

_TOP_KEYS = {
    "name",
    "aliases",
    "description",
    "greeting",
    "topics",
    "holding",
    "tags",
    "bot",
    "listeners",
    "style",
    "examples",
    "voice",
    "extra_instructions",
}
_BOT_KEYS = {"identity", "personality", "speaking_style"}
_LISTENER_KEYS = {"who", "likes", "treatment"}
_EXAMPLE_KEYS = {"user", "bot"}


def persona_from_toml_data(data: Mapping[str, Any], path: Path) -> Persona:
    """Validate a parsed TOML document (a dict) into a Persona."""
    top = Fields(path, data)
    top.check_known(_TOP_KEYS)
    name = validate_name(path, "name", top.text("name", required=True, max_len=MAX_NAME_LENGTH * 4))

    bot = top.sub("bot")
    bot.check_known(_BOT_KEYS)
    identity = bot.text("identity", required=True)
    personality = bot.text("personality", required=True)
    speaking_style = bot.text("speaking_style", default=DEFAULT_SPEAKING_STYLE) or DEFAULT_SPEAKING_STYLE

    listeners = top.sub("listeners")
    listeners.check_known(_LISTENER_KEYS)
    who = listeners.text("who", default=DEFAULT_LISTENERS_WHO) or DEFAULT_LISTENERS_WHO
    likes = listeners.text("likes")
    treatment = listeners.text("treatment", default=DEFAULT_LISTENERS_TREATMENT) or DEFAULT_LISTENERS_TREATMENT

    max_words, max_sentences = style_limits(top.sub("style"))

    raw_examples = data.get("examples", [])
    if not isinstance(raw_examples, list):
        raise top.fail("examples", f"expected a list of [[examples]] tables, got {kind_of(raw_examples)}")
    examples = []
    for i, item in enumerate(raw_examples):
        if not isinstance(item, Mapping):
            raise PersonaError(path, f"examples[{i}]", f"expected a table with 'user' and 'bot', got {kind_of(item)}")
        ex = Fields(path, item, f"examples[{i}].")
        ex.check_known(_EXAMPLE_KEYS)
        examples.append(Exchange(user=ex.text("user", required=True), bot=ex.text("bot", required=True)))

    # `greeting`: one line, or a list of them to pick from at random on each join
    greetings = (
        top.texts("greeting", max_items=50) if isinstance(data.get("greeting"), list) else (top.text("greeting"),)
    )
    greetings = tuple(g for g in greetings if g) or (f"Hi everyone, {name} here!",)
    description = top.text("description", max_len=300) or first_sentence(identity)
    voice = voice_from_table(top.sub("voice"), path.parent)
    return Persona(
        name=name,
        description=description,
        identity=identity,
        personality=personality,
        speaking_style=speaking_style,
        listeners_who=who,
        listeners_likes=likes,
        listeners_treatment=treatment,
        greeting=greetings[0],
        greetings=greetings[1:],
        examples=tuple(examples),
        topics=top.texts("topics"),
        holding=top.texts("holding", max_items=20),
        max_reply_words=max_words,
        max_reply_sentences=max_sentences,
        voice=voice,
        extra_instructions=top.text("extra_instructions"),
        tags=top.texts("tags"),
        aliases=tuple(
            validate_name(path, f"aliases[{i}]", a) for i, a in enumerate(top.texts("aliases", max_items=20))
        ),
        source=path,
    )
