"""Many guilds served by one bot process: latency, answered lines, shed work, CPU, memory and threads.

    python -m benchmarks.load_bench                        # 1, 2, 4 and 8 guilds (about 10 minutes)
    python -m benchmarks.load_bench --guilds 1 2 --lines 4 --out out/bench/load-short.json

For each guild count a fresh bot process (this module with ``--one N``) joins N guilds by /join, each on its
own loopback voice server with 2 or 3 members (alternately) in the world process (`simulator.world`: the
members' Opus, DAVE and decoding are not the bot's work). In every guild at once the members hold a scripted
conversation, lines drawn per guild from a pool with a fixed seed: questions to the bot by name and remarks
to each other (no reply expected), each member waiting for the bot's reply (or the room's silence) before the
next line, as people do. The guilds start a little apart and then run freely.

Per guild count it reports:

* ``latency_s``: true end of a member's question -> the bot's first voiced packet at a member (as
  `benchmarks.e2e_bench` measures it), p50 / p95 over every answered question of every guild;
* ``answered_rate``: questions answered / questions asked; ``unprompted``: remarks the bot answered anyway;
* ``shed``: work dropped by reason (STT backlog and stale partials, prefills preempted or superseded, captions,
  packets the receive path dropped, by reason), and the prefill and model-priority counters;
* ``process``: the bot process's CPU (seconds and average cores; ``cpu_over_time``: cores per second, and on
  average while some member waited for an answer and while none did), RSS, threads (by role), file
  descriptors and asyncio tasks; ``world``: the world process's CPU over the same time (the simulated members:
  their lines are synthesized before the clock starts, so this is Opus, DAVE and their hearing of the bot);
* ``queue`` (`benchmarks.queue_report`): per stage and per guild, the time waiting for a model vs computing; the
  prefills and model slots from the scheduler's records; ``admission``: what replies that waited too long did.

``capacity_guilds``: the most guilds with latency p95 <= 1.5 s and every question answered that chorus heard as
one (its transcript names the bot; a name Whisper misheard is counted apart, ``misheard_name``: it does not
depend on the load). One JSON object on stdout and in ``out/bench/load.json``. On a shared machine the numbers
move with its load (reported).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from benchmarks.process_stats import Sampler, cores_while
from benchmarks.queue_report import admission_summary, scheduler_breakdown, stage_breakdown
from benchmarks.report import command_line, machine_info, stats, write_json
from runtime.settings import PROJECT_ROOT, load_settings
from conversation.addressing import NameMatcher
from simulator.guilds import GuildRun, GuildsRun, bot_in_guilds, guild_cast
from simulator.replies import STAGES, TurnRecord
from simulator.talk import make_script

log = logging.getLogger("benchmarks.load_bench")

P95_GOAL_S = 1.5
DEFAULT_GUILDS = (1, 2, 4, 8)
# Settings as shipped, except: no greetings and no topics of the bot's own (the script is the conversation).
BENCH_ENV = {"PROMPTER_GREET": "false", "PROMPTER_IDLE_TOPIC_S": "3600"}


def bot_name_heard(session: Any) -> Callable[[str], bool]:
    """Whether a transcript names the bot, as the session's turn-taking rules judge it."""
    policy = session.policy
    matcher = NameMatcher.for_name(
        session.persona.name,
        getattr(session.persona, "aliases", ()) or (),
        spelling_threshold=policy.name_spelling_threshold,
        sound_threshold=policy.name_sound_threshold,
    )
    return matcher.find


async def run_guild(
    run: GuildsRun,
    guild: GuildRun,
    script: list[tuple[str, str, bool]],
    *,
    start_delay: float,
    rng: random.Random,
    reply_timeout_s: float,
    t0: float,
) -> list[tuple[TurnRecord, bool]]:
    """The guild's script; each turn with whether chorus heard the bot's name in it (a question whose name
    Whisper misheard is not one the bot could know was for it: counted apart, not against the load)."""
    world = run.world
    settings = guild.session.settings
    watch = guild.watch(
        world, reply_timeout_s=reply_timeout_s, unprompted_watch_s=settings.group_silence_ms / 1000.0 + 1.5
    )
    users = {c.name: c.user_id for c in guild.cast}
    names_bot = bot_name_heard(guild.session)
    await asyncio.sleep(start_delay)
    turns = []
    for index, (speaker, text, ask) in enumerate(script):
        said = await world.say(guild.guild_id, speaker, text)
        turn = TurnRecord(
            index=index,
            speaker=speaker,
            said=text,
            expect_reply=ask,
            warmup=False,
            start_s=said["start"] - t0,
            true_end_s=said["true_end"] - t0,
            speech_s=said["speech_s"],
        )
        await watch.follow(turn, user_id=users[speaker], start=said["start"], true_end=said["true_end"])
        turns.append((turn, names_bot(turn.heard)))
        log.info(
            "guild %d line %d (%s, %s): %s, latency %s",
            guild.index,
            index,
            speaker,
            "question" if ask else "remark",
            turn.status,
            turn.latency_s,
        )
        await asyncio.sleep(rng.uniform(0.6, 1.6))  # the room's pause before the next line
    return turns


