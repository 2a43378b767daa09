"""Does the bot hear its own name? Name recall and false detections on synthesized voices through the real STT.

    python -m benchmarks.names_bench [--quick] [--stt-model PATH] [--no-look] [--limit N] [--out PATH]

Each line of `benchmarks.names_corpus` is said by a simulator voice (`simulator.voices.synthesize_line`,
48 kHz as Discord carries it), brought to 16 kHz by the receive path's resampler, given background noise
when the line has it, and transcribed by the transcriber the bot uses (`audio.stt.WhisperTranscriber`, the
segment's final: its audio with the listener's tail of silence). `conversation.addressing.resolve_names`
then decides with the members present; where the text names nobody, the acoustic look (`audio.name_look`)
listens for the bot's name. The same transcripts also go through the matcher of another git revision
(`--compare-ref`, default main) for a before/after. JSON to out/bench/names.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from benchmarks.names_corpus import PERSONAS, NameLine, build_lines
from benchmarks.report import command_line, machine_info, stats, write_json

OUT = Path("out/bench/names.json")
TAIL_S = 0.25  # the listener's silence after the last voiced window (audio.segment_transcriber.TAIL_S)
QUICK_LINES = 24


def line_audio(settings: Any, line: NameLine, seed: int) -> np.ndarray:
    """The line as the final transcription gets it: 16 kHz mono float32, noise added when the line has it."""
    from audio.resample import resample_once
    from audio.types import STT_RATE
    from simulator.audio_files import DISCORD_RATE
    from simulator.voices import synthesize_line

    spoken = synthesize_line(settings, line.voice, line.text)
    mono = spoken.pcm.astype(np.float32).mean(axis=1) / 32768.0
    audio = resample_once(mono, DISCORD_RATE, STT_RATE)
    audio = np.concatenate([audio[: int(spoken.voiced_s * STT_RATE)], np.zeros(int(TAIL_S * STT_RATE), np.float32)])
    if line.noise_snr_db is not None:
        audio = audio + background_noise(audio, line.noise_snr_db, seed)
    return audio.astype(np.float32)


def background_noise(speech: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """Pink-ish noise (a room's hum and fans) at `snr_db` below the speech's loudness."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(len(speech))
    pink = np.zeros_like(white)
    acc = 0.0
    for i, w in enumerate(white):  # one-pole low-pass: more low-frequency energy, as in a room
        acc = 0.97 * acc + w
        pink[i] = acc
    pink -= pink.mean()
    voiced = speech[np.abs(speech) > 1e-3]
    level = float(np.sqrt(np.mean(voiced**2))) if voiced.size else 0.05
    return (pink / (np.sqrt(np.mean(pink**2)) + 1e-12) * level * 10 ** (-snr_db / 20)).astype(np.float32)


def word_error_rate(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words) between two transcripts, normalized as the matcher reads them."""
    from conversation.addressing import levenshtein
    from conversation.text_words import words

    ref = words(reference)
    return levenshtein(ref, words(hypothesis)), len(ref)


def old_matcher(ref: str) -> ModuleType | None:
    """conversation/addressing.py as it is at git revision `ref` (None when git or the revision is missing)."""
    try:
        source = subprocess.run(
            ["git", "show", f"{ref}:conversation/addressing.py"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    spec = importlib.util.spec_from_loader(f"addressing_at_{ref}", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        exec(compile(source, f"{ref}:conversation/addressing.py", "exec"), module.__dict__)
    except Exception as exc:  # a revision whose matcher needs modules this tree no longer has
        print(f"no before/after: the matcher at {ref} does not load here ({exc})", file=sys.stderr)
        return None
    return module


def rates(rows: list[dict[str, Any]], key: str = "detected") -> dict[str, Any]:
    addressed = [r for r in rows if r["expected"]]
    others = [r for r in rows if not r["expected"]]
    out: dict[str, Any] = {"n_addressed": len(addressed), "n_not_addressed": len(others)}
    out["name_recall"] = round(sum(r[key] for r in addressed) / len(addressed), 4) if addressed else None
    out["name_false_rate"] = round(sum(r[key] for r in others) / len(others), 4) if others else None
    return out


def grouped(rows: list[dict[str, Any]], field: str) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[r[field]].append(r)
    return {k: rates(v) for k, v in sorted(groups.items())}


def run(
    lines: list[NameLine],
    *,
    settings: Any,
    look: bool = True,
    compare_ref: str | None = "main",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    from audio.name_look import NameLook
    from audio.stt import WhisperTranscriber
    from bot.name_hearing import hear_name
    from conversation.addressing import NameMatcher, resolve_names

    transcriber = WhisperTranscriber(settings)
    looker = NameLook(transcriber)
    old = old_matcher(compare_ref) if compare_ref else None
    rows: list[dict[str, Any]] = []
    stt_cpu, look_cpu, match_cpu, edits, ref_words = [], [], [], 0, 0
    for index, line in enumerate(lines):
        persona = next(p for p in PERSONAS if p.name == line.persona)
        members = tuple((1000 + i, name) for i, name in enumerate(line.members))
        audio = line_audio(settings, line, index)
        c0 = time.process_time()
        result = transcriber.transcribe([audio])[0]
        c1 = time.process_time()
        stt_cpu.append((c1 - c0) * 1000)
        text = result.text
        resolve_names(text, NameMatcher.for_name(persona.name, persona.aliases), members)  # its cost alone
        match_cpu.append((time.process_time() - c1) * 1000)
        heard = hear_name(
            audio,
            result,
            bot_name=persona.name,
            aliases=persona.aliases,
            members=members,
            looker=looker if look else None,
        )
        if heard.look_cpu_s is not None:
            look_cpu.append(heard.look_cpu_s * 1000)
        detected, via, restored, closest = heard.detected, heard.via, heard.restored, heard.closest
        e, n = word_error_rate(line.text, text)
        edits, ref_words = edits + e, ref_words + n
        row = {
            "text": line.text,
            "persona": line.persona,
            "voice": line.voice.describe(),
            "noise_snr_db": None if line.noise_snr_db is None else round(line.noise_snr_db, 1),
            "members": list(line.members),
            "transcript": text,
            "restored": restored,
            "detected": bool(detected),
            "expected": line.expected,
            "via": via,
            "kind": line.kind,
            "split": line.split,
            "text_detected": heard.text_detected,
            "look_closest": closest,
        }
        if old is not None:
            row["old_detected"] = bool(
                old.resolve_names(text, old.NameMatcher.for_name(persona.name, persona.aliases), members).bot
            )
        rows.append(row)
        if progress is not None:
            mark = "ok " if row["detected"] == line.expected else "MISS" if line.expected else "FALSE"
            progress(f"{index + 1}/{len(lines)} {mark} {line.text!r} -> {text!r} {via} {restored!r} {closest}")
    dev = [r for r in rows if r["split"] == "dev"]
    held = [r for r in rows if r["split"] == "heldout"]
    payload: dict[str, Any] = {
        **{k: v for k, v in rates(dev).items()},
        "held_out": rates(held),
        "all_lines": rates(rows),
        "per_position": grouped([r for r in rows if r["expected"]], "kind"),
        "per_kind_not_addressed": grouped([r for r in rows if not r["expected"]], "kind"),
        "per_voice": grouped(rows, "voice"),
        "per_persona": grouped(rows, "persona"),
        "noise": {
            "with": rates([r for r in rows if r["noise_snr_db"] is not None]),
            "without": rates([r for r in rows if r["noise_snr_db"] is None]),
        },
        "text_only": {"dev": rates(dev, "text_detected"), "held_out": rates(held, "text_detected")},
        "stt_model": settings.stt_model,
        "stt_wer": round(edits / ref_words, 4) if ref_words else None,
        "cpu_ms_per_line": {
            "stt": stats(stt_cpu, 1),
            "look": stats(look_cpu, 1),
            "match": stats(match_cpu, 2),
            "look_share_of_lines": round(len(look_cpu) / len(rows), 3) if rows else None,
        },
        "look": look,
        "look_decoder_passes_per_look": round(looker.decoder_passes / looker.calls, 2) if looker.calls else None,
    }
    if old is not None:
        payload["old_matcher"] = {
            "ref": compare_ref,
            "dev": rates(dev, "old_detected"),
            "held_out": rates(held, "old_detected"),
        }
    payload["lines"] = rows
    return payload


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"a CI-size slice ({QUICK_LINES} lines)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N lines of a seeded shuffle")
    parser.add_argument(
        "--stt-model", default="", help="STT_MODEL for this run (a CTranslate2 folder; default: the bot's)"
    )
    parser.add_argument("--no-look", action="store_true", help="the text matcher alone")
    parser.add_argument("--compare-ref", default="main", help="git revision whose matcher reads the same transcripts")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    import random

    from runtime.settings import load_settings

    settings = load_settings()
    if args.stt_model:
        settings = settings.replace(stt_model=args.stt_model)
    lines = build_lines()
    limit = QUICK_LINES if args.quick else args.limit
    if limit:
        random.Random(7).shuffle(lines)
        lines = lines[:limit]
    started = time.perf_counter()
    payload = run(
        lines,
        settings=settings,
        look=not args.no_look,
        compare_ref=args.compare_ref or None,
        progress=lambda s: print(s, file=sys.stderr, flush=True),
    )
    payload = {
        **payload,
        "command": command_line("benchmarks.names_bench", argv),
        "machine": machine_info(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    path = write_json(payload, args.out)
    summary = {k: payload[k] for k in ("name_recall", "name_false_rate", "held_out", "stt_wer", "cpu_ms_per_line")}
    summary["old_matcher"] = payload.get("old_matcher")
    print(json_dumps(summary))
    print(f"wrote {path}", file=sys.stderr)


def json_dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=2)


if __name__ == "__main__":
    main()
