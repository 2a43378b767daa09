"""A long session: does the bot process stay flat (memory, threads, descriptors, tasks) and error-free?

    python -m benchmarks.soak --minutes 60           # the real one (JSON on stdout and out/bench/soak.json)
    python -m benchmarks.soak --minutes 3 --sample-s 10 --reconnect-every-s 40 --presence-every-s 50

One ChorusBot joins a guild by /join (`simulator.guilds`); five members in the world process (`simulator.world`)
talk with it and with each other: questions to the bot and remarks to the room, with pauses and, now and then,
long silences. Every few minutes a member leaves and comes back, and the voice connection breaks (the voice
server closes its websocket with 4006, 1006, 4015 or 4009, or silences its UDP path), in turn.

The bot process (this one) is sampled every `--sample-s` seconds: RSS, threads, open file descriptors, asyncio
tasks. After the warm-up (`--warmup-min`, default a tenth of the run) their least-squares slope per hour is
reported (flat is the goal), with the unhandled errors (ERROR log records, exceptions no one caught in a task
or a thread), the voice reconnects (each must recover without /join), the questions answered and their latency,
and what was shed. The CI test runs a three-minute version and asserts bounded growth.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from benchmarks.leak_check import Workload, repeated
from benchmarks.load_bench import BENCH_ENV, bot_name_heard, shed_summary
from benchmarks.process_stats import Sampler, slope_per_hour
from benchmarks.report import command_line, machine_info, stats, write_json
from runtime.settings import PROJECT_ROOT, load_settings
from simulator.guilds import GuildRun, GuildsRun, bot_in_guilds, guild_cast
from simulator.replies import TurnRecord
from simulator.talk import LinePicker

log = logging.getLogger("benchmarks.soak")

FAULTS = ("4006", "1006", "4015", "udp", "4009")
MEMBERS = 5
REPLY_TIMEOUT_S = 45.0
RECONNECT_WAIT_S = 30.0
LEAK_SEED = 7  # the leak check's lines
LEAK_LINES = 3  # its questions, asked in turn
LEAK_FAULT = "4006"  # the leak check's voice fault: the session is invalid, a full reconnect


class ErrorCounter(logging.Handler):
    """Unhandled errors of the bot process: ERROR (and worse) log records, exceptions no task awaited (the loop's
    exception handler) and exceptions that ended a thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []
        self._old_hook = threading.excepthook

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.levelname} {record.name}: {record.getMessage()[:300]}")

    def install(self, loop: asyncio.AbstractEventLoop) -> "ErrorCounter":
        logging.getLogger().addHandler(self)
        loop.set_exception_handler(self._loop_error)
        threading.excepthook = self._thread_error
        return self

    def remove(self) -> None:
        logging.getLogger().removeHandler(self)
        threading.excepthook = self._old_hook

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.records.append(f"asyncio: {context.get('message')} {context.get('exception')!r}"[:300])
        loop.default_exception_handler(context)

    def _thread_error(self, args: Any) -> None:
        self.records.append(
            f"thread {getattr(args.thread, 'name', '?')}: {args.exc_type.__name__}: {args.exc_value}"[:300]
        )
        self._old_hook(args)


@dataclass
class Room:
    """Who is in the channel now (the talk and presence loops share it)."""

    names: list[str]
    present: set[str] = field(default_factory=set)
    speaking: str | None = None