def _add(into: dict[str, int], counts: dict[str, int], prefix: str = "") -> None:
    for key, value in counts.items():
        if value:
            into[prefix + key] = into.get(prefix + key, 0) + int(value)


def shed_summary(run: GuildsRun) -> dict[str, Any]:
    """Work dropped under load, by reason, over every guild (and the process-wide model counters)."""
    shed: dict[str, int] = {}
    prefill: dict[str, int] = {}
    receive: dict[str, int] = {}
    stt: dict[str, int] = {}
    for guild in run.guilds:
        session = guild.session
        lane = getattr(session.listener, "scheduler", None)
        if lane is not None:
            _add(shed, lane.shedding.counts(), "stt_")
            _add(shed, {"stt_partial_stale": lane.stats.partials_stale})  # done after its segment ended: wasted
            lane_stats = lane.stats.as_dict()
            stt["max_batch_seen"] = max(stt.get("max_batch_seen", 0), lane_stats.pop("max_batch_seen"))
            _add(stt, lane_stats)
        _add(shed, {"listener_frames_overload": session.listener.stats.dropped_overload})
        _add(shed, session.prefill.shedding.counts(), "prefill_")
        _add(shed, session.lines.shedding.counts(), "prepare_")
        _add(shed, session.caption_queue.shedding.counts(), "captions_")
        _add(prefill, session.prefill.stats.as_dict())
        if session.receiver is not None:
            _add(
                receive,
                {
                    k[len("dropped_") :]: v
                    for k, v in session.receiver.stats.as_dict().items()
                    if k.startswith("dropped_")
                },
            )
    responder = run.guilds[0].session.responder if run.guilds else None
    scheduler = getattr(responder, "scheduler", None)
    pool = getattr(getattr(responder, "llm", None), "pool", None)  # llama.cpp instances (brain.llama_pool)
    return {
        "by_reason": dict(sorted(shed.items())),
        "receive_dropped": dict(sorted(receive.items())),
        "stt": stt,
        "prefill": prefill,
        "model_background": scheduler.background_stats() if scheduler is not None else {},
        "model_slots": {"policy": scheduler.policy, "slots": scheduler.slots} if scheduler is not None else {},
        "llm_pool": pool.stats() if pool is not None else {},
    }


async def run_one(n_guilds: int, lines: int, seed: int, reply_timeout_s: float, work: Path) -> dict[str, Any]:
    settings = load_settings(env={**os.environ, **BENCH_ENV}, env_file=None).replace(data_dir=work / "data")
    casts = [guild_cast(g, 3 if g % 2 == 0 else 2) for g in range(n_guilds)]
    rng = random.Random(seed)
    scripts = [
        make_script(random.Random(seed * 1000 + g), [c.name for c in cast], lines) for g, cast in enumerate(casts)
    ]
    world_env = {k: v for k, v in os.environ.items() if k.startswith(("TTS_", "CHORUS_"))}
    async with bot_in_guilds(settings, casts, world_env=world_env, world_log=work / "world.log") as run:
        await run.world.synthesize(
            [
                (guild.guild_id, speaker, text)
                for guild, script in zip(run.guilds, scripts)
                for speaker, text, _ in script
            ]
        )  # off the clock
        world_cpu_before = (await run.world.usage())["cpu_s"]
        sampler = Sampler(interval_s=1.0).start()
        t0 = time.monotonic()
        results = await asyncio.gather(
            *(
                run_guild(
                    run,
                    guild,
                    script,
                    start_delay=rng.uniform(0.0, 1.5) + 0.7 * guild.index,
                    rng=random.Random(seed + guild.index),
                    reply_timeout_s=reply_timeout_s,
                    t0=t0,
                )
                for guild, script in zip(run.guilds, scripts)
            )
        )
        wall = time.monotonic() - t0
        await sampler.stop()
        process = sampler.summary()  # while the sessions still run: their threads are live
        world_cpu = (await run.world.usage())["cpu_s"] - world_cpu_before
        shed = shed_summary(run)
        scheduler = getattr(run.guilds[0].session.responder, "scheduler", None) if run.guilds else None
        slots = scheduler_breakdown(
            scheduler.intervals() if scheduler is not None else [], t0, [g.guild_id for g in run.guilds]
        )
    awaited = [  # answered questions only: one whose name was lost sets the bot no work to wait for
        (t0 + t.true_end_s, t0 + t.true_end_s + t.latency_s)
        for guild_turns in results
        for t, _ in guild_turns
        if t.expect_reply and not t.warmup and t.latency_s is not None
    ]
    process["cpu_over_time"] = cores_while(sampler.samples, awaited)
    report = summarize(n_guilds, results, process, shed, world_cpu)
    report["world"] = {"cpu_s": round(world_cpu, 1), "cpu_cores": round(world_cpu / wall, 2) if wall > 0 else None}
    report["queue"] = {**stage_breakdown([[t for t, _ in g] for g in results]), **slots}
    report["admission"] = admission_summary([t for g in results for t, _ in g])
    return report


