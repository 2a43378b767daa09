"""One spoken reply: prompt → LLM tokens → cleaned text → fragments → TTS → PCM to a sink.

Two worker threads per reply, so the event loop never blocks:
- the thinker builds the prompt, streams tokens, cleans them, cuts fragments and caps the reply;
- the speaker synthesizes each fragment and hands PCM to the sink (on the event loop thread).
Under an `exclusive` scheduler they alternate in lockstep (the LLM makes a fragment, TTS speaks
it, then the LLM goes on), each step holding the one model slot; under `pipelined` the LLM
keeps generating while TTS speaks.

Cancel the task running `respond()` to stop: the shared cancel event ends token generation
(per token, or mid prompt evaluation through llama.cpp's abort callback) and the ONNX run in
flight, and no sink call happens after the cancellation.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from audio.tts import TtsEngine, make_tts, trim_leading_silence
from bot.models import ModelLoadError
from bot.scheduler import ModelScheduler, SchedulerCancelled
from bot.settings import Settings
from brain.chunker import Fragment, SpeechChunker
from brain.clean import ReplyBudget, SpeechCleaner
from brain.llm import LlmBackend
from brain.prompt import as_history_line, build_messages

log = logging.getLogger(__name__)

_reply_ids = itertools.count(1)
PROMPT_MARGIN_TOKENS = 16
CANCEL_GRACE_S = 0.25  # after a cancel, how long respond() waits for its threads to wind down
EMPTY_REPLY_ATTEMPTS = 3  # samples of a reply that came out with nothing to say (the last one may repeat itself)
SAID_BEFORE_LINES = 6  # the bot's own last lines a reply may not repeat
RETRY_TEMPERATURE = 0.9  # at least this for another sample (the same temperature 0 would repeat itself)
PREFILL_WAITED_S = 0.05  # a prefill that waited longer than this for replies gives way to a newer request


class ReplySink(Protocol):
    """Where a reply goes. Called on the event loop thread, in order; never after a cancel.

    `text(fragment)` comes right before the first audio of that fragment; `done()` once at
    the end of a reply that was not cancelled (also after an error, with what was spoken).
    """

    def audio(self, pcm: np.ndarray, rate: int) -> None: ...

    def text(self, fragment: str) -> None: ...

    def done(self) -> None: ...


@dataclass
class ReplyResult:
    """What a reply produced. Filled as it goes (pass one in to read it after a cancel)."""

    text: str = ""  # cleaned text the LLM produced (within the persona's limits)
    spoken_text: str = ""  # fragments whose audio was handed to the sink in full
    fragments: list[str] = field(default_factory=list)
    raw_text: str = ""  # what the model wrote, before cleaning (up to a stop)
    audio_seconds: float = 0.0
    stop_reason: str = ""  # end | limit | other_speaker | cancelled | error
    attempts: int = 0  # samples taken: more than one when a sample had nothing speakable
    error: str | None = None
    cancelled: bool = False
    tts_engine: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # request, first_token, first_fragment, first_audio, done, ...

    def latency(self, stage: str, since: str = "request") -> float | None:
        if stage in self.timings and since in self.timings:
            return self.timings[stage] - self.timings[since]
        return None


class Responder:
    """Speaks persona replies. One instance can serve many concurrent replies."""

    def __init__(
        self,
        settings: Settings,
        *,
        llm: LlmBackend,
        scheduler: ModelScheduler,
        tts_factory: Callable[[Settings, Any], TtsEngine] = make_tts,
        chunker_factory: Callable[[], SpeechChunker] = SpeechChunker,
    ) -> None:
        self.settings = settings
        self.llm = llm
        self.scheduler = scheduler
        self._tts_factory = tts_factory
        self._chunker_factory = chunker_factory

    def tts_for(self, persona: Any) -> TtsEngine:
        """The persona's voice; falls back to the embedded Piper voice, then espeak-ng, if it cannot load."""
        voice = getattr(persona, "voice", None)
        try:
            return self._tts_factory(self.settings, voice)
        except ModelLoadError as exc:
            log.warning("TTS for %s unavailable (%s): falling back", getattr(persona, "name", "?"), exc)
        fallbacks = [self.settings.replace(tts_engine="piper"), self.settings.replace(tts_engine="espeak")]
        last: ModelLoadError | None = None
        for settings in fallbacks:
            try:
                return self._tts_factory(settings, voice)
            except ModelLoadError as exc:
                last = exc
        raise ModelLoadError(f"no TTS engine could be loaded: {last}")

    def warm_up(self, persona: Any) -> None:
        """Blocking (run in a thread): load the persona's voice and put its prompt prefix in the LLM's cache."""
        self.tts_for(persona)
        self.prefill(persona, [])

    @property
    def prefill_pays(self) -> bool:
        """Whether evaluating a prompt ahead pays: a local llama.cpp keeps the last prompt's evaluation. An LLM
        server keeps its own prompt cache (`cache_prompt`): a request per partial would only cost requests."""
        return bool(getattr(self.llm, "local_prompt_cache", False))

    def prefill(self, persona: Any, history: Sequence[Any], cancel: threading.Event | None = None, *,
                situation: str = "", memory: str = "", group: Any = None,
                give_way: Callable[[], bool] | None = None) -> str:
        """Blocking (run in a thread): evaluate the prompt for `history` so that it sits in the LLM's cache.

        llama.cpp keeps the last prompt's evaluated tokens and reuses their longest common prefix. The
        voice session calls this while a member is still speaking, with their words so far as the last
        line and the situation the reply would get, so the reply only evaluates the words that came
        after (prompt evaluation of a few hundred tokens costs seconds on a small CPU).

        Background work under the scheduler (`ModelScheduler.background`): it waits while any reply is being
        made, and a reply of another `group` (guild) cancels it; if it had to wait and `give_way()` is true
        (a newer request came meanwhile), it gives way. Setting `cancel` stops it at once. Returns "done",
        "superseded" or "cancelled".
        """
        cancel = cancel or threading.Event()
        messages = build_messages(persona, history, situation=situation, budget_tokens=self.prompt_budget(persona),
                                  count_tokens=self.llm.count_tokens, memory=memory)
        asked = time.monotonic()
        try:
            with self.scheduler.background(None, owner=f"prefill-{group}", quiet_s=0.0, group=group, preempt=cancel):
                if time.monotonic() - asked > PREFILL_WAITED_S and give_way is not None and give_way():
                    return "superseded"
                stream = self.llm.stream(messages, max_tokens=1, stop=[], cancel=cancel)
                try:
                    _first_item(stream)  # waits for the model itself, outside any scheduler slot
                    with self.scheduler.background_slot("llm", owner=f"prefill-{group}", preempt=cancel):
                        for _ in stream:
                            pass
                finally:
                    close = getattr(stream, "close", None)
                    if close is not None:
                        close()
        except SchedulerCancelled:
            return "cancelled"
        return "cancelled" if cancel.is_set() else "done"

    def max_reply_tokens(self, persona: Any) -> int:
        max_tokens = self.settings.llm_max_tokens
        if hasattr(persona, "max_reply_tokens"):
            max_tokens = max(8, min(max_tokens, int(persona.max_reply_tokens())))
        return max_tokens

    def prompt_budget(self, persona: Any) -> int:
        """Prompt-side token budget; the same for replies and prefills, so both keep the same lines."""
        return max(64, self.settings.llm_context - self.max_reply_tokens(persona) - PROMPT_MARGIN_TOKENS)

    def stop_strings(self, persona: Any, member_names: Iterable[str]) -> list[str]:
        """Strings that end generation: another speaker's line starting ("\\nAlice:")."""
        own = getattr(persona, "name", "").casefold()
        names = [n for n in dict.fromkeys(member_names) if n and n.casefold() != own]
        return [f"\n{name}:" for name in names] + ["\nUser:"]

    async def respond(
        self,
        persona: Any,
        history: Sequence[Any],
        *,
        situation: str,
        sink: ReplySink,
        member_names: Iterable[str] | None = None,
        t_request: float | None = None,
        result: ReplyResult | None = None,
        memory: str = "",
    ) -> ReplyResult:
        """Think and speak one reply; returns what was generated. Cancel the task to stop it.
        `memory`: what the bot remembers of the members present (a `memory.recall` block), or nothing."""
        loop = asyncio.get_running_loop()
        reply = _Reply(
            responder=self,
            persona=persona,
            history=list(history),
            situation=situation,
            memory=memory,
            member_names=list(member_names) if member_names is not None else _speakers(history),
            sink=sink,
            loop=loop,
            result=result if result is not None else ReplyResult(),
        )
        reply.result.timings["request"] = t_request if t_request is not None else time.monotonic()
        reply.start()
        try:
            await asyncio.shield(reply.finished)
        except asyncio.CancelledError:
            reply.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(reply.finished), CANCEL_GRACE_S)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                log.debug("reply %s: workers still winding down after cancel", reply.owner)
            raise
        reply.result.timings["done"] = time.monotonic()
        sink.done()
        return reply.result


