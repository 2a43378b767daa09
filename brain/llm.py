"""LLM backends behind one small interface: tokens stream out of a blocking iterator (run it in a thread).

- `LlamaCppBackend`: a local GGUF through llama-cpp-python, loaded once per process through
  `bot.models.MODELS`; the chat template comes from the GGUF. One generation at a time per
  loaded model (a llama context holds one conversation); others wait for it, without compute.
- `OpenAiBackend`: any OpenAI-compatible server (llama.cpp server, vLLM, ...), streaming
  `/v1/chat/completions` over Server-Sent Events with `http.client`, no extra packages. With
  LLM_CACHE_PROMPT it asks for the server's prompt cache (`cache_prompt`), so one request per reply
  evaluates only what is new.

Cancelling: set the `cancel` event. It is checked per token; llama.cpp's abort callback also
stops a long prompt evaluation, and the HTTP backend shuts its socket so a blocked read ends.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence
from urllib.parse import urlsplit

from bot.models import MODELS, ModelLoadError, resolve_gguf
from bot.settings import Settings

log = logging.getLogger(__name__)

MAX_HTTP_STOP_STRINGS = 4  # the OpenAI API accepts at most four


class LlmError(RuntimeError):
    """A generation failed (server unreachable, bad response, model error). One clear line."""


class LlmBackend(Protocol):
    """What the responder needs from an LLM.

    `stream` is blocking: iterate it in a worker thread. Its FIRST item is an empty string,
    yielded once the backend is ready to compute for this request (e.g. the local model is
    free) and before any compute, so a caller can wait for the model outside a scheduler
    slot. Consumers skip empty strings.
    """

    name: str

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int,
        stop: Sequence[str],
        cancel: threading.Event,
        temperature: float | None = None,
    ) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...


def make_backend(settings: Settings) -> LlmBackend:
    """The backend `settings.llm_backend` names (`llama_cpp` or `openai`)."""
    if settings.llm_backend == "openai":
        return OpenAiBackend(settings)
    return LlamaCppBackend(settings)


# --------------------------------------------------------------------------------------
# llama-cpp-python


@dataclass
class _LoadedLlama:
    """A Llama shared by every backend object using the same GGUF and settings."""

    llm: Any
    path: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    active_cancel: threading.Event | None = None
    abort_callback: Any = None  # keep the ctypes callback alive while the context lives


_llama_log_callback: Any = None  # kept alive while llama.cpp may call it


def _route_llama_logs() -> None:
    """llama.cpp prints housekeeping straight to stderr at error level (e.g. "removing memory module
    entries" each time a cached prompt prefix is reused), which would scribble over the demo's display.
    Its messages go to the `llama.cpp` logger at DEBUG instead; real failures still raise."""
    global _llama_log_callback
    if _llama_log_callback is not None:
        return
    import ctypes

    import llama_cpp

    llama_logger = logging.getLogger("llama.cpp")

    @llama_cpp.llama_log_callback
    def callback(_level: int, text: bytes, _user_data: Any) -> None:
        message = text.decode("utf-8", "replace").rstrip()
        if message:
            llama_logger.debug("%s", message)

    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    _llama_log_callback = callback


def _load_llama(path: str, *, n_ctx: int, n_gpu_layers: int, n_threads: int | None) -> _LoadedLlama:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise ModelLoadError(f"llama-cpp-python is not installed ({exc}): pip install -r requirements.txt") from None
    _route_llama_logs()
    started = time.monotonic()
    try:
        llm = Llama(
            model_path=path,
            n_ctx=n_ctx,
            n_gpu_layers=n_gpu_layers,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            verbose=False,
        )
    except Exception as exc:  # llama.cpp reports a bad file as ValueError/RuntimeError
        raise ModelLoadError(f"cannot load GGUF {path}: {type(exc).__name__}: {exc}") from None
    loaded = _LoadedLlama(llm=llm, path=path)
    _install_abort_callback(loaded)
    log.info("llama.cpp model %s loaded in %.2f s (n_ctx=%d, gpu_layers=%d)", os.path.basename(path), time.monotonic() - started, n_ctx, n_gpu_layers)
    return loaded


def _install_abort_callback(loaded: _LoadedLlama) -> None:
    """Let a cancel event abort llama_decode (a long prompt evaluation) between graph nodes."""
    try:
        import llama_cpp

        def should_abort(_data: Any) -> bool:
            cancel = loaded.active_cancel
            return bool(cancel is not None and cancel.is_set())

        callback = llama_cpp.ggml_abort_callback(should_abort)
        llama_cpp.llama_set_abort_callback(loaded.llm._ctx.ctx, callback, None)
        loaded.abort_callback = callback
    except Exception as exc:  # an older/newer binding without it: per-token cancel still works
        log.debug("llama.cpp abort callback unavailable: %s", exc)


def default_llm_threads() -> int:
    """All cores but one: llama.cpp's threads spin-wait, and on a busy core (STT, TTS, the receive
    worker) one preempted thread stalls every other one; measured 20x slower generation on 2 cores."""
    return max(1, (os.cpu_count() or 1) - 1)


class LlamaCppBackend:
    """A local GGUF model. `settings.llm_model`: `embedded`, a path, or `hf:<repo>/<file>`."""

    name = "llama_cpp"
    local_prompt_cache = True  # the context keeps the last prompt's evaluation: evaluating one ahead pays

    def __init__(self, settings: Settings) -> None:
        path = str(resolve_gguf(settings.llm_model))
        threads = settings.llm_threads or default_llm_threads()
        key = f"llama_cpp:{path}:ctx={settings.llm_context}:gpu={settings.llm_gpu_layers}:threads={threads}"
        self._loaded: _LoadedLlama = MODELS.get(
            key,
            lambda: _load_llama(path, n_ctx=settings.llm_context, n_gpu_layers=settings.llm_gpu_layers, n_threads=threads),
        )
        self.temperature = settings.llm_temperature
        self.frequency_penalty = settings.llm_frequency_penalty
        self.context_tokens = settings.llm_context
        self.model_path = path

    def count_tokens(self, text: str) -> int:
        if not text:
            return 0
        return len(self._loaded.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int,
        stop: Sequence[str],
        cancel: threading.Event,
        temperature: float | None = None,
    ) -> Iterator[str]:
        loaded = self._loaded
        while not loaded.lock.acquire(timeout=0.02):  # another generation owns the context
            if cancel.is_set():
                return
        chunks = None
        try:
            if cancel.is_set():
                return
            yield ""  # ready: the model is ours, nothing computed yet
            if cancel.is_set():
                return
            loaded.active_cancel = cancel
            try:
                chunks = loaded.llm.create_chat_completion(
                    messages=messages,
                    stream=True,
                    max_tokens=max_tokens,
                    stop=list(stop) or None,
                    temperature=self.temperature if temperature is None else temperature,
                    frequency_penalty=self.frequency_penalty,
                )
                for chunk in chunks:
                    if cancel.is_set():
                        return
                    choice = chunk["choices"][0]
                    text = choice.get("delta", {}).get("content")
                    if text:
                        yield text
            except RuntimeError as exc:
                if cancel.is_set():
                    return  # llama_decode aborted by the cancel event
                raise LlmError(f"llama.cpp generation failed: {exc}") from None
            except ValueError as exc:  # e.g. prompt longer than the context
                raise LlmError(f"llama.cpp rejected the request: {exc}") from None
        finally:
            loaded.active_cancel = None
            if chunks is not None:
                try:
                    chunks.close()
                except Exception:  # closing a half-run generator must never mask the real outcome
                    pass
            loaded.lock.release()


# --------------------------------------------------------------------------------------
# OpenAI-compatible HTTP server


class OpenAiBackend:
    """Streams from `settings.llm_base_url` + `/chat/completions` (Server-Sent Events)."""

    name = "openai"
    local_prompt_cache = False  # the server keeps its own (`cache_prompt`)

    def __init__(self, settings: Settings, *, connect_timeout: float = 10.0, read_timeout: float = 120.0) -> None:
        url = urlsplit(settings.llm_base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ModelLoadError(f"LLM_BASE_URL={settings.llm_base_url!r}: expected http(s)://host[:port]/v1")
        self.scheme = url.scheme
        self.host = url.hostname
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.path = (url.path or "") + "/chat/completions"
        self.model = settings.llm_model
        self.api_key = settings.llm_api_key
        self.cache_prompt = settings.llm_cache_prompt
        self.temperature = settings.llm_temperature
        self.frequency_penalty = settings.llm_frequency_penalty
        self.context_tokens = settings.llm_context
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout

    def count_tokens(self, text: str) -> int:
        from brain.prompt import estimate_tokens

        return estimate_tokens(text)

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.connect_timeout)

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int,
        stop: Sequence[str],
        cancel: threading.Event,
        temperature: float | None = None,
    ) -> Iterator[str]:
        yield ""  # remote compute: ready at once
        if cancel.is_set():
            return
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "max_tokens": max_tokens,
            "temperature": self.temperature if temperature is None else temperature,
            "frequency_penalty": self.frequency_penalty,
        }
        if stop:
            body["stop"] = list(stop)[:MAX_HTTP_STOP_STRINGS]
        if self.cache_prompt:
            body["cache_prompt"] = True  # llama.cpp server: reuse the longest cached prefix of this prompt
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        where = f"{self.scheme}://{self.host}:{self.port}{self.path}"
        conn = self._connection()
        finished = threading.Event()
        watcher = threading.Thread(target=_close_on_cancel, args=(conn, cancel, finished), name="llm-http-cancel", daemon=True)
        try:
            try:
                conn.request("POST", self.path, body=json.dumps(body).encode("utf-8"), headers=headers)
                if conn.sock is not None:
                    conn.sock.settimeout(self.read_timeout)
                watcher.start()
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                if cancel.is_set():
                    return
                raise LlmError(f"cannot reach the LLM server at {where}: {exc}") from None
            if response.status != 200:
                detail = response.read(500).decode("utf-8", "replace").strip().replace("\n", " ")
                raise LlmError(f"LLM server {where} answered HTTP {response.status}: {detail}")
            try:
                yield from _sse_tokens(response, cancel)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                if cancel.is_set():
                    return
                raise LlmError(f"LLM stream from {where} broke: {type(exc).__name__}: {exc}") from None
        finally:
            finished.set()
            conn.close()


def _close_on_cancel(conn: http.client.HTTPConnection, cancel: threading.Event, finished: threading.Event) -> None:
    """Shut the socket when `cancel` is set, so a read blocked on the server ends at once."""
    while not finished.is_set():
        if cancel.wait(0.02):
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return


def _sse_tokens(response: http.client.HTTPResponse, cancel: threading.Event) -> Iterator[str]:
    """Content deltas of an OpenAI chat-completions event stream."""
    data_lines: list[str] = []
    while not cancel.is_set():
        raw = response.readline()
        if not raw:
            return  # server closed the stream
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith(":"):
            continue  # SSE comment / keep-alive
        if line.startswith("data:"):
            data_lines.append(line[5:].lstrip())
            continue
        if line or not data_lines:
            continue  # other fields (event:, id:) or stray blank lines
        data = "\n".join(data_lines)
        data_lines = []
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            error = event["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise LlmError(f"LLM server error: {message}")
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            if text is None:
                text = choice.get("text")  # plain completions-style servers
            if text and not cancel.is_set():
                yield text