async def talk(
    run: GuildsRun,
    guild: GuildRun,
    room: Room,
    *,
    rng: random.Random,
    until: float,
    silence_every: int,
    silence_s: tuple[float, float],
) -> list[tuple[TurnRecord, bool]]:
    """Members take turns: a question to the bot or a remark, then a pause; every `silence_every` lines a long
    silence."""
    settings = guild.session.settings
    watch = guild.watch(
        run.world, reply_timeout_s=REPLY_TIMEOUT_S, unprompted_watch_s=settings.group_silence_ms / 1000.0 + 1.5
    )
    names_bot = bot_name_heard(guild.session)
    users = {c.name: c.user_id for c in guild.cast}
    picker = LinePicker(rng)
    turns: list[tuple[TurnRecord, bool]] = []
    t0 = time.monotonic()
    for index in itertools.count():
        if time.monotonic() >= until:
            break
        present = sorted(room.present)
        if not present:
            await asyncio.sleep(1.0)
            continue
        speaker, text, ask = picker.next(present, ask=True if index == 0 else None)
        room.speaking = speaker
        try:
            said = await run.world.say(guild.guild_id, speaker, text)
        except RuntimeError as exc:  # left the channel just now
            log.info("soak: %s could not speak (%s)", speaker, exc)
            room.speaking = None
            continue
        room.speaking = None
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
        pause = rng.uniform(*silence_s) if silence_every and (index + 1) % silence_every == 0 else rng.uniform(0.8, 3.0)
        await asyncio.sleep(min(pause, max(0.0, until - time.monotonic())))
    return turns


async def come_and_go(
    run: GuildsRun, guild: GuildRun, room: Room, *, rng: random.Random, until: float, every_s: float
) -> int:
    """Every `every_s`, a member who is not speaking leaves, and comes back a little later."""
    moves = 0
    while time.monotonic() + every_s < until:
        await asyncio.sleep(every_s)
        candidates = sorted(room.present - {room.speaking})
        if len(candidates) < 2:
            continue
        name = rng.choice(candidates)
        room.present.discard(name)
        await asyncio.sleep(0.5)  # a line of theirs in flight ends first
        await run.world.leave(guild.guild_id, name)
        await asyncio.sleep(rng.uniform(5.0, min(20.0, every_s / 2)))
        await run.world.join(guild.guild_id, name)
        room.present.add(name)
        moves += 1
    return moves


async def break_voice(run: GuildsRun, guild: GuildRun, *, until: float, every_s: float) -> list[dict[str, Any]]:
    """Every `every_s`, the voice server breaks the connection (the faults in turn); each must recover."""
    out = []
    for fault in itertools.cycle(FAULTS):
        if time.monotonic() + every_s > until:
            break
        await asyncio.sleep(every_s)
        out.append(await break_once(run, guild, fault))
    return out


async def break_once(run: GuildsRun, guild: GuildRun, fault: str) -> dict[str, Any]:
    """The voice server breaks the connection one way (`FAULTS`); waits for the recovery (RECONNECT_WAIT_S)."""
    vc = guild.guild.voice_client
    records = vc._connection.reconnects
    before = len(records)
    t0 = time.monotonic()
    if fault == "udp":
        await run.world.server(guild.guild_id, "block_udp")
    else:
        await run.world.server(guild.guild_id, "disconnect_client", int(fault))
    entry: dict[str, Any] = {"fault": fault, "at_s": round(t0, 1)}
    deadline = t0 + RECONNECT_WAIT_S
    while time.monotonic() < deadline and not (len(records) > before and records[-1].finished is not None):
        await asyncio.sleep(0.05)
    if len(records) > before and records[-1].finished is not None:
        r = records[-1]
        entry.update(
            ok=r.ok,
            how=r.how,
            attempts=r.attempts,
            reconnect_s=round(r.seconds or 0.0, 3),
            noticed_s=round(r.started - t0, 3),
        )
    else:
        entry.update(ok=False, error="no recovery recorded")
    entry["same_session"] = run.bot.voice_sessions.get(guild.guild_id) is guild.session
    log.info("soak: fault %s: %s", fault, entry)
    return entry


