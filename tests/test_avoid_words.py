"""Words a small model reaches for out of place (an apology to "what snacks should we bring?"), kept out of
its replies unless the member's line calls for sympathy: the rule, and the logit bias on the real SmolLM2."""

from __future__ import annotations

import threading

import pytest

from brain.avoid_words import calls_for_sympathy, single_token_variants, words_to_avoid
from brain.llm import LlamaCppBackend, make_backend
from brain.profile import SMOLLM_AVOID_WORDS
from runtime.settings import load_settings


@pytest.mark.parametrize(
    "line",
    [
        "My dog died last night.",
        "I'm sorry I was late.",
        "I lost my job today.",
        "Ugh, rough day at work.",
        "My grandma is in the hospital.",
        "I feel so lonely lately.",
        "We broke up on Sunday.",
    ],
)
def test_sad_news_or_an_apology_calls_for_sympathy(line):
    assert calls_for_sympathy(line)
    assert words_to_avoid(SMOLLM_AVOID_WORDS, line) == ()


@pytest.mark.parametrize(
    "line",
    [
        "What snacks should we bring?",
        "I need something to read, any good books lately?",
        "Do you think it will rain this weekend?",
        "What should I cook tonight? I have eggs and rice.",
        "Who is the best player on the team?",
    ],
)
def test_ordinary_lines_do_not(line):
    assert not calls_for_sympathy(line)
    assert words_to_avoid(SMOLLM_AVOID_WORDS, line) == SMOLLM_AVOID_WORDS


def test_only_spellings_that_are_one_token_are_banned():
    pieces = {"sorry": [1, 2], " sorry": [3], "Sorry": [4], " Sorry": [5, 2]}
    assert single_token_variants(["sorry"], lambda text: pieces[text]) == {3: -100.0, 4: -100.0}


@pytest.fixture(scope="module")
def backend() -> LlamaCppBackend:
    b = make_backend(load_settings(env={}, env_file=None))
    assert isinstance(b, LlamaCppBackend)
    return b


def test_the_smollm_profile_avoids_apologies(backend):
    assert backend.profile.sampling.avoid_words == SMOLLM_AVOID_WORDS


def test_avoided_words_do_not_come_out_of_the_model(backend):
    """A prompt that makes SmolLM2 apologize: without the bias it says "sorry"; with it, never as a word-token."""
    messages = [
        {"role": "system", "content": "You are Juniper. Apologize to Bob in one short sentence."},
        {"role": "user", "content": "Bob: You forgot my birthday. Say you are sorry."},
    ]
    free = backend.profile.sampling.replace(avoid_words=(), seed=1, temperature=0.0)
    biased = free.replace(avoid_words=("sorry",))
    said = {}
    for name, sampling in (("free", free), ("biased", biased)):
        said[name] = "".join(
            backend.stream(messages, max_tokens=24, stop=[], cancel=threading.Event(), sampling=sampling)
        ).lower()
    assert "sorry" in said["free"], said
    assert " sorry" not in said["biased"] and not said["biased"].lstrip().startswith("sorry"), said
