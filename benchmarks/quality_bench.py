"""Reply quality through the real reply path: is what chorus says worth hearing?

    .venv/bin/python -m benchmarks.quality_bench [--parts tuning,heldout] [--modes single,running] [--limit N]
                                                 [--out out/bench] [--seed 7]

Every reply goes through `brain.responder.Responder` as in a voice session: the persona prompt and the
situation (`conversation.situation.situation_for` on a real `conversation.room.Room`), the LLM
(`LLM_BACKEND`, `LLM_MODEL`, ... from the environment, as the bot reads them), the speech cleaner and the
persona's limits. Synthesis is skipped (a silent voice stands in for TTS: it does not change the words).

Two modes, on the prompts of `benchmarks/corpora/quality_*.toml`:
- ``single``: each prompt on its own, in a fresh room (its members, its earlier lines);
- ``running``: each conversation of the corpus, line by line, the bot's replies entering the room's history
  (what it said is what later replies see), as in a call.

Each reply is checked (`benchmarks.quality_checks`: spoken, on_topic, right_addressee, identity, no_repeat,
no_instructions, length). Prints one JSON object with the rate of each check per part and mode (also written
to out/bench/quality.json) and writes every prompt and reply to out/bench/quality.md. The held-out part is
reported on its own: it is never used to tune anything. Sampling is seeded per reply (`--seed`), so a run
is reproducible on the same machine and build.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from benchmarks.quality_checks import CHECKS, CheckResult, ReplyContext, check_reply
from benchmarks.quality_report import (
    ReplyRecord,
    distance_to_targets,
    machine_info,
    markdown_table,
    model_info,
    summarize,
    transcript,
)
from benchmarks.quality_room import FIRST_USER_ID, RoomScript, SilentVoice, _NullSink, addressed_to
from benchmarks.quality_corpus import PARTS, Conversation, Corpus, Prompt, Rubric, load_corpus
from runtime.scheduler import ModelScheduler
from runtime.settings import PROJECT_ROOT, Settings, load_settings
from brain.llm import LlmBackend, make_backend
from brain.profile import ModelProfile, PromptLayout, Sampling, profile_for
from brain.responder import Responder, ReplyResult
from conversation.decision import Action, Decision
from conversation.persona import Persona
from conversation.persona_library import PersonaLibrary
from conversation.situation import situation_for

log = logging.getLogger("benchmarks.quality_bench")

MODES = ("single", "running")
IDLE_S = 60.0  # quiet before a topic start
# The reply path as it was before the levers of issue 12 (for the lever table): the full persona prompt
# with every line the budget allows, the old sampling (temperature 0.7, frequency penalty 0.5), all repairs.
LEGACY = ModelProfile(
    "legacy",
    layout=PromptLayout(system="full", examples=True, history_lines=None, own_lines="all", speaker_once=False),
    sampling=Sampling(
        temperature=0.7,
        top_p=0.95,
        top_k=40,
        min_p=0.05,
        repeat_penalty=1.0,
        presence_penalty=0.0,
        frequency_penalty=0.5,
    ),
    small_model_repairs=True,
    address_only_speaker=False,
)


@dataclass
class Bench:
    settings: Settings
    responder: Responder
    personas: PersonaLibrary
    seed: int
    known_names: tuple[str, ...]
    records: list[ReplyRecord] = field(default_factory=list)

    def persona(self, name: str) -> Persona:
        persona = self.personas.get(name)
        if persona is None:
            raise SystemExit(f"quality_bench: persona {name!r} not found in {self.settings.personas_dir}")
        return persona


def _seed_for(base: int, key: str) -> int:
    return (base * 1_000_003 + zlib.crc32(key.encode("utf-8"))) % (2**31 - 1)


async def reply_once(
    bench: Bench, script: RoomScript, decision: Decision, *, key: str
) -> tuple[ReplyResult, str, list[dict], float]:
    persona = script.persona
    now = script.tick(IDLE_S if decision.action is Action.START_TOPIC else 0.3)
    situation = situation_for(decision, script.room, persona, now)
    history = list(script.room.history)
    messages = bench.responder.build_prompt(persona, history, situation)
    bench.responder.seed = _seed_for(bench.seed, key)
    started = time.monotonic()
    result = await bench.responder.respond(
        persona, history, situation=situation, sink=_NullSink(), member_names=script.members
    )
    return result, situation, messages, time.monotonic() - started


def _context(
    bench: Bench,
    persona: Persona,
    *,
    speaker: str | None,
    members: Sequence[str],
    said: str,
    messages: list[dict],
    situation: str,
    earlier: Sequence[str],
    rubric: Rubric,
    corpus: Corpus,
) -> ReplyContext:
    return ReplyContext(
        persona_name=persona.name,
        persona_aliases=tuple(persona.aliases),
        speaker=speaker,
        members=tuple(members),
        known_names=bench.known_names,
        prompt_text=said,
        instructions=tuple([m["content"] for m in messages if m.get("role") == "system"] + [situation]),
        earlier_replies=tuple(earlier),
        max_words=persona.max_reply_words,
        max_sentences=persona.max_reply_sentences,
        rubric=rubric,
        kinds=corpus.kinds,
    )


def _record(
    bench: Bench,
    *,
    part: str,
    mode: str,
    item: str,
    category: str,
    persona: Persona,
    speaker: str | None,
    said: str,
    context: list[str],
    situation: str,
    result: ReplyResult,
    messages: list[dict],
    seconds: float,
    checks: CheckResult,
) -> ReplyRecord:
    tokens = sum(bench.responder.llm.count_tokens(m["content"]) for m in messages)
    record = ReplyRecord(
        part=part,
        mode=mode,
        item=item,
        category=category,
        persona=persona.name,
        speaker=speaker,
        said=said,
        context=context,
        situation=situation,
        reply=result.text,
        raw=result.raw_text,
        attempts=result.attempts,
        stop_reason=result.stop_reason,
        prompt_tokens=tokens,
        seconds=seconds,
        checks=checks,
        error=result.error,
    )
    bench.records.append(record)
    return record


async def run_prompt(bench: Bench, corpus: Corpus, prompt: Prompt, earlier: list[str]) -> ReplyRecord:
    persona = bench.persona(prompt.persona)
    members = list(prompt.members)
    if prompt.action == "greet" and prompt.speaker in members:
        members.remove(prompt.speaker)  # joins below
    script = RoomScript(persona, members)
    context = []
    for line in prompt.context:
        if line.speaker == persona.name:
            script.bot(line.text)
        else:
            script.human(line.speaker, line.text)
        context.append(f"{line.speaker}: {line.text}")
    said = prompt.text
    if prompt.action == "respond":
        assert prompt.speaker is not None
        line = script.human(prompt.speaker, prompt.text)
        decision = Decision(
            Action.RESPOND_NOW,
            "quality bench",
            member_id=script.ids[prompt.speaker],
            reply_to_seq=line.seq,
            addressed=prompt.addressed,
        )
    elif prompt.action == "greet":
        assert prompt.speaker is not None
        uid = FIRST_USER_ID + 99
        script.ids[prompt.speaker] = uid
        script.room.member_joined(uid, prompt.speaker, script.tick())
        decision = Decision(Action.GREET, "quality bench", member_id=uid)
        said = f"({prompt.speaker} joins the voice channel)"
    elif prompt.action == "farewell":
        assert prompt.speaker is not None
        script.room.member_left(script.ids[prompt.speaker], script.tick())
        decision = Decision(Action.FAREWELL, "quality bench", member_id=script.ids[prompt.speaker])
        said = f"({prompt.speaker} leaves the voice channel)"
    else:
        decision = Decision(Action.START_TOPIC, "quality bench")
        said = "(the room has been quiet for a minute)"
    result, situation, messages, seconds = await reply_once(bench, script, decision, key=prompt.id)
    speaker = prompt.speaker if prompt.action != "idle" else None
    ctx = _context(
        bench,
        persona,
        speaker=speaker,
        members=script.members or prompt.members,
        said=prompt.text,
        messages=messages,
        situation=situation,
        earlier=earlier,
        rubric=prompt.rubric,
        corpus=corpus,
    )
    checks = check_reply(result.text, ctx, raw=result.raw_text)
    earlier.append(result.text)
    return _record(
        bench,
        part=corpus.part,
        mode="single",
        item=prompt.id,
        category=prompt.category,
        persona=persona,
        speaker=speaker,
        said=said,
        context=context,
        situation=situation,
        result=result,
        messages=messages,
        seconds=seconds,
        checks=checks,
    )


async def run_conversation(bench: Bench, corpus: Corpus, convo: Conversation, limit: int | None) -> list[ReplyRecord]:
    persona = bench.persona(convo.persona)
    script = RoomScript(persona, convo.members)
    earlier: list[str] = []
    records = []
    replies = 0
    for index, turn in enumerate(convo.turns, 1):
        line = script.human(turn.speaker, turn.text)
        if not turn.reply:
            continue
        if limit is not None and replies >= limit:
            break
        replies += 1
        addressed = (
            turn.addressed if turn.addressed is not None else addressed_to(persona, turn.text, len(convo.members) == 1)
        )
        decision = Decision(
            Action.RESPOND_NOW,
            "quality bench",
            member_id=script.ids[turn.speaker],
            reply_to_seq=line.seq,
            addressed=addressed,
        )
        result, situation, messages, seconds = await reply_once(bench, script, decision, key=f"{convo.id}:{index}")
        ctx = _context(
            bench,
            persona,
            speaker=turn.speaker,
            members=script.members,
            said=turn.text,
            messages=messages,
            situation=situation,
            earlier=earlier,
            rubric=turn.rubric,
            corpus=corpus,
        )
        checks = check_reply(result.text, ctx, raw=result.raw_text)
        records.append(
            _record(
                bench,
                part=corpus.part,
                mode="running",
                item=f"{convo.id}#{index}",
                category="addressed" if addressed else "group",
                persona=persona,
                speaker=turn.speaker,
                said=turn.text,
                context=[],
                situation=situation,
                result=result,
                messages=messages,
                seconds=seconds,
                checks=checks,
            )
        )
        if result.text.strip():
            script.bot(result.text, reply_to_seq=line.seq)
            earlier.append(result.text)
    return records


def _parse_value(raw: str) -> Any:
    low = raw.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw.strip()


def choose_profile(name: str, settings: Settings, llm: LlmBackend, changes: Sequence[str] = ()) -> ModelProfile:
    """A named profile (legacy, auto, small, large) with `--set part.field=value` changes on top."""
    if name == "legacy":
        profile = LEGACY
    elif name == "auto":
        profile = getattr(llm, "profile", None) or profile_for(settings, "")
    elif name in ("small", "large", "transcript"):
        profile = profile_for(settings.replace(llm_profile=name), getattr(llm, "model_name", settings.llm_model))
    else:
        raise SystemExit(f"quality_bench: unknown profile {name!r} (legacy, auto, small, large, transcript)")
    from dataclasses import replace

    label = [profile.name]
    for change in changes:
        key, _, raw = change.partition("=")
        value = _parse_value(raw)
        part, _, attr = key.strip().partition(".")
        if part == "layout" and attr in PromptLayout.__dataclass_fields__:
            profile = replace(profile, layout=replace(profile.layout, **{attr: value}))
        elif part == "sampling" and attr in Sampling.__dataclass_fields__:
            profile = replace(profile, sampling=profile.sampling.replace(**{attr: value}))
        elif part == "small_model_repairs" and not attr:
            profile = replace(profile, small_model_repairs=bool(value))
        elif part == "address_only_speaker" and not attr:
            profile = replace(profile, address_only_speaker=bool(value))
        else:
            raise SystemExit(
                f"quality_bench: --set {change!r}: expected layout.<field>, sampling.<field>, "
                "small_model_repairs or address_only_speaker"
            )
        label.append(change)
    return replace(profile, name=" + ".join(label))


def make_bench(
    settings: Settings, seed: int, llm: LlmBackend | None = None, profile: str = "auto", changes: Sequence[str] = ()
) -> Bench:
    llm = llm or make_backend(settings)
    responder = Responder.from_settings(
        settings,
        llm=llm,
        scheduler=ModelScheduler("pipelined"),
        voice=lambda _voice: SilentVoice(),
        profile=choose_profile(profile, settings, llm, changes),
    )
    personas = PersonaLibrary.load(settings.personas_dir)
    names: set[str] = set()
    for part in PARTS:
        names.update(load_corpus(part).names)
    return Bench(settings=settings, responder=responder, personas=personas, seed=seed, known_names=tuple(sorted(names)))


async def run(
    bench: Bench, parts: Sequence[str], modes: Sequence[str], limit: int | None, samples: int = 1
) -> dict[str, Any]:
    """Each part and mode, `samples` times over with other seeds (rates over every sample: less noise)."""
    report: dict[str, Any] = {}
    base_seed = bench.seed
    for part in parts:
        corpus = load_corpus(part)
        report[part] = {}
        if "single" in modes:
            records = []
            prompts = corpus.prompts[:limit] if limit is not None else corpus.prompts
            for sample in range(samples):
                bench.seed = base_seed + sample
                earlier: list[str] = []
                records += [await run_prompt(bench, corpus, p, earlier) for p in prompts]
            report[part]["single"] = summarize(records)
        if "running" in modes:
            records = []
            for sample in range(samples):
                bench.seed = base_seed + sample
                for convo in corpus.conversations:
                    records += await run_conversation(bench, corpus, convo, limit)
            report[part]["running"] = summarize(records)
    bench.seed = base_seed
    return report


def settings_from_env() -> Settings:
    return load_settings(
        env={k: v for k, v in os.environ.items() if k.startswith(("LLM_", "CHORUS_PERSONAS"))}, env_file=None
    )


async def main_async(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated: tuning, heldout")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: single, running")
    parser.add_argument(
        "--limit", type=int, default=None, help="at most this many prompts (and replies per conversation)"
    )
    parser.add_argument("--seed", type=int, default=7, help="base sampling seed (each reply's seed derives from it)")
    parser.add_argument("--samples", type=int, default=1, help="run everything this many times with other seeds")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "out" / "bench"))
    parser.add_argument("--name", default="quality", help="file name stem for the JSON and the transcript")
    parser.add_argument(
        "--llama-server",
        metavar="GGUF",
        default=None,
        help="start llama.cpp's OpenAI-compatible server on this GGUF ('embedded': SmolLM2-135M) and "
        "run through LLM_BACKEND=openai",
    )
    parser.add_argument(
        "--profile",
        default="auto",
        help="legacy (before issue 12), auto (what the bot picks), small, large, transcript",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PART.FIELD=VALUE",
        help="change one lever of the profile, e.g. layout.history_lines=4 or sampling.min_p=0.1",
    )
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if any(p not in PARTS for p in parts) or any(m not in MODES for m in modes):
        parser.error(f"parts are {', '.join(PARTS)}; modes are {', '.join(MODES)}")
    settings = settings_from_env()
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        if args.llama_server:
            from brain.llm import default_llm_threads
            from simulator.llama_server import served

            # the threads the in-process backend would get, for generation and prompt evaluation alike
            threads = settings.llm_threads or default_llm_threads()
            settings = stack.enter_context(served(settings, args.llama_server, threads=threads))
        bench = make_bench(settings, args.seed, profile=args.profile, changes=args.set)
        results = await run(bench, parts, modes, args.limit, args.samples)
    report: dict[str, Any] = {
        "benchmark": "quality_bench: reply quality through the real Responder (prompt, LLM, cleaner; synthesis skipped)",
        "command": " ".join(
            [".venv/bin/python", "-m", "benchmarks.quality_bench", *(argv if argv is not None else sys.argv[1:])]
        ),
        "model": model_info(settings, bench.responder),
        "machine": machine_info(),
        "seed": args.seed,
        "samples": args.samples,
        "results": results,
        "targets": {
            part: {mode: distance_to_targets(summary, mode) for mode, summary in modes_.items()}
            for part, modes_ in results.items()
        },
        "wall_s": round(time.monotonic() - started, 1),
        "note": "the held-out part is never used to tune prompts, rules or sampling: it stands for rooms and lines not seen",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report["files"] = {"json": str(out / f"{args.name}.json"), "transcript": str(out / f"{args.name}.md")}
    header = [
        f"Command: `{report['command']}`",
        "",
        f"Model: `{json.dumps(report['model'])}`",
        "",
        "Checks: " + ", ".join(CHECKS) + " (see `benchmarks/quality_checks.py`).",
        "",
    ]
    for part, modes_ in results.items():
        for mode, summary in modes_.items():
            header.append(
                f"- {part} / {mode}: "
                + ", ".join(f"{c} {summary[f'{c}_rate']}" for c in CHECKS)
                + f" ({summary['replies']} replies)"
            )
    Path(report["files"]["transcript"]).write_text(transcript(bench.records, header), encoding="utf-8")
    report["replies"] = [r.as_dict() for r in bench.records]
    Path(report["files"]["json"]).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--table"]:  # print the README table of a saved report
        print(markdown_table(json.loads(Path(args[1]).read_text(encoding="utf-8"))), end="")
        return
    report = asyncio.run(main_async(argv))
    print(json.dumps({k: v for k, v in report.items() if k != "replies"}, indent=2))


if __name__ == "__main__":
    main()
