"""Personas: who the bot is, who it talks to, how it speaks and how it sounds.

This module holds the data (`Persona`, `VoiceSpec`, `Exchange`), the system prompt a persona renders,
and `PersonaError`. Files are read by `conversation.persona_library.load_persona`: chorus TOML
(`persona_toml`) or a SillyTavern Character Card as JSON or PNG (`persona_card`, `persona_png`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_PERSONA = "Juniper"
TTS_ENGINES = ("piper", "xtts", "espeak")
EMBEDDED_VOICE = "embedded"

DEFAULT_SPEAKING_STYLE = "Casual and friendly, like talking out loud with friends."
DEFAULT_LISTENERS_WHO = "the people in this Discord voice channel"
DEFAULT_LISTENERS_TREATMENT = "Be kind, listen, and keep the conversation easy to join."
DEFAULT_MAX_WORDS = 40
DEFAULT_MAX_SENTENCES = 3


class PersonaError(ValueError):
    """A persona file cannot be used. `str()` reads `<path>: <field>: <what is wrong>`."""

    def __init__(self, path: Path | str | None, field_name: str | None, detail: str) -> None:
        self.path = Path(path) if path is not None else None
        self.field = field_name
        self.detail = detail
        super().__init__(self.message if self.path is None else f"{self.path}: {self.message}")

    @property
    def message(self) -> str:
        """The error without the path: `field 'x': detail` or just the detail."""
        return f"field '{self.field}': {self.detail}" if self.field else self.detail


@dataclass(frozen=True)
class VoiceSpec:
    """How a persona sounds. `voice` is `embedded`, a Piper .onnx path, or an espeak voice name."""

    engine: str = "piper"
    voice: str = EMBEDDED_VOICE
    reference_wav: Path | None = None  # XTTS speaker reference
    speed: float = 1.0  # 1.0 = the engine's normal rate; 1.2 = 20 % faster
    pitch: int | None = None  # espeak 0..99; None = engine default

    def describe(self) -> str:
        parts = [self.engine]
        if self.engine == "xtts" and self.reference_wav is not None:
            parts.append(f"reference {self.reference_wav.name}")
        else:
            parts.append(Path(self.voice).name if self.voice != EMBEDDED_VOICE else "embedded voice")
        parts.append(f"speed {self.speed:g}")
        if self.pitch is not None:
            parts.append(f"pitch {self.pitch}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Exchange:
    """One example turn: what a listener says and how the persona answers."""

    user: str
    bot: str


@dataclass(frozen=True)
class Persona:
    name: str
    description: str  # one or two lines for /persona show and autocomplete
    identity: str  # who the bot is
    personality: str
    speaking_style: str
    listeners_who: str  # who the bot talks to
    listeners_likes: str  # what they like
    listeners_treatment: str  # how to treat them
    greeting: str  # said when the bot joins (`{{user}}` / `{{char}}` filled in then: `conversation.greeting`)
    examples: tuple[Exchange, ...] = ()
    greetings: tuple[str, ...] = ()  # more greetings to pick from at random (a card's `alternate_greetings`)
    topics: tuple[str, ...] = ()  # conversation starters for a quiet room
    holding: tuple[str, ...] = ()  # short lines said while its answer waits for busy models ("One sec.")
    max_reply_words: int = DEFAULT_MAX_WORDS
    max_reply_sentences: int = DEFAULT_MAX_SENTENCES
    voice: VoiceSpec = field(default_factory=VoiceSpec)
    extra_instructions: str = ""  # card scenario / system_prompt: appended to the system prompt
    post_history_instructions: str = ""  # card: meant to follow the chat history in the prompt
    tags: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # other names people call it by ("June"), for spotting when it is addressed
    source: Path | None = None

    def render_system_prompt(self) -> str:
        """The system prompt text: traits, listener traits, style limits, and speech rules."""
        lines = [f"You are {self.name}. {_sentence(self.identity)}".strip()]
        if self.personality:
            lines.append(f"Personality: {_sentence(self.personality)}")
        if self.speaking_style:
            lines.append(f"How you speak: {_sentence(self.speaking_style)}")
        lines.append(f"You are talking with {_sentence(self.listeners_who)}")
        if self.listeners_likes:
            lines.append(f"What they like: {_sentence(self.listeners_likes)}")
        if self.listeners_treatment:
            lines.append(f"How to treat them: {_sentence(self.listeners_treatment)}")
        if self.extra_instructions:
            lines.append(self.extra_instructions)
        sentences = "one sentence" if self.max_reply_sentences == 1 else f"{self.max_reply_sentences} sentences"
        lines.append(
            "You are speaking out loud in a voice chat and a text-to-speech voice reads your words. "
            "Answer in plain, speech-friendly sentences: no lists, markdown, emoji, or stage directions, "
            "and never start with a name or a speaker label. "
            f"Keep each reply to at most {sentences} and {self.max_reply_words} words."
        )
        return "\n".join(lines)

    def max_reply_tokens(self) -> int:
        """Token budget for one reply: ~1.4 tokens per English word plus room to end the sentence."""
        return int(math.ceil(self.max_reply_words * 1.4)) + 8


def _sentence(text: str) -> str:
    """`text` ending in punctuation, so prompt parts read as sentences."""
    text = text.strip()
    return text if not text or text[-1] in ".!?\"')" else text + "."


def fallback_persona(name: str = DEFAULT_PERSONA) -> Persona:
    """A minimal built-in persona, used only when the persona folder yields none."""
    return Persona(
        name=name,
        description="A friendly voice in the channel (built-in fallback persona).",
        identity="A friendly companion who hangs out in voice chat.",
        personality="Warm, curious and relaxed.",
        speaking_style=DEFAULT_SPEAKING_STYLE,
        listeners_who=DEFAULT_LISTENERS_WHO,
        listeners_likes="",
        listeners_treatment=DEFAULT_LISTENERS_TREATMENT,
        greeting=f"Hi everyone, {name} here!",
    )
