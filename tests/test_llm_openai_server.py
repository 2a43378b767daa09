"""The OpenAI-compatible backend against a real server: llama-cpp-python's own, on the embedded GGUF."""

from __future__ import annotations

import http.client
import json
import random
import socket
import subprocess
import sys
import threading
import time

import pytest

from bot.models import embedded_gguf_path
from bot.settings import load_settings
from brain.llm import LlmError, OpenAiBackend, make_backend

pytest.importorskip("uvicorn", reason="llama-cpp-python[server] extras are in requirements-dev.txt")

MESSAGES = [
    {"role": "system", "content": "You are Juniper, a cheerful friend in a voice chat. Answer in two short sentences."},
    {"role": "user", "content": "Alice: What is your favourite season?"},
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("llm-server") / "server.log"
    log_file = open(log_path, "wb")  # a file, not a pipe: llama.cpp's load log would fill a pipe and stall the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_gguf_path()), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--model_alias", "smollm2", "--verbose", "false"],
        stdout=log_file, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {log_path.read_text(errors='replace')[-800:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/v1/models")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not come up in 90 s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()


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


@pytest.mark.asyncio
async def test_one_request_per_reply_with_the_servers_prompt_cache(server_url) -> None:
    """With an LLM server, partials cost no requests: no prefill per partial, the server's prompt cache
    (`cache_prompt`) reuses the shared prefix. Requests per turn: one reply, one request."""
    import asyncio

    from audio.types import SpeakingEvent, Utterance
    from bot.scheduler import ModelScheduler
    from bot.voice_session import VoiceSession
    from brain.responder import Responder
    from conversation.decision import Policy
    from tests.fixtures_prompter_session import PacedPlayer, RecordingListener
    from tests.fixtures_thinking import juniper

    settings = load_settings(env={"LLM_BACKEND": "openai", "LLM_BASE_URL": server_url, "LLM_MODEL": "smollm2",
                                  "LLM_MAX_TOKENS": "24", "LLM_TEMPERATURE": "0"}, env_file=None)
    backend = make_backend(settings)
    bodies: list[dict] = []
    connect = backend._connection

    def counting_connection():
        conn = connect()
        request = conn.request

        def counted(method, url, body=None, headers={}, **kw):
            bodies.append(json.loads(body))
            return request(method, url, body=body, headers=headers, **kw)

        conn.request = counted
        return conn

    backend._connection = counting_connection
    responder = Responder(settings, llm=backend, scheduler=ModelScheduler("exclusive"))
    assert not responder.prefill_pays
    results = []
    respond = responder.respond

    async def recording_respond(*args, **kwargs):
        results.append(await respond(*args, **kwargs))
        return results[-1]

    responder.respond = recording_respond
    player = PacedPlayer()
    session = VoiceSession(settings=settings, persona=juniper(), responder=responder, player=player, guild_id=3,
                           bot_user_id=999, members=((1, "Alice"), (2, "Bob")), make_listener=RecordingListener,
                           policy=Policy(reply_silence_s=0.05, greet_members=False, final_timeout_s=1.0), tick_s=0.01)
    await session.start()
    try:
        for turn, question in enumerate(("Juniper, what is your favourite season?", "Juniper, and which colour?")):
            start = time.monotonic()
            session.on_speaking(SpeakingEvent(1, True, start))
            words = question.split()
            for n in range(1, len(words) + 1):  # a partial per word: none of them becomes a request
                session.on_utterance(Utterance(1, "Alice", " ".join(words[:n]), start, time.monotonic(), False, 0.9, {}))
                await asyncio.sleep(0.05)
            end = time.monotonic()
            session.on_speaking(SpeakingEvent(1, False, end))
            session.on_utterance(Utterance(1, "Alice", question, start, end, True, 0.9, {"speech_end": end}))
            deadline = time.monotonic() + 120
            while len([t for t in session.traces if t.outcome == "spoken"]) < turn + 1:
                assert time.monotonic() < deadline, session.traces
                await asyncio.sleep(0.05)
            while session.room.turn is not None:
                await asyncio.sleep(0.05)
    finally:
        await session.close()
        player.close()
    assert session.prefill.stats.requested == 0
    # a request per reply, and one more only when the reply said nothing speakable and was sampled again
    assert len(results) == 2 and len(bodies) == sum(r.attempts for r in results)
    finals = [body["messages"][-1]["content"] for body in bodies]
    assert all(text.endswith(("season?", "colour?")) for text in finals), finals  # none for a partial
    assert all(body.get("cache_prompt") is True for body in bodies)
    print(f"LLM requests per turn: {len(bodies) / len(results):.1f} (attempts {[r.attempts for r in results]})")
