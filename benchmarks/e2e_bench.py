"""End of a member's speech → the bot's first audio at the Discord edge, per turn, and what that audio said.

    .venv/bin/python -m benchmarks.e2e_bench [--turns 12] [--modes exclusive,parallel,pipelined,baseline] [--out out/bench]
                                             [--llm preset:gemma3-270m | --llama-server embedded] [--profile large]

The same scripted conversations (`simulator.scripted`: simulated members speaking in real time over
RTP + DAVE + Opus to a real ChorusBot that joined through /join) run once per mode, each on a fresh bot
and loopback server, the models shared (loaded once per process): a group of two (the bot named at the
start, in the middle or at the end of a line, follow-ups that need an earlier turn) and a member alone with
the bot (no name needed). Every answer is checked as the reply-quality benchmark checks it
(`benchmarks.quality_checks`: on topic, right addressee, identity, no repeat, ...), and latency is reported
over all answered turns and over the on-topic ones: a fast non-answer is no answer.

* ``exclusive`` / ``parallel`` / ``pipelined``: chorus as shipped (SCHEDULER_POLICY), streaming end to end: speculative
  STT in the end-of-speech pause, early starts on a complete-looking partial, the LLM streaming into the
  sentence chunker, Piper speaking the first fragment while the LLM goes on.
* ``baseline``: the seed's way with the same models, through the same path: a long end-of-speech silence
  (700 ms, RealtimeSTT-like endpointing), STT only after the endpoint (no speculation, no partials, no
  early start), then the WHOLE LLM reply (same prompt and sampling as chorus), then played sentence by
  sentence as RealtimeTTS does, each sentence as soon as it is synthesized (`benchmarks.seed_baseline`,
  injected through `PrompterCog.session_parts`): its first audio is the first sentence's.

Latency of a turn = true end of speech (send time of the member's last voiced packet) → first voiced bot
packet decoded by the member. Each stage is reported in seconds after the true end of speech: speech_end
(VAD) → vad_end → final transcript → request → first_token → first_fragment → first_audio (TTS) →
first_packet (sent) → heard (at the member). A first line per mode warms the models up (not counted). Each turn
and each mode's summary carry ``first_token_s`` (the LLM's first token) and ``first_audio_s`` (the turn's
latency: the first voiced bot packet at the member).

The LLM is the bot's (`LLM_*` from the environment) or a candidate named with --llm / --profile, or one served by
llama.cpp's server with --llama-server (`benchmarks.e2e_llm`); the report's ``models.candidate`` says which.
Prints one JSON object (also written to out/bench/e2e.json) and draws out/bench/e2e.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from runtime.settings import PROJECT_ROOT, Settings, load_settings
from benchmarks.e2e_llm import add_llm_options, chosen_llm, models_info, server_prompt_summary
from benchmarks.report import DEFAULT_PACKAGES, machine_info, stats
from benchmarks.quality_checks import CheckResult, ReplyContext, check_reply, rates
from benchmarks.e2e_intervals import GOAL_P50_S, INTERVALS, turn_intervals
from benchmarks.quality_corpus import Rubric, load_corpus
from benchmarks.seed_baseline import baseline_parts
from simulator.replies import STAGES
from simulator.scripted import ConversationResult, Line, ScriptedConversation
from simulator.voices import ALICE, BOB

log = logging.getLogger("benchmarks.e2e_bench")

MODES = ("exclusive", "parallel", "pipelined", "baseline")
BASELINE_END_SILENCE_MS = 700


@dataclass(frozen=True)
class Ask:
    """One scripted line and what an on-topic answer to it contains (as in the quality corpus)."""

    speaker: str
    text: str
    any: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()

    @property
    def rubric(self) -> Rubric:
        return Rubric(any=self.any, kinds=self.kinds)


# A group of two: the bot named at the start, in the middle and at the end; follow-ups that need an earlier turn.
GROUP: tuple[Ask, ...] = (
    Ask("Alice", "Juniper, what should I cook tonight? I have eggs and rice.", kinds=("dish",)),
    Ask("Bob", "I need a new book, Juniper, any ideas for a long weekend?", kinds=("book",)),
    Ask("Alice", "What game should we play tonight, Juniper?", kinds=("game",)),
    Ask("Bob", "Juniper, what did Alice want to cook?", any=("egg", "rice", "fried", "cook", "dinner", "omelet")),
    Ask("Alice", "Do you think it will rain this weekend, Juniper?", kinds=("weather",)),
    Ask("Bob", "So, Juniper, cats or dogs?", kinds=("animal",)),
    Ask("Alice", "Juniper, what's a good snack for a movie night?", kinds=("food",)),
    Ask("Bob", "Juniper, what did I ask you about first?", any=("book", "read", "novel", "weekend")),
)
# Alone with the bot: no name needed.
ALONE: tuple[Ask, ...] = (
    Ask(
        "Alice",
        "What's your favorite fruit?",
        any=(
            "apple",
            "banana",
            "mango",
            "peach",
            "pear",
            "grape",
            "cherr",
            "strawberr",
            "berr",
            "orange",
            "plum",
            "kiwi",
            "melon",
            "lemon",
        ),
    ),
    Ask("Alice", "Any tips for sleeping better?", kinds=("sleep",), any=("screen", "phone", "tea", "routine", "dark")),
    Ask("Alice", "And what did I ask you about a minute ago?", any=("fruit", "apple", "banana", "mango", "berr")),
    Ask("Alice", "Where should I go for a weekend trip?", kinds=("travel",)),
)
WARMUP = Line("Alice", "Hey Juniper, are you there?", warmup=True, pause_s=1.0)


def script(asks: Sequence[Ask], turns: int) -> list[Line]:
    """The warm-up line, then `turns` lines of `asks` (cycled)."""
    return [WARMUP] + [Line(ask.speaker, ask.text, pause_s=0.8) for ask in (asks[i % len(asks)] for i in range(turns))]


def split_turns(turns: int) -> tuple[int, int]:
    """Timed turns of the group conversation and of the one alone with the bot (about two to one)."""
    alone = max(1, round(turns / 3)) if turns > 1 else 0
    return turns - alone, alone


# --- running and summarizing ----------------------------------------------------------------------------------------


def mode_settings(base: Settings, mode: str, baseline_end_silence_ms: int) -> Settings:
    common = dict(greet_members=False, idle_topic_s=3600.0)
    if mode == "baseline":
        return base.replace(
            scheduler_policy="exclusive", vad_end_silence_ms=baseline_end_silence_ms, preemptive_start=False, **common
        )
    return base.replace(scheduler_policy=mode, **common)


def turn_rows(
    mode: str, room: str, asks: Sequence[Ask | None], result: ConversationResult, persona: Any = None
) -> list[dict[str, Any]]:
    """One row per turn: what was said, heard and answered, its latency, and the answer's quality checks."""
    kinds = load_corpus("tuning").kinds
    members = tuple(c["name"] for c in result.cast)
    earlier: list[str] = []
    rows = []
    for turn, ask in zip(result.turns, asks):
        answer = turn.answer
        reply = answer.text if answer else ""
        quality: dict[str, Any] = {}
        if ask is not None and not turn.warmup:
            ctx = ReplyContext(
                persona_name=result.bot_name,
                persona_aliases=tuple(getattr(persona, "aliases", ())),
                speaker=turn.speaker,
                members=members,
                known_names=members,
                prompt_text=turn.said,
                earlier_replies=tuple(earlier),
                max_words=getattr(persona, "max_reply_words", None),
                max_sentences=getattr(persona, "max_reply_sentences", None),
                rubric=ask.rubric,
                kinds=kinds,
            )
            checked = check_reply(reply, ctx)
            quality = {"checks": checked.passed, "why": checked.why, "on_topic_evidence": checked.evidence}
        if reply:
            earlier.append(reply)
        rows.append(
            {
                "mode": mode,
                "room": room,
                "turn": turn.index,
                "warmup": turn.warmup,
                "speaker": turn.speaker,
                "said": turn.said,
                "heard": turn.heard,
                "status": turn.status,
                "reply": reply,
                "reply_kind": f"{answer.kind}: {answer.reason}" if answer else "",
                "latency_s": turn.latency_s,
                "first_token_s": answer.stages_s.get("first_token") if answer else None,
                "first_audio_s": turn.latency_s,  # the first voiced bot packet at the member
                "stages_s": answer.stages_s if answer else {},
                "quality": quality,
                "other_lines": [f"{r.kind}/{r.outcome}" for r in turn.replies if r is not answer],
            }
        )
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    timed = [r for r in rows if not r["warmup"]]
    answered = [r for r in timed if r["latency_s"] is not None]
    on_topic = [r for r in answered if r["quality"].get("checks", {}).get("on_topic")]
    checked = [r for r in timed if r["quality"]]

    return {
        "turns": len(timed),
        "answered": len(answered),
        "on_topic": len(on_topic),
        "latency_s": stats([r["latency_s"] for r in answered]),
        "latency_on_topic_s": stats([r["latency_s"] for r in on_topic]),
        "first_token_s": stats([r["stages_s"]["first_token"] for r in answered if "first_token" in r["stages_s"]]),
        "first_audio_s": stats([r["latency_s"] for r in answered]),  # the latency, named as the candidates table has it
        "quality": rates(
            [CheckResult(passed=r["quality"]["checks"], why={}) for r in checked]
        ),  # over every timed turn (an unanswered one fails)
        "stage_after_end_of_speech_s": {
            s: stats([r["stages_s"][s] for r in answered if s in r["stages_s"]]) for s in STAGES
        },
        "interval_s": {
            name: stats([t1 - t0 for r in answered for j, t0, t1 in turn_intervals(r["stages_s"]) if j == i])
            for i, (name, _a, _b) in enumerate(INTERVALS)
        },
    }