def call_workload(
    run: GuildsRun, guild: GuildRun, room: Room, faults: list[dict[str, Any]], answered: list[bool]
) -> Workload:
    """One repetition of the leak check (`benchmarks.leak_check`), the same each time: a question to the bot and
    its answer, a member leaving and coming back, a voice fault (`LEAK_FAULT`, recovered); returns when the bot is
    idle again (its greeting of the member back said). The faults' records go to `faults`."""
    settings = guild.session.settings
    watch = guild.watch(
        run.world, reply_timeout_s=REPLY_TIMEOUT_S, unprompted_watch_s=settings.group_silence_ms / 1000.0 + 1.5
    )
    users = {c.name: c.user_id for c in guild.cast}
    names = sorted(room.present)

    async def once(index: int) -> None:
        # Three questions in turn, the same cycle each time (the leak check compares like with like). One
        # line asked at every repetition was once ignored as the bot's own voice picked up by a microphone,
        # when an echo could come 30 s after the bot's answer that quoted it (now ECHO_LAG_S, conversation/echo.py).
        picker = LinePicker(random.Random(LEAK_SEED + index % LEAK_LINES))
        speaker, text, expect = picker.next(names, ask=True)
        said = await run.world.say(guild.guild_id, speaker, text)
        turn = TurnRecord(
            index=index,
            speaker=speaker,
            said=text,
            expect_reply=expect,
            warmup=False,
            start_s=0.0,
            true_end_s=0.0,
            speech_s=said["speech_s"],
        )
        await watch.follow(turn, user_id=users[speaker], start=said["start"], true_end=said["true_end"])
        answered.append(turn.status == "answered")
        await run.world.leave(guild.guild_id, names[-1])
        await run.world.join(guild.guild_id, names[-1])
        faults.append(await break_once(run, guild, LEAK_FAULT))
        await watch.settle(origin=None, timeout=REPLY_TIMEOUT_S)

    return once


