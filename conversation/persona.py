"""Personas: who the bot is, who it talks to, how it speaks and how it sounds.

A persona is one file in the personas folder (see `personas/README.md`):

- `*.toml`: chorus' own format, validated strictly (unknown fields are errors, so typos show).
- `*.json`: a SillyTavern Character Card (V2 `chara_card_v2`, V3 read the same way, V1 plain).
- `*.png`: the same card embedded in a PNG text chunk with keyword `chara` (base64 JSON).

Every problem raises `PersonaError` naming the file and the field. `PersonaLibrary.load`
keeps the good files and records the broken ones in `.errors`; one bad file never stops
the others from loading.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import struct
import tomllib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

log = logging.getLogger(__name__)

DEFAULT_PERSONA = "Juniper"
PERSONA_SUFFIXES = (".toml", ".json", ".png")
TTS_ENGINES = ("piper", "xtts", "espeak")
EMBEDDED_VOICE = "embedded"
MAX_NAME_LENGTH = 64
AUTOCOMPLETE_LIMIT = 25

DEFAULT_SPEAKING_STYLE = "Casual and friendly, like talking out loud with friends."
DEFAULT_LISTENERS_WHO = "the people in this Discord voice channel"
DEFAULT_LISTENERS_TREATMENT = "Be kind, listen, and keep the conversation easy to join."
DEFAULT_MAX_WORDS = 40
DEFAULT_MAX_SENTENCES = 3
# Stands for "the person the bot talks to" where a character card says {{user}}.
CARD_USER_NAME = "the listener"


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
    greeting: str
    examples: tuple[Exchange, ...] = ()
    topics: tuple[str, ...] = ()  # conversation starters for a quiet room
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


# --------------------------------------------------------------------------------------
# TOML (chorus' own format)

_TOP_KEYS = {"name", "aliases", "description", "greeting", "topics", "tags", "bot", "listeners", "style", "examples", "voice", "extra_instructions"}
_BOT_KEYS = {"identity", "personality", "speaking_style"}
_LISTENER_KEYS = {"who", "likes", "treatment"}
_STYLE_KEYS = {"max_words", "max_sentences"}
_EXAMPLE_KEYS = {"user", "bot"}
_VOICE_KEYS = {"engine", "voice", "reference_wav", "speed", "pitch"}


class _Fields:
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

    def sub(self, key: str) -> "_Fields":
        value = self.table.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a table like [{self.name(key)}], got {_kind(value)}")
        return _Fields(self.path, value, f"{self.name(key)}.")

    def text(self, key: str, *, required: bool = False, default: str = "", max_len: int = 4000) -> str:
        if key not in self.table:
            if required:
                raise self.fail(key, "missing (required)")
            return default
        value = self.table[key]
        if not isinstance(value, str):
            raise self.fail(key, f"expected text, got {_kind(value)}")
        value = _squash(value)
        if required and not value:
            raise self.fail(key, "must not be empty")
        if len(value) > max_len:
            raise self.fail(key, f"too long ({len(value)} characters, at most {max_len})")
        return value

    def texts(self, key: str, *, max_items: int = 100) -> tuple[str, ...]:
        value = self.table.get(key, [])
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list of text, got {_kind(value)}")
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise PersonaError(self.path, f"{self.name(key)}[{i}]", f"expected non-empty text, got {_kind(item)}")
            out.append(_squash(item))
        if len(out) > max_items:
            raise self.fail(key, f"too many items ({len(out)}, at most {max_items})")
        return tuple(out)

    def integer(self, key: str, default: int | None, lo: int, hi: int) -> int | None:
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected a whole number from {lo} to {hi}, got {_kind(value)}")
        if not lo <= value <= hi:
            raise self.fail(key, f"expected a whole number from {lo} to {hi}, got {value}")
        return value

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"expected a number from {lo:g} to {hi:g}, got {_kind(value)}")
        if not lo <= value <= hi:
            raise self.fail(key, f"expected a number from {lo:g} to {hi:g}, got {value:g}")
        return float(value)


def _kind(value: Any) -> str:
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


def _squash(text: str) -> str:
    """Trim, and join the lines of a multi-line TOML string into one paragraph (blank lines kept)."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def _validate_name(path: Path, field_name: str, name: str) -> str:
    if not name:
        raise PersonaError(path, field_name, "must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise PersonaError(path, field_name, f"too long ({len(name)} characters, at most {MAX_NAME_LENGTH})")
    if "\n" in name or any(not ch.isprintable() for ch in name):
        raise PersonaError(path, field_name, "must be one line of printable characters")
    return name


def _voice_from_table(f: _Fields, base_dir: Path) -> VoiceSpec:
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


def _style_limits(f: _Fields) -> tuple[int, int]:
    f.check_known(_STYLE_KEYS)
    words = f.integer("max_words", DEFAULT_MAX_WORDS, 5, 300)
    sentences = f.integer("max_sentences", DEFAULT_MAX_SENTENCES, 1, 12)
    assert words is not None and sentences is not None
    return words, sentences


def persona_from_toml_data(data: Mapping[str, Any], path: Path) -> Persona:
    """Validate a parsed TOML document (a dict) into a Persona."""
    top = _Fields(path, data)
    top.check_known(_TOP_KEYS)
    name = _validate_name(path, "name", top.text("name", required=True, max_len=MAX_NAME_LENGTH * 4))

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

    max_words, max_sentences = _style_limits(top.sub("style"))

    raw_examples = data.get("examples", [])
    if not isinstance(raw_examples, list):
        raise top.fail("examples", f"expected a list of [[examples]] tables, got {_kind(raw_examples)}")
    examples = []
    for i, item in enumerate(raw_examples):
        if not isinstance(item, Mapping):
            raise PersonaError(path, f"examples[{i}]", f"expected a table with 'user' and 'bot', got {_kind(item)}")
        ex = _Fields(path, item, f"examples[{i}].")
        ex.check_known(_EXAMPLE_KEYS)
        examples.append(Exchange(user=ex.text("user", required=True), bot=ex.text("bot", required=True)))

    greeting = top.text("greeting", default=f"Hi everyone, {name} here!") or f"Hi everyone, {name} here!"
    description = top.text("description", max_len=300) or _first_sentence(identity)
    voice = _voice_from_table(top.sub("voice"), path.parent)
    return Persona(
        name=name,
        description=description,
        identity=identity,
        personality=personality,
        speaking_style=speaking_style,
        listeners_who=who,
        listeners_likes=likes,
        listeners_treatment=treatment,
        greeting=greeting,
        examples=tuple(examples),
        topics=top.texts("topics"),
        max_reply_words=max_words,
        max_reply_sentences=max_sentences,
        voice=voice,
        extra_instructions=top.text("extra_instructions"),
        tags=top.texts("tags"),
        aliases=tuple(_validate_name(path, f"aliases[{i}]", a) for i, a in enumerate(top.texts("aliases", max_items=20))),
        source=path,
    )


def _sentence(text: str) -> str:
    """`text` ending in punctuation, so prompt parts read as sentences."""
    text = text.strip()
    return text if not text or text[-1] in ".!?\"')" else text + "."


def _first_sentence(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    first = match.group(1) if match else text
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


# --------------------------------------------------------------------------------------
# SillyTavern Character Cards (V1, V2; V3 has the same `data` fields)

_PLACEHOLDER = re.compile(r"\{\{\s*(char|user)\s*\}\}|<(BOT|USER)>", re.IGNORECASE)
_ACTION = re.compile(r"\*[^*\n]{1,200}\*")
_START = re.compile(r"^\s*<START>\s*$", re.IGNORECASE | re.MULTILINE)


def _fill(text: str, name: str) -> str:
    def repl(m: re.Match[str]) -> str:
        who = (m.group(1) or m.group(2)).lower()
        return name if who in ("char", "bot") else CARD_USER_NAME

    return _PLACEHOLDER.sub(repl, text)


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
        raise PersonaError(path, None, f"a character card must be a JSON object, got {_kind(card)}")
    spec = card.get("spec")
    if spec in ("chara_card_v2", "chara_card_v3"):
        data = card.get("data")
        if not isinstance(data, Mapping):
            raise PersonaError(path, "data", f"expected an object ({spec} keeps its fields under 'data'), got {_kind(data)}")
        prefix = "data."
    elif spec is None:
        data, prefix = card, ""  # V1: the fields are at the top level
    else:
        raise PersonaError(path, "spec", f"unsupported card spec {spec!r} (expected chara_card_v2, chara_card_v3 or a V1 card)")

    f = _Fields(path, data, prefix)
    name = _validate_name(path, f"{prefix}name", f.text("name", required=True, max_len=MAX_NAME_LENGTH * 4))

    def card_text(key: str, max_len: int = 8000) -> str:
        value = data.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise f.fail(key, f"expected text, got {_kind(value)}")
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
    first_mes = _speakable(card_text("first_mes"))
    examples = parse_mes_example(data.get("mes_example") or "", name) if isinstance(data.get("mes_example", ""), str) else None
    if examples is None:
        raise f.fail("mes_example", f"expected text, got {_kind(data.get('mes_example'))}")
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
        chorus = _Fields(path, {"chorus": ext["chorus"]}, f"{prefix}extensions.").sub("chorus")
        chorus.check_known({"style", "voice"})
        max_words, max_sentences = _style_limits(chorus.sub("style"))
        voice = _voice_from_table(chorus.sub("voice"), path.parent)

    nickname = card_text("nickname", max_len=MAX_NAME_LENGTH)  # V3 cards
    summary_src = creator_notes or description or personality
    return Persona(
        name=name,
        description=_first_sentence(_speakable(summary_src)) or name,
        identity=_squash(description) if description else f"{name}.",
        personality=_squash(personality),
        speaking_style=DEFAULT_SPEAKING_STYLE,
        listeners_who=DEFAULT_LISTENERS_WHO,
        listeners_likes="",
        listeners_treatment=DEFAULT_LISTENERS_TREATMENT,
        greeting=first_mes or f"Hi everyone, {name} here!",
        examples=examples,
        topics=(),
        max_reply_words=max_words,
        max_reply_sentences=max_sentences,
        voice=voice,
        extra_instructions=_squash(extra) if extra else "",
        post_history_instructions=_squash(post_history) if post_history else "",
        tags=tuple(t.strip() for t in tags_raw if t.strip()),
        aliases=(nickname,) if nickname and nickname.casefold() != name.casefold() else (),
        source=path,
    )


# --------------------------------------------------------------------------------------
# PNG text chunks (no Pillow: the format is small and we must check CRCs anyway)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PNG_BYTES = 64 * 1024 * 1024


def iter_png_chunks(blob: bytes, path: Path | None = None) -> Iterator[tuple[bytes, bytes]]:
    """Yield (chunk type, data) for each chunk up to IEND, checking lengths and CRCs."""
    if not blob.startswith(PNG_SIGNATURE):
        raise PersonaError(path, None, "not a PNG file (bad signature)")
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(blob):
            raise PersonaError(path, None, f"PNG is truncated at byte {pos} (no IEND chunk)")
        length, ctype = struct.unpack(">I4s", blob[pos : pos + 8])
        end = pos + 8 + length + 4
        if end > len(blob):
            raise PersonaError(path, None, f"PNG chunk {ctype!r} at byte {pos} runs past the end of the file")
        data = blob[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", blob[pos + 8 + length : end])
        if zlib.crc32(ctype + data) & 0xFFFFFFFF != crc:
            raise PersonaError(path, None, f"PNG chunk {ctype.decode('latin-1')!r} at byte {pos} has a bad CRC (file damaged)")
        yield ctype, data
        if ctype == b"IEND":
            return
        pos = end


def png_text_chunks(blob: bytes, path: Path | None = None) -> dict[str, str]:
    """All tEXt / zTXt / iTXt entries of a PNG as {keyword: text} (first of each keyword wins)."""
    out: dict[str, str] = {}
    for ctype, data in iter_png_chunks(blob, path):
        try:
            if ctype == b"tEXt":
                key, _, text = data.partition(b"\0")
                value = text.decode("latin-1")
            elif ctype == b"zTXt":
                key, _, rest = data.partition(b"\0")
                value = zlib.decompress(rest[1:]).decode("latin-1")
            elif ctype == b"iTXt":
                key, _, rest = data.partition(b"\0")
                compressed, _method = rest[0], rest[1]
                _lang, _, rest = rest[2:].partition(b"\0")
                _translated, _, text = rest.partition(b"\0")
                value = (zlib.decompress(text) if compressed else text).decode("utf-8")
            else:
                continue
        except (zlib.error, IndexError, UnicodeDecodeError) as exc:
            raise PersonaError(path, None, f"PNG {ctype.decode()} chunk cannot be read: {exc}") from None
        out.setdefault(key.decode("latin-1"), value)
    return out


def card_from_png(blob: bytes, path: Path | None = None) -> Any:
    """The Character Card JSON embedded in a PNG (`chara`, else V3's `ccv3`), decoded."""
    texts = png_text_chunks(blob, path)
    keyword = "chara" if "chara" in texts else "ccv3" if "ccv3" in texts else None
    if keyword is None:
        raise PersonaError(path, None, "PNG has no character card (no text chunk with keyword 'chara')")
    try:
        raw = base64.b64decode(texts[keyword].strip(), validate=False)
        return json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PersonaError(path, f"png:{keyword}", f"not base64-encoded card JSON: {exc}") from None


# --------------------------------------------------------------------------------------
# Loading


def load_persona(path: Path | str) -> Persona:
    """Load one persona file (.toml, .json or .png). Raises PersonaError naming the file and field."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PERSONA_SUFFIXES:
        raise PersonaError(path, None, f"unsupported file type {suffix!r} (expected {', '.join(PERSONA_SUFFIXES)})")
    try:
        if suffix == ".png":
            size = path.stat().st_size
            if size > MAX_PNG_BYTES:
                raise PersonaError(path, None, f"PNG too large ({size} bytes)")
            blob = path.read_bytes()
        else:
            text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PersonaError(path, None, f"cannot read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PersonaError(path, None, f"not UTF-8 text: {exc}") from None

    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PersonaError(path, None, f"TOML syntax error: {exc}") from None
        return persona_from_toml_data(data, path)
    if suffix == ".json":
        try:
            card = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PersonaError(path, None, f"JSON syntax error: {exc}") from None
        return persona_from_card(card, path)
    return persona_from_card(card_from_png(blob, path), path)


class PersonaLibrary:
    """The personas of one folder, by name (case-insensitive). Broken files are kept in `.errors`."""

    def __init__(self, personas: Iterable[Persona] = (), errors: Iterable[tuple[Path, str]] = (), folder: Path | None = None) -> None:
        self.folder = folder
        self.errors: list[tuple[Path, str]] = list(errors)
        self._by_key: dict[str, Persona] = {}
        for persona in personas:
            self._add(persona)

    def _add(self, persona: Persona) -> None:
        key = persona.name.casefold()
        first = self._by_key.get(key)
        if first is not None:
            where = persona.source or Path("<memory>")
            message = f"field 'name': duplicate persona name {persona.name!r} (already defined by {first.source}); this file is ignored"
            log.warning("persona %s: %s", where, message)
            self.errors.append((where, message))
            return
        self._by_key[key] = persona

    @classmethod
    def load(cls, folder: Path | str) -> "PersonaLibrary":
        """Load every persona file of `folder` (sorted by file name, so the first duplicate wins).

        Blocking file I/O: call from a thread (`asyncio.to_thread`) once the event loop runs.
        """
        folder = Path(folder)
        library = cls(folder=folder)
        if not folder.is_dir():
            message = "persona folder not found"
            log.error("persona folder %s: %s", folder, message)
            library.errors.append((folder, message))
            return library
        files = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in PERSONA_SUFFIXES and not p.name.startswith(".") and p.is_file()),
            key=lambda p: p.name.casefold(),
        )
        for path in files:
            try:
                persona = load_persona(path)
            except PersonaError as exc:
                log.error("persona file skipped: %s", exc)
                library.errors.append((path, exc.message))
                continue
            library._add(persona)
        log.info("loaded %d persona(s) from %s (%d broken)", len(library), folder, len(library.errors))
        return library

    def get(self, name: str) -> Persona | None:
        return self._by_key.get(name.strip().casefold())

    def names(self) -> list[str]:
        return sorted((p.name for p in self._by_key.values()), key=str.casefold)

    def search(self, text: str, limit: int = AUTOCOMPLETE_LIMIT) -> list[Persona]:
        """Personas whose name starts with `text`, then those containing it (name or tags); at most `limit`."""
        needle = text.strip().casefold()
        ordered = sorted(self._by_key.values(), key=lambda p: p.name.casefold())
        prefix = [p for p in ordered if p.name.casefold().startswith(needle)]
        inner = [
            p
            for p in ordered
            if p not in prefix and (needle in p.name.casefold() or any(needle in t.casefold() for t in p.tags))
        ]
        return (prefix + inner)[: max(0, min(limit, AUTOCOMPLETE_LIMIT))]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Persona]:
        return iter(sorted(self._by_key.values(), key=lambda p: p.name.casefold()))


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


def format_errors(errors: Sequence[tuple[Path, str]]) -> list[str]:
    """One line per broken file: `name.toml: field 'x': detail`."""
    return [f"{Path(p).name}: {m}" for p, m in errors]