async def run_mode(
    base: Settings, mode: str, turns: int, args: argparse.Namespace, persona: Any = None
) -> list[dict[str, Any]]:
    """The group conversation and the one alone with the bot, in this mode: rows of every turn, and per room
    the conversation's settings and files."""
    settings = mode_settings(base, mode, args.baseline_end_silence_ms)
    parts = baseline_parts(args.baseline_end_silence_ms) if mode == "baseline" else None

    def progress(event: Any) -> None:
        if event.kind == "bot_line":
            print(
                f"[{mode}] {event.speaker}: {event.text!r} ({event.latency_s or 0:.2f} s)", file=sys.stderr, flush=True
            )
        elif event.kind in ("line", "heard", "unanswered"):
            print(f"[{mode}] {event.kind} {event.speaker}: {event.text or event.detail!r}", file=sys.stderr, flush=True)

    group_turns, alone_turns = split_turns(turns)
    out: list[dict[str, Any]] = []
    for room, cast, asks, n in (("group", [ALICE, BOB], GROUP, group_turns), ("alone", [ALICE], ALONE, alone_turns)):
        if n <= 0:
            continue
        convo = ScriptedConversation(
            settings,
            cast,
            script(asks, n),
            out_dir=Path(args.out) / mode / room,
            label=f"{mode}/{room}",
            session_parts=parts,
            on_event=progress,
            reply_timeout_s=args.reply_timeout,
        )
        result = await convo.run()
        line_asks: list[Ask | None] = [None] + [asks[i % len(asks)] for i in range(n)]
        out.append({"room": room, "result": result, "rows": turn_rows(mode, room, line_asks, result, persona)})
    return out