async def run_soak(
    minutes: float,
    *,
    sample_s: float = 60.0,
    warmup_min: float | None = None,
    seed: int = 14,
    reconnect_every_s: float = 240.0,
    presence_every_s: float = 300.0,
    silence_every: int = 6,
    silence_s: tuple[float, float] = (20.0, 60.0),
    work: Path,
    leak_warmup: int = 0,
    leak_reps: int = 0,
    inject_mb_per_hour: float = 0.0,
) -> dict[str, Any]:
    """The soak for `minutes`; then, with `leak_reps`, the leak check: `call_workload` `leak_warmup` times, then
    `leak_reps` times with an injected leak of `inject_mb_per_hour` (when set: `leak_check["injected"]`; it warms up
    the clean run), then `leak_reps` times without (`leak_check["clean"]`)."""
    settings = load_settings(env={**os.environ, **BENCH_ENV}, env_file=None).replace(data_dir=work / "data")
    cast = guild_cast(0, MEMBERS)
    world_env = {k: v for k, v in os.environ.items() if k.startswith(("TTS_", "CHORUS_"))}
    errors = ErrorCounter().install(asyncio.get_running_loop())
    try:
        async with bot_in_guilds(settings, [cast], world_env=world_env, world_log=work / "world.log") as run:
            guild = run.guilds[0]
            room = Room([c.name for c in cast], present={c.name for c in cast})
            sampler = Sampler(interval_s=sample_s).start()
            started = time.monotonic()
            until = started + minutes * 60.0
            turns, moves, faults = await asyncio.gather(
                talk(
                    run,
                    guild,
                    room,
                    rng=random.Random(seed + 1),
                    until=until,
                    silence_every=silence_every,
                    silence_s=silence_s,
                ),
                come_and_go(run, guild, room, rng=random.Random(seed + 2), until=until, every_s=presence_every_s),
                break_voice(run, guild, until=until, every_s=reconnect_every_s),
            )
            leak: dict[str, Any] = {"faults": [], "answered": []}
            if leak_reps:
                workload = call_workload(run, guild, room, leak["faults"], leak["answered"])
                index = 0
                if inject_mb_per_hour:
                    leak["injected"] = await repeated(
                        workload, warmup=leak_warmup, reps=leak_reps, leak_mb_per_hour=inject_mb_per_hour
                    )
                    index, leak_warmup = leak["injected"]["next_index"], 0
                leak["clean"] = await repeated(workload, warmup=leak_warmup, reps=leak_reps, start_index=index)
            await sampler.stop()
            process = sampler.summary()
            shed = shed_summary(run)
            receive = guild.session.receiver.stats.as_dict() if guild.session.receiver is not None else {}
    finally:
        errors.remove()
    warmup_s = (warmup_min if warmup_min is not None else minutes / 10.0) * 60.0
    slopes = {
        attr: slope_per_hour(sampler.samples, attr, after_s=warmup_s)
        for attr in ("rss_mb", "heap_used_mb", "heap_free_mb", "py_blocks", "threads", "fds", "tasks")
    }
    asked = [t for t, _ in turns if t.expect_reply]
    heard_asked = [t for t, named in turns if t.expect_reply and named]
    answered = [t for t in asked if t.status == "answered" and t.latency_s is not None]
    return {
        "minutes": minutes,
        "members": MEMBERS,
        "samples": [
            {
                "t_s": round(s.t - sampler.samples[0].t, 1),
                "rss_mb": s.rss_mb,
                "threads": s.threads,
                "fds": s.fds,
                "tasks": s.tasks,
                "cpu_s": s.cpu_s,
                "heap_used_mb": s.heap_used_mb,
                "heap_free_mb": s.heap_free_mb,
                "py_blocks": s.py_blocks,
            }
            for s in sampler.samples
        ],
        "warmup_s": warmup_s,
        "slope_per_hour_after_warmup": {k: None if v is None else round(v, 2) for k, v in slopes.items()},
        "unhandled_errors": len(errors.records),
        "errors": errors.records[:20],
        "reconnects": faults,
        "reconnects_ok": sum(1 for f in faults if f.get("ok") and f.get("same_session")),
        "reconnect_s": stats([f["reconnect_s"] for f in faults if f.get("ok")]),
        "presence_changes": moves,
        "lines": len(turns),
        "questions": len(asked),
        "answered_rate": round(len(answered) / len(asked), 3) if asked else None,
        "answered_rate_heard": (
            round(sum(1 for t in answered if t in heard_asked) / len(heard_asked), 3) if heard_asked else None
        ),
        "latency_s": stats([t.latency_s for t in answered]),
        "slowest": [
            {
                "said": t.said,
                "latency_s": t.latency_s,
                "at_s": round(t.true_end_s, 1),
                "stages_s": t.answer.stages_s if t.answer else {},
                "replies": [f"{r.kind}:{r.outcome}" for r in t.replies],
            }
            for t in sorted(answered, key=lambda t: -(t.latency_s or 0.0))[:5]
        ],
        "shed": shed,
        "receive": {k: v for k, v in receive.items() if v},
        "process": process,
        "leak_check": leak,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--sample-s", type=float, default=60.0, help="sampling interval (seconds)")
    parser.add_argument("--warmup-min", type=float, default=None, help="left out of the slopes (default: a tenth)")
    parser.add_argument("--reconnect-every-s", type=float, default=240.0)
    parser.add_argument("--presence-every-s", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "out" / "bench" / "soak.json")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("CHORUS_LOG_LEVEL", "WARNING").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="chorus-soak-") as tmp:
        result = asyncio.run(
            run_soak(
                args.minutes,
                sample_s=args.sample_s,
                warmup_min=args.warmup_min,
                seed=args.seed,
                reconnect_every_s=args.reconnect_every_s,
                presence_every_s=args.presence_every_s,
                work=Path(tmp),
            )
        )
    report = {
        "benchmark": "soak",
        "command": command_line("benchmarks.soak", argv),
        "machine": {**machine, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        **result,
    }
    write_json(report, args.out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
