"""End of a member's speech → the bot's first audio at the Discord edge, per turn, on the loopback channel.

    .venv/bin/python -m benchmarks.e2e_bench [--turns 6] [--modes exclusive,pipelined,baseline] [--out out/bench]

The same fixed scripted conversation (`simulator.scripted`: simulated members speaking in real time over
RTP + DAVE + Opus to a real ChorusBot that joined through /join) runs once per mode, each on a fresh bot
and loopback server, the models shared (loaded once per process):

* ``exclusive`` / ``pipelined``: chorus as shipped (SCHEDULER_POLICY), streaming end to end: speculative
  STT in the end-of-speech pause, early starts on a complete-looking partial, the LLM streaming into the
  sentence chunker, Piper speaking the first fragment while the LLM goes on.
* ``baseline``: the seed's way with the same models, through the same path: a long end-of-speech silence
  (700 ms, RealtimeSTT-like endpointing), STT only after the endpoint (no speculation, no partials, no
  early start), then the WHOLE LLM reply, then the WHOLE reply synthesized, then played
  (`WholeReplyResponder`, injected through `PrompterCog.session_parts`).

Latency of a turn = true end of speech (send time of the member's last voiced packet) → first voiced bot
packet decoded by the member. Each stage is reported in seconds after the true end of speech: speech_end
(VAD) → vad_end → final transcript → request → first_token → first_fragment → first_audio (TTS) →
first_packet (sent) → heard (at the member). A first line per mode warms the models up (not counted).
Prints one JSON object (also written to out/bench/e2e.json) and draws out/bench/e2e.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bot.settings import PROJECT_ROOT, Settings, load_settings
from brain.chunker import Fragment
from brain.clean import ReplyBudget, clean_reply
from brain.llm import default_llm_threads
from brain.prompt import as_history_line, build_messages
from brain.responder import Responder, ReplyResult
from simulator.replies import STAGES
from simulator.scripted import ConversationResult, Line, ScriptedConversation
from simulator.voices import ALICE, BOB

log = logging.getLogger("benchmarks.e2e_bench")

MODES = ("exclusive", "pipelined", "baseline")
BASELINE_END_SILENCE_MS = 700
GOAL_P50_S = 0.8
PROMPT_MARGIN_TOKENS = 16  # as brain.responder leaves for the reply's end
QUESTIONS: tuple[tuple[str, str], ...] = (
    ("Alice", "Hey Juniper, what should I cook tonight?"),
    ("Bob", "Hey Juniper, have you read any good books lately?"),
    ("Alice", "Hey Juniper, what is your favorite movie?"),
    ("Bob", "Hey Juniper, do you think it will rain this weekend?"),
    ("Alice", "Hey Juniper, what game should we play tonight?"),
    ("Bob", "Hey Juniper, what is the best pizza topping?"),
    ("Alice", "Hey Juniper, where should I go on holiday?"),
    ("Bob", "Hey Juniper, do you like cats or dogs?"),
)
WARMUP = Line("Alice", "Hey Juniper, are you there?", warmup=True, pause_s=1.0)
# Intervals reported and drawn: (name, from stage or None for the true end of speech, to stage). They form two
# lanes, hearing the member (to vad_end, final) and the reply (request onwards): with an early start they overlap.
INTERVALS: tuple[tuple[str, str | None, str], ...] = (
    ("end of speech confirmed (VAD)", None, "vad_end"),
    ("final transcript", "vad_end", "final"),
    ("LLM to first token", "request", "first_token"),
    ("to first speakable fragment", "first_token", "first_fragment"),
    ("TTS first audio", "first_fragment", "first_audio"),
    ("held until confirmed / sent", "first_audio", "first_packet"),
    ("first packet on its way to the member", "first_packet", "heard"),
)


def script(turns: int) -> list[Line]:
    lines = [WARMUP]
    for i in range(turns):
        speaker, text = QUESTIONS[i % len(QUESTIONS)]
        lines.append(Line(speaker, text, pause_s=0.8))
    return lines


# --- the seed-style baseline ------------------------------------------------------------------------------------

class WholeReplyResponder:
    """The seed's reply path with chorus' models: the whole LLM reply, then TTS of all of it, then play.

    Same `respond(...)` signature as `brain.responder.Responder`; the same LLM backend, scheduler, prompt,
    cleaning, persona limits and TTS engine (through a Responder's `tts_for` / `stop_strings`). Cancelling
    the task stops generation and no sink call happens after it.
    """

    def __init__(self, settings: Settings, *, llm: Any, scheduler: Any, player: Any = None) -> None:
        self.settings = settings
        self.llm = llm
        self.scheduler = scheduler
        self.player = player  # when given, respond() returns once the reply has been played (RealtimeTTS' play())
        self._streaming = Responder(settings, llm=llm, scheduler=scheduler)

    async def respond(self, persona: Any, history: Sequence[Any], *, situation: str, sink: Any,
                      member_names: Sequence[str] | None = None) -> ReplyResult:
        loop = asyncio.get_running_loop()
        result = ReplyResult()
        result.timings["request"] = time.monotonic()
        names = list(member_names) if member_names is not None else list(dict.fromkeys(
            item.speaker for item in map(as_history_line, history) if not item.is_bot))
        cancel = threading.Event()
        work = asyncio.ensure_future(asyncio.to_thread(self._generate, persona, list(history), situation, names,
                                                       cancel, result))
        try:
            pcm, rate = await asyncio.shield(work)
        except asyncio.CancelledError:
            cancel.set()
            result.cancelled = True
            result.stop_reason = "cancelled"
            raise
        if pcm.size and not cancel.is_set():
            sink.text(result.text)
            result.timings["first_audio"] = time.monotonic()  # the whole reply is handed over at once
            sink.audio(pcm, rate)
        result.stop_reason = result.stop_reason or "end"
        sink.done()
        if self.player is not None and pcm.size:
            # The seed's play() blocks until the audio has gone out. (Returning at once would also let the
            # session compute its drain deadline from the previous line's `seconds_played`: see the report.)
            give_up = time.monotonic() + result.audio_seconds + 10.0
            while self.player.is_playing_audio and time.monotonic() < give_up:
                await asyncio.sleep(0.02)
        result.timings["done"] = time.monotonic()
        return result

    def _generate(self, persona: Any, history: list[Any], situation: str, names: list[str], cancel: threading.Event,
                  result: ReplyResult) -> tuple[np.ndarray, int]:
        settings = self.settings
        max_tokens = max(8, min(settings.llm_max_tokens, int(persona.max_reply_tokens())))
        messages = build_messages(persona, history, situation=situation,
                                  budget_tokens=max(64, settings.llm_context - max_tokens - PROMPT_MARGIN_TOKENS),
                                  count_tokens=self.llm.count_tokens)
        result.timings["prompt_built"] = time.monotonic()
        raw: list[str] = []
        owner = f"baseline-{id(result)}"
        with self.scheduler.hold("llm", owner=owner, cancel=cancel):
            stream = self.llm.stream(messages, max_tokens=max_tokens, stop=self._streaming.stop_strings(persona, names),
                                     cancel=cancel)
            try:
                for token in stream:
                    if cancel.is_set():
                        break
                    if token:
                        result.timings.setdefault("first_token", time.monotonic())
                        raw.append(token)
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
        result.timings["llm_done"] = time.monotonic()
        result.raw_text = "".join(raw)
        text = clean_reply(result.raw_text, persona_name=persona.name, other_names=names)
        budget = ReplyBudget(max_words=getattr(persona, "max_reply_words", None),
                             max_sentences=getattr(persona, "max_reply_sentences", None))
        kept = budget.take(Fragment(text, True)) if text else None
        result.text = kept.text if kept is not None else ""
        result.fragments = [result.text] if result.text else []
        result.timings["first_fragment"] = time.monotonic()  # the whole reply is the first speakable text
        chunks: list[np.ndarray] = []
        rate = 22_050
        tts = self._streaming.tts_for(persona)
        result.tts_engine = tts.name
        with self.scheduler.hold("tts", owner=owner, cancel=cancel):
            for pcm, rate in tts.synthesize(result.text, cancel):
                result.timings.setdefault("tts_first_chunk", time.monotonic())
                a = np.asarray(pcm)
                chunks.append(a.astype(np.float32) / 32768.0 if a.dtype == np.int16 else a.astype(np.float32))
        result.timings["tts_done"] = time.monotonic()
        audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        result.audio_seconds = audio.shape[0] / rate if rate else 0.0
        result.spoken_text = result.text
        return audio, rate


def baseline_parts(end_silence_ms: int):
    """`PrompterCog.session_parts` replacement: seed-style listener (endpoint, then STT) and responder."""

    async def parts(cog: Any, guild: Any) -> dict[str, Any]:
        from audio.listener import Listener
        from audio.playback import StreamPlayer

        llm, scheduler = await cog._shared_parts()
        bot_id = cog.bot.user.id if cog.bot.user is not None else None

        def make_listener(settings: Settings, **callbacks: Any) -> Listener:
            return Listener(settings, ignore_user_ids=(bot_id,) if bot_id else (), speculative=False, partials=False,
                            end_silence_ms=end_silence_ms, **callbacks)

        player = StreamPlayer()
        return {"responder": WholeReplyResponder(cog.bot.settings, llm=llm, scheduler=scheduler, player=player),
                "player": player, "make_listener": make_listener}

    return parts


# --- running and summarizing ----------------------------------------------------------------------------------------

def mode_settings(base: Settings, mode: str, baseline_end_silence_ms: int) -> Settings:
    common = dict(greet_members=False, idle_topic_s=3600.0)
    if mode == "baseline":
        return base.replace(scheduler_policy="exclusive", vad_end_silence_ms=baseline_end_silence_ms,
                            preemptive_start=False, **common)
    return base.replace(scheduler_policy=mode, **common)


def turn_rows(mode: str, result: ConversationResult) -> list[dict[str, Any]]:
    rows = []
    for turn in result.turns:
        answer = turn.answer
        rows.append({
            "mode": mode, "turn": turn.index, "warmup": turn.warmup, "speaker": turn.speaker, "said": turn.said,
            "heard": turn.heard, "status": turn.status, "reply": answer.text if answer else "",
            "reply_kind": f"{answer.kind}: {answer.reason}" if answer else "",
            "latency_s": turn.latency_s, "stages_s": answer.stages_s if answer else {},
            "other_lines": [f"{r.kind}/{r.outcome}" for r in turn.replies if r is not answer],
        })
    return rows


def stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    return {"p50": round(float(np.percentile(arr, 50)), 3), "p95": round(float(np.percentile(arr, 95)), 3),
            "mean": round(float(arr.mean()), 3), "min": round(float(arr.min()), 3), "max": round(float(arr.max()), 3),
            "n": int(arr.size)}


def turn_intervals(stages: dict[str, float]) -> list[tuple[int, float, float]]:
    """(index into INTERVALS, start, end) for each interval whose two ends the turn has, in seconds after the
    end of speech. Without a VAD end (an early start confirmed) the final transcript confirms the end."""
    out = []
    for i, (_name, start, end) in enumerate(INTERVALS):
        if end == "vad_end" and "vad_end" not in stages:
            end = "final"
        t0 = 0.0 if start is None else stages.get(start)
        t1 = stages.get(end)
        if t0 is not None and t1 is not None and t1 >= t0:
            out.append((i, float(t0), float(t1)))
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    timed = [r for r in rows if not r["warmup"]]
    answered = [r for r in timed if r["latency_s"] is not None]
    return {
        "turns": len(timed),
        "answered": len(answered),
        "latency_s": stats([r["latency_s"] for r in answered]),
        "stage_after_end_of_speech_s": {s: stats([r["stages_s"][s] for r in answered if s in r["stages_s"]])
                                        for s in STAGES},
        "interval_s": {name: stats([t1 - t0 for r in answered for j, t0, t1 in turn_intervals(r["stages_s"]) if j == i])
                       for i, (name, _a, _b) in enumerate(INTERVALS)},
    }


def machine_info() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
                            "cores": os.cpu_count(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    from importlib.metadata import PackageNotFoundError, version

    for package in ("discord.py", "davey", "faster-whisper", "ctranslate2", "llama_cpp_python", "piper-tts",
                    "onnxruntime", "RealtimeTTS"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            pass
    return info


def models_info(settings: Settings) -> dict[str, Any]:
    from bot.models import embedded_gguf_path, embedded_piper_voice, embedded_whisper_path

    def name(fn: Any) -> str:
        try:
            value = fn()
            return Path(value[0] if isinstance(value, tuple) else value).name
        except Exception as exc:  # a missing model is reported, not fatal to the report
            return f"unavailable ({exc})"

    return {
        "stt": f"faster-whisper {settings.stt_model} ({name(embedded_whisper_path) if settings.stt_model == 'embedded' else settings.stt_model}, tiny.en) {settings.stt_compute_type}",
        "vad": "silero VAD (ONNX)",
        "llm": f"{settings.llm_backend}: {name(embedded_gguf_path) if settings.llm_model == 'embedded' else settings.llm_model}",
        "tts": f"piper in-process ({name(embedded_piper_voice)})",
        "llm_threads": settings.llm_threads or default_llm_threads(),
    }


async def run_mode(base: Settings, mode: str, turns: int, args: argparse.Namespace) -> ConversationResult:
    settings = mode_settings(base, mode, args.baseline_end_silence_ms)
    parts = baseline_parts(args.baseline_end_silence_ms) if mode == "baseline" else None

    def progress(event: Any) -> None:
        if event.kind == "bot_line":
            print(f"[{mode}] {event.speaker}: {event.text!r} ({event.latency_s or 0:.2f} s)", file=sys.stderr, flush=True)
        elif event.kind in ("line", "heard", "unanswered"):
            print(f"[{mode}] {event.kind} {event.speaker}: {event.text or event.detail!r}", file=sys.stderr, flush=True)

    convo = ScriptedConversation(settings, [ALICE, BOB], script(turns), out_dir=Path(args.out) / mode, label=mode,
                                 session_parts=parts, on_event=progress, reply_timeout_s=args.reply_timeout)
    return await convo.run()


async def main_async(argv: list[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=6, help="timed turns per mode (after one warm-up line)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: exclusive, pipelined, baseline")
    parser.add_argument("--baseline-end-silence-ms", type=int, default=BASELINE_END_SILENCE_MS)
    parser.add_argument("--reply-timeout", type=float, default=120.0, help="seconds to wait for a reply before a turn counts as unanswered")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "out" / "bench"))
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(unknown)}")
    base = load_settings(env={k: v for k, v in os.environ.items() if k.startswith(("LLM_", "TTS_", "STT_"))}, env_file=None)
    report: dict[str, Any] = {
        "benchmark": "e2e_bench: true end of a member's speech -> the bot's first voiced packet at the member (loopback Discord voice)",
        "command": " ".join([".venv/bin/python", "-m", "benchmarks.e2e_bench", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine_info(),
        "models": models_info(base),
        "goal": {"p50_latency_s": GOAL_P50_S, "seed_style_p50_s_reported": 2.6},
        "modes": {},
    }
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    for mode in modes:
        t = time.monotonic()
        result = await run_mode(base, mode, args.turns, args)
        mode_rows = turn_rows(mode, result)
        for row in mode_rows:  # per turn, as the run goes (the full report goes to stdout at the end)
            print(json.dumps({k: row[k] for k in ("mode", "turn", "speaker", "status", "latency_s", "stages_s")}),
                  file=sys.stderr, flush=True)
        rows.extend(mode_rows)
        report["modes"][mode] = {"settings": result.settings, "wall_s": round(time.monotonic() - t, 1),
                                 "loadavg_after": [round(x, 2) for x in os.getloadavg()],
                                 "summary": summarize(mode_rows), "files": result.files}
    report["turns"] = rows
    p50 = {m: (report["modes"][m]["summary"]["latency_s"] or {}).get("p50") for m in modes}
    if p50.get("baseline"):
        report["speedup_p50_vs_baseline"] = {m: round(p50["baseline"] / v, 2) for m, v in p50.items()
                                             if m != "baseline" and v}
    report["latency_p50_s"] = p50
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["note"] = ("2-core machine shared with other jobs: absolute times are noisy; modes run one after the other "
                      "(see loadavg per mode). Stage times are seconds after the true end of speech; with an early "
                      "start the request can precede the final transcript.")
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
