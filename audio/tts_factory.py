"""The engine table: which TTS engine speaks a persona's voice, from the settings (TTS_ENGINE, TTS_BACKEND).

It sits above the engines (`audio.tts_engines.*`), which sit above their base (`audio.tts`): the base never
imports an engine. It reads the settings; each engine gets only what it needs of them (`XttsOptions`, a voice). `load_voice` adds the
fallback chain a reply needs (the persona's voice, else the embedded Piper voice, else espeak-ng).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from audio.tts import TtsEngine
from runtime.errors import ModelLoadError
from runtime.models import MODELS
from runtime.settings import Settings

log = logging.getLogger(__name__)


def make_tts(settings: Settings, persona_voice: Any) -> TtsEngine:
    """The TTS engine for a persona's voice spec, unless `settings.tts_engine` forces one, or the Wyoming TTS
    server when TTS_BACKEND=wyoming.

    Engines are cached in `runtime.models.MODELS`, so every session with the same voice shares one.
    Raises ModelLoadError with one clear line when the engine cannot be used here.
    """
    if getattr(settings, "tts_backend", "local") == "wyoming":
        from audio.tts_engines.wyoming import WyomingTts, server_voice_name

        name = server_voice_name(settings.tts_server_voice, persona_voice)
        return MODELS.get(
            f"tts:wyoming:{settings.tts_server_uri}:{name}", lambda: WyomingTts(settings.tts_server_uri, name)
        )
    engine = (
        settings.tts_engine
        if settings.tts_engine != "persona"
        else (getattr(persona_voice, "engine", "piper") or "piper")
    )
    voice = getattr(persona_voice, "voice", "embedded") or "embedded"
    speed = float(getattr(persona_voice, "speed", 1.0) or 1.0)
    if engine == "piper":
        from audio.tts_engines.piper import make_piper_tts

        piper_voice = voice if getattr(persona_voice, "engine", "piper") == "piper" else "embedded"
        return MODELS.get(f"tts:piper:{piper_voice}:{speed:g}", lambda: make_piper_tts(piper_voice, speed=speed))
    if engine == "espeak":
        from audio.tts_engines.espeak import EspeakTts

        espeak_voice = voice if getattr(persona_voice, "engine", "") == "espeak" else "en-us"
        pitch = getattr(persona_voice, "pitch", None)
        return MODELS.get(
            f"tts:espeak:{espeak_voice}:{speed:g}:{pitch}", lambda: EspeakTts(espeak_voice, speed=speed, pitch=pitch)
        )
    if engine == "xtts":
        from audio.tts_engines.xtts import XttsOptions, make_xtts_tts

        reference = getattr(persona_voice, "reference_wav", None)
        options = XttsOptions(
            model=settings.xtts_model,
            data_dir=Path(settings.data_dir),
            device=settings.tts_device,
            use_deepspeed=settings.tts_use_deepspeed,
        )
        return MODELS.get(
            f"tts:xtts:{reference}:{speed:g}", lambda: make_xtts_tts(options, reference_wav=reference, speed=speed)
        )
    raise ModelLoadError(f"unknown TTS engine {engine!r} (expected piper, xtts or espeak)")


def load_voice(settings: Settings, persona_voice: Any) -> TtsEngine:
    """`make_tts`, falling back to the embedded Piper voice, then espeak-ng, when the voice cannot load here
    (an XTTS voice without the GPU extra, a missing Piper voice, the Wyoming server down). Blocking."""
    try:
        return make_tts(settings, persona_voice)
    except ModelLoadError as exc:
        log.warning("TTS voice %r unavailable (%s): falling back", persona_voice, exc)
    last: ModelLoadError | None = None
    for engine in ("piper", "espeak"):
        try:
            return make_tts(settings.replace(tts_engine=engine, tts_backend="local"), persona_voice)
        except ModelLoadError as exc:
            last = exc
    raise ModelLoadError(f"no TTS engine could be loaded: {last}")