async def run_modes(
    base: Settings, modes: Sequence[str], args: argparse.Namespace, report: dict[str, Any]
) -> list[dict[str, Any]]:
    """Each mode in turn (its summary into `report["modes"]`): the rows of every turn."""
    rows: list[dict[str, Any]] = []
    from conversation.persona_library import PersonaLibrary

    persona = PersonaLibrary.load(base.personas_dir).get(base.default_persona)
    for mode in modes:
        t = time.monotonic()
        rooms = await run_mode(base, mode, args.turns, args, persona)
        mode_rows = [row for room in rooms for row in room["rows"]]
        for row in mode_rows:  # per turn, as the run goes (the full report goes to stdout at the end)
            print(
                json.dumps({k: row[k] for k in ("mode", "room", "turn", "speaker", "status", "latency_s", "reply")}),
                file=sys.stderr,
                flush=True,
            )
        rows.extend(mode_rows)
        report["modes"][mode] = {
            "settings": rooms[0]["result"].settings if rooms else {},
            "wall_s": round(time.monotonic() - t, 1),
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "summary": summarize(mode_rows),
            "files": {room["room"]: room["result"].files for room in rooms},
        }
    return rows


async def main_async(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--turns",
        type=int,
        default=12,
        help="timed turns per mode (about two thirds in the group, one third alone; each after a warm-up line)",
    )
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated: exclusive, parallel, pipelined, baseline"
    )
    parser.add_argument("--baseline-end-silence-ms", type=int, default=BASELINE_END_SILENCE_MS)
    parser.add_argument(
        "--reply-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for a reply before a turn counts as unanswered",
    )
    parser.add_argument("--out", default=str(PROJECT_ROOT / "out" / "bench"))
    parser.add_argument("--no-plot", action="store_true")
    add_llm_options(parser)
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(unknown)}")
    env = load_settings(
        env={k: v for k, v in os.environ.items() if k.startswith(("LLM_", "TTS_", "STT_"))}, env_file=None
    )
    started = time.monotonic()
    with chosen_llm(env, args) as base:
        report: dict[str, Any] = {
            "benchmark": "e2e_bench: true end of a member's speech -> the bot's first voiced packet at the member (loopback Discord voice)",
            "command": " ".join(
                [".venv/bin/python", "-m", "benchmarks.e2e_bench", *(argv if argv is not None else sys.argv[1:])]
            ),
            "machine": machine_info((*DEFAULT_PACKAGES, "RealtimeTTS")),
            "models": models_info(base, args.llama_server),
            "goal": {"p50_latency_s": GOAL_P50_S, "seed_style_p50_s_reported": 2.6},
            "modes": {},
        }
        rows = await run_modes(base, modes, args, report)
    report["turns"] = rows
    if args.llama_server:
        report["llm_server_prompt"] = server_prompt_summary(Path(args.out), args.server_threads_batch)
    p50 = {m: (report["modes"][m]["summary"]["latency_s"] or {}).get("p50") for m in modes}
    if p50.get("baseline"):
        report["speedup_p50_vs_baseline"] = {
            m: round(p50["baseline"] / v, 2) for m, v in p50.items() if m != "baseline" and v
        }
    report["latency_p50_s"] = p50
    report["first_token_p50_s"] = {m: (report["modes"][m]["summary"]["first_token_s"] or {}).get("p50") for m in modes}
    report["on_topic_rate"] = {m: report["modes"][m]["summary"]["quality"].get("on_topic_rate") for m in modes}
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["note"] = (
        "2-core machine shared with other jobs: absolute times are noisy; modes run one after the other "
        "(see loadavg per mode). Stage times are seconds after the true end of speech; with an early "
        "start the request can precede the final transcript."
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "e2e.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if not args.no_plot:
        from benchmarks.plot_e2e import plot_e2e

        report["plot"] = str(plot_e2e(report, out / "e2e.png"))
        (out / "e2e.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("discord",):
        logging.getLogger(name).setLevel(logging.ERROR)
    report = asyncio.run(main_async(argv))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
