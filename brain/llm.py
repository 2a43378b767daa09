"""LLM backends behind one small interface: tokens stream out of a blocking iterator (run it in a thread).

- `LlamaCppBackend`: a local GGUF through llama-cpp-python, loaded once per process through
  `runtime.models.MODELS`; the chat template comes from the GGUF (a pretrained model continues a transcript
  instead, `brain.transcript`). One generation at a time per loaded instance (a llama context holds one
  conversation); `LLM_INSTANCES` of them (`brain.llama_pool`), others wait for a free one, without compute.
- `OpenAiBackend`: any OpenAI-compatible server (llama.cpp server, vLLM, ...), streaming
  `/v1/chat/completions` through the `openai` SDK (`brain.openai_client`), asking for the server's
  prompt cache (`cache_prompt`): one request per reply evaluates only what is new.

Cancelling: set the `cancel` event. It is checked per token; llama.cpp's abort callback also
stops a long prompt evaluation, and the HTTP backend closes the response so a blocked read ends.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from typing import Any, Iterator, Protocol, Sequence
from urllib.parse import urlsplit

from runtime.models import resolve_gguf
from runtime.scheduler_policy import llm_instances, llm_on_gpu, resolve_policy
from runtime.errors import ModelLoadError
from runtime.settings import Settings
from brain.llama_pool import LlamaPool, LoadedLlama, instance_threads
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
    return LlamaCppBackend(options, policy=resolve_policy(settings)[0])


# --------------------------------------------------------------------------------------
# llama-cpp-python


def _sampling(sampling: Sampling, temperature: float | None) -> Sampling:
    return sampling if temperature is None else sampling.replace(temperature=temperature)


def _request_seed(seed: int | None) -> int:
    """The seed for one completion: the profile's, or a fresh random one.

    llama-cpp-python given no seed derives each completion's seed from the instance's last one, which starts at a
    constant: every process would sample its replies the same way, and the same words asked again on an instance
    whose seed was just set would get the same answer.
    """
    return seed if seed is not None else random.randrange(2**31)


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
    """llama.cpp threads of a single instance (LLM_THREADS=0): all cores but one (`brain.llama_pool.instance_threads`)."""
    return instance_threads(0, 1)


class LlamaCppBackend:
    """A local GGUF model. `options.llm_model`: `embedded`, a path, or `hf:<repo>/<file>`."""

    name = "llama_cpp"
    local_prompt_cache = True  # the context keeps the last prompt's evaluation: evaluating one ahead pays

    def __init__(self, options: LlmOptions, *, policy: str = "") -> None:
        """`policy`: the scheduler policy (resolved), which decides how many instances LLM_INSTANCES=0 means."""
        path = str(resolve_gguf(options.llm_model))
        size = llm_instances(options.llm_instances, llm_gpu=llm_on_gpu(options), policy=policy)
        self.pool = LlamaPool(
            path,
            n_ctx=options.llm_context,
            n_gpu_layers=options.llm_gpu_layers,
            n_threads=instance_threads(options.llm_threads, size),
            size=size,
            state_cache_bytes=options.llm_state_cache_mb * 1024 * 1024 if size > 1 else 0,
        )
        self._loaded: LoadedLlama = self.pool.first  # tokenizer and metadata (the same in every instance)
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
        transcript = self.profile.layout.transcript
        prompt: dict[str, Any] = {"prompt": render_transcript(messages)} if transcript else {"messages": messages}
        routed = prompt.get("prompt") or _chat_text(messages)
        lent = self.pool.take(routed, cancel)
        loaded = next(lent)  # waits for a free instance (another generation owns each context)
        chunks = None
        evaluated = False  # the prompt's evaluation ended (a chunk came): the cache holds all of it
        try:
            if loaded is None or cancel.is_set():
                return
            yield ""  # ready: the model is ours, nothing computed yet
            if cancel.is_set():
                return
            loaded.active_cancel = cancel
            try:
                create = loaded.llm.create_completion if transcript else loaded.llm.create_chat_completion
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
                    seed=_request_seed(sampling.seed),
                    logit_bias=self._avoided(sampling.avoid_words) or None,
                )
                for chunk in chunks:
                    evaluated = True
                    if cancel.is_set():
                        return
                    choice = chunk["choices"][0]
                    text = choice.get("text") if transcript else choice.get("delta", {}).get("content")
                    if text:
                        yield text
                self.pool.finished(loaded, routed)  # evaluated to the end: any instance may pick it up
            except RuntimeError as exc:
                if cancel.is_set():
                    return  # llama_decode aborted by the cancel event
                raise LlmError(f"llama.cpp generation failed: {exc}") from None
            except ValueError as exc:  # e.g. prompt longer than the context
                raise LlmError(f"llama.cpp rejected the request: {exc}") from None
        finally:
            if loaded is not None:
                loaded.active_cancel = None
                if chunks is not None and not evaluated:
                    self.pool.cut_short(loaded, routed)
            if chunks is not None:
                try:
                    chunks.close()
                except Exception:  # closing a half-run generator must never mask the real outcome
                    pass
            lent.close()  # the instance goes back to the pool


def _chat_text(messages: list[dict]) -> str:
    """A chat request as one string in the order the chat template renders it (for routing by shared prefix)."""
    return "".join(f"\x00{m.get('role', '')}\x01{m.get('content', '')}" for m in messages)


# --------------------------------------------------------------------------------------
# OpenAI-compatible HTTP server


class OpenAiBackend:
    """Streams from `options.llm_base_url` + `/chat/completions` through the `openai` SDK
    (`brain.openai_client`): timeouts, retries with back-off on 429/5xx, LLM_API_KEY, cancellation that
    closes the stream."""

    name = "openai"

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
        # Whether evaluating a prompt ahead (`Responder.prefill`) pays: the server keeps the prompt it last
        # evaluated (`cache_prompt`), but only LLM_SERVER_PREFILL asks it to evaluate one before the reply.
        self.local_prompt_cache = options.llm_server_prefill
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
