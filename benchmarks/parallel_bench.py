"""Replies of several guilds at once on one process: scheduler policy x llama.cpp instances, interleaved.

    .venv/bin/python -m benchmarks.parallel_bench [--guilds 4 8] [--rounds 3] [--variants exclusive:1,parallel:2]

Each batch starts one reply per guild at the same moment (a different room and question each, as
`benchmarks.think_bench` builds them), on the real SmolLM2 + Piper through `Responder`, and waits for all of them.
Variants (`policy:instances`) run batch by batch in turn, in one process, so the machine's load drifts hit
them alike (the cores here are shared: compare the variants, not the absolute times). Per variant and guild
count it reports the request -> first audio latency (p50 / p95 over every reply of every round), the batch's
wall time, the process CPU (cores used while the batch ran) and whether each reply said what the first
variant said (same seed per reply: overlap must not change what is said). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from runtime.scheduler import ModelScheduler
from runtime.settings import PROJECT_ROOT, load_settings
from brain.llm import make_backend
from brain.responder import Responder
from conversation.persona_library import load_persona
from benchmarks.report import command_line, machine_info, stats, write_json
from benchmarks.think_bench import TimingSink, history_for

log = logging.getLogger("benchmarks.parallel_bench")

SEED = 1234  # a reply's sampling seed: SEED + its guild index, the same in every variant


def parse_variants(text: str) -> list[tuple[str, int]]:
    variants = []
    for item in text.split(","):
        policy, _, instances = item.strip().partition(":")
        variants.append((policy, int(instances or 1)))
    return variants


async def batch(responders: list[Responder], persona: Any, round_index: int) -> dict[str, Any]:
    """One reply per guild (responder), all started at once; per-reply first-audio latency and text."""

    async def one(guild: int, responder: Responder) -> dict[str, Any]:
        history = history_for(guild, variant=round_index + guild)
        t0 = time.monotonic()
        result = await responder.respond(
            persona,
            history,
            situation=f"{history[-1].speaker} just spoke to you. Answer.",
            sink=TimingSink(),
            t_request=t0,
        )
        return {"first_audio": result.latency("first_audio"), "done": result.latency("done"), "text": result.text}

    cpu0, t0 = time.process_time(), time.monotonic()
    replies = await asyncio.gather(*(one(g, r) for g, r in enumerate(responders)))
    wall = time.monotonic() - t0
    return {"replies": replies, "wall_s": wall, "cores": (time.process_time() - cpu0) / wall if wall else 0.0}


def guild_responders(settings: Any, policy: str, instances: int, guilds: int) -> list[Responder]:
    """One Responder per guild sharing one backend and scheduler (as the bot's sessions do), each seeded alike
    in every variant."""
    llm = make_backend(settings.replace(llm_instances=instances))
    scheduler = ModelScheduler(policy, slots=instances)
    responders = []
    for guild in range(guilds):
        responder = Responder.from_settings(settings, llm=llm, scheduler=scheduler)
        responder.seed = SEED + guild
        responders.append(responder)
    return responders


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings(env={k: v for k, v in os.environ.items() if k.startswith("LLM_")}, env_file=None)
    persona = load_persona(args.persona)
    variants = parse_variants(args.variants)
    names = [f"{policy}:{instances}" for policy, instances in variants]
    per: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for n in args.guilds:
        sets = {name: guild_responders(settings, p, i, n) for name, (p, i) in zip(names, variants)}
        for name in names:  # warm-up: models loaded, persona prefix in the caches (not counted)
            await batch(sets[name][:1], persona, -1)
        for round_index in range(args.rounds):
            order = names if round_index % 2 == 0 else names[::-1]
            for name in order:
                result = await batch(sets[name], persona, round_index)
                per.setdefault((name, n), []).append(result)
                log.warning(
                    "parallel_bench: %s, %d guilds, round %d: wall %.2f s", name, n, round_index, result["wall_s"]
                )
    results = []
    for n in args.guilds:
        first_texts = [r["text"] for b in per[(names[0], n)] for r in b["replies"]]
        for name in names:
            batches = per[(name, n)]
            replies = [r for b in batches for r in b["replies"]]
            texts = [r["text"] for r in replies]
            results.append(
                {
                    "variant": name,
                    "guilds": n,
                    "first_audio_s": stats([r["first_audio"] for r in replies if r["first_audio"] is not None]),
                    "answered": sum(1 for r in replies if r["first_audio"] is not None),
                    "replies": len(replies),
                    "batch_wall_s": stats([b["wall_s"] for b in batches]),
                    "process_cores": stats([b["cores"] for b in batches], digits=2),
                    "same_text_as_first_variant": round(
                        sum(1 for a, b in zip(texts, first_texts) if a == b) / max(1, len(texts)), 3
                    ),
                }
            )
    return {"variants": names, "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guilds", type=int, nargs="+", default=[4, 8], help="replies started at once")
    parser.add_argument("--rounds", type=int, default=3, help="batches per variant and guild count")
    parser.add_argument("--variants", default="exclusive:1,parallel:2", help="policy:instances, comma-separated")
    parser.add_argument("--persona", default=str(PROJECT_ROOT / "personas" / "juniper.toml"))
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "bench" / "parallel.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    started = time.monotonic()
    machine = machine_info()
    machine["loadavg_at_start"] = list(os.getloadavg())
    report: dict[str, Any] = {"benchmark": "parallel_bench", "command": command_line("benchmarks.parallel_bench", argv)}
    report.update(asyncio.run(run(args)))
    machine["loadavg_at_end"] = list(os.getloadavg())
    report["machine"] = machine
    report["wall_s"] = round(time.monotonic() - started, 1)
    write_json(report, args.out)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
