"""A pretrained model (Gemma 3 270M, as shipped on PyPI) is prompted as a transcript to continue, and stops at
the end of the bot's line."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runtime.settings import load_settings
from brain.llm import LlamaCppBackend
from brain.llm_options import LlmOptions
from brain.profile import TRANSCRIPT_LAYOUT, is_pretrained, profile_for
from brain.prompt import HistoryLine, build_messages
from brain.transcript import render_transcript
from conversation.persona_library import load_persona
from conversation.situation import Situation

PERSONAS = Path(__file__).resolve().parent.parent / "personas"


@pytest.fixture(scope="module")
def persona():
    return load_persona(PERSONAS / "juniper.toml")


def lines() -> list[HistoryLine]:
    return [
        HistoryLine("Bob", "I went hiking today.", 1.0, False),
        HistoryLine("Juniper", "Oh fun, where did you go?", 2.0, True),
        HistoryLine("Bob", "Up the ridge trail.", 3.0, False),
        HistoryLine("Alice", "Juniper, what snacks should we bring next time?", 4.0, False),
    ]


def test_the_messages_become_a_labelled_transcript_ending_with_the_bots_label(persona) -> None:
    situation = Situation("Alice is talking to you; reply to Alice.", short="", addressee="Alice")
    messages = build_messages(persona, lines(), situation=situation, budget_tokens=600, layout=TRANSCRIPT_LAYOUT)
    prompt = render_transcript(messages)
    body = prompt.splitlines()
    assert body[0].startswith("The following is a transcript") and "You are Juniper" in body[0]
    assert body[-1] == "Juniper:"
    assert "Bob: Up the ridge trail." in body and "Juniper: Oh fun, where did you go?" in body
    assert body[-2] == "Alice: Juniper, what snacks should we bring next time?"
    assert "(Alice is talking to you; reply to Alice.)" in body  # the situation, as a stage note
    example = persona.examples[0]
    assert f"Listener: {example.user}" in body and f"Juniper: {' '.join(example.bot.split())}" in body
    with pytest.raises(ValueError):
        render_transcript(messages[1:])


def test_pretrained_models_are_told_by_name_and_only_a_local_one_gets_the_transcript() -> None:
    assert is_pretrained("Gemma 3 270m gemma3 gemma-3-270m-q4_k_m.gguf")
    assert is_pretrained("Qwen2.5-1.5B-base") and is_pretrained("gemma-3-1b-pt")
    assert not is_pretrained("gemma-3-270m-it-Q4_K_M.gguf") and not is_pretrained("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert not is_pretrained("Meta-Llama-3.1-8B-Instruct") and not is_pretrained("mistral-7b")
    settings = load_settings(env={}, env_file=None)
    local = profile_for(settings, "gemma-3-270m-q4_k_m.gguf", 268_000_000)
    assert local.layout.transcript and local.small_model_repairs and local.name == "transcript (gemma)"
    assert not profile_for(settings, "gemma-3-270m-q4_k_m", None).layout.transcript  # a server takes chat messages
    forced = profile_for(
        load_settings(env={"LLM_PROFILE": "transcript"}, env_file=None), "SmolLM2-135M-Instruct", 135_000_000
    )
    assert forced.layout.transcript


@pytest.fixture(scope="module")
def gemma() -> LlamaCppBackend:
    return LlamaCppBackend(
        LlmOptions.from_settings(load_settings(env={"LLM_MODEL": "preset:gemma3-270m"}, env_file=None))
    )


def test_gemma_continues_the_transcript_with_one_line_of_its_own(gemma, persona) -> None:
    assert gemma.profile.layout.transcript
    situation = Situation("Alice is talking to you; reply to Alice.", short="", addressee="Alice")
    messages = build_messages(
        persona,
        lines(),
        situation=situation,
        budget_tokens=600,
        count_tokens=gemma.count_tokens,
        layout=gemma.profile.layout,
    )
    replies = []
    for seed in (1, 2, 3, 4):
        sampling = gemma.profile.sampling.replace(seed=seed)
        replies.append(
            "".join(gemma.stream(messages, max_tokens=40, stop=[], cancel=threading.Event(), sampling=sampling))
        )
    assert all("\n" not in reply for reply in replies), replies  # stopped at the end of its line
    assert all(not reply.strip().startswith(("Alice:", "Bob:")) for reply in replies), replies
    assert sum(any(ch.isalpha() for ch in reply) for reply in replies) >= 3, replies  # it does say something
