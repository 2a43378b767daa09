"""Persona files: chorus TOML, Character Card V1/V2 JSON and PNG, the library, and the shipped personas."""

from __future__ import annotations

import base64
import json
import struct
import textwrap
import zlib
from pathlib import Path

import pytest

from runtime.settings import PROJECT_ROOT, load_settings
from conversation.persona import DEFAULT_PERSONA, Exchange, Persona, PersonaError
from conversation.persona_card import parse_mes_example
from conversation.persona_library import PersonaLibrary, load_persona
from conversation.persona_png import card_from_png

SHIPPED = PROJECT_ROOT / "personas"

VALID_TOML = textwrap.dedent(
    """
    name = "Maple"
    aliases = ["Mae", "Miss M"]
    description = "A gentle librarian."
    greeting = "Hello, friends."
    topics = ["favourite books", "rainy days"]
    tags = ["calm"]

    [bot]
    identity = "A librarian who loves quiet afternoons."
    personality = "Gentle and thoughtful."
    speaking_style = "Soft and slow."

    [listeners]
    who = "book club members"
    likes = "mystery novels"
    treatment = "Patiently."

    [style]
    max_words = 25
    max_sentences = 2

    [[examples]]
    user = "Any recommendations?"
    bot = "Try a cozy mystery, the kind with a cat."

    [voice]
    engine = "espeak"
    voice = "en-gb"
    speed = 0.9
    pitch = 40
    """
)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def minimal_toml(extra: str = "", *, name: str = "Tester", voice: str = "") -> str:
    return f'name = "{name}"\n{extra}\n[bot]\nidentity = "Someone."\npersonality = "Nice."\n{voice}'


def card_v2(**data: object) -> dict:
    base = {
        "name": "Seraphina",
        "description": "{{char}} is a forest guardian who watches over {{user}}.",
        "personality": "Kind, protective, a little mysterious.",
        "scenario": "{{user}} wakes up in {{char}}'s glade.",
        "first_mes": "*smiles softly* Welcome to my glade, traveler.",
        "mes_example": (
            "<START>\n{{user}}: Who are you?\n{{char}}: *bows* I am {{char}}, keeper of this forest.\n"
            "<START>\n{{char}}: A line with nothing to answer.\n{{user}}: Is it safe here?\n"
            "{{char}}: It is safe\nwhile I am here.\n"
        ),
        "creator_notes": "A calm fantasy companion. Works best slow.",
        "system_prompt": "{{original}} Stay in character as {{char}}.",
        "post_history_instructions": "Keep {{char}} gentle.",
        "tags": ["fantasy", "forest"],
        "creator": "someone",
        "character_version": "1.0",
        "alternate_greetings": [],
        "extensions": {},
    }
    base.update(data)
    return {"spec": "chara_card_v2", "spec_version": "2.0", "data": base}


def png_chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)


def make_png(text_chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A real 1x1 RGB PNG (IHDR, IDAT, given text chunks, IEND)."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x80\x00")  # filter byte + one orange pixel
    body = png_chunk(b"IHDR", ihdr)
    for ctype, data in text_chunks:
        body += png_chunk(ctype, data)
    body += png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def chara_text_chunk(card: dict, keyword: bytes = b"chara") -> tuple[bytes, bytes]:
    return b"tEXt", keyword + b"\0" + base64.b64encode(json.dumps(card).encode("utf-8"))


# ------------------------------------------------------------------------------ TOML


def test_valid_toml_loads_every_field(tmp_path: Path) -> None:
    persona = load_persona(write(tmp_path, "maple.toml", VALID_TOML))
    assert isinstance(persona, Persona)
    assert persona.name == "Maple"
    assert persona.aliases == ("Mae", "Miss M")
    assert persona.description == "A gentle librarian."
    assert persona.identity == "A librarian who loves quiet afternoons."
    assert persona.personality == "Gentle and thoughtful."
    assert persona.speaking_style == "Soft and slow."
    assert (persona.listeners_who, persona.listeners_likes, persona.listeners_treatment) == (
        "book club members",
        "mystery novels",
        "Patiently.",
    )
    assert persona.greeting == "Hello, friends."
    assert persona.examples == (Exchange("Any recommendations?", "Try a cozy mystery, the kind with a cat."),)
    assert persona.topics == ("favourite books", "rainy days")
    assert (persona.max_reply_words, persona.max_reply_sentences) == (25, 2)
    assert persona.voice.engine == "espeak" and persona.voice.voice == "en-gb"
    assert persona.voice.speed == 0.9 and persona.voice.pitch == 40
    assert persona.source == tmp_path / "maple.toml"
    with pytest.raises(AttributeError):
        persona.name = "other"  # type: ignore[misc]  # frozen


