"""LLM backends behind one small interface: tokens stream out of a blocking iterator (run it in a thread).

- `LlamaCppBackend`: a local GGUF through llama-cpp-python, loaded once per process through
  `runtime.models.MODELS`; the chat template comes from the GGUF (a pretrained model continues a transcript
  instead, `brain.transcript`). One generation at a time per
  loaded model (a llama context holds one conversation); others wait for it, without compute.
- `OpenAiBackend`: any OpenAI-compatible server (llama.cpp server, vLLM, ...), streaming
  `/v1/chat/completions` through the `openai` SDK (`brain.openai_client`), asking for the server's
  prompt cache (`cache_prompt`): one request per reply evaluates only what is new.

Cancelling: set the `cancel` event. It is checked per token; llama.cpp's abort callback also
stops a long prompt evaluation, and the HTTP backend closes the response so a blocked read ends.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence
from urllib.parse import urlsplit

from runtime.models import MODELS, resolve_gguf
from runtime.errors import ModelLoadError
from runtime.settings import Settings
from brain.llm_options import LlmOptions
from brain.openai_client import LlmServerError, OpenAiChatClient
from brain.avoid_words import single_token_variants
from brain.profile import ModelProfile, Sampling, profile_for
from brain.transcript import LINE_STOPS, render_transcript

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
    profile: ModelProfile  # prompt layout and sampling that suit this model

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int,
        stop: Sequence[str],
        cancel: threading.Event,
        temperature: float | None = None,
        sampling: Sampling | None = None,
    ) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...


def make_backend(settings: Settings) -> LlmBackend:
    """The backend `settings.llm_backend` names (`llama_cpp` or `openai`), given only the LLM's options."""
    options = LlmOptions.from_settings(settings)
    if options.llm_backend == "openai":
        return OpenAiBackend(options)
    return LlamaCppBackend(options)


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
    log.info(
        "llama.cpp model %s loaded in %.2f s (n_ctx=%d, gpu_layers=%d)",
        os.path.basename(path),
        time.monotonic() - started,
        n_ctx,
        n_gpu_layers,
    )
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


def _sampling(sampling: Sampling, temperature: float | None) -> Sampling:
    return sampling if temperature is None else sampling.replace(temperature=temperature)


def _model_identity(llm: Any, path: str) -> tuple[str, int | None]:
    """(name for the model family: the GGUF's general.name / architecture / file name, parameter count)."""
    metadata = getattr(llm, "metadata", None) or {}
    name = " ".join(str(metadata.get(k, "")) for k in ("general.name", "general.basename", "general.architecture"))
    name = f"{name} {os.path.basename(path)}".strip()
    n_params = None
    try:
        import llama_cpp

        n_params = int(llm.n_params()) if hasattr(llm, "n_params") else int(llama_cpp.llama_model_n_params(llm.model))
    except Exception:  # another binding: the name decides
        n_params = None
    return name, n_params


def default_llm_threads() -> int:
    """All cores but one: llama.cpp's threads spin-wait, and on a busy core (STT, TTS, the receive
    worker) one preempted thread stalls every other one; measured 20x slower generation on 2 cores."""
    return max(1, (os.cpu_count() or 1) - 1)


