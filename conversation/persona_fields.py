"""Typed, validated reads of a persona's tables, shared by the TOML format and the card's chorus extension.

Every problem raises `PersonaError` naming the file and the dotted field.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping

from conversation.persona import (
    DEFAULT_MAX_SENTENCES,
    DEFAULT_MAX_WORDS,
    EMBEDDED_VOICE,
    TTS_ENGINES,
    PersonaError,
    VoiceSpec,
)

MAX_NAME_LENGTH = 64
_STYLE_KEYS = {"max_words", "max_sentences"}
_VOICE_KEYS = {"engine", "voice", "reference_wav", "speed", "pitch"}


class Fields:
    """Typed reads from a parsed table, raising PersonaError with the dotted field name."""

    def __init__(self, path: Path, table: Mapping[str, Any], prefix: str = "") -> None:
        self.path = path
        self.table = table
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, detail: str) -> PersonaError:
        return PersonaError(self.path, self.name(key), detail)

    def check_known(self, known: set[str]) -> None:
        for key in self.table:
            if key not in known:
                raise self.fail(key, f"unknown field (known: {', '.join(sorted(known))})")

    def sub(self, key: str) -> "Fields":
        value = self.table.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a table like [{self.name(key)}], got {kind_of(value)}")
        return Fields(self.path, value, f"{self.name(key)}.")

    def text(self, key: str, *, required: bool = False, default: str = "", max_len: int = 4000) -> str:
        if key not in self.table:
            if required:
                raise self.fail(key, "missing (required)")
            return default
        value = self.table[key]
        if not isinstance(value, str):
            raise self.fail(key, f"expected text, got {kind_of(value)}")
        value = squash(value)
        if required and not value:
            raise self.fail(key, "must not be empty")
        if len(value) > max_len:
            raise self.fail(key, f"too long ({len(value)} characters, at most {max_len})")
        return value

    def texts(self, key: str, *, max_items: int = 100) -> tuple[str, ...]:
        value = self.table.get(key, [])
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list of text, got {kind_of(value)}")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise PersonaError(self.path, f"{self.name(key)}[{i}]", f"expected non-empty text, got {kind_of(item)}")
            out.append(squash(item))
        if len(out) > max_items:
            raise self.fail(key, f"too many items ({len(out)}, at most {max_items})")
        return tuple(out)

    def integer(self, key: str, default: int | None, lo: int, hi: int) -> int | None:
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected a whole number from {lo} to {hi}, got {kind_of(value)}")
        if not lo <= value <= hi:
            raise self.fail(key, f"expected a whole number from {lo} to {hi}, got {value}")
        return value

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"expected a number from {lo:g} to {hi:g}, got {kind_of(value)}")
        if not lo <= value <= hi:
            raise self.fail(key, f"expected a number from {lo:g} to {hi:g}, got {value:g}")
        return float(value)


def kind_of(value: Any) -> str:
    """What `value` is, in words for an error message ("text 'fast'", "a table")."""
    if isinstance(value, str):
        return f"text {value!r}" if len(value) <= 40 else "text"
    if isinstance(value, bool):
        return f"true/false ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def squash(text: str) -> str:
    """Trim, and join the lines of a multi-line TOML string into one paragraph (blank lines kept)."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def validate_name(path: Path, field_name: str, name: str) -> str:
    """`name` if it is a usable persona name or alias: non-empty, one printable line, not too long."""
    if not name:
        raise PersonaError(path, field_name, "must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise PersonaError(path, field_name, f"too long ({len(name)} characters, at most {MAX_NAME_LENGTH})")
    if "\n" in name or any(not ch.isprintable() for ch in name):
        raise PersonaError(path, field_name, "must be one line of printable characters")
    return name


def voice_from_table(f: Fields, base_dir: Path) -> VoiceSpec:
    """A `[voice]` table as a VoiceSpec; relative paths are resolved against `base_dir` and must exist."""
    f.check_known(_VOICE_KEYS)
    engine = f.text("engine", default="piper").lower()
    if engine not in TTS_ENGINES:
        raise f.fail("engine", f"expected one of {', '.join(TTS_ENGINES)}, got {engine!r}")
    default_voice = {"piper": EMBEDDED_VOICE, "espeak": "en-us", "xtts": ""}[engine]
    voice = f.text("voice", default=default_voice)
    if engine == "piper":
        if not voice:
            raise f.fail("voice", f"must be '{EMBEDDED_VOICE}' or a path to a Piper .onnx voice")
        if voice != EMBEDDED_VOICE:
            onnx = (base_dir / Path(voice).expanduser()).resolve()
            if onnx.suffix != ".onnx":
                raise f.fail("voice", f"expected '{EMBEDDED_VOICE}' or a Piper .onnx file, got {voice!r}")
            if not onnx.is_file():
                raise f.fail("voice", f"Piper voice file not found: {onnx}")
            voice = str(onnx)
    elif engine == "espeak" and not re.fullmatch(r"[A-Za-z0-9_+\-]+", voice):
        raise f.fail("voice", f"expected an espeak voice name like 'en-us' or 'en+m3', got {voice!r}")
    reference: Path | None = None
    raw_ref = f.text("reference_wav")
    if raw_ref:
        reference = (base_dir / Path(raw_ref).expanduser()).resolve()
        if reference.suffix.lower() != ".wav":
            raise f.fail("reference_wav", f"expected a .wav file, got {raw_ref!r}")
    if engine == "xtts":
        if reference is None:
            raise f.fail("reference_wav", "required when engine = 'xtts' (a 6-30 s clean .wav of the voice to clone)")
        if not reference.is_file():
            raise f.fail("reference_wav", f"file not found: {reference}")
    speed = f.number("speed", 1.0, 0.25, 4.0)
    pitch = f.integer("pitch", None, 0, 99)
    return VoiceSpec(engine=engine, voice=voice, reference_wav=reference, speed=speed, pitch=pitch)


def style_limits(f: Fields) -> tuple[int, int]:
    """A `[style]` table as (max words, max sentences) per reply."""
    f.check_known(_STYLE_KEYS)
    words = f.integer("max_words", DEFAULT_MAX_WORDS, 5, 300)
    sentences = f.integer("max_sentences", DEFAULT_MAX_SENTENCES, 1, 12)
    assert words is not None and sentences is not None
    return words, sentences


def first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of `text` on one line, cut to `limit` characters."""
    text = " ".join(text.split())
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    first = match.group(1) if match else text
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"
