"""What Smart Turn says about a statement at a pause: lines that go on (a list, a story, a preface, said up to a
comma) against statements that are whole, each in the turns corpus's voices, judged as the bot's pause judge
hears them (the speech up to its last voiced frame and 0.2 s of the silence after it).

    python -m benchmarks.end_of_turn_probe            # JSON on stdout and out/bench/end-of-turn-probe.json

It asks whether the voice model can tell "Juniper, for the picnic we have bread," (more to come) from "Juniper,
my cat knocked over a plant." (done) on the voices the benchmarks use: the reason a statement to the bot needs
`TURN_MODEL_STATEMENT_THRESHOLD` (docs/turn-taking.md, "A statement may go on"). None of these lines is a
corpus line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from audio.end_of_turn import load_smart_turn
from audio.types import STT_RATE
from benchmarks.report import command_line, machine_info, write_json
from runtime.settings import load_settings
from simulator import audio_files
from simulator.turn_corpus import load_corpus
from simulator.voices import synthesize_line

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SILENCE_AFTER_S = 0.2

GOES_ON = (
    "Juniper, for the picnic we have bread,",
    "Juniper, we bought apples,",
    "Juniper, my brother called me today,",
    "Juniper, the weather was nice this morning,",
    "Juniper, so we drove to the lake,",
    "Trixie, I made pasta last night,",
    "Captain, the wind picked up around noon,",
    "Juniper, I read a book about whales,",
    "Juniper, we need milk, eggs,",
    "Juniper, I was thinking,",
    "Juniper, I have a question.",
)
WHOLE = (
    "Juniper, I had a really long day at work.",
    "Juniper, I went to the store yesterday.",
    "Trixie, my sister just got a new puppy.",
    "Captain, we finally fixed the boat.",
    "Juniper, I just finished my exams!",
    "Juniper, we walked along the river.",
    "Trixie, I baked a chocolate cake today.",
    "Captain, my dad used to be a fisherman.",
    "Juniper, I finally got the job.",
    "Juniper, the movie was really good.",
    "Trixie, it is raining again.",
    "Juniper, I love the sound of the ocean.",
    "Captain, I am going to learn to sail.",
    "Juniper, my cat knocked over a plant.",
)
VOICES = ("piper_down", "piper_up", "piper_mid", "piper_low", "espeak_high", "espeak_mid")


def heard_at_pause(pcm: np.ndarray, voiced_s: float) -> np.ndarray:
    """16 kHz mono float32 of a synthesized line (48 kHz stereo int16) up to its last voiced frame, then silence."""
    mono = pcm.astype(np.float32).mean(axis=1) / 32768.0
    mono = mono[: int(round(voiced_s * audio_files.DISCORD_RATE))]
    x = audio_files.resample(mono, audio_files.DISCORD_RATE, STT_RATE).astype(np.float32)
    return np.concatenate((x, np.zeros(int(SILENCE_AFTER_S * STT_RATE), dtype=np.float32)))


def share_at_least(values: Sequence[float], bar: float) -> float:
    return round(sum(v >= bar for v in values) / len(values), 3) if values else 0.0


def run() -> dict[str, Any]:
    settings = load_settings(env_file=None)
    voices = load_corpus().voices
    model = load_smart_turn()
    lines: list[dict[str, Any]] = []
    for kind, texts in (("goes_on", GOES_ON), ("whole", WHOLE)):
        for text in texts:
            row: dict[str, Any] = {"kind": kind, "text": text, "probability": {}}
            for name in VOICES:
                line = synthesize_line(settings, voices[name], text)
                row["probability"][name] = round(model.estimate(heard_at_pause(line.pcm, line.voiced_s)).probability, 3)
            lines.append(row)
    summary: dict[str, Any] = {}
    for kind in ("goes_on", "whole"):
        values = [p for r in lines if r["kind"] == kind for p in r["probability"].values()]
        summary[kind] = {
            "judged": len(values),
            "at_least_0.2": share_at_least(values, 0.2),
            "at_least_0.5": share_at_least(values, 0.5),
            "at_least_0.9": share_at_least(values, 0.9),
            "median": round(float(np.median(values)), 3),
        }
    return {"voices": list(VOICES), "silence_after_s": SILENCE_AFTER_S, "summary": summary, "lines": lines}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "bench" / "end-of-turn-probe.json")
    args = parser.parse_args(argv)
    started = time.monotonic()
    payload = {
        "benchmark": "end_of_turn_probe",
        "command": command_line("benchmarks.end_of_turn_probe", argv),
        "machine": machine_info(),
        **run(),
        "wall_s": round(time.monotonic() - started, 1),
    }
    write_json(payload, args.out)
    json.dump(payload, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
