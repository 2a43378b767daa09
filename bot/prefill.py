"""Prefill: while a member speaks, put the prompt of a reply to their words so far in the LLM's cache.

`Responder.prefill` evaluates the prompt the reply will have (history with the member's latest partial,
the situation), so when the bot does answer, llama.cpp only evaluates the words after the last partial.
One prefill runs at a time per session; while it runs, the newest request waits and replaces older ones.
Not while the bot is in a line, nor while several members speak at once (their prompts would evict each
other from the one cache).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)

PromptFor = Callable[[int], "tuple[list[Any], str] | None"]  # member id -> (history, situation), None: not now


class ReplyPrefill:
    def __init__(self, prefill: Callable[..., Any] | None, prompt_for: PromptFor, persona: Callable[[], Any], *,
                 spawn: Callable[[Any, str], Any], name: str = "prefill") -> None:
        self._prefill = prefill
        self._prompt_for = prompt_for
        self._persona = persona
        self._spawn = spawn
        self._name = name
        self._running = False
        self._wanted: int | None = None  # member whose words the next prefill covers
        self._cancel = threading.Event()  # set on close: stops a prompt evaluation in flight

    @property
    def enabled(self) -> bool:
        return self._prefill is not None

    @property
    def running(self) -> bool:
        return self._running

    def request(self, user_id: int) -> None:
        """Prefill a reply to `user_id`'s words so far (now, or after the prefill in flight)."""
        if self._prefill is None or self._cancel.is_set():
            return
        self._wanted = user_id
        if not self._running:
            self._start()

    def close(self) -> None:
        self._cancel.set()
        self._wanted = None

    def _start(self) -> None:
        user_id, self._wanted = self._wanted, None
        if user_id is None or self._cancel.is_set():
            return
        prompt = self._prompt_for(user_id)
        if prompt is None:
            return
        history, situation = prompt
        prefill, persona, cancel = self._prefill, self._persona(), self._cancel
        self._running = True

        async def run() -> None:
            try:
                await asyncio.to_thread(prefill, persona, history, cancel, situation=situation)
            except Exception:  # only latency is lost; the reply reports real LLM errors
                log.debug("%s failed", self._name, exc_info=True)
            finally:
                self._running = False
                self._start()

        self._spawn(run(), self._name)
