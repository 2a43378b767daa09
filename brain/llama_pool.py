"""Loaded llama.cpp models: one `Llama` per context, and a small pool of them so that replies of different guilds
decode at the same time (`LLM_INSTANCES`; the `parallel` scheduler policy grants one slot per instance).

A llama context holds one conversation and keeps the last prompt's evaluated tokens (its prompt cache), so a
request goes to the free instance whose last prompt shares the longest prefix with its own: a reply lands on
the instance that holds its guild's prefill. The weights are memory-mapped: the instances share them; each one
has its own KV cache (a few tens of MB for a small model).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Generator

from brain.kv_states import KvStates, common_prefix
from runtime.errors import ModelLoadError
from runtime.models import MODELS

log = logging.getLogger(__name__)


@dataclass
class LoadedLlama:
    """One Llama (one context) shared by every backend object using the same GGUF and settings."""

    llm: Any
    path: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    active_cancel: threading.Event | None = None
    abort_callback: Any = None  # keep the ctypes callback alive while the context lives
    last_prompt: str = ""  # the text of the last prompt evaluated here (what its cache holds)
    held_before: str = ""  # what the cache held before the current request (its part survives a cut evaluation)
    index: int = 0  # place in its pool


_llama_log_callback: Any = None  # kept alive while llama.cpp may call it


def route_llama_logs() -> None:
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


def load_llama(path: str, *, n_ctx: int, n_gpu_layers: int, n_threads: int | None) -> LoadedLlama:
    try:
        from llama_cpp import Llama
    except ImportError as exc:
        raise ModelLoadError(f"llama-cpp-python is not installed ({exc}): pip install -r requirements.txt") from None
    route_llama_logs()
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
    loaded = LoadedLlama(llm=llm, path=path)
    _install_abort_callback(loaded)
    log.info(
        "llama.cpp model %s loaded in %.2f s (n_ctx=%d, gpu_layers=%d, threads=%s)",
        os.path.basename(path),
        time.monotonic() - started,
        n_ctx,
        n_gpu_layers,
        n_threads,
    )
    return loaded


def _install_abort_callback(loaded: LoadedLlama) -> None:
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


def instance_threads(requested: int, instances: int, cores: int | None = None) -> int:
    """llama.cpp threads per instance: `requested` (LLM_THREADS) if set, else all cores but one shared among the
    instances, at least one each. All cores but one: llama.cpp's threads spin-wait, and on a busy core (STT, TTS,
    the receive worker) one preempted thread stalls every other one; measured 20x slower generation on 2 cores.
    A single-threaded instance has no peer to wait for, so with several instances every core may decode."""
    if requested > 0:
        return requested
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, (cores - 1) // max(1, instances))


LOST_WEIGHT = 4  # a cached character thrown away costs this many reused ones (it was someone's prefill)
CACHE_WAIT_MIN_CHARS = 200  # a busy instance holding this many more of a prompt is worth waiting for ...
CACHE_WAIT_MAX_S = 2.0  # ... this long at most (about a cold evaluation of a reply prompt on one thread)
RESTORE_MIN_CHARS = 64  # a saved state is restored when it spares this many more characters (~16 tokens: 0.1 s)


class LlamaPool:
    """`size` instances of one GGUF with the same settings, each loaded once per process (`runtime.models.MODELS`:
    instance 0 is the one a single-instance backend uses). `take()` lends one for a generation."""

    def __init__(
        self, path: str, *, n_ctx: int, n_gpu_layers: int, n_threads: int, size: int, state_cache_bytes: int = 0
    ) -> None:
        base = f"llama_cpp:{path}:ctx={n_ctx}:gpu={n_gpu_layers}:threads={n_threads}"
        self.instances: list[LoadedLlama] = []
        for index in range(max(1, size)):
            key = base if index == 0 else f"{base}:instance={index}"
            loaded = MODELS.get(
                key, lambda: load_llama(path, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, n_threads=n_threads)
            )
            loaded.index = index
            self.instances.append(loaded)
        self.states = KvStates(state_cache_bytes)  # evaluated prompts any instance can restore
        self._cond = threading.Condition()
        self.routed_to_prefix = 0  # requests that found a free instance holding more of their prompt than another
        self.waits = 0  # requests that found every instance busy

    @property
    def first(self) -> LoadedLlama:
        return self.instances[0]

    def _score(self, inst: LoadedLlama, prompt: str, saved: int = 0, kept: frozenset[str] = frozenset()) -> int:
        """Characters of `prompt` the instance would not evaluate again (its own, or `saved` ones it can restore),
        less what it would throw away of another prompt that is kept nowhere else."""
        common = common_prefix(inst.last_prompt, prompt)
        lost = len(inst.last_prompt) - common
        if inst.last_prompt in kept:  # saved: it can come back, but a context left as it is needs no restore
            return max(common, saved) - (1 if lost else 0)
        return max(common, saved) - LOST_WEIGHT * lost

    def _pick(self, prompt: str, patient: bool) -> LoadedLlama | None:
        """Under the condition: the free instance whose cache serves `prompt` best, locked (None: wait).

        Score: characters of `prompt` already evaluated there, less LOST_WEIGHT times the characters of the
        cached prompt it would throw away (another guild's prefill), so a reply goes where its prefill is and
        a new prompt goes to an empty instance rather than over a guild's cache that shares only the persona.
        While `patient`, a busy instance that serves it better by CACHE_WAIT_MIN_CHARS is waited for rather
        than a cold one taken: it is this prompt's own prefill (or the guild's last reply) finishing, and a
        cold evaluation of the whole prompt costs more than that wait (seconds on one thread).
        (Another pool over the same instances, e.g. memory's summarizer on the reply model, may take one
        meanwhile: a failed non-blocking acquire counts it busy.)"""
        saved = self.states.shared_with(prompt) if self.states.enabled else 0
        kept = frozenset(self.states.prompts()) if self.states.enabled else frozenset()
        scores = {inst.index: self._score(inst, prompt, saved, kept) for inst in self.instances}
        free = [inst for inst in self.instances if not inst.lock.locked()]
        if patient:
            best_busy = max((scores[i.index] for i in self.instances if i not in free), default=None)
            best_free = max((scores[i.index] for i in free), default=None)
            if best_busy is not None and (best_free is None or best_busy - best_free >= CACHE_WAIT_MIN_CHARS):
                return None
        for inst in sorted(free, key=lambda inst: (-scores[inst.index], inst.index)):
            if inst.lock.acquire(blocking=False):
                if scores[inst.index] > min(scores[i.index] for i in free):
                    self.routed_to_prefix += 1
                log.debug("llama instance %d for a %d-char prompt (scores %s)", inst.index, len(prompt), scores)
                return inst
        return None

    def take(self, prompt: str, cancel: threading.Event) -> Generator[LoadedLlama | None, None, None]:
        """Yields the instance lent for `prompt` (None if `cancel` was set while every one was busy), and gives
        it back when the generator is closed. `prompt` is the request's text as `last_prompt` records it."""
        waited = False
        started = time.monotonic()
        with self._cond:
            while True:
                chosen = self._pick(prompt, patient=time.monotonic() - started < CACHE_WAIT_MAX_S)
                if chosen is not None or cancel.is_set():
                    break
                waited = True
                self._cond.wait(0.02)
            if waited:
                self.waits += 1
        if chosen is None:
            yield None
            return
        try:
            chosen.held_before = self._restore_best(chosen, prompt)
            chosen.last_prompt = prompt  # what its cache holds from now on (a cut-short evaluation holds a prefix)
            yield chosen
        finally:
            with self._cond:
                chosen.lock.release()
                self._cond.notify_all()

    def _restore_best(self, inst: LoadedLlama, prompt: str) -> str:
        """Before `inst` evaluates `prompt`: restore the saved state that spares more of it than `inst` holds.
        Returns the text its cache holds now."""
        if not self.states.enabled:
            return inst.last_prompt
        state, shared = self.states.best(prompt)
        own = common_prefix(inst.last_prompt, prompt)
        if state is None or shared < own + RESTORE_MIN_CHARS:
            return inst.last_prompt
        if self.states.restore(inst.llm, state):
            log.debug(
                "llama instance %d: restored %d saved tokens (%d chars shared)",
                inst.index,
                len(state.token_ids),
                shared,
            )
            return state.prompt
        return ""

    def cut_short(self, inst: LoadedLlama, prompt: str) -> None:
        """`inst` (still lent) stopped before `prompt` was evaluated (a cancel aborted llama_decode): its cache
        holds only what it shared with the prompt before, not `prompt`. Routing by `prompt` would send the next
        request of this conversation here to evaluate it all again, cold (seconds on one thread)."""
        inst.last_prompt = prompt[: common_prefix(inst.held_before, prompt)]

    def finished(self, inst: LoadedLlama, prompt: str) -> None:
        """`inst` (still lent) evaluated `prompt` to the end: keep its state for any instance to restore."""
        if self.states.enabled and inst.last_prompt == prompt:
            self.states.save(inst.llm, prompt)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "instances": len(self.instances),
                "busy": sum(1 for inst in self.instances if inst.lock.locked()),
                "routed_to_prefix": self.routed_to_prefix,
                "waits": self.waits,
                "states_saved": self.states.saved,
                "states_restored": self.states.restored,
            }
