"""Streaming chat completions from an OpenAI-compatible server (llama.cpp server, vLLM, Ollama, ...) through
the maintained `openai` SDK, for `brain.llm.OpenAiBackend`.

What the SDK brings: connection and read timeouts, retries with exponential back-off (and the server's
Retry-After) on 408/409/429/5xx and on connection errors before the stream starts, the API key as a Bearer
token, Server-Sent Events parsing, and an `error` event in the stream raised as an exception. Fields that are
not in OpenAI's API (llama.cpp's `cache_prompt`, `top_k`, `min_p`, `repeat_penalty`, ...) go in `extra_body`.

The request runs on the model I/O loop (`runtime.io_loop`) with the async client; the caller's thread reads the
tokens from a queue. Cancelling cancels that task, which closes the HTTP response at once (also while the
server is still evaluating the prompt), and the server stops generating for a closed connection.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Iterator

import openai

from runtime.io_loop import submit

log = logging.getLogger(__name__)

# Keyword arguments of `chat.completions.create`; any other field of a request body goes in `extra_body`.
STANDARD_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "stop",
        "seed",
        "n",
        "logit_bias",
        "user",
    }
)
_DONE = object()


class LlmServerError(RuntimeError):
    """The server could not be used; one line that names it and what went wrong."""


class OpenAiChatClient:
    def __init__(
        self, base_url: str, api_key: str, *, connect_timeout: float, read_timeout: float, max_retries: int
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.read_timeout = read_timeout
        self._client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key or "no-key",  # the SDK insists on one; servers without auth ignore it
            timeout=openai.Timeout(read_timeout, connect=connect_timeout),
            max_retries=max_retries,
        )

    def stream(self, body: dict[str, Any], cancel: threading.Event) -> Iterator[str]:
        """Blocking: the content deltas of one streamed chat completion, until done or `cancel` is set."""
        tokens: queue.Queue[Any] = queue.Queue()
        future = submit(self._run(body, tokens, cancel))
        try:
            while not cancel.is_set():
                try:
                    item = tokens.get(timeout=0.01)
                except queue.Empty:
                    continue
                if item is _DONE:
                    error = future.exception()
                    if error is not None and not cancel.is_set():
                        raise error
                    return
                yield item
        finally:
            future.cancel()  # a no-op when done; else the task is cancelled and the response closed

    async def _run(self, body: dict[str, Any], out: queue.Queue[Any], cancel: threading.Event) -> None:
        standard = {k: v for k, v in body.items() if k in STANDARD_FIELDS}
        extra = {k: v for k, v in body.items() if k not in STANDARD_FIELDS and k != "stream"}
        try:
            stream = await self._client.chat.completions.create(**standard, stream=True, extra_body=extra or None)
            async with stream:  # closes the HTTP response however this ends
                async for chunk in stream:
                    if cancel.is_set():
                        return
                    for choice in chunk.choices:
                        text = choice.delta.content if choice.delta is not None else None
                        if text:
                            out.put(text)
        except openai.APITimeoutError:
            raise LlmServerError(
                f"the LLM server at {self.base_url} sent nothing for {self.read_timeout:g} s"
            ) from None
        except openai.APIConnectionError as exc:
            raise LlmServerError(f"cannot reach the LLM server at {self.base_url}: {exc.__cause__ or exc}") from None
        except openai.APIStatusError as exc:
            raise LlmServerError(
                f"LLM server {self.base_url} answered HTTP {exc.status_code}: {_detail(exc)}"
            ) from None
        except openai.APIError as exc:  # an error event inside the stream
            raise LlmServerError(f"LLM server error: {exc.message}") from None
        finally:
            out.put(_DONE)


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message)[:300]
    return str(exc.message)[:300]
