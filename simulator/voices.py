"""Distinct voices for simulated members, made with chorus' own TTS engines (`audio.tts_factory.make_tts`).

    voice = MemberVoice("espeak", "en-us+klatt2", pitch=78, speed=0.9)
    line = synthesize_line(settings, voice, "Hey Juniper, what should I cook tonight?")
    await member.speak(line.pcm)        # 48 kHz stereo int16, trimmed to the speech
    line.voiced_s                       # where the last voiced 20 ms frame ends (true end of speech)

Two kinds of voice:
* ``piper``: the embedded Piper voice (the one the bot speaks with by default), made distinct by a pitch
  shift (``semitones``; done by resampling, so the tempo shifts with it, as in a tape played faster).
* ``espeak``: espeak-ng variants at different pitches and speeds. faster-whisper tiny.en understands
  espeak's ``klatt2`` variant (high pitch, slowish) far better than the default voice or other pitches
  (checked on the names the personas use: those turn "Juniper" into "do you never"), so the stock cast uses it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from audio.tts_factory import make_tts
from runtime.settings import Settings
from simulator import audio_files

FRAME_S = 0.020
VOICED_DBFS = -42.0  # a 20 ms frame louder than this (RMS) counts as voiced speech
TAIL_FRAMES = 3  # quiet frames kept after the last voiced one (the end of the speech stays that frame)
LEAD_S = 0.2  # silence kept before the first voiced frame (a voice-activated microphone opens a little early)


@dataclass(frozen=True)
class MemberVoice:
    """How one simulated member sounds. Field names follow `conversation.persona.VoiceSpec`, so
    `audio.tts_factory.make_tts` takes it as a persona voice."""

    engine: str  # "piper" or "espeak"
    voice: str = "embedded"  # piper: "embedded" or a .onnx path; espeak: a voice name, e.g. "en-us+klatt2"
    speed: float = 1.0
    pitch: int | None = None  # espeak pitch, 0..99
    semitones: float = 0.0  # piper: pitch shift by resampling

    def describe(self) -> str:
        if self.engine == "piper":
            return f"piper:{self.voice} {self.semitones:+g} st speed {self.speed:g}"
        return f"espeak:{self.voice} pitch {self.pitch} speed {self.speed:g}"


@dataclass(frozen=True)
class CastMember:
    user_id: int
    name: str
    voice: MemberVoice


# The stock cast. Alice and Bob are the Piper voice shifted up and down (tiny.en transcribed 7 of 7 test
# questions, the name included, for each); Chen is espeak-ng klatt2, high and slow (7 of 7 as well: other
# pitches and variants of espeak-ng got 2-3 of 7, "Juniper" heard as "do you never").
ALICE = CastMember(201, "Alice", MemberVoice("piper", "embedded", speed=0.9, semitones=3.0))
BOB = CastMember(202, "Bob", MemberVoice("piper", "embedded", speed=0.95, semitones=-3.0))
CHEN = CastMember(203, "Chen", MemberVoice("espeak", "en-us+klatt2", speed=0.9, pitch=78))
DEFAULT_CAST: tuple[CastMember, ...] = (ALICE, BOB, CHEN)


@dataclass(frozen=True)
class SpokenLine:
    """A member's line, ready to send: 48 kHz stereo int16, LEAD_S of silence then the speech (the TTS's own
    leading and trailing silence cut; up to TAIL_FRAMES quiet frames kept after the last voiced one)."""

    text: str
    pcm: np.ndarray  # (n, 2) int16 at 48 kHz
    voiced_s: float  # end of the last voiced 20 ms frame, seconds from the start of `pcm`
    last_voiced_frame: int  # index of the 20 ms packet that carries the end of the speech

    @property
    def seconds(self) -> float:
        return self.pcm.shape[0] / audio_files.DISCORD_RATE


def _piper(voice: MemberVoice, text: str) -> tuple[np.ndarray, int]:
    """The Piper voice without its sampling noise: a member says a line the same way in every run, so a
    benchmark or a test hears the same audio each time (the voices differ by pitch and speed instead)."""
    from piper import SynthesisConfig

    from audio.tts_engines.piper import load_piper_voice

    piper = load_piper_voice(voice.voice)
    base = piper.config.length_scale or 1.0
    config = SynthesisConfig(length_scale=base / max(voice.speed, 0.1), noise_scale=0.0, noise_w_scale=0.0)
    chunks = [chunk.audio_int16_array for chunk in piper.synthesize(text, syn_config=config)]
    if not chunks:
        raise RuntimeError(f"{voice.describe()} produced no audio for {text!r}")
    return np.concatenate(chunks).astype(np.float32) / 32768.0, int(piper.config.sample_rate)


def _render(settings: Settings, voice: MemberVoice, text: str) -> tuple[np.ndarray, int]:
    """Mono float32 speech and its rate, from the voice's engine (blocking)."""
    if voice.engine not in ("piper", "espeak"):
        raise ValueError(f"unknown member voice engine {voice.engine!r} (expected piper or espeak)")
    if voice.engine == "piper":
        mono, rate = _piper(voice, text)
    else:
        # a member's voice is the simulated world's, never the bot's TTS server
        engine = make_tts(settings.replace(tts_engine="persona", tts_backend="local"), voice)
        chunks: list[np.ndarray] = []
        rate = 0
        for pcm, rate in engine.synthesize(text, threading.Event()):
            a = np.asarray(pcm)
            chunks.append(a.astype(np.float32) / 32768.0 if a.dtype == np.int16 else a.astype(np.float32))
        if not chunks:
            raise RuntimeError(f"{voice.describe()} produced no audio for {text!r}")
        mono = np.concatenate(chunks)
    if voice.engine == "piper" and voice.semitones:
        # Resample to fewer/more samples and play at the original rate: pitch (and tempo) shift.
        factor = 2.0 ** (voice.semitones / 12.0)
        mono = audio_files.resample(mono, rate, max(1, int(round(rate / factor))))
    return mono, rate


