"""What a `brain.responder.Responder` needs of the settings: a reply's token limits, the LLM's options (for the
prompt profile when the backend carries none), the loader of a persona's voice and the bounds of a reply's wait
for the model (`brain.admission`). Built from the settings by the caller (`cogs.prompter`, a benchmark); the
responder never sees the rest of them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from audio.tts import TtsEngine
from audio.tts_factory import load_voice
from brain.admission import Admission
from brain.llm_options import LlmOptions

VoiceLoader = Callable[[Any], TtsEngine]  # a persona's voice spec → its TTS engine (blocking; may fall back)


@dataclass(frozen=True)
class ReplyOptions:
    max_tokens: int  # LLM_MAX_TOKENS: a reply's cap (a persona may ask for fewer)
    context_tokens: int  # LLM_CONTEXT: prompt and reply together
    llm: LlmOptions
    voice: VoiceLoader
    admission: Admission = Admission()  # REPLY_HOLD_AFTER_S, REPLY_DROP_AFTER_S

    @classmethod
    def from_settings(cls, settings: Any, *, voice: VoiceLoader | None = None) -> "ReplyOptions":
        """The settings' options; `voice` replaces the voice loader (`audio.tts_factory.load_voice`)."""
        return cls(
            max_tokens=settings.llm_max_tokens,
            context_tokens=settings.llm_context,
            llm=LlmOptions.from_settings(settings),
            voice=voice or partial(load_voice, settings),
            admission=Admission.from_settings(settings),
        )
