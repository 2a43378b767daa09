"""Turn-taking benchmark: the corpus of group situations (`corpora/turns.toml`) against the real bot.

    python -m benchmarks.turns_bench                      # every scenario (about 25 minutes on 2 cores)
    python -m benchmarks.turns_bench --split dev --family takeover
    python -m benchmarks.turns_bench --smart-turn off     # the corpus without the semantic end-of-turn model

Each scenario runs on its own loopback voice channel (real Opus, DAVE, Whisper, LLM, Piper; the real
`/join` path) with fresh room state; see `simulator.turn_runner` for how each step is judged. Prints one
JSON object (also written to out/bench/turns.json) with, overall, per family and per split:

* should_speak_precision / recall over the speak/quiet steps (the bot speaking is the positive);
* talk_over_rate: starts of the bot's voice (new lines and resumptions) inside a member's utterance or
  within 200 ms after its start, over all starts of the bot's voice;
* barge_in_stop_s {p50, p95}: a takeover's first word → the bot's last voiced packet;
* backchannel_keep_rate: backchannels over the bot after which its line went on to the end
  (backchannel_gap_s: the silence the bot put into its line for them, its pause to its resume, 0 when it
  talked through; backchannel_pause_s: the longest gap heard in its voice meanwhile, its own pauses between
  sentences included);
* barge_in_duck_s {p50, p95}: first word over the bot → its voice turned down (backchannels and takeovers);
* latency_s {p50, p95}: last word → first voiced packet of the answer, over the speak steps answered;
* scenarios: every step's expectation, what was observed, times, what was heard and said.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from benchmarks.report import command_line, machine_info, stats, write_json
from runtime.settings import PROJECT_ROOT, Settings, load_settings
from simulator.turn_corpus import CorpusScenario, load_corpus
from simulator.turn_judge import ScenarioResult
from simulator.turn_runner import run_scenario

log = logging.getLogger("benchmarks.turns_bench")

OUT = PROJECT_ROOT / "out" / "bench" / "turns.json"
# Production defaults, except: no greeting (every scenario starts a moment after the bot joined, before it said a
# word, as when someone speaks before its greeting; the rules read the join time, `Room.started_at`), no memory
# (a scenario played again would meet members the bot remembers from the try before: another prompt), and no
# spoken listening notice at /join (seconds of TTS before every try). `--set PROMPTER_GREET=true` plays the product's
# default instead: the members begin once the bot's greeting to the room has ended (`simulator.turn_runner`).
BENCH_ENV = {"PROMPTER_GREET": "false", "MEMORY_ENABLED": "false", "PRIVACY_NOTICE_SPOKEN": "false"}


def bench_settings(smart_turn: str | None = None, env: dict[str, str] | None = None) -> Settings:
    merged = {**BENCH_ENV, **(env or {})}
    if smart_turn is not None:
        merged["TURN_MODEL"] = "smart_turn" if smart_turn == "on" else "off"
    return load_settings(env=merged, env_file=None)


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 3) if total else None


# The milestones of a reply, in order, that say where a slow answer's time went (s after the member's last word).
MILESTONES = ("vad_end", "final", "decided", "request", "first_fragment_sink", "first_audio_sink", "first_packet")


def slowest_decile(results: Iterable[ScenarioResult]) -> dict[str, Any]:
    """What the slowest 10 % of answers are made of: each one's milestones, and the milestones' medians over
    the slowest tenth against the rest (latency counts only steps that were to be answered and were)."""
    answered = [
        (r.id, s)
        for r in results
        for s in r.steps
        if s.expect == "speak" and s.observed == "spoke" and s.latency_s is not None
    ]
    if not answered:
        return {}
    answered.sort(key=lambda item: item[1].latency_s or 0.0, reverse=True)
    k = max(1, round(len(answered) / 10))
    slow, rest = answered[:k], answered[k:]

    def medians(items: list[tuple[str, Any]]) -> dict[str, float]:
        out = {}
        for key in MILESTONES:
            values = [s.stages[key] for _, s in items if key in s.stages]
            if values:
                out[key] = round(float(np.median(values)), 3)
        return out

    return {
        "n": k,
        "of": len(answered),
        "steps": [
            {"id": rid, "step": s.index, "latency_s": s.latency_s, "heard": s.heard, "stages": s.stages}
            for rid, s in slow
        ],
        "median_stages_slowest": medians(slow),
        "median_stages_rest": medians(rest),
    }


def summarize(results: Iterable[ScenarioResult]) -> dict[str, Any]:
    results = list(results)
    steps = [s for r in results for s in r.steps]
    turn_steps = [s for s in steps if s.expect in ("speak", "quiet") and s.ok is not None]
    tp = sum(1 for s in turn_steps if s.expect == "speak" and s.observed == "spoke")
    fp = sum(1 for s in turn_steps if s.expect == "quiet" and s.observed == "spoke")
    fn = sum(1 for s in turn_steps if s.expect == "speak" and s.observed != "spoke")
    keeps = [s for s in steps if s.expect == "keep" and s.ok is not None]
    yields = [s for s in steps if s.expect == "yield" and s.ok is not None]
    starts = sum(r.bot_starts for r in results)
    talk_overs = sum(len(r.talk_overs) for r in results)
    return {
        "scenarios": len(results),
        "scenarios_passed": sum(1 for r in results if r.passed),
        "steps_judged": sum(1 for s in steps if s.ok is not None),
        "steps_ok": sum(1 for s in steps if s.ok),
        "preconditions_failed": sum(1 for s in steps if s.observed == "precondition_failed"),
        "errors": sum(1 for r in results if r.error),
        "should_speak_precision": _rate(tp, tp + fp),
        "should_speak_recall": _rate(tp, tp + fn),
        # recall where Whisper did not bend the bot's name past recognition (the rules' share of the misses)
        "should_speak_recall_name_heard": _rate(
            sum(1 for s in turn_steps if s.expect == "speak" and s.observed == "spoke" and s.name_heard == s.name_said),
            sum(1 for s in turn_steps if s.expect == "speak" and s.name_heard == s.name_said),
        ),
        "speak_steps_name_lost_by_stt": sum(
            1 for s in turn_steps if s.expect == "speak" and s.name_said and not s.name_heard
        ),
        "talk_over_rate": _rate(talk_overs, starts),
        "talk_overs": talk_overs,
        "bot_voice_starts": starts,
        "barge_in_stop_s": stats([s.stop_s for s in yields if s.stop_s is not None]),
        "yield_rate": _rate(sum(1 for s in yields if s.ok), len(yields)),
        "backchannel_keep_rate": _rate(sum(1 for s in keeps if s.ok), len(keeps)),
        "backchannel_pause_s": stats([s.pause_s for s in keeps if s.ok and s.pause_s is not None]),
        "backchannel_gap_s": stats([s.gap_s for s in keeps if s.ok and s.gap_s is not None]),
        "barge_in_duck_s": stats([s.duck_s for s in [*keeps, *yields] if s.duck_s is not None]),
        "latency_s": stats([s.latency_s for s in turn_steps if s.expect == "speak" and s.latency_s is not None]),
        # by how the reply began (the rule of the decision that started it: an early start on a partial, a reply
        # prepared during a deliberate wait such as a question to the room's, one begun on the final)
        "latency_by_rule_s": latency_by_rule(turn_steps),
    }


def latency_by_rule(steps: Iterable[Any]) -> dict[str, Any]:
    """Latency of the answered speak steps, per rule whose decision began the reply (none recorded: left out)."""
    answered = [s for s in steps if s.expect == "speak" and s.latency_s is not None and s.rule]
    return {
        rule: stats([s.latency_s for s in answered if s.rule == rule]) for rule in sorted({s.rule for s in answered})
    }


def end_of_turn_cost(results: list[ScenarioResult], settings: Settings, calls: int = 30) -> dict[str, Any]:
    """What the semantic end-of-turn model costs: per call in the corpus runs, and on 8 s of speech alone."""
    made = sum(r.end_of_turn_calls for r in results)
    out: dict[str, Any] = {
        "calls_in_corpus": made,
        "mean_ms_in_corpus": round(sum(r.end_of_turn_ms for r in results) / made, 1) if made else None,
    }
    if getattr(settings, "turn_model", "off") == "smart_turn":
        from audio.end_of_turn import load_smart_turn
        from simulator.speech import piper_speech_16k

        model = load_smart_turn()
        audio = piper_speech_16k("Juniper, I was wondering whether you have ever been to the sea, or to the mountains?")
        out["alone_8s_ms"] = stats([model.estimate(audio).compute_s * 1000.0 for _ in range(calls)], 1)
    return out


def report(results: list[ScenarioResult]) -> dict[str, Any]:
    families = sorted({r.family for r in results})
    splits = sorted({r.split for r in results})
    return {
        "overall": summarize(results),
        "per_family": {f: summarize(r for r in results if r.family == f) for f in families},
        "per_split": {s: summarize(r for r in results if r.split == s) for s in splits},
        "slowest_decile": slowest_decile(results),
    }


def _fmt(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(payload: dict[str, Any]) -> str:
    """The README's table: overall, per split and per family."""
    rows = [("**all**", payload["overall"])]
    rows += [(f"{split} split", v) for split, v in payload["per_split"].items()]
    rows += [(family.replace("_", " "), v) for family, v in payload["per_family"].items()]
    out = [
        "| scenarios | passed | speak precision | speak recall | talk-over | voice down p50 / p95 s | "
        "takeover silent p50 / p95 s | backchannel kept | backchannel gap p50 / p95 s | latency p50 / p95 s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pair(v: dict[str, Any], key: str) -> str:
        got = v.get(key) or {}
        return f"{_fmt(got.get('p50'))} / {_fmt(got.get('p95'))}"

    for name, v in rows:
        out.append(
            f"| {name} ({v['scenarios']}) | {v['scenarios_passed']} | {_fmt(v['should_speak_precision'])} | "
            f"{_fmt(v['should_speak_recall'])} | {_fmt(v['talk_over_rate'], 3)} "
            f"({v['talk_overs']}/{v['bot_voice_starts']}) | {pair(v, 'barge_in_duck_s')} | "
            f"{pair(v, 'barge_in_stop_s')} | {_fmt(v['backchannel_keep_rate'])} | "
            f"{pair(v, 'backchannel_gap_s')} | {pair(v, 'latency_s')} |"
        )
    return "\n".join(out)


async def run(scenarios: list[CorpusScenario], settings: Settings, *, attempts: int) -> list[ScenarioResult]:
    results = []
    with tempfile.TemporaryDirectory(prefix="chorus-turns-") as tmp:
        for i, scenario in enumerate(scenarios, 1):
            result = await run_scenario(scenario, settings, attempts=attempts, tmp=Path(tmp) / scenario.id)
            results.append(result)
            steps = " ".join(f"{s.expect}→{s.observed}{'' if s.ok or s.ok is None else '✗'}" for s in result.steps)
            print(
                f"[{i}/{len(scenarios)}] {scenario.id}: {'ok' if result.passed else 'FAIL'} "
                f"({steps}{'; talk-over' if result.talk_overs else ''}{'; ' + result.error if result.error else ''})",
                file=sys.stderr,
                flush=True,
            )
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("dev", "heldout", "all"), default="all")
    parser.add_argument("--family", default=None, help="one family of the corpus")
    parser.add_argument("--only", nargs="*", default=[], help="scenario ids")
    parser.add_argument(
        "--smart-turn",
        choices=("on", "off"),
        default=None,
        help="semantic end-of-turn model (default: the TURN_MODEL setting)",
    )
    parser.add_argument("--attempts", type=int, default=3, help="plays of a scenario whose precondition failed")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a setting for this run (repeatable)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--table", type=Path, default=None, help="print the Markdown table of a saved result and stop")
    args = parser.parse_args(argv)
    if args.table is not None:
        saved = __import__("json").loads(args.table.read_text(encoding="utf-8"))
        print(markdown_table(saved))
        return saved
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    corpus = load_corpus()
    scenarios = corpus.select(split=args.split, family=args.family, ids=args.only)
    overrides = dict(item.split("=", 1) for item in args.set)
    settings = bench_settings(args.smart_turn, overrides)
    started = time.monotonic()
    machine = machine_info()
    results = asyncio.run(run(scenarios, settings, attempts=args.attempts))
    payload = {
        "benchmark": "turns_bench",
        "command": command_line("benchmarks.turns_bench", argv),
        "machine": machine,
        "corpus": {
            "path": str(corpus.path.relative_to(PROJECT_ROOT)),
            "scenarios": len(scenarios),
            "per_family": {f: sum(1 for s in scenarios if s.family == f) for f in corpus.families},
        },
        "settings": {
            "turn_model": getattr(settings, "turn_model", "n/a"),
            "vad_end_silence_ms": settings.vad_end_silence_ms,
            "reply_silence_ms": settings.reply_silence_ms,
            "barge_in_ms": settings.barge_in_ms,
            "duck_ms": settings.duck_ms,
            "overrides": overrides,
            "llm_model": settings.llm_model,
            "stt_model": settings.stt_model,
        },
        **report(results),
        "end_of_turn_model_cost": end_of_turn_cost(results, settings),
        "wall_s": round(time.monotonic() - started, 1),
        "scenarios": [r.as_dict() for r in results],
    }
    write_json(payload, args.out)
    print(__import__("json").dumps({k: v for k, v in payload.items() if k != "scenarios"}, indent=2))
    return payload


if __name__ == "__main__":
    main()
