"""SillyTavern Character Cards (V2 `chara_card_v2`, V3 read the same way, V1 plain) as a Persona.

Card text is spoken, not read: `{{char}}`/`{{user}}` placeholders are filled and roleplay *actions* dropped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from conversation.persona import (
    DEFAULT_LISTENERS_TREATMENT,
    DEFAULT_LISTENERS_WHO,
    DEFAULT_MAX_SENTENCES,
    DEFAULT_MAX_WORDS,
    DEFAULT_SPEAKING_STYLE,
    Exchange,
    Persona,
    PersonaError,
    VoiceSpec,
)
from conversation.greeting import CHAR_PLACEHOLDER, USER_PLACEHOLDER
from conversation.persona_fields import (
    MAX_NAME_LENGTH,
    Fields,
    first_sentence,
    kind_of,
    squash,
    style_limits,
    validate_name,
    voice_from_table,
)

# Stands for "the person the bot talks to" where a character card says {{user}}.
CARD_USER_NAME = "the listener"

_PLACEHOLDER = re.compile(r"\{\{\s*(char|user)\s*\}\}|<(BOT|USER)>", re.IGNORECASE)
_ACTION = re.compile(r"\*[^*\n]{1,200}\*")
_START = re.compile(r"^\s*<START>\s*$", re.IGNORECASE | re.MULTILINE)


def _fill(text: str, name: str) -> str:
    def repl(m: re.Match[str]) -> str:
        who = (m.group(1) or m.group(2)).lower()
        return name if who in ("char", "bot") else CARD_USER_NAME

    return _PLACEHOLDER.sub(repl, text)


def fill_names(text: str, name: str) -> str:
    """A greeting's `{{char}}` / `<BOT>` as the card's name; `{{user}}` / `<USER>` kept as `{{user}}`, filled
    with the members present when it is spoken."""
    return USER_PLACEHOLDER.sub("{{user}}", CHAR_PLACEHOLDER.sub(lambda _m: name, text))


def _greeting_text(data: Any, key: str, f: Fields) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise f.fail(key, f"expected text, got {kind_of(value)}")
    if len(value) > 8000:
        raise f.fail(key, f"too long ({len(value)} characters, at most 8000)")
    return value.strip()


def _speakable(text: str) -> str:
    """Drop roleplay *actions* and squash whitespace: card lines are spoken, not read."""
    return " ".join(_ACTION.sub(" ", text).split())


def parse_mes_example(raw: str, name: str) -> tuple[Exchange, ...]:
    """Turn a card's `mes_example` (blocks after <START>, lines `{{user}}: ...` / `{{char}}: ...`) into exchanges.

    A persona line without a listener line before it has nothing to answer and is skipped.
    """
    exchanges: list[Exchange] = []
    # Speakers: {{user}} / {{char}}, V1's <USER> / <BOT>, or the character's own name.
    turn = re.compile(
        r"^\s*(\{\{\s*(?:user|char)\s*\}\}|<(?:USER|BOT)>|" + re.escape(name) + r")\s*:\s?(.*)$", re.IGNORECASE
    )
    for block in _START.split(raw or ""):
        turns: list[list[str]] = []  # [role, text]
        for line in block.splitlines():
            m = turn.match(line)
            if m:
                speaker = m.group(1).lower()
                role = "user" if speaker != name.lower() and "user" in speaker else "bot"
                turns.append([role, m.group(2)])
            elif turns and line.strip():
                turns[-1][1] += " " + line.strip()
        pending_user: list[str] = []
        for role, text in turns:
            text = _speakable(_fill(text, name))
            if not text:
                continue
            if role == "user":
                pending_user.append(text)
            elif pending_user:
                exchanges.append(Exchange(user=" ".join(pending_user), bot=text))
                pending_user = []
    return tuple(exchanges)


def persona_from_card(card: Any, path: Path) -> Persona:
    """A Persona from a Character Card dict (V2/V3 with `data`, or a flat V1 card)."""
    if not isinstance(card, Mapping):
        raise PersonaError(path, None, f"a character card must be a JSON object, got {kind_of(card)}")
    spec = card.get("spec")
    if spec in ("chara_card_v2", "chara_card_v3"):
        data = card.get("data")
        if not isinstance(data, Mapping):
            raise PersonaError(
                path, "data", f"expected an object ({spec} keeps its fields under 'data'), got {kind_of(data)}"
            )
        prefix = "data."
    elif spec is None:
        data, prefix = card, ""  # V1: the fields are at the top level
    else:
        raise PersonaError(
            path, "spec", f"unsupported card spec {spec!r} (expected chara_card_v2, chara_card_v3 or a V1 card)"
        )

    f = Fields(path, data, prefix)
    name = validate_name(path, f"{prefix}name", f.text("name", required=True, max_len=MAX_NAME_LENGTH * 4))

    def card_text(key: str, max_len: int = 8000) -> str:
        value = data.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise f.fail(key, f"expected text, got {kind_of(value)}")
        value = _fill(value.strip(), name)
        if len(value) > max_len:
            raise f.fail(key, f"too long ({len(value)} characters, at most {max_len})")
        return value

    description = card_text("description")
    personality = card_text("personality")
    scenario = card_text("scenario")
    system_prompt = card_text("system_prompt")
    post_history = card_text("post_history_instructions")
    creator_notes = card_text("creator_notes")
    # Greetings are spoken with the names of those present: {{user}} stays until then (conversation.greeting).
    first_mes = _speakable(fill_names(_greeting_text(data, "first_mes", f), name))
    raw_alternates = data.get("alternate_greetings") or []
    if not isinstance(raw_alternates, list) or not all(isinstance(g, str) for g in raw_alternates):
        raise f.fail("alternate_greetings", "expected a list of text")
    alternates = tuple(g for g in (_speakable(fill_names(g.strip(), name)) for g in raw_alternates[:50]) if g)
    examples = (
        parse_mes_example(data.get("mes_example") or "", name) if isinstance(data.get("mes_example", ""), str) else None
    )
    if examples is None:
        raise f.fail("mes_example", f"expected text, got {kind_of(data.get('mes_example'))}")
    tags_raw = data.get("tags", [])
    if not isinstance(tags_raw, list) or not all(isinstance(t, str) for t in tags_raw):
        raise f.fail("tags", "expected a list of text")
    if not description and not personality:
        raise f.fail("description", "missing: a card needs a description or a personality")

    # Card system prompts may say {{original}}: chorus' own prompt takes that place, so drop it.
    system_prompt = re.sub(r"\{\{\s*original\s*\}\}", "", system_prompt, flags=re.IGNORECASE).strip()
    extra = "\n".join(x for x in (f"Scenario: {scenario}" if scenario else "", system_prompt) if x)

    max_words, max_sentences, voice = DEFAULT_MAX_WORDS, DEFAULT_MAX_SENTENCES, VoiceSpec()
    ext = data.get("extensions", {})
    if isinstance(ext, Mapping) and "chorus" in ext:
        # Optional chorus settings travel inside the card: extensions.chorus.{style,voice}
        chorus = Fields(path, {"chorus": ext["chorus"]}, f"{prefix}extensions.").sub("chorus")
        chorus.check_known({"style", "voice"})
        max_words, max_sentences = style_limits(chorus.sub("style"))
        voice = voice_from_table(chorus.sub("voice"), path.parent)

    nickname = card_text("nickname", max_len=MAX_NAME_LENGTH)  # V3 cards
    summary_src = creator_notes or description or personality
    return Persona(
        name=name,
        description=first_sentence(_speakable(summary_src)) or name,
        identity=squash(description) if description else f"{name}.",
        personality=squash(personality),
        speaking_style=DEFAULT_SPEAKING_STYLE,
        listeners_who=DEFAULT_LISTENERS_WHO,
        listeners_likes="",
        listeners_treatment=DEFAULT_LISTENERS_TREATMENT,
        greeting=first_mes or (alternates[0] if alternates else f"Hi everyone, {name} here!"),
        greetings=alternates if first_mes else alternates[1:],
        examples=examples,
        topics=(),
        max_reply_words=max_words,
        max_reply_sentences=max_sentences,
        voice=voice,
        extra_instructions=squash(extra) if extra else "",
        post_history_instructions=squash(post_history) if post_history else "",
        tags=tuple(t.strip() for t in tags_raw if t.strip()),
        aliases=(nickname,) if nickname and nickname.casefold() != name.casefold() else (),
        source=path,
    )
