"""Evaluated prompts kept in RAM, so that any llama.cpp instance can pick up a conversation another one evaluated.

A llama context keeps only the last prompt it evaluated. With more guilds than instances, each reply lands on an
instance that last served another guild and evaluates its whole prompt again: seconds on one CPU thread (SmolLM2,
600 tokens: 4.6 s), where restoring the guild's saved KV state costs a few milliseconds (13.9 MB copied in 3 ms,
the reply then evaluates only its new tokens: 0.14 s). `KvStates` keeps the state of every prompt an instance
finished evaluating, keyed by the prompt's text, up to a byte budget (least recently used first out).

Only llama.cpp's own state (its KV cache, `llama_state_get_data`) and the token ids are kept: llama-cpp-python's
`save_state` also copies its logits table (100 MB for this model), which sampling no longer reads. After a
restore the library compares the new prompt with the restored tokens itself and evaluates what differs, so a
restore can never change what is generated, only how much is evaluated.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KvState:
    prompt: str  # the request's text (what the pool routes by)
    data: Any  # ctypes buffer holding llama.cpp's state
    size: int
    token_ids: np.ndarray  # the context's tokens: the prompt's, then what was generated

    @property
    def nbytes(self) -> int:
        return self.size + self.token_ids.nbytes


def common_prefix(a: str, b: str) -> int:
    """Length of the common prefix of two strings."""
    return len(os.path.commonprefix([a, b]))


_LIVE: "weakref.WeakSet[KvStates]" = weakref.WeakSet()
MESSAGE_BREAKS = ("\x00", "\n")  # where a routed prompt's messages (chat) or lines (transcript) begin


def bytes_kept() -> int:
    """Bytes every live `KvStates` holds: a bounded cache, which a leak check counts apart."""
    return sum(states.bytes_used for states in list(_LIVE))


def _conversation_of(prompt: str) -> str:
    """The prompt without its last message: what a later prompt of the same conversation starts with (the
    partial line a prefill ends with becomes the reply's final line)."""
    cut = max(prompt.rfind(mark, 0, len(prompt) - 1) for mark in MESSAGE_BREAKS)
    return prompt[:cut] if cut > 0 else prompt


SUPERSEDED_SHARE = 0.8  # a state whose prompt shares this much with a newer one, but for its last message, goes


def _supersedes(prompt: str, key: str) -> bool:
    """A state for `prompt` makes the one for `key` worth little: `prompt` extends `key`, or all of `key` but its
    last message, when that is most of it (a prefill on a partial line, then the reply on the final one)."""
    if prompt.startswith(key):
        return True
    conversation = _conversation_of(key)
    return len(conversation) >= SUPERSEDED_SHARE * len(key) and prompt.startswith(conversation)


class KvStates:
    """Saved contexts of one model (every instance of a pool has the same shape), thread-safe."""

    def __init__(self, capacity_bytes: int) -> None:
        _LIVE.add(self)
        self.capacity_bytes = capacity_bytes
        self._lock = threading.Lock()
        self._states: OrderedDict[str, KvState] = OrderedDict()
        self._bytes = 0
        self.saved = 0
        self.restored = 0

    @property
    def enabled(self) -> bool:
        return self.capacity_bytes > 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    @property
    def bytes_used(self) -> int:
        with self._lock:
            return self._bytes

    def save(self, llm: Any, prompt: str) -> bool:
        """Keep `llm`'s context (a llama_cpp.Llama that just finished with `prompt`). States this one supersedes are
        dropped: a prompt it extends (the guild's previous turn), or one it goes on from but for the last message
        (a prefill on a partial line): a conversation keeps about one state, not one per turn."""
        if not self.enabled or not prompt or llm.n_tokens <= 0:
            return False
        import llama_cpp

        ctx = llm._ctx.ctx
        size = int(llama_cpp.llama_state_get_size(ctx))
        if size <= 0 or size > self.capacity_bytes:
            return False
        data = (ctypes.c_uint8 * size)()
        written = int(llama_cpp.llama_state_get_data(ctx, data, size))
        if written <= 0 or written > size:
            log.debug("llama state not saved (%d of %d bytes)", written, size)
            return False
        state = KvState(prompt, data, written, np.array(llm.input_ids[: llm.n_tokens], dtype=np.intc))
        with self._lock:
            for key in [k for k in self._states if _supersedes(prompt, k)]:
                self._bytes -= self._states.pop(key).nbytes
            self._states[prompt] = state
            self._bytes += state.nbytes
            while self._bytes > self.capacity_bytes and self._states:
                _, old = self._states.popitem(last=False)
                self._bytes -= old.nbytes
            self.saved += 1
        return True

    def best(self, prompt: str) -> tuple[KvState | None, int]:
        """The saved state sharing the longest prefix with `prompt`, and that prefix's length in characters."""
        with self._lock:
            best, best_len = None, 0
            for key, state in self._states.items():
                shared = common_prefix(key, prompt)
                if shared > best_len:
                    best, best_len = state, shared
            if best is not None:
                self._states.move_to_end(best.prompt)
            return best, best_len

    def prompts(self) -> set[str]:
        with self._lock:
            return set(self._states)

    def shared_with(self, prompt: str) -> int:
        """Characters of `prompt` a restore could spare (0 when nothing is saved)."""
        with self._lock:
            return max((common_prefix(key, prompt) for key in self._states), default=0)

    def restore(self, llm: Any, state: KvState) -> bool:
        """Put `state` into `llm`'s context (the caller owns the context). False (the context emptied: the next
        request evaluates its whole prompt) when llama.cpp refuses it."""
        import llama_cpp

        n = len(state.token_ids)
        if n > len(llm.input_ids):
            return False
        if int(llama_cpp.llama_state_set_data(llm._ctx.ctx, state.data, state.size)) != state.size:
            log.warning("llama state restore refused; evaluating the prompt in full")
            llm.n_tokens = 0
            llm._ctx.kv_cache_clear()
            return False
        llm.input_ids[:n] = state.token_ids
        llm.n_tokens = n
        llm._requires_eval = True  # logits come from the next decode, not from the restored state
        with self._lock:
            self.restored += 1
        return True
