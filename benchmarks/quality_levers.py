"""What each lever buys: the quality benchmark run once per step, each step adding one lever to the last.

    .venv/bin/python -m benchmarks.quality_levers [--parts tuning] [--limit N] [--out out/bench]

Starts from the reply path as it was before these levers (`legacy`: the full persona prompt with every
line the budget allows, the old sampling, no addressee screen) and adds, in order: the model family's
sampling, the short system prompt, the short situation naming the speaker once, a short history window,
leaving the bot's cut or flawed lines out of the prompt, the addressee screen (which makes the small
profile); then, one at a time on top of it, variants (the small-model repairs off, ...). Prints one JSON
object and writes a Markdown table (out/bench/quality_levers.md); every step's replies are in
out/bench/quality_levers.json. `--only A-B` runs a part of the plan (two halves can run side by side).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.quality_bench import make_bench, run, settings_from_env
from runtime.settings import PROJECT_ROOT

# (label, base profile, --set changes on top of the base): each step keeps the changes before it.
STEPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("legacy (before)", "legacy", ()),
    (
        "+ family sampling",
        "legacy",
        (
            "sampling.temperature=0.5",
            "sampling.top_p=0.9",
            "sampling.min_p=0.1",
            "sampling.repeat_penalty=1.15",
            "sampling.frequency_penalty=0.0",
        ),
    ),
    ("+ short system prompt", "legacy", ("layout.system=short",)),
    ("+ short situation, speaker named once", "legacy", ("layout.speaker_once=true",)),
    ("+ history window 6", "legacy", ("layout.history_lines=6",)),
    ("+ own flawed lines left out", "legacy", ("layout.own_lines=heard",)),
    ("+ address only the speaker (= the small profile)", "legacy", ("address_only_speaker=true",)),
)
# Measured on top of the small profile, one at a time (not kept): what the repairs hold up, and a lever that
# did not pay.
VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("small-model repairs off", ("small_model_repairs=false",)),
    ("the bot's name taken out of members' lines", ("layout.own_name=false",)),
    ("no example dialogue", ("layout.examples=false",)),
)
COLUMNS = (
    "on_topic_rate",
    "right_addressee_rate",
    "identity_rate",
    "no_repeat_rate",
    "no_instructions_rate",
    "length_rate",
)


def table(rows: list[dict[str, Any]], parts: list[str]) -> str:
    head = ["lever (cumulative)"]
    for part in parts:
        for mode in ("single", "running"):
            head += [f"{part} {mode} {c.replace('_rate', '')}" for c in COLUMNS[:3]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["label"]]
        for part in parts:
            for mode in ("single", "running"):
                summary = row["results"].get(part, {}).get(mode, {})
                cells += [f"{summary.get(c, '–')}" for c in COLUMNS[:3]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


async def main_async(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="tuning")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--samples", type=int, default=1, help="run every step this many times with other seeds")
    parser.add_argument(
        "--only",
        default=None,
        metavar="A-B",
        help="run only steps A to B (0-based, variants after the steps), e.g. to split the work",
    )
    parser.add_argument("--out", default=str(PROJECT_ROOT / "out" / "bench"))
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    plan: list[tuple[str, list[str]]] = []
    changes: list[str] = []
    for label, _base, step_changes in STEPS:
        changes = changes + list(step_changes)
        plan.append((label, changes))
    for label, variant in VARIANTS:
        plan.append((f"small profile, {label}", changes + list(variant)))
    first, last = 0, len(plan) - 1
    if args.only:
        a, _, b = args.only.partition("-")
        first, last = int(a), int(b or a)
    settings = settings_from_env()
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    for label, step in plan[first : last + 1]:
        bench = make_bench(settings, args.seed, profile="legacy", changes=step)
        t = time.monotonic()
        results = await run(bench, parts, ("single", "running"), args.limit, args.samples)
        rows.append(
            {
                "label": label,
                "changes": list(step),
                "results": results,
                "wall_s": round(time.monotonic() - t, 1),
                "profile": bench.responder.describe(),
                "replies": [r.as_dict() for r in bench.records],
            }
        )
        print(
            f"{label}: "
            + json.dumps({p: {m: {c: s.get(c) for c in COLUMNS} for m, s in v.items()} for p, v in results.items()}),
            file=sys.stderr,
            flush=True,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "quality_levers: the quality benchmark once per cumulative lever",
        "command": " ".join(
            [".venv/bin/python", "-m", "benchmarks.quality_levers", *(argv if argv is not None else sys.argv[1:])]
        ),
        "seed": args.seed,
        "steps": rows,
        "wall_s": round(time.monotonic() - started, 1),
    }
    stem = "quality_levers" + (f"_{args.only}" if args.only else "")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / f"{stem}.md").write_text(table(rows, parts), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = asyncio.run(main_async(argv))
    print(
        json.dumps(
            {**report, "steps": [{k: v for k, v in s.items() if k != "replies"} for s in report["steps"]]}, indent=2
        )
    )


if __name__ == "__main__":
    main()