def test_system_prompt_has_traits_limits_and_speech_rules(tmp_path: Path) -> None:
    prompt = load_persona(write(tmp_path, "maple.toml", VALID_TOML)).render_system_prompt()
    for part in (
        "You are Maple.",
        "A librarian who loves quiet afternoons.",
        "Gentle and thoughtful.",
        "Soft and slow.",
        "book club members",
        "mystery novels",
        "Patiently.",
        "2 sentences",
        "25 words",
        "never start with a name",
    ):
        assert part in prompt, part
    assert "plain" in prompt and "markdown" in prompt


def test_defaults_for_optional_fields(tmp_path: Path) -> None:
    persona = load_persona(write(tmp_path, "t.toml", minimal_toml()))
    assert persona.voice.engine == "piper" and persona.voice.voice == "embedded" and persona.voice.speed == 1.0
    assert persona.greeting and "Tester" in persona.greeting
    assert persona.description == "Someone."
    assert persona.examples == () and persona.topics == ()
    assert 5 <= persona.max_reply_words and persona.max_reply_tokens() > persona.max_reply_words


def test_multiline_strings_become_one_paragraph(tmp_path: Path) -> None:
    text = 'name = "M"\n[bot]\nidentity = """\nLine one\n   line two.\n"""\npersonality = "x"\n'
    assert load_persona(write(tmp_path, "m.toml", text)).identity == "Line one line two."


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ('[bot]\nidentity = "a"\npersonality = "b"\n', "name", "missing"),
        ('name = ""\n[bot]\nidentity = "a"\npersonality = "b"\n', "name", "empty"),
        ('name = 3\n[bot]\nidentity = "a"\npersonality = "b"\n', "name", "expected text"),
        ('name = "' + "x" * 65 + '"\n[bot]\nidentity = "a"\npersonality = "b"\n', "name", "too long"),
        ('name = "N"\n[bot]\npersonality = "b"\n', "bot.identity", "missing"),
        ('name = "N"\n[bot]\nidentity = "a"\n', "bot.personality", "missing"),
        (
            'name = "N"\naliases = ["' + "y" * 65 + '"]\n[bot]\nidentity = "a"\npersonality = "b"\n',
            "aliases[0]",
            "too long",
        ),
        ('name = "N"\nbot = "hi"\n', "bot", "expected a table"),
        ('name = "N"\nnickname = "x"\n[bot]\nidentity = "a"\npersonality = "b"\n', "nickname", "unknown field"),
        ('name = "N"\n[bot]\nidentity = "a"\npersonality = "b"\nmood = "c"\n', "bot.mood", "unknown field"),
        ('name = "N"\ntopics = "weather"\n[bot]\nidentity = "a"\npersonality = "b"\n', "topics", "list"),
        ('name = "N"\ntopics = ["ok", 3]\n[bot]\nidentity = "a"\npersonality = "b"\n', "topics[1]", "non-empty text"),
        (
            'name = "N"\n[bot]\nidentity = "a"\npersonality = "b"\n[style]\nmax_words = 2\n',
            "style.max_words",
            "from 5 to 300",
        ),
        (
            'name = "N"\n[bot]\nidentity = "a"\npersonality = "b"\n[style]\nmax_sentences = 1.5\n',
            "style.max_sentences",
            "whole number",
        ),
        (
            'name = "N"\n[bot]\nidentity = "a"\npersonality = "b"\n[[examples]]\nuser = "hi"\n',
            "examples[0].bot",
            "missing",
        ),
        (
            'name = "N"\nexamples = ["hi"]\n[bot]\nidentity = "a"\npersonality = "b"\n',
            "examples[0]",
            "expected a table",
        ),
        (
            'name = "N"\n[bot]\nidentity = "a"\npersonality = "b"\n[voice]\nengine = "sam"\n',
            "voice.engine",
            "piper, xtts, espeak",
        ),
        ('name = "N"\n[bot]\nidentity = "a"\npersonality = "b"\n[voice]\nspeed = "fast"\n', "voice.speed", "number"),
        ('name = "N"\n[bot]\nidentity = "a"\npersonality = "b"\n[voice]\nspeed = 9.0\n', "voice.speed", "0.25 to 4"),
        (
            'name = "N"\n[bot]\nidentity = "a"\npersonality = "b"\n[voice]\nengine = "espeak"\npitch = 150\n',
            "voice.pitch",
            "0 to 99",
        ),
        (
            'name = "N"\n[bot]\nidentity = "a"\npersonality = "b"\n[voice]\nvoice = "missing.onnx"\n',
            "voice.voice",
            "not found",
        ),
        (
            'name = "N"\n[bot]\nidentity = "a"\npersonality = "b"\n[voice]\nvoice = "voice.txt"\n',
            "voice.voice",
            ".onnx",
        ),
        (
            'name = "N"\n[bot]\nidentity = "a"\npersonality = "b"\n[voice]\nengine = "xtts"\n',
            "voice.reference_wav",
            "required",
        ),
        (
            'name = "N"\n[bot]\nidentity = "a"\npersonality = "b"\n[voice]\nengine = "xtts"\nreference_wav = "gone.wav"\n',
            "voice.reference_wav",
            "not found",
        ),
        (
            'name = "N"\n[bot]\nidentity = "a"\npersonality = "b"\n[voice]\nengine = "espeak"\nvoice = "en us; rm"\n',
            "voice.voice",
            "espeak voice name",
        ),
    ],
)
def test_each_broken_field_names_file_and_field(tmp_path: Path, body: str, field: str, words: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(PersonaError) as info:
        load_persona(path)
    err = info.value
    assert err.path == path and err.field == field
    assert words in err.detail
    assert str(err).startswith(f"{path}: field '{field}':")


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", 'name = "A"\n[bot\nidentity = "x"\n')
    with pytest.raises(PersonaError) as info:
        load_persona(path)
    assert str(path) in str(info.value) and "TOML syntax error" in str(info.value) and "line 2" in str(info.value)


def test_xtts_with_existing_reference_and_piper_path_resolve_relative_to_file(tmp_path: Path) -> None:
    (tmp_path / "voices").mkdir()
    (tmp_path / "voices" / "me.wav").write_bytes(b"RIFF")
    (tmp_path / "voices" / "me.onnx").write_bytes(b"onnx")
    xtts = load_persona(
        write(tmp_path, "x.toml", minimal_toml(voice='[voice]\nengine = "xtts"\nreference_wav = "voices/me.wav"\n'))
    )
    assert xtts.voice.engine == "xtts" and xtts.voice.reference_wav == (tmp_path / "voices" / "me.wav").resolve()
    piper = load_persona(write(tmp_path, "p.toml", minimal_toml(voice='[voice]\nvoice = "voices/me.onnx"\n')))
    assert piper.voice.voice == str((tmp_path / "voices" / "me.onnx").resolve())


def test_unreadable_encoding_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(b'name = "Caf\xe9"\n')
    with pytest.raises(PersonaError, match="UTF-8"):
        load_persona(path)


# ------------------------------------------------------------------------ Character cards


def test_character_card_v2_json(tmp_path: Path) -> None:
    path = tmp_path / "seraphina.json"
    path.write_text(json.dumps(card_v2()), encoding="utf-8")
    persona = load_persona(path)
    assert persona.name == "Seraphina"
    assert persona.identity == "Seraphina is a forest guardian who watches over the listener."
    assert persona.personality == "Kind, protective, a little mysterious."
    assert persona.greeting == "Welcome to my glade, traveler."  # *actions* are not spoken
    assert persona.examples == (
        Exchange("Who are you?", "I am Seraphina, keeper of this forest."),
        Exchange("Is it safe here?", "It is safe while I am here."),
    )
    assert "Scenario: the listener wakes up in Seraphina's glade." in persona.extra_instructions
    assert "Stay in character as Seraphina." in persona.extra_instructions
    assert "{{" not in persona.extra_instructions
    assert persona.post_history_instructions == "Keep Seraphina gentle."
    assert persona.description == "A calm fantasy companion."
    assert persona.tags == ("fantasy", "forest")
    prompt = persona.render_system_prompt()
    assert prompt.startswith("You are Seraphina.") and "Stay in character" in prompt


def test_card_chorus_extension_sets_voice_and_style(tmp_path: Path) -> None:
    card = card_v2(
        extensions={
            "chorus": {"voice": {"engine": "espeak", "voice": "en-us", "speed": 1.3}, "style": {"max_words": 20}}
        }
    )
    path = tmp_path / "s.json"
    path.write_text(json.dumps(card), encoding="utf-8")
    persona = load_persona(path)
    assert persona.voice.engine == "espeak" and persona.voice.speed == 1.3 and persona.max_reply_words == 20

    card = card_v2(extensions={"chorus": {"voice": {"speed": "quick"}}})
    path.write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(PersonaError) as info:
        load_persona(path)
    assert info.value.field == "data.extensions.chorus.voice.speed"


@pytest.mark.parametrize(
    ("card", "field", "words"),
    [
        ({"spec": "chara_card_v2", "data": "nope"}, "data", "expected an object"),
        ({"spec": "chara_card_v9", "data": {}}, "spec", "unsupported"),
        (card_v2(name=""), "data.name", "empty"),
        (card_v2(name=None), "data.name", "expected text"),
        (card_v2(description=5), "data.description", "expected text"),
        (card_v2(description="", personality=""), "data.description", "needs a description"),
        (card_v2(tags="fantasy"), "data.tags", "list"),
        (card_v2(mes_example=["x"]), "data.mes_example", "expected text"),
    ],
)
def test_broken_cards_name_the_field(tmp_path: Path, card: dict, field: str, words: str) -> None:
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(PersonaError) as info:
        load_persona(path)
    assert info.value.field == field and words in info.value.detail and info.value.path == path


def test_json_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    path.write_text('{"spec": "chara_card_v2", "data": {', encoding="utf-8")
    with pytest.raises(PersonaError, match="JSON syntax error"):
        load_persona(path)


def test_v1_card_is_read_gracefully(tmp_path: Path) -> None:
    v1 = {
        "name": "Old Tom",
        "description": "<BOT> is a grumpy lighthouse keeper.",
        "personality": "grumpy",
        "scenario": "",
        "first_mes": "What do you want?",
        "mes_example": "<START>\n<USER>: Hello Tom.\n<BOT>: Hmph. Hello yourself.",
    }
    path = tmp_path / "tom.json"
    path.write_text(json.dumps(v1), encoding="utf-8")
    persona = load_persona(path)
    assert persona.name == "Old Tom"
    assert persona.identity == "Old Tom is a grumpy lighthouse keeper."
    assert persona.examples == (Exchange("Hello Tom.", "Hmph. Hello yourself."),)
    assert persona.greeting == "What do you want?"


def test_mes_example_parsing_edge_cases() -> None:
    raw = "<start>\n{{User}}: one\n{{user}}: two\n{{char}}: *nods* both\n<START>\n\n"
    assert parse_mes_example(raw, "Bo") == (Exchange("one two", "both"),)
    assert parse_mes_example("", "Bo") == ()
    assert parse_mes_example("{{user}}: hey\nbo: yo {{user}}", "Bo") == (Exchange("hey", "yo the listener"),)


def test_png_card_with_chara_chunk(tmp_path: Path) -> None:
    path = tmp_path / "seraphina.png"
    path.write_bytes(make_png([(b"tEXt", b"Software\0test"), chara_text_chunk(card_v2(name="Pixel Sera"))]))
    persona = load_persona(path)
    assert persona.name == "Pixel Sera"
    assert persona.examples[0] == Exchange("Who are you?", "I am Pixel Sera, keeper of this forest.")


def test_png_card_in_ztxt_and_itxt_chunks(tmp_path: Path) -> None:
    encoded = base64.b64encode(json.dumps(card_v2(name="Zed")).encode())
    ztxt = (b"zTXt", b"chara\0\0" + zlib.compress(encoded))
    assert card_from_png(make_png([ztxt]))["data"]["name"] == "Zed"
    itxt = (b"iTXt", b"chara\0\x01\x00en\0\0" + zlib.compress(encoded))
    assert card_from_png(make_png([itxt]))["data"]["name"] == "Zed"


def test_png_v1_card(tmp_path: Path) -> None:
    path = tmp_path / "v1.png"
    path.write_bytes(make_png([chara_text_chunk({"name": "Vee", "description": "A V1 card.", "first_mes": "Hi!"})]))
    persona = load_persona(path)
    assert (persona.name, persona.greeting) == ("Vee", "Hi!")


def test_png_errors(tmp_path: Path) -> None:
    good = make_png([chara_text_chunk(card_v2())])
    cases = {
        "no_card.png": (make_png([(b"tEXt", b"Comment\0hello")]), "no character card"),
        "not_png.png": (b"GIF89a....", "not a PNG"),
        "truncated.png": (good[: len(good) - 20], "past the end"),
        "bad_b64.png": (make_png([(b"tEXt", b"chara\0@@@not base64 json@@@")]), "base64"),
    }
    damaged = bytearray(good)
    idx = damaged.index(b"tEXt") + 10  # flip a byte inside the chara chunk's data
    damaged[idx] ^= 0x01
    cases["bad_crc.png"] = (bytes(damaged), "bad CRC")
    for name, (blob, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(PersonaError) as info:
            load_persona(path)
        assert words in str(info.value), (name, str(info.value))
        assert str(path) in str(info.value)


# ------------------------------------------------------------------------------ library


def test_library_keeps_good_files_and_reports_broken_ones(tmp_path: Path) -> None:
    write(tmp_path, "a_maple.toml", VALID_TOML)
    write(tmp_path, "b_broken.toml", minimal_toml(voice='[voice]\nspeed = "fast"\n', name="Broken"))
    write(tmp_path, "c_syntax.toml", 'name = "Oops\n')
    (tmp_path / "d_card.json").write_text(json.dumps(card_v2()), encoding="utf-8")
    (tmp_path / "e_card.png").write_bytes(make_png([chara_text_chunk(card_v2(name="Pip"))]))
    (tmp_path / "README.md").write_text("not a persona")
    (tmp_path / ".hidden.toml").write_text("garbage")

    library = PersonaLibrary.load(tmp_path)
    assert library.names() == ["Maple", "Pip", "Seraphina"]
    assert len(library) == 3
    broken = {p.name: m for p, m in library.errors}
    assert set(broken) == {"b_broken.toml", "c_syntax.toml"}
    assert broken["b_broken.toml"].startswith("field 'voice.speed':")
    assert "TOML syntax error" in broken["c_syntax.toml"]
    assert library.get("mApLe") is library.get("Maple") is not None
    assert library.get("nobody") is None
    assert "seraphina" in library and "nobody" not in library


def test_duplicate_names_first_file_wins(tmp_path: Path) -> None:
    write(tmp_path, "1.toml", minimal_toml('description = "first"', name="Twin"))
    write(tmp_path, "2.toml", minimal_toml('description = "second"', name="TWIN"))
    library = PersonaLibrary.load(tmp_path)
    assert library.names() == ["Twin"] and library.get("twin").description == "first"
    assert len(library.errors) == 1
    path, message = library.errors[0]
    assert path.name == "2.toml" and "duplicate persona name" in message and "1.toml" in message


def test_missing_folder_is_an_error_not_a_crash(tmp_path: Path) -> None:
    library = PersonaLibrary.load(tmp_path / "nope")
    assert len(library) == 0 and library.errors and "not found" in library.errors[0][1]


def test_search_prefix_first_then_substring_and_capped(tmp_path: Path) -> None:
    for i in range(30):
        write(tmp_path, f"p{i:02}.toml", minimal_toml(name=f"Bot {i:02}"))
    write(tmp_path, "robo.toml", minimal_toml('tags = ["robot"]', name="Robo"))
    write(tmp_path, "abbot.toml", minimal_toml(name="Abbot"))
    library = PersonaLibrary.load(tmp_path)
    assert len(library.search("")) == 25
    hits = [p.name for p in library.search("bot")]
    assert len(hits) == 25 and hits[0] == "Bot 00"
    assert [p.name for p in library.search("abb")] == ["Abbot"]
    assert [p.name for p in library.search("BOT 2")][:3] == ["Bot 20", "Bot 21", "Bot 22"]
    assert [p.name for p in library.search("robot")] == ["Robo"]  # tag match
    assert library.search("zzz") == []


# ------------------------------------------------------------------------- shipped files


def test_shipped_personas_all_load_and_are_complete() -> None:
    library = PersonaLibrary.load(SHIPPED)
    assert library.errors == []
    assert len(library) >= 3
    settings = load_settings(env={}, env_file=None)
    assert settings.default_persona == DEFAULT_PERSONA == "Juniper"
    assert library.get(DEFAULT_PERSONA) is not None
    speeds = set()
    for persona in library:
        assert persona.source is not None and persona.source.suffix == ".toml"
        assert len(persona.examples) >= 3, persona.name
        assert persona.greeting and persona.topics and persona.listeners_likes and persona.aliases, persona.name
        assert persona.max_reply_sentences <= 3, persona.name
        assert persona.voice.engine == "piper" and persona.voice.voice == "embedded", persona.name
        for ex in persona.examples:  # example replies obey the persona's own limits
            assert len(ex.bot.split()) <= persona.max_reply_words, (persona.name, ex.bot)
        speeds.add(persona.voice.speed)
        assert "You are " + persona.name in persona.render_system_prompt()
    assert len(speeds) == len(library)  # distinct voices by speed
