"""The OpenAI-compatible backend (the `openai` SDK) against a real server: llama-cpp-python's own, on the
embedded GGUF. Retries, the API key and timeouts go through a small HTTP proxy in front of that server, which
answers 503/429 or stalls when a test asks it to and otherwise passes the real server's stream through."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time

import aiohttp
import pytest
from aiohttp import web

from simulator.llama_server import LlamaServer, free_port
from runtime.models import embedded_gguf_path
from runtime.settings import load_settings
from brain.llm import LlmError, OpenAiBackend, make_backend
from brain.llm_options import LlmOptions

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
    settings = load_settings(
        env={"LLM_BACKEND": "openai", "LLM_BASE_URL": server_url, "LLM_MODEL": "smollm2"}, env_file=None
    )
    b = make_backend(settings)
    assert isinstance(b, OpenAiBackend)
    return b


def test_streams_tokens(backend) -> None:
    tokens = list(backend.stream(MESSAGES, max_tokens=24, stop=["\nAlice:"], cancel=threading.Event(), temperature=0.0))
    assert tokens[0] == ""
    real = [t for t in tokens if t]
    assert len(real) >= 3  # streamed piece by piece, not one blob
    assert any(ch.isalpha() for ch in "".join(real))


def test_same_answer_as_the_in_process_backend_at_temperature_zero(backend) -> None:
    from brain.llm import LlamaCppBackend

    local = LlamaCppBackend(LlmOptions.from_settings(load_settings(env={}, env_file=None)))
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
    words = " ".join(
        rng.choice(["lake", "book", "plant", "river", "window"]) + str(rng.randint(0, 999)) for _ in range(250)
    )
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
    settings = load_settings(
        env={"LLM_BACKEND": "openai", "LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"}, env_file=None
    )
    backend = OpenAiBackend(LlmOptions.from_settings(settings))
    with pytest.raises(LlmError, match="cannot reach the LLM server"):
        list(backend.stream(MESSAGES, max_tokens=5, stop=[], cancel=threading.Event()))


class Proxy:
    """aiohttp in its own thread: `fail` statuses are answered first (one per request), then requests go to the
    real server, after `stall_s`; every request's Authorization header is kept."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = free_port()
        self.fail: list[int] = []
        self.stall_s = 0.0
        self.seen: list[tuple[float, str | None, int]] = []  # (time, Authorization, status answered)
        self.bodies: list[dict] = []  # the JSON body of every request passed to the server
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/v1/{tail:.*}", self._handle)
        self._runner = runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> "Proxy":
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        if self.fail:
            status = self.fail.pop(0)
            self.seen.append((time.monotonic(), auth, status))
            headers = {"Retry-After": "0"} if status == 429 else {}
            return web.json_response({"error": {"message": "busy, try again"}}, status=status, headers=headers)
        self.seen.append((time.monotonic(), auth, 200))
        if self.stall_s:
            await asyncio.sleep(self.stall_s)
        body = await request.read()
        if body:
            self.bodies.append(json.loads(body))
        async with aiohttp.ClientSession() as session:
            async with session.request(
                request.method,
                f"{self.upstream}/{request.match_info['tail']}",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as upstream:
                response = web.StreamResponse(
                    status=upstream.status, headers={"Content-Type": upstream.headers.get("Content-Type", "")}
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response


@pytest.fixture(scope="module")
def proxy(server_url):
    p = Proxy(server_url).start()
    yield p
    p.stop()


def proxied(proxy: Proxy, **env: str) -> OpenAiBackend:
    settings = load_settings(
        env={"LLM_BACKEND": "openai", "LLM_BASE_URL": proxy.url, "LLM_MODEL": "smollm2", **env}, env_file=None
    )
    b = make_backend(settings)
    assert isinstance(b, OpenAiBackend)
    return b


def test_retries_with_back_off_on_503_and_429_then_streams(proxy) -> None:
    proxy.seen.clear()
    proxy.fail = [503, 429]
    text = "".join(
        proxied(proxy, LLM_MAX_RETRIES="2").stream(
            MESSAGES, max_tokens=8, stop=[], cancel=threading.Event(), temperature=0.0
        )
    )
    assert text.strip()
    assert [status for _, _, status in proxy.seen] == [503, 429, 200]
    assert proxy.seen[1][0] - proxy.seen[0][0] >= 0.3  # backed off after the 503 (the SDK starts at ~0.5 s, jittered)


def test_gives_up_after_the_retries_with_a_clear_error(proxy) -> None:
    proxy.seen.clear()
    proxy.fail = [503, 503]
    with pytest.raises(LlmError, match=r"answered HTTP 503: busy, try again"):
        list(proxied(proxy, LLM_MAX_RETRIES="1").stream(MESSAGES, max_tokens=5, stop=[], cancel=threading.Event()))
    assert len(proxy.seen) == 2 and not proxy.fail


def test_api_key_goes_as_a_bearer_token(proxy) -> None:
    proxy.seen.clear()
    list(proxied(proxy, LLM_API_KEY="sk-test-123").stream(MESSAGES, max_tokens=3, stop=[], cancel=threading.Event()))
    assert proxy.seen[-1][1] == "Bearer sk-test-123"


def test_a_silent_server_times_out_with_a_clear_error(proxy) -> None:
    proxy.stall_s = 3.0
    try:
        started = time.monotonic()
        with pytest.raises(LlmError, match=r"sent nothing for 1 s"):
            list(
                proxied(proxy, LLM_TIMEOUT_S="1", LLM_MAX_RETRIES="0").stream(
                    MESSAGES, max_tokens=3, stop=[], cancel=threading.Event()
                )
            )
        assert time.monotonic() - started < 2.5
    finally:
        proxy.stall_s = 0.0


@pytest.mark.asyncio
async def test_one_request_per_reply_with_the_servers_prompt_cache(proxy) -> None:
    """With an LLM server, partials cost no requests: no prefill per partial, the server's prompt cache
    (`cache_prompt`) reuses the shared prefix. Requests per turn: one reply, one request."""
    from audio.types import SpeakingEvent, Utterance
    from runtime.scheduler import ModelScheduler
    from bot.voice_session import VoiceSession
    from brain.responder import Responder
    from conversation.decision import Policy
    from tests.fixtures_prompter_session import PacedPlayer, RecordingListener
    from tests.fixtures_thinking import juniper

    settings = load_settings(
        env={
            "LLM_BACKEND": "openai",
            "LLM_BASE_URL": proxy.url,
            "LLM_MODEL": "smollm2",
            "LLM_MAX_TOKENS": "24",
            "LLM_TEMPERATURE": "0",
        },
        env_file=None,
    )
    backend = make_backend(settings)
    proxy.bodies.clear()
    bodies = proxy.bodies  # every request the server got, as sent
    responder = Responder.from_settings(settings, llm=backend, scheduler=ModelScheduler("exclusive"))
    assert not responder.prefill_pays
    results = []
    respond = responder.respond

    async def recording_respond(*args, **kwargs):
        results.append(await respond(*args, **kwargs))
        return results[-1]

    responder.respond = recording_respond
    player = PacedPlayer()
    session = VoiceSession(
        settings=settings,
        persona=juniper(),
        responder=responder,
        player=player,
        guild_id=3,
        bot_user_id=999,
        members=((1, "Alice"), (2, "Bob")),
        make_listener=RecordingListener,
        policy=Policy(reply_silence_s=0.05, greet_members=False, final_timeout_s=1.0),
        tick_s=0.01,
    )
    await session.start()
    try:
        for turn, question in enumerate(("Juniper, what is your favourite season?", "Juniper, and which colour?")):
            start = time.monotonic()
            session.on_speaking(SpeakingEvent(1, True, start))
            words = question.split()
            for n in range(1, len(words) + 1):  # a partial per word: none of them becomes a request
                session.on_utterance(
                    Utterance(1, "Alice", " ".join(words[:n]), start, time.monotonic(), False, 0.9, {})
                )
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
