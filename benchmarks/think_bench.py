"""Transcript → first TTS audio: streaming (exclusive, pipelined) vs waiting for the whole reply.

    .venv/bin/python -m benchmarks.think_bench [--runs 8] [--modes exclusive,pipelined,baseline]

Each run answers a question as the bot would after a final transcript (t=0): the prompt is
built, the LLM streams, the first fragment goes to TTS, and the clock stops at the first PCM
chunk handed to the sink. `baseline` is the seed's way: wait for the whole reply, clean it,
then synthesize it. Modes are interleaved run by run so machine load drifts hit all alike.
One untimed warm-up reply per mode loads the models and fills llama.cpp's prompt cache with
the persona prefix (as a running bot has). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from runtime.scheduler import ModelScheduler
from runtime.settings import load_settings
from brain.chunker import Fragment
from brain.budget import ReplyBudget
from brain.clean import clean_reply
from brain.llm import make_backend
from brain.prompt import HistoryLine
from brain.responder import Responder
from conversation.persona_library import load_persona

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    ("Alice", "Juniper, what should I cook tonight? I have eggs, rice and some spinach."),
    ("Bob", "Do you think it's going to rain this weekend?"),
    ("Chen", "What's the best board game for four people?"),
    ("Alice", "I finally finished that puzzle, all thousand pieces."),
    ("Bob", "Have you read anything good lately?"),
    ("Chen", "What would you do with a completely free Saturday?"),
]
STAGES = ("prompt_built", "first_token", "first_fragment", "first_audio", "llm_done", "done")


class TimingSink:
    def __init__(self) -> None:
        self.first_audio: float | None = None
        self.seconds = 0.0

    def audio(self, pcm: np.ndarray, rate: int) -> None:
        if self.first_audio is None:
            self.first_audio = time.monotonic()
        self.seconds += len(pcm) / rate

    def text(self, fragment: str) -> None:
        pass

    def done(self) -> None:
        pass


OPENERS = ["Hey everyone, good to be back.", "Hi all, nice to see you again.", "Hello folks, what a week."]


def history_for(index: int, variant: int = 0) -> list[HistoryLine]:
    """The room's last lines. `variant` changes the first line, so that consecutive requests of
    different modes share only the persona prefix in llama.cpp's prompt cache (a fair start)."""
    speaker, text = QUESTIONS[index % len(QUESTIONS)]
    now = time.monotonic()
    return [
        HistoryLine("Bob", OPENERS[variant % len(OPENERS)], now - 6, False),
        HistoryLine("Juniper", "Welcome back, Bob! We missed you.", now - 5, True),
        HistoryLine(speaker, text, now, False),
    ]


async def streamed_reply(responder: Responder, persona: Any, index: int, variant: int = 0) -> dict:
    history = history_for(index, variant)
    sink = TimingSink()
    t0 = time.monotonic()
    result = await responder.respond(
        persona, history, situation=f"{history[-1].speaker} just spoke to you. Answer.", sink=sink, t_request=t0
    )
    stages = {k: round(v - t0, 4) for k, v in result.timings.items() if k in STAGES}
    return {
        "first_audio": stages.get("first_audio"),
        "stages": stages,
        "audio_s": round(result.audio_seconds, 3),
        "words": len(result.text.split()),
        "text": result.text,
    }


def whole_reply_then_speak(responder: Responder, persona: Any, index: int, variant: int = 0) -> dict:
    """The seed's way: the full LLM reply first, then TTS of all of it (first chunk timed)."""
    llm = responder.llm
    history = history_for(index, variant)
    t0 = time.monotonic()
    max_tokens = responder.max_reply_tokens(persona)
    messages = responder.build_prompt(persona, history, f"{history[-1].speaker} just spoke to you. Answer.")
    stages = {"prompt_built": time.monotonic() - t0}
    cancel = threading.Event()
    raw = []
    with responder.scheduler.hold("llm", owner=f"baseline-{index}"):
        for token in llm.stream(
            messages,
            max_tokens=max_tokens,
            stop=responder.stop_strings(persona, ["Alice", "Bob", "Chen"]),
            cancel=cancel,
        ):
            if token:
                stages.setdefault("first_token", time.monotonic() - t0)
                raw.append(token)
    stages["llm_done"] = time.monotonic() - t0
    text = clean_reply("".join(raw), persona_name=persona.name, other_names=["Alice", "Bob", "Chen"])
    capped = ReplyBudget(max_words=persona.max_reply_words).take(Fragment(text, True)) if text else None
    text = capped.text if capped else ""
    stages["first_fragment"] = time.monotonic() - t0  # the whole reply is the first "fragment"
    tts = responder.tts_for(persona)
    seconds = 0.0
    with responder.scheduler.hold("tts", owner=f"baseline-{index}"):
        for pcm, rate in tts.synthesize(text, cancel):
            stages.setdefault("first_audio", time.monotonic() - t0)
            seconds += len(pcm) / rate
    stages["done"] = time.monotonic() - t0
    stages = {k: round(v, 4) for k, v in stages.items()}
    return {
        "first_audio": stages.get("first_audio"),
        "stages": stages,
        "audio_s": round(seconds, 3),
        "words": len(text.split()),
        "text": text,
    }


