"""Turn-taking costs and turn latency; prints JSON.

    .venv/bin/python -m benchmarks.prompter_bench [--members 2,5,10,25] [--evals 2000] [--turns 3] [--no-turns]

* decide: the cost of one evaluation of the rules (`conversation.rules.decide`), which the prompter
  runs on every speech event and on every tick while something is in motion. Rooms of N members
  with a full history (200 lines, names, partials, a member speaking), evaluated at many clock times.
* turns: a VoiceSession on the real models (silero + faster-whisper tiny.en listener, SmolLM2 +
  Piper responder, StreamPlayer pulled every 20 ms like discord.py's AudioPlayer). A member asks the
  bot a direct question in Piper speech fed in real time; the per-turn trace gives each stage
  relative to the member's end of speech: final transcript, decision, first token, first fragment,
  first audio, first packet out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import threading
import time
from importlib.metadata import version

import numpy as np

QUESTIONS = [
    "Juniper, what is your favorite color?",
    "Juniper, what should I cook tonight?",
    "Juniper, do you like rainy days?",
    "Juniper, what is the best board game?",
]


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "max": round(max(values), 4) if values else None,
    }


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "packages": {p: _version(p) for p in ("llama_cpp_python", "faster-whisper", "piper-tts", "discord.py")},
    }


def _version(package: str) -> str | None:
    try:
        return version(package)
    except Exception:
        return None


# --- decide ------------------------------------------------------------------------------------------


def bench_decide(member_counts: list[int], evals: int) -> dict:
    from audio.types import SpeakingEvent, Utterance
    from conversation.decision import Policy
    from conversation.room import Room
    from conversation.rules import decide

    rng = random.Random(7)
    words = "pizza game weather movie coffee music weekend rain train city park dog cat book".split()
    out = {}
    for n in member_counts:
        t0 = 1000.0
        room = Room(bot_name="Juniper", bot_user_id=10_000, now=t0, bot_aliases=("June",))
        for uid in range(1, n + 1):
            room.member_joined(uid, f"Member{uid}_{rng.choice(words)}", t0, initial=True)
        t = t0
        for _ in range(200):
            uid = rng.randint(1, n)
            text = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) + rng.choice([".", "?"])
            room.on_speaking(SpeakingEvent(uid, True, t))
            room.on_speaking(SpeakingEvent(uid, False, t + 1.5))
            room.on_utterance(Utterance(uid, room.name_of(uid), text, t, t + 1.5, True, 0.9, {}))
            t += 3.0
        room.on_speaking(SpeakingEvent(1, True, t))  # someone speaking now, with a partial
        room.on_utterance(Utterance(1, room.name_of(1), "so what do you think about", t, t + 0.8, False, 0.8, {}))
        room.on_speaking(SpeakingEvent(1, False, t + 1.0))
        policy = Policy()
        samples = []
        actions: dict[str, int] = {}
        for k in range(evals):
            now = t + (k % 200) * 0.25
            start = time.perf_counter()
            decision = decide(room, now, policy)
            samples.append((time.perf_counter() - start) * 1000.0)
            actions[decision.rule] = actions.get(decision.rule, 0) + 1
        out[str(n)] = {"ms": summary(samples), "rules_hit": actions}
    return out


# --- turns --------------------------------------------------------------------------------------------


class _Pull:
    def __init__(self, source) -> None:
        self.source = source
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            self.source.read()
            next_t += 0.02
            time.sleep(max(0.0, next_t - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)


async def _turns(n_turns: int) -> dict:
    from audio.listener import Listener
    from audio.playback import StreamPlayer
    from audio.stt import WhisperTranscriber
    from audio.types import MemberFrame
    from audio.vad_model import load_silero_vad
    from runtime.scheduler import ModelScheduler
    from runtime.settings import load_settings
    from bot.voice_session import VoiceSession
    from brain.llm import make_backend
    from brain.responder import Responder
    from conversation.decision import Policy
    from conversation.persona_library import load_persona
    from conversation.room_lines import BotState
    from simulator.speech import frames_16k, piper_speech_16k, silence_16k

    settings = load_settings(env={}, env_file=None)
    loaded = time.monotonic()
    transcriber, vad = WhisperTranscriber(settings), load_silero_vad()
    responder = Responder.from_settings(
        settings, llm=make_backend(settings), scheduler=ModelScheduler.from_settings(settings)
    )
    load_s = time.monotonic() - loaded
    persona = load_persona("personas/juniper.toml")
    player = StreamPlayer()
    pull = _Pull(player)

    def listener(s, **callbacks):
        return Listener(s, transcriber=transcriber, vad_model=vad, ignore_user_ids=(999,), **callbacks)

    session = VoiceSession(
        settings=settings,
        persona=persona,
        responder=responder,
        player=player,
        bot_user_id=999,
        members=[(1, "Alice"), (2, "Bob")],
        make_listener=listener,
        policy=Policy.from_settings(settings, greet_members=False),
    )
    await session.start()
    stages: dict[str, list[float]] = {}
    try:
        for i in range(n_turns):
            pcm = np.concatenate([piper_speech_16k(QUESTIONS[i % len(QUESTIONS)]), silence_16k(0.8)])
            before = len(session.traces)
            start = time.monotonic()
            for k, frame in enumerate(frames_16k(pcm)):
                session.on_frame(MemberFrame(1, frame, time.monotonic()))
                delay = start + (k + 1) * 0.02 - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            deadline = time.monotonic() + 120
            while not (
                len(session.traces) > before
                and session.traces[-1].outcome != "pending"
                and session.room.bot_state is BotState.IDLE
            ):
                if time.monotonic() > deadline:
                    raise TimeoutError("no reply within 120 s")
                await asyncio.sleep(0.05)
            for stage, ms in session.traces[-1].relative_ms().items():
                stages.setdefault(stage, []).append(ms)
            await asyncio.sleep(1.0)
    finally:
        await session.close()
        pull.close()
    order = ["final", "decided", "request", "first_token", "first_fragment", "first_audio", "first_packet", "end"]
    return {
        "model_load_s": round(load_s, 2),
        "turns": n_turns,
        "ms_after_speech_end": {s: summary(stages[s]) for s in order if s in stages},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", default="2,5,10,25")
    ap.add_argument("--evals", type=int, default=2000)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--no-turns", action="store_true")
    args = ap.parse_args()
    result = {
        "benchmark": "prompter",
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.prompter_bench", *sys.argv[1:]]),
        "machine": machine(),
        "decide": bench_decide([int(x) for x in args.members.split(",")], args.evals),
    }
    if not args.no_turns:
        result["turn"] = asyncio.run(_turns(args.turns))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
