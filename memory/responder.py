"""The session's responder with memory: each reply (and prefill) gets the memories of the members present.

`RememberingResponder` wraps `brain.responder.Responder`. Before a reply it stops background model
work (a call summary must never delay a reply) and recalls the memories relevant to the last words
said, within a short timeout: a slow or unavailable database means a reply without memory, never a
late one. Only memories from earlier calls are recalled: what was said in this call is in the history. Members who opted out are never recalled (nor addressed from memory).
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from brain.prompt import as_history_line

if TYPE_CHECKING:
    from memory.service import MemoryService

log = logging.getLogger(__name__)

RECALL_TIMEOUT_S = 0.3
QUERY_LINES = 2


def accepts_memory(responder: Any) -> bool:
    try:
        return "memory" in inspect.signature(responder.respond).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def recall_query(history: Sequence[Any]) -> str:
    """The words a recall searches for: the last human lines."""
    lines = [as_history_line(line) for line in history]
    return " ".join(line.text for line in [ln for ln in lines if not ln.is_bot][-QUERY_LINES:])


class RememberingResponder:
    def __init__(
        self,
        inner: Any,
        service: "MemoryService",
        guild_id: int,
        members: Callable[[], Iterable[tuple[int, str]]] = lambda: (),
    ) -> None:
        self.inner = inner
        self.service = service
        self.guild_id = guild_id
        self.members = members  # (user id, name) of the humans present; set once the session exists
        self.call_started: float | None = None  # memories first stored since (in this call) are not recalled
        self.last_memory = ""  # the block of the latest reply (tests and debugging)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _preempt_background(self) -> None:
        scheduler = getattr(self.inner, "scheduler", None)
        if scheduler is not None and hasattr(scheduler, "preempt_background"):
            scheduler.preempt_background(self.guild_id)  # not this guild's own prefill: it prepares this reply

    def _present(self, history: Sequence[Any] = ()) -> list[tuple[int, str]]:
        """Whose memories this reply may use: the members present who did not opt out; with the server's recall
        scope "speaker", only the member whose line it answers (the last human line)."""
        present = [(uid, name) for uid, name in self.members() if not self.service.is_opted_out(self.guild_id, uid)]
        if self.service.recall_scope(self.guild_id) == "speaker":
            last = next((line for line in reversed(history) if not getattr(line, "is_bot", False)), None)
            speaker = getattr(last, "user_id", None)  # a room line; a bare history line has only the name
            name = as_history_line(last).speaker if last is not None else None
            present = [(uid, n) for uid, n in present if uid == speaker or (speaker is None and n == name)]
        return present

    async def respond(
        self,
        persona: Any,
        history: Sequence[Any],
        *,
        situation: str,
        sink: Any,
        member_names: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        if kwargs.get("script") is not None:  # a line spoken as written: nothing to recall
            return await self.inner.respond(
                persona, history, situation=situation, sink=sink, member_names=member_names, **kwargs
            )
        self._preempt_background()
        memory = await self.service.recall(
            self.guild_id,
            self._present(history),
            recall_query(history),
            timeout=RECALL_TIMEOUT_S,
            before=self.call_started,
        )
        self.last_memory = memory
        return await self.inner.respond(
            persona, history, situation=situation, sink=sink, member_names=member_names, memory=memory, **kwargs
        )

    def prefill(
        self, persona: Any, history: Sequence[Any], cancel: Any = None, *, situation: str = "", **kwargs: Any
    ) -> Any:
        """Blocking (a worker thread), like Responder.prefill, with the memories the reply will have."""
        self._preempt_background()
        memory = self.service.recall_from_thread(
            self.guild_id,
            self._present(history),
            recall_query(history),
            timeout=RECALL_TIMEOUT_S,
            before=self.call_started,
        )
        return self.inner.prefill(persona, history, cancel, situation=situation, memory=memory, **kwargs)

    def warm_up(self, persona: Any, group: Any = None) -> None:
        self.inner.warm_up(persona, group)


def attach_members(responder: Any, members: Callable[[], Iterable[tuple[int, str]]]) -> None:
    if isinstance(responder, RememberingResponder):
        responder.members = members
