"""Consecutive turns of one conversation through an LLM server, timed by the client and by the server itself.

    .venv/bin/python -m benchmarks.server_turns_bench [--turns 6] [--profile large] [--threads 1]
                                                      [--threads-batch 1,2] [--busy 1] [--out out/bench/server-turns]

For each `--threads-batch` value: llama-cpp-python's OpenAI-compatible server on the embedded GGUF
(`simulator.llama_server`, `--threads` for generation, that many for prompt evaluation), the bot's own prompts
(`brain.responder.Responder.build_prompt`, the Juniper persona, the chosen profile) and its `OpenAiBackend`.
Each turn a member asks a question; the reply's request is timed to its first token, the reply (the model's own
words) joins the history, and the server's log says how many prompt tokens it reused from its cache and how many
it evaluated in how many ms (`LlamaServer.prompt_timings`). `--busy N` keeps N other processes spinning on the
CPU meanwhile, as STT, TTS and the bot do on a small machine. Prints one JSON object (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import threading
import time
from pathlib import Path
from typing import Any

from runtime.settings import PROJECT_ROOT, load_settings
from benchmarks.report import machine_info, stats

QUESTIONS = (
    ("Alice", "What should I cook tonight? I have eggs and rice."),
    ("Bob", "I need a new book for a long weekend, any ideas?"),
    ("Alice", "What game should we play tonight?"),
    ("Bob", "What did Alice want to cook?"),
    ("Alice", "Do you like rainy days or sunny ones?"),
    ("Bob", "Which city would you visit first?"),
    ("Alice", "What is the best way to learn a song?"),
    ("Bob", "And what did I ask you about before that?"),
)


def _spin(stop: Any) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def run_turns(settings: Any, turns: int, max_tokens: int, *, offset: int = 0) -> list[dict[str, Any]]:
    """`turns` questions and replies through the server `settings` point at; each reply's request, timed."""
    from conversation.persona_library import load_persona
    from brain.llm import make_backend
    from brain.prompt import HistoryLine
    from brain.responder import Responder
    from runtime.scheduler import ModelScheduler

    persona = load_persona(PROJECT_ROOT / "personas" / "juniper.toml")
    backend = make_backend(settings)
    responder = Responder.from_settings(settings, llm=backend, scheduler=ModelScheduler("exclusive"))
    history: list[HistoryLine] = []
    rows: list[dict[str, Any]] = []
    for turn in range(turns):
        speaker, text = QUESTIONS[(offset + turn) % len(QUESTIONS)]
        history.append(HistoryLine(speaker, f"{persona.name}, {text[0].lower()}{text[1:]}", time.monotonic(), False))
        messages = responder.build_prompt(persona, history, f"{speaker} is talking to you.")
        start = time.monotonic()
        first: float | None = None
        reply = ""
        for token in backend.stream(messages, max_tokens=max_tokens, stop=["\n"], cancel=threading.Event()):
            if token and first is None:
                first = time.monotonic() - start
            reply += token
        total = time.monotonic() - start
        history.append(HistoryLine(persona.name, reply.strip() or "Hmm.", time.monotonic(), True))
        rows.append({"turn": turn, "first_token_s": round(first or total, 3), "total_s": round(total, 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    from simulator.llama_server import served

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--profile", default="large")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp generation threads of the server")
    parser.add_argument("--threads-batch", default="1,2", help="prompt-evaluation threads to compare, comma-separated")
    parser.add_argument("--busy", type=int, default=0, help="processes spinning on the CPU during the turns")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--out", default=str(PROJECT_ROOT / "out" / "bench" / "server-turns"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    base = load_settings(env_file=None).replace(llm_profile=args.profile)
    report: dict[str, Any] = {
        "benchmark": "server_turns_bench",
        "command": " ".join(["python -m benchmarks.server_turns_bench", *(argv or sys.argv[1:])]),
        "machine": machine_info(),
        "runs": {},
    }
    for value in args.threads_batch.split(","):
        batch = int(value)
        log_path = out / f"llama-server-tb{batch}.log"
        stop = multiprocessing.Event()
        spinners = [multiprocessing.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.busy)]
        with served(base, "embedded", threads=args.threads, threads_batch=batch, log_path=log_path) as settings:
            from simulator.llama_server import parse_prompt_timings

            run_turns(settings, 1, 4, offset=len(QUESTIONS) - 1)  # the persona prompt into the server's cache
            for proc in spinners:
                proc.start()
            try:
                rows = run_turns(settings, args.turns, args.max_tokens)
            finally:
                stop.set()
                for proc in spinners:
                    proc.join(5)
            timings = parse_prompt_timings(log_path.read_text(errors="replace"))
        # the warm-up's requests come first; the turns' are the last ones (one each; a resample adds none here)
        for row, timing in zip(rows, timings[-len(rows) :]):
            row.update(cached=timing.cached, evaluated=timing.evaluated, prompt_ms=round(timing.prompt_ms, 1))
            row["ms_per_token"] = round(timing.prompt_ms / max(1, timing.evaluated), 2)
        report["runs"][f"threads={args.threads},threads_batch={batch}"] = {
            "turns": rows,
            "first_token_s": stats([r["first_token_s"] for r in rows]),
            "prompt_ms_per_token": stats([r["ms_per_token"] for r in rows]),
            "server_log": str(log_path),
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / "server-turns.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
