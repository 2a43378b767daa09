"""The llama-cpp-python backend on the embedded SmolLM2 GGUF: streaming, cancelling, sharing."""

from __future__ import annotations

import random
import threading
import time

import pytest

from runtime.errors import ModelLoadError
from runtime.settings import load_settings
from brain.llm import LlamaCppBackend, make_backend
from brain.llm_options import LlmOptions

MESSAGES = [
    {"role": "system", "content": "You are Juniper, a cheerful friend in a voice chat. Answer in two short sentences."},
    {"role": "user", "content": "Alice: What is your favourite food?"},
]


@pytest.fixture(scope="module")
def backend() -> LlamaCppBackend:
    b = make_backend(load_settings(env={}, env_file=None))
    assert isinstance(b, LlamaCppBackend)
    return b


def collect(stream, stop_after: int | None = None, cancel: threading.Event | None = None) -> list[str]:
    out = []
    for token in stream:
        out.append(token)
        if stop_after is not None and cancel is not None and len([t for t in out if t]) == stop_after:
            cancel.set()
    return out


def test_streams_tokens_after_a_ready_marker(backend) -> None:
    cancel = threading.Event()
    tokens = collect(backend.stream(MESSAGES, max_tokens=24, stop=[], cancel=cancel, temperature=0.0))
    assert tokens[0] == ""  # ready marker, before any compute
    text = "".join(tokens)
    assert len([t for t in tokens if t]) >= 3
    assert any(ch.isalpha() for ch in text)
    assert backend.count_tokens(text) <= 24 + 2


def test_the_model_is_loaded_once_and_shared(backend) -> None:
    again = LlamaCppBackend(LlmOptions.from_settings(load_settings(env={}, env_file=None)))
    assert again._loaded is backend._loaded


def test_cancel_stops_generation_within_100_ms(backend) -> None:
    cancel = threading.Event()
    stream = backend.stream(MESSAGES, max_tokens=200, stop=[], cancel=cancel, temperature=0.8)
    produced = []
    cancelled_at = None
    for token in stream:
        if token:
            produced.append(token)
        if len(produced) == 3 and cancelled_at is None:
            cancelled_at = time.monotonic()
            cancel.set()
    ended = time.monotonic()
    assert cancelled_at is not None
    assert len(produced) == 3  # nothing after the cancel
    assert ended - cancelled_at < 0.1


def test_cancel_aborts_a_long_prompt_evaluation(backend) -> None:
    rng = random.Random(7)
    words = " ".join(
        rng.choice(["lake", "book", "plant", "river", "window", "music", "garden", "stone"]) + str(rng.randint(0, 999))
        for _ in range(450)
    )
    messages = [{"role": "system", "content": "Summarize."}, {"role": "user", "content": words}]
    assert backend.count_tokens(words) > 1000
    cancel = threading.Event()
    stream = backend.stream(messages, max_tokens=20, stop=[], cancel=cancel)
    assert next(stream) == ""
    timer = threading.Timer(0.15, cancel.set)
    started = time.monotonic()
    timer.start()
    rest = list(stream)
    ended = time.monotonic()
    assert rest == []  # aborted before the first token
    assert ended - (started + 0.15) < 0.1, (
        f"prompt evaluation went on for {ended - started - 0.15:.3f} s after the cancel"
    )
    # The model is fine afterwards.
    tokens = collect(backend.stream(MESSAGES, max_tokens=8, stop=[], cancel=threading.Event()))
    assert "".join(tokens).strip()


def test_one_generation_at_a_time_per_model(backend) -> None:
    """Per llama.cpp instance (LLM_INSTANCES of them): with every one busy, the next generation waits."""
    first_cancel, second_cancel = threading.Event(), threading.Event()
    others = [
        backend.stream(MESSAGES, max_tokens=2, stop=[], cancel=threading.Event()) for _ in backend.pool.instances[1:]
    ]
    for other in others:
        assert next(other) == ""
    first = backend.stream(MESSAGES, max_tokens=8, stop=[], cancel=first_cancel)
    assert next(first) == ""  # the first stream owns the last free instance now
    got_ready = threading.Event()

    def second() -> None:
        stream = backend.stream(MESSAGES, max_tokens=4, stop=[], cancel=second_cancel)
        if next(stream) == "":
            got_ready.set()
        list(stream)

    worker = threading.Thread(target=second)
    worker.start()
    assert not got_ready.wait(0.3)  # waits while the first holds the model
    list(first)  # finishing the first frees the model
    assert got_ready.wait(5)
    worker.join(10)
    for other in others:
        list(other)


def test_waiting_for_the_model_can_be_cancelled(backend) -> None:
    holders = [
        backend.stream(MESSAGES, max_tokens=4, stop=[], cancel=threading.Event()) for _ in backend.pool.instances
    ]
    for holder in holders:
        assert next(holder) == ""
    cancel = threading.Event()
    cancel.set()
    waiting = backend.stream(MESSAGES, max_tokens=4, stop=[], cancel=cancel)
    started = time.monotonic()
    assert list(waiting) == []
    assert time.monotonic() - started < 0.1
    for holder in holders:
        holder.close()


def test_missing_or_bad_gguf_is_a_clear_model_load_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="no such GGUF file"):
        LlamaCppBackend(
            LlmOptions.from_settings(load_settings(env={"LLM_MODEL": str(tmp_path / "nope.gguf")}, env_file=None))
        )
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf at all" * 100)
    with pytest.raises(ModelLoadError, match="bogus.gguf"):
        LlamaCppBackend(LlmOptions.from_settings(load_settings(env={"LLM_MODEL": str(bogus)}, env_file=None)))


def test_llama_cpp_housekeeping_goes_to_logging_not_stderr(backend, capfd, caplog) -> None:
    """A generation cut short, then a prompt sharing its prefix: llama.cpp trims its cache and says so at
    error level on stderr ("removing memory module entries"), which scribbled over the demo's display."""
    system = [{"role": "system", "content": "You are a friendly bot who talks about food and weather all day."}]
    first = system + [{"role": "user", "content": "Hello there, how are you today? Tell me about soup."}]
    longer = system + [{"role": "user", "content": "Hello there, how are you today? Tell me about soup and bread."}]
    capfd.readouterr()
    with caplog.at_level("DEBUG", logger="llama.cpp"):
        cancel = threading.Event()
        collect(backend.stream(first, max_tokens=20, stop=[], cancel=cancel), stop_after=4, cancel=cancel)
        collect(backend.stream(longer, max_tokens=2, stop=[], cancel=threading.Event()))
    assert "removing memory" not in capfd.readouterr().err
    assert any("removing memory" in r.getMessage() for r in caplog.records if r.name == "llama.cpp")


def test_no_seed_set_samples_afresh_each_time(backend) -> None:
    """Each process (and each instance) starts llama-cpp-python's seed chain at the same constant: left to it,
    the first reply of every run to the same words would be the same. With no LLM_SEED each reply gets its own."""
    replies = []
    for _ in range(4):
        for inst in backend.pool.instances:
            inst.llm.set_seed(4242)  # the state a fresh process starts every instance in
        tokens = backend.stream(MESSAGES, max_tokens=12, stop=[], cancel=threading.Event(), temperature=1.5)
        replies.append("".join(tokens))
    assert len(set(replies[1:])) >= 2, replies  # the first evaluates the prompt; the others find it cached
