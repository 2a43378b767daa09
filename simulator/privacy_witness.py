"""What a member who opted out left behind: their words anywhere the bot could still carry them.

`Witness` taps a scenario's session (`simulator.scenario.Scenario`): every transcript the listener delivers,
every caption posted (it stands in for the captions channel), every prompt given to the LLM (replies and
prefills). `leaks(...)` counts, after the opt-out, the member's transcripts delivered and the words they were
heard saying before it, found in the history, captions, prompts, the database and log lines above DEBUG.
Used by the opt-out tests and `benchmarks.privacy_faults`.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Iterable

from simulator.join_command import JoinInteraction

COMMON = frozenset(
    {
        "with",
        "that",
        "this",
        "there",
        "every",
        "always",
        "and",
        "the",
        "for",
        "about",
        "what",
        "your",
        "have",
        "just",
        "they",
        "them",
        "then",
        "from",
        "were",
        "when",
        "will",
    }
)


def words_of(texts: Iterable[str]) -> set[str]:
    """The distinctive words (4 letters or more, not the commonest) of `texts`, lower-case."""
    return {w for text in texts for w in re.findall(r"[a-z]{4,}", text.lower()) if w not in COMMON}


class LogTap(logging.Handler):
    """Every log record above DEBUG of the bot (the simulator's own lines left out), with its time."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("simulator"):
            self.records.append((time.monotonic(), record.getMessage()))

    def __enter__(self) -> "LogTap":
        root = logging.getLogger()
        self._level = root.level
        root.addHandler(self)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: Any) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._level)


class Witness:
    def __init__(self, sc: Any) -> None:
        session = sc.session
        self.sc = sc
        self.utterances: list[tuple[float, Any]] = []
        self.captions: list[tuple[float, str]] = []
        self.prompts: list[tuple[float, str]] = []
        on_utterance = session.listener.on_utterance

        def tap_utterance(utt: Any) -> None:
            self.utterances.append((time.monotonic(), utt))
            on_utterance(utt)

        session.listener.on_utterance = tap_utterance

        async def caption(text: str) -> None:
            self.captions.append((time.monotonic(), text))

        session.captions = caption
        inner = getattr(session.responder, "inner", session.responder)
        respond, prefill = inner.respond, inner.prefill

        def prompt_text(history: Any, kwargs: dict) -> str:
            lines = " | ".join(f"{getattr(ln, 'name', '')}: {getattr(ln, 'text', ln)}" for ln in history)
            return f"{lines} || {kwargs.get('member_names')} || {kwargs.get('memory', '')}"

        async def tap_respond(persona: Any, history: Any, **kwargs: Any) -> Any:
            self.prompts.append((time.monotonic(), prompt_text(history, kwargs)))
            return await respond(persona, history, **kwargs)

        def tap_prefill(persona: Any, history: Any, cancel: Any = None, **kwargs: Any) -> Any:
            self.prompts.append((time.monotonic(), prompt_text(history, kwargs)))
            return prefill(persona, history, cancel, **kwargs)

        inner.respond, inner.prefill = tap_respond, tap_prefill

    def texts_of(self, user_id: int, before: float = float("inf")) -> list[str]:
        return [u.text for t, u in self.utterances if u.user_id == user_id and u.text.strip() and t < before]

    async def leaks(self, user_id: int, name: str, since: float, heard: set[str], logs: LogTap) -> dict[str, list]:
        """Where the member's words (or name) turn up after `since`: {place: what was found}; all empty is none."""
        sc = self.sc
        history = list(sc.session.room.history)
        store = sc.bot.memory.store
        others = [m for uid in sc.session.room.members if uid != user_id for m in await store.about(sc.guild.id, uid)]
        found: dict[str, list] = {
            "transcripts": [
                (round(t - since, 2), u.final, u.text)
                for t, u in self.utterances
                if u.user_id == user_id and t >= since
            ],
            "history": [ln.text for ln in history if ln.user_id == user_id or words_of([ln.text]) & heard],
            "captions": [c for t, c in self.captions if t >= since and (words_of([c]) & heard or name in c)],
            "prompts": [p for t, p in self.prompts if t >= since and (words_of([p]) & heard or name in p)],
            "database": [m.text for m in await store.about(sc.guild.id, user_id)]
            + [m.text for m in others if words_of([m.text]) & heard],
            "logs": [m for t, m in logs.records if words_of([m]) & heard],
        }
        return found


async def opt_out(sc: Any, user_id: int) -> float:
    """/privacy optout for `user_id`, as Discord would call it; returns when it was invoked (monotonic)."""
    privacy = sc.bot.get_cog("PrivacyCog")
    asked = JoinInteraction(sc.guild, sc.guild.get_member(user_id))
    at = time.monotonic()
    await privacy.optout.callback(privacy, asked)
    if not asked.replies or "no longer listen" not in asked.replies[-1]:
        raise AssertionError(f"/privacy optout answered {asked.replies}")
    return at


async def opt_in(sc: Any, user_id: int) -> None:
    privacy = sc.bot.get_cog("PrivacyCog")
    back = JoinInteraction(sc.guild, sc.guild.get_member(user_id))
    await privacy.optin.callback(privacy, back)
    if not back.replies or "listen to you again" not in back.replies[-1]:
        raise AssertionError(f"/privacy optin answered {back.replies}")


async def settled(sc: Any, speaking: Any) -> None:
    """The member's line sent, every frame through the VAD, every pending final delivered or withheld, the
    call recorder caught up and memory writes done."""
    await speaking
    await sc.session.listener.flush(120)
    recorder = sc.bot.memory.recorders.get(sc.guild.id)
    if recorder is not None:
        recorder.poll()
    await sc.bot.memory.writes.drain(30)


class PartialWatch:
    """Whether a partial transcription of `user_id` is running on the STT worker right now (wraps the listener's
    lane: its partial step and its transcriber, on this lane only)."""

    def __init__(self, scheduler: Any, user_id: int) -> None:
        self.user_id = user_id
        self.running = False
        self.runs = 0
        self._current: int | None = None
        run_partial, transcriber = scheduler._run_partial, scheduler.transcriber
        watch = self

        def watched_run_partial(src: Any) -> Any:
            watch._current = src.user_id
            try:
                return run_partial(src)
            finally:
                watch._current = None

        class WatchedTranscriber:
            def __getattr__(self, name: str) -> Any:
                return getattr(transcriber, name)

            def transcribe(self, audios: Any, **kwargs: Any) -> Any:
                mine = watch._current == watch.user_id and kwargs.get("beam_size") == 1
                if mine:
                    watch.runs += 1
                    watch.running = True
                try:
                    return transcriber.transcribe(audios, **kwargs)
                finally:
                    if mine:
                        watch.running = False

        scheduler._run_partial = watched_run_partial
        scheduler.transcriber = WatchedTranscriber()
