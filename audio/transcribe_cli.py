"""Transcribe audio files, one speaker per file, through the same streaming path as a voice session.

    python -m audio.transcribe_cli alice.wav bob.wav [--names Alice,Bob] [--realtime] [--partials]

Files are played side by side (frame i of every file at the same moment, 20 ms apart) into one
`Listener`; each final is printed as it arrives, timed from the start of the files:

    [00:01.24-00:03.90] Alice: I think we should order pizza.  (final +0.31 s after speech end)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

import numpy as np

from audio.types import STT_FRAME_SAMPLES, STT_RATE, MemberFrame, SpeakingEvent, Utterance

T0 = 10_000.0  # synthetic clock origin for file time 0 (frames carry t = T0 + file seconds)


_origin = [T0]  # realtime mode: the monotonic time the files started


def _clock(t: float) -> str:
    t = max(0.0, t - _origin[0])
    return f"{int(t // 60):02d}:{t % 60:05.2f}"


def load_audio(path: Path) -> np.ndarray:
    """Any format libav reads, as 16 kHz mono float32."""
    from faster_whisper.audio import decode_audio

    if not path.is_file():
        raise SystemExit(f"transcribe_cli: no such file: {path}")
    try:
        return decode_audio(str(path), sampling_rate=STT_RATE)
    except Exception as exc:
        raise SystemExit(f"transcribe_cli: cannot decode {path}: {type(exc).__name__}: {exc}") from None


async def run(paths: list[Path], names: list[str], *, realtime: bool, partials: bool, out=None) -> list[Utterance]:
    from audio.listener import Listener
    from runtime.settings import load_settings

    out = out or sys.stdout
    settings = load_settings()
    audios = [load_audio(p) for p in paths]
    finals: list[Utterance] = []

    def on_utterance(u: Utterance) -> None:
        if u.final and not u.text:
            return  # a rejected segment (noise, too short): logged by the listener
        if u.final:
            finals.append(u)
            lag = u.timings["final"] - u.timings["speech_end"] if realtime else None
            extra = f"  (final +{lag:.2f} s after speech end)" if lag is not None else ""
            print(f"[{_clock(u.start)}-{_clock(u.end)}] {u.name}: {u.text}{extra}", file=out, flush=True)
        elif partials:
            print(f"  ... {u.name}: {u.text}", file=out, flush=True)

    def on_speaking(e: SpeakingEvent) -> None:
        logging.getLogger("transcribe_cli").debug(
            "%s %s at %s", names[e.user_id], "starts" if e.speaking else "stops", _clock(e.t)
        )

    await Listener.preload(settings)  # load the models off the event loop
    listener = Listener(
        settings,
        name_of=lambda uid: names[uid],
        on_speaking=on_speaking,
        on_utterance=on_utterance,
        fill_gaps=realtime,
    )
    n_frames = max(int(np.ceil(len(a) / STT_FRAME_SAMPLES)) for a in audios)
    loop = asyncio.get_running_loop()
    start = loop.time()
    wall0 = time.monotonic()
    _origin[0] = wall0 if realtime else T0
    try:
        for i in range(n_frames):
            for uid, audio in enumerate(audios):
                chunk = audio[i * STT_FRAME_SAMPLES : (i + 1) * STT_FRAME_SAMPLES]
                if chunk.size:
                    if chunk.size < STT_FRAME_SAMPLES:
                        chunk = np.pad(chunk, (0, STT_FRAME_SAMPLES - chunk.size))
                    t = time.monotonic() if realtime else T0 + (i + 1) * 0.02
                    listener.feed(MemberFrame(uid, chunk, t))
            if realtime:
                delay = start + (i + 1) * 0.02 - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                while listener.backlog > 200:
                    await asyncio.sleep(0.005)
                if i % 50 == 0:
                    await asyncio.sleep(0)
        await listener.flush()
    finally:
        await listener.close()
    print(
        f"# {len(finals)} finals from {len(paths)} file(s), {n_frames * 0.02:.1f} s of audio in "
        f"{time.monotonic() - wall0:.1f} s; stt {listener.scheduler.stats.as_dict()}",
        file=sys.stderr,
    )
    return finals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m audio.transcribe_cli", description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path, help="audio files, one speaker each (wav, mp3, ogg, ...)")
    ap.add_argument("--names", help="comma-separated speaker names (default: the file names)")
    ap.add_argument("--realtime", action="store_true", help="play at real speed and show each final's latency")
    ap.add_argument("--partials", action="store_true", help="also print partial hypotheses")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    names = args.names.split(",") if args.names else [p.stem for p in args.files]
    if len(names) != len(args.files):
        ap.error(f"--names has {len(names)} names for {len(args.files)} files")
    try:
        asyncio.run(run(args.files, [n.strip() for n in names], realtime=args.realtime, partials=args.partials))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from runtime.errors import ModelLoadError

        if isinstance(exc, ModelLoadError):
            print(f"transcribe_cli: {exc}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