def voiced_frames(pcm: np.ndarray, threshold_dbfs: float = VOICED_DBFS) -> np.ndarray:
    """Boolean per 20 ms frame of 48 kHz (n, 2) int16 PCM: RMS above ``threshold_dbfs``."""
    n = audio_files.FRAME_SAMPLES
    count = -(-pcm.shape[0] // n)
    padded = np.zeros((count * n, pcm.shape[1]), dtype=np.float32)
    padded[: pcm.shape[0]] = pcm.astype(np.float32) / 32768.0
    rms = np.sqrt(np.mean(padded.reshape(count, n * pcm.shape[1]) ** 2, axis=1))
    return 20.0 * np.log10(np.maximum(rms, 1e-9)) > threshold_dbfs


def synthesize_line(settings: Settings, voice: MemberVoice, text: str) -> SpokenLine:
    """Blocking (run it in a thread): the line in `voice`, trimmed to its speech, with its true end."""
    mono, rate = _render(settings, voice, text)
    pcm = audio_files.to_discord_pcm(mono, rate)
    voiced = voiced_frames(pcm)
    if not voiced.any():
        raise RuntimeError(f"{voice.describe()} produced only silence for {text!r}")
    n = audio_files.FRAME_SAMPLES
    lead = -(-int(LEAD_S * audio_files.DISCORD_RATE) // n) * n  # whole frames, so indices match packets
    first = int(np.argmax(voiced))
    last = int(len(voiced) - 1 - np.argmax(voiced[::-1]))
    begin = max(0, first - 1) * n  # one frame of the onset's quiet start
    end = min(pcm.shape[0], (last + 1 + TAIL_FRAMES) * n)  # and the last word's natural decay
    trimmed = np.ascontiguousarray(np.concatenate([np.zeros((lead, 2), dtype=np.int16), pcm[begin:end]]))
    last_frame = (lead + (last + 1) * n - begin) // n - 1
    return SpokenLine(
        text=text, pcm=trimmed, voiced_s=(last_frame + 1) * n / audio_files.DISCORD_RATE, last_voiced_frame=last_frame
    )