def _speakers(history: Sequence[Any]) -> list[str]:
    names = []
    for line in history:
        item = as_history_line(line)
        if not item.is_bot and item.speaker not in names:
            names.append(item.speaker)
    return names


_END = object()


class _Reply:
    """The state of one reply shared by its two worker threads."""

    def __init__(
        self,
        *,
        responder: Responder,
        persona: Any,
        history: list[Any],
        situation: str,
        memory: str,
        member_names: list[str],
        sink: ReplySink,
        loop: asyncio.AbstractEventLoop,
        result: ReplyResult,
    ) -> None:
        self.r = responder
        self.persona = persona
        self.history = history
        self.situation = situation
        self.memory = memory
        self.member_names = member_names
        self.sink = sink
        self.loop = loop
        self.result = result
        self.owner = f"reply-{next(_reply_ids)}"
        self.cancel_event = threading.Event()
        self.cancelled = False  # read on the loop thread: no sink call once True
        self.fragments: "queue.Queue[Any]" = queue.Queue()
        self.spoken = threading.Condition()
        self.emitted_count = 0
        self.spoken_count = 0
        self.finished: asyncio.Future[None] = loop.create_future()
        self._threads_left = 2
        self._lock = threading.Lock()
        self.tts_ready = threading.Event()
        self.voice_started = False  # (speaker thread) the reply's first audio went out

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._guard, args=(self._think, "thinker"), name=f"{self.owner}-llm", daemon=True).start()
        threading.Thread(target=self._guard, args=(self._speak, "speaker"), name=f"{self.owner}-tts", daemon=True).start()

    def cancel(self) -> None:
        self.cancelled = True
        self.result.cancelled = True
        self.result.stop_reason = "cancelled"
        self.result.timings["cancel"] = time.monotonic()
        self.cancel_event.set()
        self.fragments.put(_END)
        with self.spoken:
            self.spoken.notify_all()

    def _guard(self, work: Callable[[], None], role: str) -> None:
        try:
            work()
        except SchedulerCancelled:
            pass
        except Exception as exc:  # reported in the result; the reply ends with what it has
            log.exception("reply %s: %s failed", self.owner, role)
            self._fail(f"{type(exc).__name__}: {exc}")
        finally:
            if role == "thinker":
                self.fragments.put(_END)
            with self._lock:
                self._threads_left -= 1
                last = self._threads_left == 0
            if last:
                self.loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)

    def _fail(self, message: str) -> None:
        if self.result.error is None:
            self.result.error = message
        if not self.result.cancelled:
            self.result.stop_reason = "error"
        self.cancel_event.set()  # the other thread stops too (no sink call is blocked by this)
        with self.spoken:
            self.spoken.notify_all()

    def _mark(self, stage: str) -> None:
        self.result.timings.setdefault(stage, time.monotonic())

    # -- thinker -------------------------------------------------------------------------

    def _think(self) -> None:
        r = self.r
        messages = build_messages(
            self.persona, self.history, situation=self.situation, budget_tokens=r.prompt_budget(self.persona),
            count_tokens=r.llm.count_tokens, memory=self.memory,
        )
        self._mark("prompt_built")
        # What the model was told (persona prompt, situation): a sentence copying it is not spoken. (Not the
        # memories: saying "your sister Hana is a vet" when asked is using them, not reading instructions aloud.)
        instructions = [m["content"] for m in messages if m.get("role") == "system"] + [self.situation]
        # Its own last lines: a sentence repeating one is not spoken either.
        said_before = [line.text for line in map(as_history_line, self.history) if line.is_bot][-SAID_BEFORE_LINES:]
        budget = ReplyBudget(
            max_words=getattr(self.persona, "max_reply_words", None),
            max_sentences=getattr(self.persona, "max_reply_sentences", None),
        )
        temperature: float | None = None
        for attempt in range(1, EMPTY_REPLY_ATTEMPTS + 1):
            self.result.attempts = attempt
            last = attempt == EMPTY_REPLY_ATTEMPTS  # the last sample may repeat: better than silence
            reason = self._generate(messages, instructions, [] if last else said_before, budget, temperature)
            if self.cancel_event.is_set() or self.emitted_count or reason not in ("end", "other_speaker"):
                break
            # Nothing speakable (the model opened someone else's line, wrote only markup or repeated itself):
            # a member who asked would get silence. llama.cpp reuses the evaluated prompt: another sample is cheap.
            log.info("reply %s: nothing to say (%s); sampling again", self.owner, reason)
            log.debug("reply %s: it wrote %r", self.owner, self.result.raw_text[:120])  # text only at DEBUG
            temperature = max(float(getattr(r.llm, "temperature", 0.0) or 0.0), RETRY_TEMPERATURE)
        self._mark("llm_done")
        if not self.result.stop_reason and not self.cancel_event.is_set():
            self.result.stop_reason = reason

    def _generate(self, messages: list[dict], instructions: list[str], said_before: list[str], budget: ReplyBudget,
                  temperature: float | None) -> str:
        """One sample of the reply: tokens → cleaner → chunker → fragments. Returns why it stopped."""
        r = self.r
        cleaner = SpeechCleaner(persona_name=getattr(self.persona, "name", ""), other_names=self.member_names,
                                instructions=instructions, said_before=said_before)
        chunker = r._chunker_factory()
        self.result.raw_text = ""
        stream = r.llm.stream(
            messages, max_tokens=r.max_reply_tokens(self.persona), stop=r.stop_strings(self.persona, self.member_names),
            cancel=self.cancel_event, temperature=temperature,
        )
        exclusive = r.scheduler.exclusive
        slot: Any = None
        reason = "end"
        try:
            pending = _first_item(stream)  # waits for the model itself, outside any scheduler slot
            while not self.cancel_event.is_set():
                if slot is None:
                    slot = r.scheduler.hold("llm", owner=self.owner, cancel=self.cancel_event)
                    slot.__enter__()
                if pending is not None:
                    token, pending = pending, None
                else:
                    token = next(stream, None)
                if token is None:
                    break
                if not token:
                    continue
                self._mark("first_token")
                self.result.raw_text += token
                frags = chunker.feed(cleaner.feed(token))
                sent = self._emit_all(frags, budget)
                if budget.exhausted:
                    reason = "limit"
                    break
                if cleaner.stopped:
                    reason = "other_speaker"
                    break
                if sent and exclusive:
                    slot.__exit__(None, None, None)
                    slot = None
                    self._wait_spoken()  # lockstep: TTS speaks this fragment before the LLM goes on
        finally:
            if slot is not None:
                slot.__exit__(None, None, None)
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # frees the model for the next reply at once
        if self.cancel_event.is_set():
            return "cancelled"
        if not budget.exhausted:
            tail = chunker.feed(cleaner.finish()) + chunker.flush()
            self._emit_all(tail, budget)
            if budget.exhausted and reason == "end":
                reason = "limit"
        self.result.raw_text = cleaner.raw_text or self.result.raw_text
        return reason

    def _emit_all(self, frags: list[Fragment], budget: ReplyBudget) -> int:
        sent = 0
        for frag in frags:
            kept = budget.take(frag)
            if kept is not None:
                self._mark("first_fragment")
                self.result.fragments.append(kept.text)
                self.result.text = " ".join(self.result.fragments)
                with self.spoken:
                    self.emitted_count += 1
                self.fragments.put(kept)
                sent += 1
            if budget.exhausted:
                break
        return sent

    def _wait_spoken(self) -> None:
        with self.spoken:
            while self.spoken_count < self.emitted_count and not self.cancel_event.is_set():
                self.spoken.wait(0.05)

    # -- speaker -------------------------------------------------------------------------

    def _speak(self) -> None:
        tts = self.r.tts_for(self.persona)
        self.result.tts_engine = tts.name
        try:
            while True:
                item = self.fragments.get()
                if item is _END or self.cancel_event.is_set():
                    return
                self._speak_fragment(tts, item)
                with self.spoken:
                    self.spoken_count += 1
                    self.spoken.notify_all()
        finally:
            with self.spoken:
                self.spoken_count = max(self.spoken_count, self.emitted_count)
                self.spoken.notify_all()

    def _speak_fragment(self, tts: TtsEngine, frag: Fragment) -> None:
        first = True
        with self.r.scheduler.hold("tts", owner=self.owner, cancel=self.cancel_event):
            for pcm, rate in tts.synthesize(frag.text, self.cancel_event):
                if self.cancel_event.is_set():
                    return
                if not self.voice_started:  # the reply's first sound goes out at once
                    pcm = trim_leading_silence(pcm, rate)
                    self.voice_started = True
                self.loop.call_soon_threadsafe(self._deliver, pcm, rate, frag.text if first else None)
                first = False
        if not self.cancel_event.is_set() and not first:
            self.loop.call_soon_threadsafe(self._delivered_fragment, frag.text)

    def _deliver(self, pcm: np.ndarray, rate: int, fragment: str | None) -> None:
        """On the loop thread: hand one chunk to the sink (never after a cancel)."""
        if self.cancelled:
            return
        if fragment is not None:
            self.sink.text(fragment)
        self._mark("first_audio")
        self.result.audio_seconds += len(pcm) / rate
        self.sink.audio(pcm, rate)

    def _delivered_fragment(self, text: str) -> None:
        if self.cancelled:
            return
        self.result.spoken_text = f"{self.result.spoken_text} {text}".strip()


def _first_item(stream: Any) -> str | None:
    """Advance a backend stream to its ready marker (""); a non-empty first item is kept as a token."""
    first = next(stream, None)
    if first is None:
        return None
    return first or None
