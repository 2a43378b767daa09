"""End of speech -> final transcript latency, for 1, 4 and 8 simultaneous speakers; prints JSON.

    .venv/bin/python -m benchmarks.stt_bench [--speakers 1,4,8] [--rounds 6,3,2] [--modes chorus,baseline]

Members speak Piper sentences at the same moment, fed in real time (20 ms frames, every member per
tick) into a `Listener`. The true end of speech of each clip is the feed time of the frame holding its
last voiced sample (energy ground truth); latency = final Utterance delivered on the loop - that time.

Modes (same audio, same process, same models):
* chorus:   the defaults: VAD_END_SILENCE_MS end-point, speculative final at the first pause, partials
            at STT_PARTIAL_INTERVAL_S, STT_ENCODER_WINDOW_S (10 s) encoder window, batched finals (max 4).
* chorus30: chorus with Whisper's standard 30 s encoder window (isolates the window trick).
* baseline: RealtimeSTT-style: wait a longer end-point silence (--baseline-silence-ms, 700 ms), then
            transcribe the whole utterance (30 s window, one at a time, no partials, no speculation).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from importlib.metadata import version

import numpy as np

SENTENCES = [
    "I think we should order pizza for dinner tonight.",
    "The weather was lovely last spring.",
    "Turn left at the second light.",
    "Can you hear me now?",
    "My brother bought a new bicycle yesterday.",
    "Let's meet at the station at nine.",
    "Did anyone see the game last night?",
    "Please pass me the salt and pepper.",
    "We need more wood for the fire.",
    "She plays the violin every morning.",
    "What time does the movie start?",
    "The cat is sleeping on the warm roof.",
]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, q)), 3)


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "mean": round(statistics.fmean(values), 3) if values else None,
    }


def last_voiced_sample(pcm: np.ndarray) -> int:
    blocks = pcm[: len(pcm) // 160 * 160].reshape(-1, 160)
    rms = np.sqrt(np.mean(blocks.astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(20 * np.log10(rms + 1e-12) > -45)
    return int((loud[-1] + 1) * 160)


def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "versions": {p: version(p) for p in ("faster-whisper", "ctranslate2", "onnxruntime", "numpy")},
    }


async def run_scenario(
    mode: str,
    speakers: int,
    rounds: int,
    settings,
    transcriber30,
    transcriber10,
    vad,
    clips,
    *,
    baseline_silence_ms: int,
) -> dict:
    from audio.listener import Listener
    from audio.types import STT_FRAME_SAMPLES, MemberFrame
    from audio.hallucinations import normalize_text

    if mode == "baseline":
        kw = dict(
            transcriber=transcriber30,
            speculative=False,
            partials=False,
            max_batch=1,
            end_silence_ms=baseline_silence_ms,
        )
    elif mode == "chorus30":
        kw = dict(transcriber=transcriber30)
    else:
        kw = dict(transcriber=transcriber10)
    finals: list = []
    listener = Listener(
        settings,
        name_of=str,
        on_speaking=lambda e: None,
        on_utterance=lambda u: finals.append(u) if u.final and u.text else None,  # empty final: rejected
        vad_model=vad,
        **kw,
    )
    latencies, endpoint_wait, after_endpoint, words_ok, n_expected = [], [], [], 0, 0
    queue_wait, stt_compute, delivery = [], [], []
    loop = asyncio.get_running_loop()
    try:
        for r in range(rounds):
            finals.clear()
            chosen = {uid: (r * speakers + uid) % len(SENTENCES) for uid in range(1, speakers + 1)}
            streams = {}
            true_end_frame = {}
            for uid, idx in chosen.items():
                lead = 0.2 + 0.05 * ((uid * 7 + r) % 5)  # start within ~0.2 s of each other
                pcm = np.concatenate(
                    (np.zeros(int(lead * 16000), np.float32), clips[idx], np.zeros(int(1.6 * 16000), np.float32))
                )
                streams[uid] = pcm
                true_end_frame[uid] = (int(lead * 16000) + last_voiced_sample(clips[idx]) - 1) // STT_FRAME_SAMPLES
            true_end_t: dict[int, float] = {}
            n_frames = max(len(p) for p in streams.values()) // STT_FRAME_SAMPLES
            start = loop.time()
            for i in range(n_frames):
                now = time.monotonic()
                for uid, pcm in streams.items():
                    fr = pcm[i * STT_FRAME_SAMPLES : (i + 1) * STT_FRAME_SAMPLES]
                    if fr.size == STT_FRAME_SAMPLES:
                        listener.feed(MemberFrame(uid, fr, now))
                        if i == true_end_frame[uid]:
                            true_end_t[uid] = now
                delay = start + (i + 1) * 0.02 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await listener.flush()
            n_expected += speakers
            for u in finals:
                if u.user_id not in true_end_t:
                    continue
                latencies.append(u.timings["final"] - true_end_t[u.user_id])
                endpoint_wait.append(u.timings["vad_end"] - true_end_t[u.user_id])
                after_endpoint.append(u.timings["final"] - u.timings["vad_end"])
                stt_compute.append(u.timings["stt_done"] - u.timings["stt_start"])
                queue_wait.append(max(0.0, u.timings["stt_start"] - u.timings["vad_end"]))
                delivery.append(u.timings["final"] - max(u.timings["stt_done"], u.timings["vad_end"]))
                words_ok += normalize_text(u.text).split() == normalize_text(SENTENCES[chosen[u.user_id]]).split()
    finally:
        await listener.close()
    return {
        "mode": mode,
        "speakers": speakers,
        "rounds": rounds,
        "end_of_speech_to_final_s": summary(latencies),
        "stages": {
            "end_of_speech_to_endpoint_s": summary(endpoint_wait),
            "endpoint_to_final_s": summary(after_endpoint),
            "endpoint_to_stt_start_s": summary(queue_wait),
            "stt_compute_s": summary(stt_compute),
            "stt_done_or_endpoint_to_delivery_s": summary(delivery),
        },
        "finals": len(latencies),
        "expected": n_expected,
        "exact_words": words_ok,
        "listener": listener.stats.as_dict(),
        "scheduler": listener.scheduler.stats.as_dict(),
    }


async def main_async(args) -> dict:
    from audio.stt import WhisperTranscriber
    from audio.vad_model import load_silero_vad
    from runtime.settings import load_settings
    from simulator.speech import piper_speech_16k as speech

    load_start = [round(x, 2) for x in os.getloadavg()]
    settings = load_settings()
    t = time.perf_counter()
    transcriber10 = WhisperTranscriber(settings)  # STT_ENCODER_WINDOW_S (10 s by default)
    transcriber30 = WhisperTranscriber(settings, short_window_s=0, model=transcriber10.model)
    vad = load_silero_vad()
    load_s = time.perf_counter() - t
    clips = [speech(s) for s in SENTENCES]
    transcriber10.transcribe([clips[0]])  # warm up
    transcriber30.transcribe([clips[0]])
    speakers = [int(x) for x in args.speakers.split(",")]
    rounds = [int(x) for x in args.rounds.split(",")]
    if len(rounds) == 1:
        rounds = rounds * len(speakers)
    results = []
    for k, r in zip(speakers, rounds):
        for mode in args.modes.split(","):
            res = await run_scenario(
                mode,
                k,
                r,
                settings,
                transcriber30,
                transcriber10,
                vad,
                clips,
                baseline_silence_ms=args.baseline_silence_ms,
            )
            results.append(res)
            print(f"# {mode} x{k}: p50 {res['end_of_speech_to_final_s']['p50']} s", file=sys.stderr, flush=True)
    ratios = {}
    for k in speakers:
        by_mode = {r["mode"]: r for r in results if r["speakers"] == k}
        if "baseline" in by_mode and "chorus" in by_mode:
            b, c = by_mode["baseline"]["end_of_speech_to_final_s"], by_mode["chorus"]["end_of_speech_to_final_s"]
            if b["p50"] and c["p50"]:
                ratios[str(k)] = {
                    "p50_baseline_over_chorus": round(b["p50"] / c["p50"], 2),
                    "p95_baseline_over_chorus": round(b["p95"] / c["p95"], 2),
                }
    info = machine()
    info["loadavg_start"] = load_start
    info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return {
        "benchmark": "stt_bench",
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.stt_bench", *sys.argv[1:]]),
        "machine": info,
        "note": "shared 2-core machine: other processes run meanwhile (see loadavg); numbers are noisy",
        "settings": {
            "stt_model": settings.stt_model,
            "stt_compute_type": settings.stt_compute_type,
            "stt_beam_size": settings.stt_beam_size,
            "stt_encoder_window_s": settings.stt_encoder_window_s,
            "vad_end_silence_ms": settings.vad_end_silence_ms,
            "stt_partial_interval_s": settings.stt_partial_interval_s,
            "baseline_end_silence_ms": args.baseline_silence_ms,
        },
        "model_load_s": round(load_s, 3),
        "results": results,
        "gain": ratios,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="end of speech -> final transcript latency (JSON)")
    ap.add_argument("--speakers", default="1,4,8")
    ap.add_argument("--rounds", default="6,3,2", help="rounds per speaker count (one value for all)")
    ap.add_argument("--modes", default="chorus,chorus30,baseline")
    ap.add_argument("--baseline-silence-ms", type=int, default=700)
    args = ap.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
