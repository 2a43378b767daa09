"""What one active voice guild costs, with the models in the bot process and with them behind their servers.

    python -m benchmarks.remote_bench [--turns 6] [--modes remote,local] [--out docs/remote-bench.json]

The e2e benchmark's scripted conversation (`benchmarks.e2e_bench.script`: two simulated members asking the bot
questions over the loopback voice channel, RTP + DAVE + Opus both ways, the real ChorusBot joined by /join)
runs once per mode:

* ``remote``: STT_BACKEND=wyoming, TTS_BACKEND=wyoming, LLM_BACKEND=openai, with the three real servers on this
  machine (`simulator.model_servers`: wyoming-faster-whisper on tiny.en, wyoming-piper on the embedded voice,
  llama.cpp's server on SmolLM2-135M, each limited to one thread like the in-process models on 2 cores);
* ``local``: everything in the bot process (the shipped default).

From the moment the bot has joined and warmed up until the last reply, it measures the CPU time of the bot
process (which also hosts the simulated members and the loopback voice server: their Opus encoding, DAVE and
UDP are counted too, an over-estimate of the bot's own share) and of each server process, and reports them
per second of conversation (cores busy) and per hour of active voice (core-hours), with the latency of each
answered question (true end of speech -> the bot's first voiced packet at the member) and the work done
(transcriptions, seconds of bot speech, replies). Prints one JSON object (and writes it with --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.e2e_bench import GROUP, script
from benchmarks.report import command_line, machine_info, stats
from runtime.settings import Settings, load_settings
from simulator.model_servers import LLM_MODEL_NAME, llm_server, stt_server, tts_server
from simulator.scripted import ConversationResult, ScriptedConversation
from simulator.voices import ALICE, BOB

MODES = ("remote", "local")
BENCH_ENV = {
    "PROMPTER_GREET": "false",
    "PROMPTER_IDLE_TOPIC_S": "3600",
    "MEMORY_ENABLED": "false",
    "PRIVACY_NOTICE_SPOKEN": "false",
    "LLM_THREADS": "1",
}
_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class CpuWindow:
    """CPU seconds of named processes between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.started: dict[str, float] = {}
        self.used: dict[str, float] = {}
        self.t0 = self.wall_s = 0.0

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.started = {name: process_cpu_s(pid) for name, pid in self.pids.items()}

    def stop(self) -> None:
        self.wall_s = time.monotonic() - self.t0
        self.used = {name: process_cpu_s(pid) - self.started[name] for name, pid in self.pids.items()}


async def run_mode(settings: Settings, mode: str, turns: int, servers: dict[str, int]) -> dict[str, Any]:
    window = CpuWindow({"bot_process": os.getpid(), **servers})

    def on_event(event: Any) -> None:
        if event.kind == "ready":
            window.start()
        elif event.kind == "bot_line":
            print(
                f"[{mode}] {event.speaker}: {event.text!r} ({event.latency_s or 0:.2f} s)", file=sys.stderr, flush=True
            )

    convo = ScriptedConversation(
        settings, [ALICE, BOB], script(GROUP, turns), label=mode, on_event=on_event, warm_up=True, reply_timeout_s=120.0
    )
    result: ConversationResult = await convo.run()
    window.stop()
    timed = [t for t in result.turns if not t.warmup]
    latencies = [t.latency_s for t in timed if t.latency_s is not None]
    hours = window.wall_s / 3600.0
    return {
        "backends": {"stt": settings.stt_backend, "tts": settings.tts_backend, "llm": settings.llm_backend},
        "conversation_s": round(window.wall_s, 1),
        "questions": len(timed),
        "answered": sum(t.status == "answered" for t in timed),
        "latency_s": stats(latencies),
        "bot_speech_s": round(result.bot_audio_s, 1),
        "member_speech_s": round(sum(t.speech_s for t in result.turns), 1),
        "cpu_s": {name: round(v, 2) for name, v in window.used.items()},
        "cores_busy": {name: round(v / window.wall_s, 3) for name, v in window.used.items()},
        "core_hours_per_active_voice_hour": {name: round(v / 3600.0 / hours, 3) for name, v in window.used.items()},
        "listener": {
            k: v
            for k, v in (result.receive_stats.get("listener") or {}).items()
            if k in ("finals", "partials", "finals_from_speculation", "end_of_turn_calls")
        },
    }


async def main_async(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=6, help="timed questions per mode (after one warm-up line)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(modes) - set(MODES):
        parser.error(f"modes: {', '.join(MODES)}")
    report: dict[str, Any] = {
        "benchmark": "remote_bench: CPU of the bot process and of each model server per active voice guild",
        "command": command_line("benchmarks.remote_bench", argv),
        "machine": machine_info(),
        "models": {
            "stt": "faster-whisper tiny.en int8",
            "llm": "SmolLM2-135M-Instruct Q4_1",
            "tts": "Piper en_US-joe-medium",
        },
        "modes": {},
    }
    log_dir = Path(tempfile.mkdtemp(prefix="chorus-remote-bench-"))
    for mode in modes:
        with ExitStack() as stack:
            env = dict(BENCH_ENV)
            servers: dict[str, int] = {}
            if mode == "remote":
                stt = stack.enter_context(stt_server(log_dir, cpu_threads=1))
                tts = stack.enter_context(tts_server(log_dir))
                llm = stack.enter_context(llm_server(threads=1))
                env.update(
                    {
                        "STT_BACKEND": "wyoming",
                        "STT_SERVER_URI": stt.url,
                        "TTS_BACKEND": "wyoming",
                        "TTS_SERVER_URI": tts.url,
                        "LLM_BACKEND": "openai",
                        "LLM_BASE_URL": llm.url,
                        "LLM_MODEL": LLM_MODEL_NAME,
                    }
                )
                servers = {"stt_server": stt.pid, "tts_server": tts.pid, "llm_server": llm.pid}
            settings = load_settings(env=env, env_file=None)
            report["modes"][mode] = await run_mode(settings, mode, args.turns, servers)
            report["modes"][mode]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    report["note"] = (
        "One 2-core machine shared with other jobs, the servers on the same machine as the bot: the "
        "numbers are noisy and only indicative; re-run on a quiet machine. The bot process also runs "
        "the simulated members and the loopback voice server (their share is counted in it)."
    )
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("discord").setLevel(logging.ERROR)
    print(json.dumps(asyncio.run(main_async(argv)), indent=2))


if __name__ == "__main__":
    main()
