"""The OpenAI-compatible backend against a real server: llama-cpp-python's own, on the embedded GGUF."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from benchmarks.llama_server import LlamaServer, free_port
from bot.models import embedded_gguf_path
from bot.settings import load_settings
from brain.llm import LlmError, OpenAiBackend, make_backend

pytest.importorskip("uvicorn", reason="llama-cpp-python[server] extras are in requirements-dev.txt")

MESSAGES = [
    {"role": "system", "content": "You are Juniper, a cheerful friend in a voice chat. Answer in two short sentences."},
    {"role": "user", "content": "Alice: What is your favourite season?"},
]


@pytest.fixture(scope="module")
def server_url():
    with LlamaServer(embedded_gguf_path(), alias="smollm2") as server:
        yield server.url


@pytest.fixture(scope="module")
def backend(server_url) -> OpenAiBackend:
    settings = load_settings(env={"LLM_BACKEND": "openai", "LLM_BASE_URL": server_url, "LLM_MODEL": "smollm2"}, env_file=None)
    b = make_backend(settings)
    assert isinstance(b, OpenAiBackend)
    return b


def test_streams_tokens_over_sse(backend) -> None:
    tokens = list(backend.stream(MESSAGES, max_tokens=24, stop=["\nAlice:"], cancel=threading.Event(), temperature=0.0))
    assert tokens[0] == ""
    real = [t for t in tokens if t]
    assert len(real) >= 3  # streamed piece by piece, not one blob
    assert any(ch.isalpha() for ch in "".join(real))


def test_same_answer_as_the_in_process_backend_at_temperature_zero(backend) -> None:
    from brain.llm import LlamaCppBackend

    local = LlamaCppBackend(load_settings(env={}, env_file=None))
    remote_text = "".join(backend.stream(MESSAGES, max_tokens=12, stop=[], cancel=threading.Event(), temperature=0.0))
    local_text = "".join(local.stream(MESSAGES, max_tokens=12, stop=[], cancel=threading.Event(), temperature=0.0))
    assert remote_text.strip() and remote_text.split()[:3] == local_text.split()[:3]


def test_cancel_mid_stream_closes_it_within_100_ms(backend) -> None:
    cancel = threading.Event()
    produced = []
    cancelled_at = None
    for token in backend.stream(MESSAGES, max_tokens=200, stop=[], cancel=cancel, temperature=0.9):
        if token:
            produced.append(token)
        if len(produced) == 2 and cancelled_at is None:
            cancelled_at = time.monotonic()
            cancel.set()
    assert cancelled_at is not None and len(produced) == 2
    assert time.monotonic() - cancelled_at < 0.1
    # The server is still fine.
    assert "".join(backend.stream(MESSAGES, max_tokens=6, stop=[], cancel=threading.Event())).strip()


def test_cancel_while_waiting_for_the_first_token(backend) -> None:
    rng = random.Random(3)
    words = " ".join(rng.choice(["lake", "book", "plant", "river", "window"]) + str(rng.randint(0, 999)) for _ in range(250))
    messages = [{"role": "system", "content": "Summarize."}, {"role": "user", "content": words}]
    cancel = threading.Event()
    stream = backend.stream(messages, max_tokens=20, stop=[], cancel=cancel)
    assert next(stream) == ""
    timer = threading.Timer(0.1, cancel.set)
    started = time.monotonic()
    timer.start()
    got = list(stream)  # the server is still evaluating the prompt: the read is blocked until the socket is shut
    ended = time.monotonic()
    assert ended - started < 0.1 + 0.1, f"stream ended {ended - started - 0.1:.3f} s after the cancel"
    assert cancel.is_set() or got  # ended by the cancel (or, on a very fast machine, the reply was already done)


def test_http_errors_are_clear(backend) -> None:
    with pytest.raises(LlmError, match=r"HTTP [45]\d\d"):
        list(backend.stream([{"role": "nobody", "content": 5}], max_tokens=5, stop=[], cancel=threading.Event()))


def test_unreachable_server_is_a_clear_error() -> None:
    settings = load_settings(env={"LLM_BACKEND": "openai", "LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"}, env_file=None)
    backend = OpenAiBackend(settings)
    with pytest.raises(LlmError, match="cannot reach the LLM server"):
        list(backend.stream(MESSAGES, max_tokens=5, stop=[], cancel=threading.Event()))


def test_sse_parsing_handles_comments_multiline_data_and_errors() -> None:
    from brain.llm import _sse_tokens

    class Fake:
        def __init__(self, lines: list[bytes]) -> None:
            self.lines = lines

        def readline(self) -> bytes:
            return self.lines.pop(0) if self.lines else b""

    def event(obj: dict) -> bytes:
        return b"data: " + json.dumps(obj).encode() + b"\n"

    chunk = {"choices": [{"delta": {"content": "Hi"}}]}
    lines = [b": keep-alive\n", b"\n", event(chunk), b"\n", b"event: message\n", event({"choices": [{"delta": {"content": " there"}}]}), b"\n", b"data: [DONE]\n", b"\n", event(chunk), b"\n"]
    assert list(_sse_tokens(Fake(lines), threading.Event())) == ["Hi", " there"]
    with pytest.raises(LlmError, match="overloaded"):
        list(_sse_tokens(Fake([event({"error": {"message": "overloaded"}}), b"\n"]), threading.Event()))
