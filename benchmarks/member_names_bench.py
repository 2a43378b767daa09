"""Whose question is it: questions called to a member whose name Whisper lost, and questions to the room.

    python -m benchmarks.member_names_bench                 # 60 lines (about 4 minutes on 2 cores)
    python -m benchmarks.member_names_bench --lines 24 --seed 3

A question to the room that nobody takes up is the bot's (`conversation.reply_rules.rule_room_question`); a
question called to Grace is hers, even when tiny.en writes "Please, did you ever get your bike fixed?". Each
line is a question either called to one of the members present (their name at the start or the end) or put to
the room (no name), spoken by a simulator voice, transcribed by the bot's Whisper, then given the acoustic
second look as the listener gives it (`audio.name_look` with `members_too` for a line that asks something).

Reports, per kind: ``member_named`` (a member's name in the final text, by Whisper or put back by the look),
``right_member``, ``restored_by_look``, ``bot_named`` (the bot's name wrongly put in), ``room_member_named``
(a room question given someone's name: the bot would then leave it hanging), and the look's CPU per line.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.names_bench import json_dumps, line_audio
from benchmarks.names_corpus import BASE_VOICES, HELDOUT_VOICES, VARIANT_VOICES, NameLine
from benchmarks.report import command_line, machine_info, stats, write_json
from runtime.settings import PROJECT_ROOT

OUT = PROJECT_ROOT / "out" / "bench" / "member-names.json"
MEMBER_QUESTIONS = (
    "{n}, did you ever get your bike fixed?",
    "{n}, where did you park the car?",
    "{n}, can you send me the link?",
    "{n}, what time does the game start?",
    "{n}, are you coming tomorrow?",
    "{n}, how was your trip?",
    "Did you finish the book, {n}?",
    "{n}, what do you think?",
)
ROOM_QUESTIONS = (
    "What is everyone doing this weekend?",
    "Does anyone know a good pizza place?",
    "Who wants to play a game later?",
    "How was everybody's day?",
    "Anyone seen the new movie?",
    "What should we cook tonight?",
    "Is it raining where you are?",
    "Which song should we play next?",
)
MEMBER_NAMES = ("Grace", "Marco", "Priya", "Bob", "Alice", "Tomasz", "Chen", "Dana", "Erin", "Holly")
PERSONAS = (("Juniper", ("June", "Junie")), ("Trixie", ("Trix",)), ("Captain Hollis", ("Captain", "Hollis", "Cap")))


def run(n_lines: int, seed: int, settings: Any) -> dict[str, Any]:
    from audio.name_look import NameLook
    from audio.stt import WhisperTranscriber
    from conversation.addressing import NameMatcher, resolve_names
    from conversation.listen_for import names_to_listen_for

    transcriber = WhisperTranscriber(settings)
    look = NameLook(transcriber)
    rng = random.Random(seed)
    voices = BASE_VOICES + VARIANT_VOICES + HELDOUT_VOICES
    rows: list[dict[str, Any]] = []
    look_ms: list[float] = []
    for index in range(n_lines):
        persona, aliases = rng.choice(PERSONAS)
        members = rng.sample(MEMBER_NAMES, 3)
        kind = "member" if index % 2 == 0 else "room"
        pattern = rng.choice(MEMBER_QUESTIONS if kind == "member" else ROOM_QUESTIONS)
        text = pattern.format(n=members[0])
        line = NameLine(text, persona, False, kind, tuple(members), rng.choice(voices), None, "dev")
        audio = line_audio(settings, line, index)
        result = transcriber.transcribe([audio])[0]
        bot = NameMatcher.for_name(persona, aliases)
        present = tuple((1000 + i, name) for i, name in enumerate(members))
        query = names_to_listen_for(result.text, bot, persona, aliases, present) if result.text else None
        heard = None
        if query is not None and not query.named:
            started = time.process_time()
            heard = look.look_for(query, audio, result.text, encoded=result.encoded)
            look_ms.append((time.process_time() - started) * 1000)
        final = heard.text if heard is not None else result.text
        said = resolve_names(final, bot, present)
        rows.append(
            {
                "kind": kind,
                "said": text,
                "transcript": result.text,
                "final": final,
                "member_named": bool(said.members),
                "right_member": said.members[:1] == (1000,) if kind == "member" else None,
                "restored_by_look": heard is not None and heard.member,
                "bot_named": said.bot,
                "voice": line.voice.describe(),
            }
        )
        print(f"{index + 1}/{n_lines} {kind} {text!r} -> {result.text!r} -> {final!r}", file=sys.stderr, flush=True)
    member = [r for r in rows if r["kind"] == "member"]
    room = [r for r in rows if r["kind"] == "room"]
    return {
        "member_lines": len(member),
        "member_named": sum(r["member_named"] for r in member),
        "right_member": sum(bool(r["right_member"]) for r in member),
        "named_by_whisper": sum(r["member_named"] and not r["restored_by_look"] for r in member),
        "restored_by_look": sum(r["restored_by_look"] for r in member),
        "member_lines_bot_named": sum(r["bot_named"] for r in member),
        "room_lines": len(room),
        "room_member_named": sum(r["member_named"] for r in room),
        "room_bot_named": sum(r["bot_named"] for r in room),
        "look_cpu_ms": stats(look_ms, 1),
        "lines": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=60)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    from runtime.settings import load_settings

    started = time.perf_counter()
    payload = run(args.lines, args.seed, load_settings())
    payload = {
        **payload,
        "command": command_line("benchmarks.member_names_bench", argv),
        "machine": machine_info(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    path = write_json(payload, args.out)
    print(json_dumps({k: v for k, v in payload.items() if k not in ("lines", "machine")}))
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