def summarize(
    n_guilds: int,
    per_guild: list[list[tuple[TurnRecord, bool]]],
    process: dict[str, Any],
    shed: dict[str, Any],
    world_cpu_s: float,
) -> dict[str, Any]:
    turns = [t for guild_turns in per_guild for t, _ in guild_turns]
    asked = [t for t in turns if t.expect_reply]
    named = {id(t) for guild_turns in per_guild for t, heard_name in guild_turns if heard_name}
    answered = [t for t in asked if t.status == "answered" and t.latency_s is not None]
    heard_asked = [t for t in asked if id(t) in named]
    latencies = [t.latency_s for t in answered if t.latency_s is not None]
    stages: dict[str, Any] = {}
    for stage in STAGES:
        values = [t.answer.stages_s[stage] for t in answered if t.answer and stage in t.answer.stages_s]
        if values:
            stages[stage] = stats(values)
    return {
        "guilds": n_guilds,
        "members": sum(len({t.speaker for t, _ in g}) for g in per_guild),
        "questions": len(asked),
        "remarks": len(turns) - len(asked),
        "latency_s": stats(latencies),
        "answered_rate": round(len(answered) / len(asked), 3) if asked else None,
        # questions whose transcript named the bot: what the bot could know was for it
        "answered_rate_heard": (
            round(sum(1 for t in answered if id(t) in named) / len(heard_asked), 3) if heard_asked else None
        ),
        "misheard_name": sum(1 for t in asked if id(t) not in named),
        "unanswered": [
            {
                "said": t.said,
                "heard": t.heard,
                "status": t.status,
                "name_heard": id(t) in named,
                "replies": [f"{r.kind}:{r.outcome}" for r in t.replies],
            }
            for t in asked
            if t not in answered
        ],
        "unprompted": sum(1 for t in turns if not t.expect_reply and t.status == "unprompted"),
        "stage_after_end_of_speech_s": stages,
        "shed": shed,
        "process": process,
        "world_cpu_s": round(world_cpu_s, 1),
    }


def capacity(results: list[dict[str, Any]]) -> int:
    """The most guilds served with p95 <= 1.5 s and every question answered whose transcript named the bot
    (0: not even one). Every smaller count tried must meet the goal too."""
    best = 0
    for r in sorted(results, key=lambda r: r["guilds"]):
        if not (r.get("latency_s") and r["latency_s"]["p95"] <= P95_GOAL_S and r.get("answered_rate_heard") == 1.0):
            break
        best = r["guilds"]
    return best


def run_counts(args: argparse.Namespace, argv: Sequence[str] | None) -> dict[str, Any]:
    """Each guild count in a fresh bot process; returns the report."""
    results = []
    started = time.monotonic()
    machine = machine_info()
    for n in args.guilds:
        with tempfile.TemporaryDirectory(prefix="chorus-load-") as tmp:
            out = Path(tmp) / "result.json"
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.load_bench",
                "--one",
                str(n),
                "--lines",
                str(args.lines),
                "--seed",
                str(args.seed),
                "--reply-timeout",
                str(args.reply_timeout),
                "--result",
                str(out),
            ]
            print(f"load_bench: {n} guild(s)...", file=sys.stderr, flush=True)
            load_before = os.getloadavg()
            proc = subprocess.run(cmd, cwd=PROJECT_ROOT, check=False)
            if proc.returncode != 0 or not out.exists():
                results.append({"guilds": n, "error": f"bot process exited with {proc.returncode}"})
                continue
            result = json.loads(out.read_text())
            result["loadavg_before"] = [round(x, 2) for x in load_before]
            results.append(result)
            print(
                f"load_bench: {n} guild(s): p95 {result['latency_s'] and result['latency_s']['p95']} s, "
                f"answered {result['answered_rate']}",
                file=sys.stderr,
                flush=True,
            )
    return {
        "benchmark": "load_bench",
        "command": command_line("benchmarks.load_bench", argv),
        "machine": {**machine, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "goal": {"p95_latency_s": P95_GOAL_S, "answered_rate": 1.0},
        "capacity_guilds": capacity(results),
        "results": results,
        "wall_s": round(time.monotonic() - started, 1),
        "note": "One bot process per guild count; its simulated members run in a second process (simulator.world). "
        "On a shared machine the numbers move with its load (loadavg per run).",
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guilds", type=int, nargs="+", default=list(DEFAULT_GUILDS), help="guild counts to run")
    parser.add_argument("--lines", type=int, default=6, help="lines per guild (about two thirds are questions)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--reply-timeout", type=float, default=45.0, help="seconds a question waits for its reply")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "bench" / "load.json")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one guild count here
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("CHORUS_LOG_LEVEL", "WARNING").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.one is not None:
        with tempfile.TemporaryDirectory(prefix="chorus-load-bot-") as tmp:
            result = asyncio.run(run_one(args.one, args.lines, args.seed, args.reply_timeout, Path(tmp)))
        write_json(result, args.result)
        return
    report = run_counts(args, argv)
    write_json(report, args.out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