class LlamaCppBackend:
    """A local GGUF model. `options.llm_model`: `embedded`, a path, or `hf:<repo>/<file>`."""

    name = "llama_cpp"
    local_prompt_cache = True  # the context keeps the last prompt's evaluation: evaluating one ahead pays

    def __init__(self, options: LlmOptions) -> None:
        path = str(resolve_gguf(options.llm_model))
        threads = options.llm_threads or default_llm_threads()
        key = f"llama_cpp:{path}:ctx={options.llm_context}:gpu={options.llm_gpu_layers}:threads={threads}"
        self._loaded: _LoadedLlama = MODELS.get(
            key,
            lambda: _load_llama(
                path, n_ctx=options.llm_context, n_gpu_layers=options.llm_gpu_layers, n_threads=threads
            ),
        )
        self.model_path = path
        self.model_name, n_params = _model_identity(self._loaded.llm, path)
        self.profile = profile_for(options, self.model_name, n_params)
        self.temperature = self.profile.sampling.temperature
        self.context_tokens = options.llm_context
        self._avoid_cache: dict[tuple[str, ...], dict[int, float]] = {}

    def count_tokens(self, text: str) -> int:
        if not text:
            return 0
        return len(self._loaded.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _avoided(self, words: tuple[str, ...]) -> dict[int, float]:
        """The logit bias that keeps `words` out of a reply (brain.avoid_words), computed once per word list."""
        if not words:
            return {}
        cache = self._avoid_cache
        if words not in cache:
            llm = self._loaded.llm
            cache[words] = single_token_variants(
                words, lambda text: llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            )
        return cache[words]

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int,
        stop: Sequence[str],
        cancel: threading.Event,
        temperature: float | None = None,
        sampling: Sampling | None = None,
    ) -> Iterator[str]:
        sampling = _sampling(sampling or self.profile.sampling, temperature)
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
                transcript = self.profile.layout.transcript
                create = loaded.llm.create_completion if transcript else loaded.llm.create_chat_completion
                prompt: dict[str, Any] = (
                    {"prompt": render_transcript(messages)} if transcript else {"messages": messages}
                )
                chunks = create(
                    **prompt,
                    stream=True,
                    max_tokens=max_tokens,
                    stop=[*stop, *LINE_STOPS] if transcript else (list(stop) or None),
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    top_k=sampling.top_k,
                    min_p=sampling.min_p,
                    repeat_penalty=sampling.repeat_penalty,
                    presence_penalty=sampling.presence_penalty,
                    frequency_penalty=sampling.frequency_penalty,
                    seed=sampling.seed,
                    logit_bias=self._avoided(sampling.avoid_words) or None,
                )
                for chunk in chunks:
                    if cancel.is_set():
                        return
                    choice = chunk["choices"][0]
                    text = choice.get("text") if transcript else choice.get("delta", {}).get("content")
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
    """Streams from `options.llm_base_url` + `/chat/completions` through the `openai` SDK
    (`brain.openai_client`): timeouts, retries with back-off on 429/5xx, LLM_API_KEY, cancellation that
    closes the stream."""

    name = "openai"
    local_prompt_cache = False  # the server keeps its own (`cache_prompt`)

    def __init__(
        self, options: LlmOptions, *, connect_timeout: float = 10.0, read_timeout: float | None = None
    ) -> None:
        url = urlsplit(options.llm_base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ModelLoadError(f"LLM_BASE_URL={options.llm_base_url!r}: expected http(s)://host[:port]/v1")
        self.base_url = options.llm_base_url.rstrip("/")
        self.model = options.llm_model
        self.model_name = options.llm_model
        self.profile = profile_for(options, options.llm_model)
        self.temperature = self.profile.sampling.temperature
        self.context_tokens = options.llm_context
        self._client = OpenAiChatClient(
            self.base_url,
            options.llm_api_key,
            connect_timeout=connect_timeout,
            read_timeout=options.llm_timeout_s if read_timeout is None else read_timeout,
            max_retries=options.llm_max_retries,
        )

    def count_tokens(self, text: str) -> int:
        from brain.prompt import estimate_tokens

        return estimate_tokens(text)

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int,
        stop: Sequence[str],
        cancel: threading.Event,
        temperature: float | None = None,
        sampling: Sampling | None = None,
    ) -> Iterator[str]:
        sampling = _sampling(sampling or self.profile.sampling, temperature)
        yield ""  # remote compute: ready at once
        if cancel.is_set():
            return
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "presence_penalty": sampling.presence_penalty,
            "frequency_penalty": sampling.frequency_penalty,
            # Not in OpenAI's API, understood by llama.cpp's and vLLM's servers (others ignore them).
            "top_k": sampling.top_k,
            "min_p": sampling.min_p,
            "repeat_penalty": sampling.repeat_penalty,
            "cache_prompt": True,  # llama.cpp's server: reuse the longest cached prefix of this prompt
        }
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if stop:
            body["stop"] = list(stop)[:MAX_HTTP_STOP_STRINGS]
        try:
            yield from self._client.stream(body, cancel)
        except LlmServerError as exc:
            raise LlmError(str(exc)) from None