def summary(values: list[float]) -> dict:
    if not values:
        return {}
    arr = np.array(values)
    return {
        "p50": round(float(np.percentile(arr, 50)), 4),
        "p95": round(float(np.percentile(arr, 95)), 4),
        "mean": round(float(arr.mean()), 4),
        "min": round(float(arr.min()), 4),
        "max": round(float(arr.max()), 4),
        "n": len(values),
    }


def machine_info() -> dict:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    for package in ("llama_cpp_python", "piper_tts", "onnxruntime", "RealtimeTTS"):
        try:
            from importlib.metadata import version

            info[package] = version(package.replace("_", "-"))
        except Exception:
            pass
    return info


async def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="timed replies per mode")
    parser.add_argument("--modes", default="exclusive,pipelined,baseline")
    parser.add_argument("--persona", default=str(ROOT / "personas" / "juniper.toml"))
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]

    settings = load_settings(env={k: v for k, v in os.environ.items() if k.startswith(("LLM_", "TTS_"))}, env_file=None)
    persona = load_persona(args.persona)
    started = time.monotonic()
    llm = make_backend(settings)
    responders = {
        m: Responder.from_settings(settings, llm=llm, scheduler=ModelScheduler("exclusive" if m == "baseline" else m))
        for m in modes
    }
    load_s = time.monotonic() - started
    machine = machine_info()

    samples: dict[str, list[dict]] = {m: [] for m in modes}
    for mode in modes:  # warm-up: models loaded, persona prefix in the prompt cache
        if mode == "baseline":
            await asyncio.to_thread(whole_reply_then_speak, responders[mode], persona, 0)
        else:
            await streamed_reply(responders[mode], persona, 0)
    for run in range(args.runs):
        for variant, mode in enumerate(modes):
            if mode == "baseline":
                samples[mode].append(
                    await asyncio.to_thread(whole_reply_then_speak, responders[mode], persona, run + 1, variant)
                )
            else:
                samples[mode].append(await streamed_reply(responders[mode], persona, run + 1, variant))

    report: dict[str, Any] = {
        "benchmark": "think_bench: transcript -> first TTS audio",
        "command": " ".join(
            [Path(sys.executable).name, "-m", "benchmarks.think_bench", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine,
        "models": {
            "llm": settings.llm_backend + ":" + settings.llm_model,
            "tts": persona.voice.describe(),
            "llm_threads": settings.llm_threads or os.cpu_count(),
        },
        "persona": persona.name,
        "runs_per_mode": args.runs,
        "model_load_s": round(load_s, 3),
        "modes": {},
        "note": "shared 2-core machine: other jobs run at the same time, so absolute numbers are noisy; compare modes (interleaved) rather than runs",
    }
    for mode in modes:
        rows = samples[mode]
        report["modes"][mode] = {
            "first_audio_s": summary([r["first_audio"] for r in rows if r["first_audio"] is not None]),
            "stages_p50_s": {
                stage: summary([r["stages"][stage] for r in rows if stage in r["stages"]]).get("p50")
                for stage in STAGES
            },
            "audio_s_mean": round(float(np.mean([r["audio_s"] for r in rows])), 3) if rows else None,
            "words_mean": round(float(np.mean([r["words"] for r in rows])), 1) if rows else None,
            "example_reply": rows[-1]["text"] if rows else None,
        }
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
