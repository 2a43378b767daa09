"""espeak-ng as a last-resort voice: a subprocess writing WAV to stdout, streamed as it comes.

Robotic but always there (a system package, no model files). The process is killed on cancel.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import struct
import subprocess
import threading
from functools import lru_cache
from typing import Iterator

import numpy as np

from audio.tts import TtsEngine, TtsError
from runtime.errors import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_WPM = 165
READ_BYTES = 4410  # 0.1 s at 22 050 Hz, 16-bit mono


class EspeakTts(TtsEngine):
    name = "espeak"

    def __init__(self, voice: str = "en-us", *, speed: float = 1.0, pitch: int | None = None) -> None:
        binary = shutil.which("espeak-ng") or shutil.which("espeak")
        if binary is None:
            raise ModelLoadError("espeak-ng is not installed: apt-get install espeak-ng")
        self.binary: str = binary
        self.voice = voice or "en-us"
        known = _known_voices(self.binary)
        if known and self.voice.split("+")[0].lower() not in known:
            raise ModelLoadError(f"espeak-ng has no voice {self.voice!r} (see `espeak-ng --voices`)")
        self.wpm = max(80, min(450, int(round(DEFAULT_WPM * speed))))
        self.pitch = pitch

    def _command(self, text: str) -> list[str]:
        cmd = [self.binary, "--stdout", "-v", self.voice, "-s", str(self.wpm)]
        if self.pitch is not None:
            cmd += ["-p", str(self.pitch)]
        return cmd + ["--", text]

    def synthesize(self, text: str, cancel: threading.Event) -> Iterator[tuple[np.ndarray, int]]:
        text = " ".join(text.split())
        if not text or cancel.is_set():
            return
        proc = subprocess.Popen(self._command(text), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        try:
            header = _read_exactly(fd, 44, cancel)
            if header is None:
                return
            if len(header) < 44 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
                err = proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else ""
                raise TtsError(f"espeak-ng produced no WAV audio for voice {self.voice!r}: {err or 'no output'}")
            (channels,) = struct.unpack("<H", header[22:24])
            (rate,) = struct.unpack("<I", header[24:28])
            (bits,) = struct.unpack("<H", header[34:36])
            if bits != 16:
                raise TtsError(f"espeak-ng wrote {bits}-bit audio; expected 16-bit")
            carry = b""
            while not cancel.is_set():
                ready, _, _ = select.select([fd], [], [], 0.02)
                if not ready:
                    continue
                block = os.read(fd, READ_BYTES)
                if not block:
                    break
                block = carry + block
                usable = len(block) - len(block) % (2 * channels)
                carry = block[usable:]
                if usable and not cancel.is_set():
                    samples = np.frombuffer(block[:usable], dtype=np.int16)
                    if channels > 1:
                        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
                    yield samples, rate
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
            if proc.stderr:
                proc.stderr.close()


@lru_cache(maxsize=4)
def _known_voices(binary: str) -> frozenset[str]:
    """Language codes, voice names and file names espeak-ng knows (empty if it cannot list them)."""
    try:
        listing = subprocess.run([binary, "--voices"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    names: set[str] = set()
    for row in listing.splitlines()[1:]:
        cols = row.split()
        if len(cols) >= 5:
            names.update({cols[1].lower(), cols[3].lower(), cols[4].lower(), cols[4].rsplit("/", 1)[-1].lower()})
    return frozenset(names)


def _read_exactly(fd: int, n: int, cancel: threading.Event) -> bytes | None:
    data = b""
    while len(data) < n:
        if cancel.is_set():
            return None
        ready, _, _ = select.select([fd], [], [], 0.02)
        if not ready:
            continue
        block = os.read(fd, n - len(data))
        if not block:
            break
        data += block
    return data
