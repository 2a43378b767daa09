"""What suits a model: how its prompt is laid out, how it samples, and which small-model repairs its replies get.

A tiny chat model (SmolLM2-135M) and an 8B one need different prompts. The small one loses the thread in a
long system prompt, copies it aloud, answers the examples instead of the member, and echoes whatever names
it saw; it does best with a short system prompt, the persona's example dialogue as real turns, a few recent
lines, and the speaker named once. A bigger model follows the full persona. Sampling differs by model
family too (SmolLM2 loops without a repetition penalty; Llama/Qwen/Gemma chat models have their own
recommended settings).

`profile_for(settings, model_name, n_params)` picks one: `LLM_PROFILE=small|large|transcript` forces a layout,
`auto` goes by the model's size (below `SMALL_MODEL_PARAMS`) or, for a server, by its name; a pretrained model
(Gemma 3 270M as shipped on PyPI) gets the transcript layout: a chat template means nothing to it. Sampling comes
from the model family's defaults, then any `LLM_*` sampling setting that is set. Every choice here is
measured by `python -m benchmarks.quality_bench` (README: "Reply quality").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

SMALL_MODEL_PARAMS = 1_000_000_000  # below this many parameters a model gets the small layout
_SMALL_NAME = re.compile(r"(?:^|[^0-9.])(?:1[0-9]{2}|[2-9][0-9]{2})m\b|smollm|tinyllama|0\.[0-9]+b\b", re.I)


@dataclass(frozen=True)
class Sampling:
    """Sampler settings for one reply (llama.cpp's names; the OpenAI backend sends them as request fields)."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0  # llama.cpp's multiplicative penalty on recent tokens (1 = off)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None  # None: a fresh random seed per request
    # words kept out of a reply unless the member's line calls for them (brain.avoid_words; in-process llama.cpp)
    avoid_words: tuple[str, ...] = ()

    def replace(self, **changes: Any) -> "Sampling":
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class PromptLayout:
    """How `brain.prompt.build_messages` lays out a reply's prompt."""

    system: str = "full"  # full: the whole persona; short: who it is, how it speaks, the length limit
    examples: bool = True  # the persona's example dialogue, as real user/assistant turns
    history_lines: int | None = None  # at most this many recent lines of the room (None: as the budget allows)
    own_lines: str = "all"  # the bot's own earlier lines: all | heard (not cut or cleaned away) | none
    speaker_once: bool = False  # the situation's short form (the speaker named once, not in the situation and
    # again as a label), and the example dialogue's listener lines carry no label
    newest_label: bool = True  # the newest line keeps its "Alice:" label (when the situation does not name her)
    own_name: bool = True  # members' lines keep the bot's name where they call it ("..., Juniper?"); a small
    # model reads its own name mid-question as part of the topic
    transcript: bool = False  # a pretrained (not chat-tuned) model: the messages become a transcript that ends
    # with the bot's label for the model to continue, stopped at the line's end (brain/transcript.py)


@dataclass(frozen=True)
class ModelProfile:
    name: str
    layout: PromptLayout = field(default_factory=PromptLayout)
    sampling: Sampling = field(default_factory=Sampling)
    small_model_repairs: bool = False  # the screens for a small model's habits (brain.screen)
    address_only_speaker: bool = True  # drop names that address anyone but the member answered

    def describe(self) -> dict[str, Any]:
        return {
            "profile": self.name,
            "layout": self.layout.__dict__,
            "sampling": self.sampling.as_dict(),
            "small_model_repairs": self.small_model_repairs,
            "address_only_speaker": self.address_only_speaker,
        }


# SmolLM2-135M apologizes and condoles whatever it is asked (brain.avoid_words; measured in docs/reply-quality.md).
SMOLLM_AVOID_WORDS = ("sorry", "apologize", "condolences")

# Sampling per model family: the families' published generation defaults (Llama 3.1 and Qwen 2.5
# generation_config, Gemma 3's recommended settings), and for SmolLM2 what the quality benchmark measured
# (README, "Reply quality": without a repetition penalty it loops). Any LLM_* sampling setting overrides.
FAMILY_SAMPLING: dict[str, Sampling] = {
    "smollm": Sampling(
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        min_p=0.1,
        repeat_penalty=1.15,
        presence_penalty=0.0,
        frequency_penalty=0.0,
        avoid_words=SMOLLM_AVOID_WORDS,
    ),
    "llama": Sampling(temperature=0.6, top_p=0.9, top_k=40, min_p=0.05, repeat_penalty=1.05),
    "qwen": Sampling(temperature=0.7, top_p=0.8, top_k=20, min_p=0.0, repeat_penalty=1.05),
    "gemma": Sampling(temperature=1.0, top_p=0.95, top_k=64, min_p=0.0, repeat_penalty=1.0),
    "default": Sampling(temperature=0.7, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.05),
}

SMALL_LAYOUT = PromptLayout(system="short", examples=True, history_lines=6, own_lines="heard", speaker_once=True)
TRANSCRIPT_LAYOUT = PromptLayout(
    system="short", examples=True, history_lines=6, own_lines="heard", speaker_once=False, transcript=True
)
# A pretrained model continues text; it has no family sampling of its own for chat, and Gemma's recommended
# temperature 1.0 (for the chat-tuned model) wanders in a continuation.
TRANSCRIPT_SAMPLING = Sampling(temperature=0.7, top_p=0.9, top_k=40, min_p=0.05, repeat_penalty=1.1)
LARGE_LAYOUT = PromptLayout(system="full", examples=True, history_lines=None, own_lines="heard", speaker_once=False)


def family_of(model_name: str) -> str:
    """The model family from a GGUF's name/architecture or a server's model name."""
    name = model_name.lower()
    for family in ("smollm", "qwen", "gemma", "llama"):
        if family in name:
            return family
    if "mistral" in name or "mixtral" in name:
        return "llama"
    return "default"


_CHAT_TUNED = re.compile(r"instruct|chat|(?:^|[-_ .])it(?:$|[-_ .])", re.I)
_PRETRAINED = re.compile(r"(?:^|[-_ .])(?:pt|base)(?:$|[-_ .])", re.I)


def is_pretrained(model_name: str) -> bool:
    """A base model by its name: Gemma's releases mark the chat-tuned ones `-it`, others `Instruct`/`Chat`;
    `-pt`/`-base` mark pretrained ones. An unmarked Gemma is the pretrained one; other unmarked names count
    as chat models (many fine-tunes carry no marker)."""
    if _CHAT_TUNED.search(model_name):
        return False
    return bool(_PRETRAINED.search(model_name)) or family_of(model_name) == "gemma"


def is_small(model_name: str, n_params: int | None) -> bool:
    if n_params:
        return n_params < SMALL_MODEL_PARAMS
    return bool(_SMALL_NAME.search(model_name))


def profile_for(settings: Any, model_name: str, n_params: int | None = None) -> ModelProfile:
    """The profile for this model under these settings (`LLM_PROFILE`, the `LLM_*` sampling overrides)."""
    choice = getattr(settings, "llm_profile", "auto") or "auto"
    # auto: only a local GGUF (n_params known) can be prompted as a transcript; a server takes chat messages
    transcript = choice == "transcript" or (choice == "auto" and n_params is not None and is_pretrained(model_name))
    small = is_small(model_name, n_params) if choice == "auto" else choice in ("small", "transcript")
    sampling = TRANSCRIPT_SAMPLING if transcript else FAMILY_SAMPLING[family_of(model_name)]
    overrides = {}
    for attr, key in (
        ("llm_temperature", "temperature"),
        ("llm_top_p", "top_p"),
        ("llm_top_k", "top_k"),
        ("llm_min_p", "min_p"),
        ("llm_repeat_penalty", "repeat_penalty"),
        ("llm_presence_penalty", "presence_penalty"),
        ("llm_frequency_penalty", "frequency_penalty"),
        ("llm_seed", "seed"),
    ):
        value = getattr(settings, attr, None)
        if value is not None:
            overrides[key] = value
    sampling = sampling.replace(**overrides)
    if transcript:
        return ModelProfile(
            name=f"transcript ({family_of(model_name)})",
            layout=TRANSCRIPT_LAYOUT,
            sampling=sampling,
            small_model_repairs=small,
        )
    if small:
        return ModelProfile(
            name=f"small ({family_of(model_name)})", layout=SMALL_LAYOUT, sampling=sampling, small_model_repairs=True
        )
    return ModelProfile(
        name=f"large ({family_of(model_name)})", layout=LARGE_LAYOUT, sampling=sampling, small_model_repairs=False
    )
