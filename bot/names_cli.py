"""`chorus names`: does the speech-to-text hear a persona's names? A check for whoever writes a persona.

chorus names                      # every persona of CHORUS_PERSONAS_DIR
chorus names "Captain Hollis"     # one persona (by name), or a persona file's path
chorus names --quick Juniper      # fewer lines: one voice, three phrases

A small Whisper writes a name it does not know the way it hears it ("Hollis" as "Always" or "Harley"). A call it
misses is answered only when nobody else takes up the question, in a group; a remark to the bot not at all. So
this says it before a room does: each of the persona's names (the name and its aliases the bot listens for) is
said in a few everyday calls ("Juniper, what do you think?", "What do you think, Juniper?", …) by the persona's
own voice at three speeds and by espeak-ng, transcribed by the STT the settings name, and judged as the listener
judges a final (`bot.name_hearing`: the text matcher, then the acoustic look). It prints what the STT wrote, how
often each name was heard, and a hint for a name heard in fewer than `WEAK_SHARE` of its lines.

Synthesized voices are not people: a name heard here may still be missed in a noisy room, but one missed here
will be missed there too.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, TextIO

import numpy as np

PHRASES = (
    "{name}, what do you think?",
    "What do you think, {name}?",
    "Hey {name}, can you help us?",
    "{name}, tell us a story.",
    "Okay {name}, what should we play next?",
    "{name}?",
)
QUICK_PHRASES = 3
SPEEDS = (0.9, 1.0, 1.15)  # the persona's voice, slower and faster than its own rate
OTHER_VOICE = ("espeak", "en-us")  # a second, different voice
WEAK_SHARE = 0.8  # a name heard in fewer of its lines than this gets a hint
TAIL_S = 0.25  # silence after the last word, as the listener's final has it


@dataclass(frozen=True)
class CheckedLine:
    name: str  # the name said (the persona's name or an alias)
    phrase: str  # what was said
    voice: str
    transcript: str
    heard: bool
    via: str


def names_to_check(persona: Any) -> list[str]:
    """The persona's name and the aliases the bot listens for (`conversation.listen_for`)."""
    from conversation.listen_for import LISTEN_ALIAS_MIN_LETTERS

    names = [persona.name, *(a for a in persona.aliases if len(a) >= LISTEN_ALIAS_MIN_LETTERS)]
    return list(dict.fromkeys(n for n in names if n.strip()))


def voices_for(persona: Any, *, quick: bool) -> list[Any]:
    """The persona's voice at `SPEEDS` (its own speed scaled) and espeak-ng; one voice when `quick`."""
    from conversation.persona import VoiceSpec

    own = persona.voice
    if quick:
        return [own]
    scaled = [dataclasses.replace(own, speed=round(own.speed * s, 3)) for s in SPEEDS]
    return [*scaled, VoiceSpec(engine=OTHER_VOICE[0], voice=OTHER_VOICE[1])]


def speak(settings: Any, voice: Any, text: str) -> np.ndarray:
    """`text` in `voice`, as the final transcription gets it: 16 kHz mono float32 with a short tail."""
    from audio.resample import resample_once
    from audio.tts_factory import make_tts
    from audio.types import STT_RATE

    engine = make_tts(settings, voice)
    chunks = [(np.asarray(pcm), rate) for pcm, rate in engine.synthesize(text, threading.Event())]
    if not chunks:
        raise RuntimeError(f"{voice.describe()} said nothing for {text!r}")
    rate = chunks[0][1]
    scaled = [c.astype(np.float32) / 32768.0 if c.dtype == np.int16 else c.astype(np.float32) for c, _ in chunks]
    mono = np.concatenate([c.reshape(len(c), -1).mean(axis=1) for c in scaled])
    audio = resample_once(mono, rate, STT_RATE)
    return np.concatenate([audio, np.zeros(int(TAIL_S * STT_RATE), np.float32)]).astype(np.float32)


