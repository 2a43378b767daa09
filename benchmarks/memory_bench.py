"""Memory benchmark: fact extraction, recall by relevance, whether replies use memories, call summaries.

    python -m benchmarks.memory_bench                        # SQLite, the embedded LLM, 3 samples per reply case
    python -m benchmarks.memory_bench --database-url postgresql://user@host/db   # recall on PostgreSQL too
    LLM_MODEL=/path/to/bigger.gguf python -m benchmarks.memory_bench             # another model, one setting away

Prints one JSON object (also out/bench/memory.json):
- `extraction`: precision / recall of `memory.extract` on labelled member lines (benchmarks/memory_cases.py).
- `recall`: for questions about stored memories, how often the expected memory ranks first / in the top 3 of the
  full-text search, and how often it is in the prompt block built within MEMORY_PROMPT_TOKENS.
- `replies`: through the reply path's prompt building, LLM and cleaning (no synthesis), the share of replies
  asked about a memory that use it (`use_rate`), and of replies not asked that keep it to themselves
  (`no_recite_rate`); the same cases without memories give the chance level (`use_rate_without_memory`).
- `summaries`: per method, the share of calls whose summary holds a word of what the member talked about and
  the share of the summary's content words that the member or the call actually said (faithfulness).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.memory_cases import EXTRACTION, RECALL, RECALL_MEMBERS, REPLIES, SUMMARY_CALLS
from benchmarks.report import command_line, machine_info, write_json

OUT = Path("out/bench/memory.json")
GUILD = 1


def bench_extraction() -> dict[str, Any]:
    from memory.extract import extract_facts

    tp = fp = fn = 0
    misses, extras = [], []
    for text, expected in EXTRACTION:
        facts = [f.text.lower() for f in extract_facts(text)]
        matched = set()
        for keywords in expected:
            hit = next((i for i, f in enumerate(facts) if i not in matched and all(k in f for k in keywords)), None)
            if hit is None:
                fn += 1
                misses.append((text, keywords))
            else:
                tp += 1
                matched.add(hit)
        for i, fact in enumerate(facts):
            if i not in matched:
                fp += 1
                extras.append((text, fact))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return {
        "lines": len(EXTRACTION),
        "facts_expected": tp + fn,
        "precision": round(precision, 3),
        "recall": round(recall, 3),
        "missed": misses,
        "extra": extras,
    }


async def bench_recall(url: str, data_dir: Path, budget_tokens: int) -> dict[str, Any]:
    from memory.recall import Recall
    from memory.extract import Fact
    from memory.store import MemoryStore
    from storage.db import Database
    from runtime.database_url import database_url

    db = Database(database_url(url, data_dir))
    await db.open()
    store = MemoryStore(db)
    ids = {name: i + 1 for i, name in enumerate(RECALL_MEMBERS)}
    now = time.time()
    for name, items in RECALL_MEMBERS.items():
        for n, (kind, text) in enumerate(items):
            if kind == "fact":
                await store.remember_facts(GUILD, ids[name], [Fact(f"k{n}", text)], now=now - 86400 * (n + 1))
            else:
                await store.add_summary(GUILD, ids[name], f"call:{n}", text, now=now - 86400 * (n + 1))
    recall = Recall(store, budget_tokens=budget_tokens, count_tokens=lambda t: max(1, round(len(t) / 3.6)))
    top1 = top3 = in_block = 0
    timings, failures = [], []
    for asker, question, expected in RECALL:
        members = [(ids[asker], asker)]
        t0 = time.perf_counter()
        hits = await store.search(GUILD, [ids[asker]], question)
        block = await recall.block(GUILD, members, question, now=now)
        timings.append((time.perf_counter() - t0) * 1000)
        texts = [h.text for h in hits]
        top1 += bool(texts[:1] == [expected])
        top3 += expected in texts[:3]
        found = expected.rstrip(".") in block
        in_block += found
        if texts[:1] != [expected] or not found:
            failures.append({"question": question, "expected": expected, "top3": texts[:3], "in_block": found})
    await db.close()
    n = len(RECALL)
    return {
        "dialect": db.dialect,
        "questions": n,
        "top1": round(top1 / n, 3),
        "top3": round(top3 / n, 3),
        "in_prompt_block": round(in_block / n, 3),
        "budget_tokens": budget_tokens,
        "recall_ms_p50": round(sorted(timings)[n // 2], 2),
        "misses": failures,
    }


def _case_block(case: dict, now: float) -> str:
    from memory.recall import render_block
    from memory.store import Memory

    members, memories, i = [], [], 0
    for uid, (name, items) in enumerate(case["members"].items(), start=1):
        members.append((uid, name))
        for kind, text in items:
            i += 1
            memories.append(Memory(i, GUILD, uid, kind, f"k{i}", text, now - 3 * 86400, now - 3 * 86400))
    return render_block(members, memories, now)


def bench_replies(settings: Any, samples: int) -> dict[str, Any]:
    from brain.clean import clean_reply
    from brain.llm import make_backend
    from brain.prompt import HistoryLine, build_messages
    from conversation.persona_library import PersonaLibrary

    llm = make_backend(settings)
    persona = PersonaLibrary.load(settings.personas_dir).get(settings.default_persona)
    if persona is None:
        raise SystemExit(f"persona {settings.default_persona!r} not found in {settings.personas_dir}")
    now = time.time()
    counts = {"use": [0, 0], "use_without": [0, 0], "avoid": [0, 0]}
    transcript = []
    for case in REPLIES:
        history = [HistoryLine(s, t, float(n), False) for n, (s, t) in enumerate(case["history"])]
        names = list(case["members"])
        variants = [("with", _case_block(case, now))] + ([("without", "")] if "use" in case else [])
        for variant, block in variants:
            messages = build_messages(
                persona,
                history,
                situation=case["situation"],
                budget_tokens=1600,
                count_tokens=llm.count_tokens,
                memory=block,
            )
            for _ in range(samples):
                raw = "".join(
                    llm.stream(
                        messages, max_tokens=48, stop=[f"\n{n}:" for n in names] + ["\nUser:"], cancel=threading.Event()
                    )
                )
                spoken = clean_reply(
                    raw,
                    persona_name=persona.name,
                    other_names=names,
                    instructions=[persona.render_system_prompt(), case["situation"]],
                )
                said = spoken.lower()
                if "use" in case:
                    key = "use" if variant == "with" else "use_without"
                    ok = any(w in said for w in case["use"])
                else:
                    key = "avoid"
                    ok = not any(re.search(rf"\b{re.escape(w)}", said) for w in case["avoid"])
                counts[key][0] += ok
                counts[key][1] += 1
                transcript.append(
                    {
                        "case": case["history"][-1][1] if case["history"] else case["situation"],
                        "memory": variant,
                        "reply": spoken,
                        "ok": ok,
                    }
                )
    rate = {k: round(v[0] / v[1], 3) if v[1] else None for k, v in counts.items()}
    return {
        "model": getattr(llm, "model_path", settings.llm_model),
        "samples_per_case": samples,
        "use_rate": rate["use"],
        "use_rate_without_memory": rate["use_without"],
        "no_recite_rate": rate["avoid"],
        "replies": len(transcript),
        "transcript": transcript,
    }


def bench_summaries(settings: Any, methods: Sequence[str]) -> dict[str, Any]:
    from runtime.scheduler import ModelScheduler
    from brain.llm import make_backend
    from memory.store import STOPWORDS
    from memory.summarize import Line, summarize_member

    def words(text: str) -> set[str]:
        return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 1 and w not in STOPWORDS}

    llm = make_backend(settings.replace(llm_model=settings.memory_llm_model or settings.llm_model))
    scheduler = ModelScheduler("pipelined")
    out: dict[str, Any] = {}
    for method in methods:
        covered, faithful, rows = 0, [], []
        for name, call, keywords in SUMMARY_CALLS:
            lines = [Line(s, t, None if s == "Juniper" else hash(s)) for s, t in call]
            mine = [t for s, t in call if s == name]
            t0 = time.perf_counter()
            summary = (
                summarize_member(
                    method, name, lines, mine, llm=llm, scheduler=scheduler, bot_name="Juniper", owner="bench"
                )
                or ""
            )
            took = time.perf_counter() - t0
            covered += any(k in summary.lower() for k in keywords)
            used = words(summary) - {"talked", "spoke", "told", "mentioned", "shared"}
            said = words(" ".join(t for _, t in call))
            faithful.append(len(used & said) / len(used) if used else 1.0)
            rows.append({"member": name, "summary": summary, "seconds": round(took, 2)})
        out[method] = {
            "calls": len(SUMMARY_CALLS),
            "on_topic_rate": round(covered / len(SUMMARY_CALLS), 3),
            "faithfulness": round(sum(faithful) / len(faithful), 3),
            "summaries": rows,
        }
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from runtime.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        action="append",
        default=[],
        help="also measure recall on this database (an empty one: it is filled); SQLite always",
    )
    parser.add_argument("--samples", type=int, default=3, help="LLM samples per reply case")
    parser.add_argument("--skip-llm", action="store_true", help="only extraction and recall (no model)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    settings = load_settings()
    started = time.time()
    result: dict[str, Any] = {
        "command": command_line("benchmarks.memory_bench", argv),
        "machine": machine_info(),
        "extraction": bench_extraction(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        urls = [""] + list(args.database_url)
        result["recall"] = [asyncio.run(bench_recall(url, Path(tmp), settings.memory_prompt_tokens)) for url in urls]
    if not args.skip_llm:
        result["replies"] = bench_replies(settings, args.samples)
        result["summaries"] = bench_summaries(settings, ["extractive", "llm"])
    result["seconds"] = round(time.time() - started, 1)
    write_json(result, args.out)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