def check_persona(settings: Any, persona: Any, *, quick: bool = False) -> list[CheckedLine]:
    """Every name of `persona` in every phrase and voice, transcribed and judged (blocking; seconds of CPU)."""
    from audio.name_look import NameLook
    from audio.stt import WhisperTranscriber
    from bot.name_hearing import hear_name

    transcriber = WhisperTranscriber(settings)
    looker = NameLook(transcriber) if settings.stt_name_look else None
    phrases = PHRASES[:QUICK_PHRASES] if quick else PHRASES
    lines: list[CheckedLine] = []
    for name in names_to_check(persona):
        for voice in voices_for(persona, quick=quick):
            for phrase in phrases:
                said = phrase.format(name=name)
                audio = speak(settings, voice, said)
                result = transcriber.transcribe([audio])[0]
                heard = hear_name(
                    audio, result, bot_name=persona.name, aliases=persona.aliases, members=(), looker=looker
                )
                lines.append(
                    CheckedLine(name, said, voice.describe(), result.text or result.raw_text, heard.detected, heard.via)
                )
    return lines


def report(persona: Any, lines: Sequence[CheckedLine], stt_model: str, out: TextIO) -> bool:
    """Print the lines and a summary per name; True when every name was heard in `WEAK_SHARE` of its lines."""
    print(f"\n{persona.name} (STT_MODEL={stt_model})", file=out)
    width = max((len(line.phrase) for line in lines), default=0)
    for line in lines:
        mark = f"heard ({line.via})" if line.heard else "MISSED"
        print(f"  {line.phrase:<{width}}  -> {line.transcript!r:<44} {mark}  [{line.voice}]", file=out)
    all_heard = True
    for name in dict.fromkeys(line.name for line in lines):
        own = [line for line in lines if line.name == name]
        hits = sum(line.heard for line in own)
        print(f"  {name!r}: heard in {hits} of {len(own)} lines", file=out)
        if hits < WEAK_SHARE * len(own):
            all_heard = False
            written = Counter(line.transcript for line in own if not line.heard).most_common(3)
            examples = "; ".join(f"{text!r}" + (f" x{n}" if n > 1 else "") for text, n in written)
            print(
                f"    hint: the STT often misses {name!r} (written {examples}). In a group a missed call is answered"
                " only when nobody else takes up the question. Give the persona an alias it hears (aliases = [...]),"
                " or a larger STT_MODEL (`chorus models presets`).",
                file=out,
            )
    return all_heard


def find_personas(settings: Any, wanted: Sequence[str], out: TextIO) -> list[Any] | None:
    """The personas asked for (names or files), or every persona of the folder; None (after saying why) if one
    cannot be found or loaded."""
    from conversation.persona_library import PersonaLibrary, load_persona
    from conversation.persona import PersonaError

    library = PersonaLibrary.load(settings.personas_dir)
    if not wanted:
        return list(library)
    found = []
    for item in wanted:
        if Path(item).is_file():
            try:
                found.append(load_persona(item))
            except PersonaError as exc:
                print(f"chorus names: {exc}", file=out)
                return None
            continue
        persona = library.get(item)
        if persona is None:
            known = ", ".join(library.names()) or "none"
            print(f"chorus names: no persona {item!r} in {settings.personas_dir} (known: {known})", file=out)
            return None
        found.append(persona)
    return found


def main(argv: list[str], *, out: TextIO | None = None, env_file: Path | None = None) -> int:
    """`chorus names [--quick] [PERSONA ...]`: 0 when every name was heard well, 1 when one was not, 2 on an error."""
    from runtime.errors import ModelLoadError
    from runtime.settings import SettingsError, load_settings

    parser = argparse.ArgumentParser(prog="chorus names", description=__doc__.split("\n\n")[0])
    parser.add_argument("personas", nargs="*", help="persona names or files (default: every persona of the folder)")
    parser.add_argument("--quick", action="store_true", help="one voice, three phrases per name")
    parser.add_argument("--env-file", type=Path, default=env_file, help="read settings from this file, not ./.env")
    args = parser.parse_args(argv)
    out = out or sys.stdout
    try:
        settings = load_settings(env_file=args.env_file) if args.env_file else load_settings()
    except SettingsError as exc:
        print(f"chorus names: bad setting: {exc}", file=out)
        return 2
    personas = find_personas(settings, args.personas, out)
    if personas is None:
        return 2
    if not personas:
        print(f"chorus names: no persona in {settings.personas_dir}", file=out)
        return 2
    all_heard = True
    for persona in personas:
        try:
            lines = check_persona(settings, persona, quick=args.quick)
        except (ModelLoadError, RuntimeError) as exc:
            print(f"chorus names: {persona.name}: {exc}", file=out)
            return 2
        all_heard = report(persona, lines, settings.stt_model, out) and all_heard
    return 0 if all_heard else 1
