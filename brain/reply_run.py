"""One reply in progress: two worker threads that think and speak it (see `brain.responder`).

- the thinker builds the prompt, streams tokens, cleans them (`brain.clean`), cuts fragments
  (`brain.chunker`), caps the reply (`brain.budget`), and samples again when nothing speakable came out;
- the speaker synthesizes each fragment and hands PCM to the sink (on the event loop thread).
Under an `exclusive` or `parallel` scheduler they alternate in lockstep; under `pipelined` the LLM keeps generating
while TTS speaks. `ReplyResult` is what a reply produced, `ReplySink` where it goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from audio.tts import TtsEngine, trim_leading_silence
from conversation.greeting import holding_line
from runtime.scheduler import SchedulerCancelled
from brain.admission import DROP, SHORT, HoldingLine, ModelWait, first_item
from brain.reply_result import ReplyResult, ReplySink
from brain.budget import ReplyBudget
from brain.chunker import Fragment
from brain.clean import SpeechCleaner
from brain.avoid_words import words_to_avoid
from brain.prompt import as_history_line

if TYPE_CHECKING:
    from brain.responder import Responder

log = logging.getLogger(__name__)

_reply_ids = itertools.count(1)
EMPTY_REPLY_ATTEMPTS = 3  # samples of a reply that came out with nothing to say (the last one may repeat itself)
SAID_BEFORE_LINES = 6  # the bot's own last lines a reply may not repeat
RETRY_TEMPERATURE = 0.9  # at least this for another sample (the same temperature 0 would repeat itself)


_END = object()


class ReplyRun:
    """The state of one reply shared by its two worker threads."""

    def __init__(
        self,
        *,
        responder: "Responder",
        persona: Any,
        history: list[Any],
        situation: str,
        memory: str,
        member_names: list[str],
        sink: ReplySink,
        loop: asyncio.AbstractEventLoop,
        result: ReplyResult,
        script: str | None = None,
        group: Any = None,
    ) -> None:
        self.r = responder
        self.group = group  # the guild: its model holds spare its own background work
        self.script = script  # a line spoken as written (the listening notice, a greeting): no LLM
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
        self.repaired = False  # (thinker) the screen dropped a piece the model slipped into
        self.model_wait = ModelWait(responder.admission, time.monotonic(), self._hold)  # (thinker) brain.admission

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(
            target=self._guard, args=(self._think, "thinker"), name=f"{self.owner}-llm", daemon=True
        ).start()
        threading.Thread(
            target=self._guard, args=(self._speak, "speaker"), name=f"{self.owner}-tts", daemon=True
        ).start()

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
        if self.script is not None:
            self._recite(self.script)
            return
        r = self.r
        messages = r.build_prompt(self.persona, self.history, self.situation, memory=self.memory)
        self._mark("prompt_built")
        # What the model was told (persona prompt, situation): a sentence copying it is not spoken. (Not the
        # memories: saying "your sister Hana is a vet" when asked is using them, not reading instructions aloud.)
        instructions = [m["content"] for m in messages if m.get("role") == "system"] + [
            self.situation,
            getattr(self.situation, "short", ""),
        ]
        # Its own last lines, and the members': a sentence repeating one is not spoken either (but the last sample).
        lines = [as_history_line(line) for line in self.history]
        before = tuple([ln.text for ln in lines if ln.is_bot is bot][-SAID_BEFORE_LINES:] for bot in (True, False))
        latest_member_line = before[1][-1] if before[1] else ""
        budget = ReplyBudget(
            max_words=getattr(self.persona, "max_reply_words", None),
            max_sentences=getattr(self.persona, "max_reply_sentences", None),
        )
        temperature: float | None = None
        self.model_wait.asked_at = self.result.timings.get("request", self.model_wait.asked_at)
        for attempt in range(1, EMPTY_REPLY_ATTEMPTS + 1):
            self.result.attempts = attempt
            last = attempt == EMPTY_REPLY_ATTEMPTS  # the last sample may repeat: better than silence
            sampling = r.sampling_for(attempt, temperature)
            if sampling.avoid_words:
                sampling = sampling.replace(avoid_words=words_to_avoid(sampling.avoid_words, latest_member_line))
            reason = self._generate(messages, instructions, ([], []) if last else before, budget, sampling)
            if self.cancel_event.is_set() or self.result.fragments or reason not in ("end", "other_speaker"):
                break
            # Nothing speakable (the model opened someone else's line, wrote only markup or repeated itself):
            # a member who asked would get silence. llama.cpp reuses the evaluated prompt: another sample is cheap.
            log.info("reply %s: nothing to say (%s); sampling again", self.owner, reason)
            log.debug("reply %s: it wrote %r", self.owner, self.result.raw_text[:120])  # text only at DEBUG
            temperature = max(float(r.profile.sampling.temperature or 0.0), RETRY_TEMPERATURE)
        self._mark("llm_done")
        if not self.result.stop_reason and not self.cancel_event.is_set():
            self.result.stop_reason = reason
        if self.result.text and (self.result.attempts > 1 or self.repaired):
            r.note_flawed(self.result.text)

    def _generate(self, messages: list[dict], instructions: list[str], before: Any, budget: Any, sampling: Any) -> str:
        """One sample: tokens → cleaner → chunker → fragments (`before`: the bot's and the members' last lines, not
        to be repeated). Returns why it stopped."""
        r = self.r
        cleaner = SpeechCleaner(
            persona_name=getattr(self.persona, "name", ""),
            other_names=self.member_names,
            instructions=instructions,
            said_before=before[0],
            heard_before=before[1],
            addressee=getattr(self.situation, "addressee", None) if r.profile.address_only_speaker else None,
            small_model_repairs=r.profile.small_model_repairs,
        )
        chunker = r._chunker_factory()
        self.result.raw_text = ""
        stream = r.llm.stream(
            messages,
            max_tokens=r.max_reply_tokens(self.persona),
            stop=r.stop_strings(self.persona, self.member_names),
            cancel=self.cancel_event,
            **_sampling_kwargs(r.llm, sampling),
        )
        lockstep = r.scheduler.lockstep
        slot: Any = None
        reason = "end"
        try:
            token: str | None
            asked = time.monotonic()
            self._mark("llm_asked")
            with self.model_wait.waiting():  # a holding line if the model, or its first slot, is long in coming
                pending = first_item(stream)  # the model itself, outside any scheduler slot
                verdict = self.model_wait.verdict()
                if verdict == DROP:  # its question has grown old: no late answer
                    self._mark("dropped_stale")
                    return "stale"
                slot = self._model_slot("llm", asked=asked)
                slot.__enter__()  # its record covers the wait for the model itself
            self._mark("llm_slot")
            if verdict == SHORT and (budget.max_sentences or 2) > 1:
                budget.max_sentences = 1  # frees the model sooner for the replies waiting behind it
                self._mark("shortened")
            while not self.cancel_event.is_set():
                if slot is None:
                    slot = self._model_slot("llm")
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
                if sent and lockstep:
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
        self.repaired = self.repaired or cleaner.screen.repaired
        return reason

    def _recite(self, text: str) -> None:
        """A scripted line: cut into fragments like a reply (the first one is spoken while the rest is
        synthesized), spoken as written."""
        chunker = self.r._chunker_factory()
        for frag in chunker.feed(text) + chunker.flush():
            if self.cancel_event.is_set():
                return
            self._emit(frag)
        self.result.raw_text = text
        self.result.stop_reason = "end"

    def _emit_all(self, frags: list[Fragment], budget: ReplyBudget) -> int:
        sent = 0
        for frag in frags:
            kept = budget.take(frag)
            if kept is not None:
                self._emit(kept)
                sent += 1
            if budget.exhausted:
                break
        return sent

    def _emit(self, frag: Fragment) -> None:
        """Hand one fragment to the speaker thread."""
        self._mark("first_fragment")
        self.result.fragments.append(frag.text)
        self.result.text = " ".join(self.result.fragments)
        with self.spoken:
            self.emitted_count += 1
        self.fragments.put(frag)

    def _hold(self) -> None:
        """(A timer thread) Still waiting for the model past the hold bound: a holding line goes out first."""
        if self.cancel_event.is_set():
            return
        self._mark("holding_line")
        with self.spoken:
            self.emitted_count += 1
        self.fragments.put(HoldingLine(holding_line(self.persona)))

    def _stale(self) -> bool:
        """(Speaker) The reply queued past the hold bound (its holding line was said) and its first words would
        come past the drop bound: it is dropped. Slow compute alone never drops a reply, nor drops one silently."""
        if not self.model_wait.held or self.model_wait.verdict() != DROP:
            return False
        self._mark("dropped_stale")
        self.result.stop_reason = "stale"
        self.cancel_event.set()  # the thinker stops; a holding line already said stays said
        return True

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

    def _model_slot(self, kind: str = "tts", asked: float | None = None) -> Any:
        """The scheduler's slot for this reply's `kind` of work (its guild's own background work goes on)."""
        return self.r.scheduler.hold(kind, owner=self.owner, cancel=self.cancel_event, group=self.group, asked=asked)

    def _speak_fragment(self, tts: TtsEngine, frag: Fragment | HoldingLine) -> None:
        first, holding = True, isinstance(frag, HoldingLine)
        if not holding:
            self._mark("tts_asked")
        # a holding line takes the slot only to synthesize
        with contextlib.nullcontext() if holding else self._model_slot():
            if not holding:
                if "tts_slot" not in self.result.timings and self._stale():
                    return
                self._mark("tts_slot")
            chunks = self.r.holding.chunks(tts, frag.text, self._model_slot, self.cancel_event) if holding else None
            for pcm, rate in chunks or tts.synthesize(frag.text, self.cancel_event):
                if self.cancel_event.is_set():
                    return
                if not self.voice_started:  # the reply's first sound goes out at once
                    pcm = trim_leading_silence(pcm, rate)
                    self.voice_started = True
                self.loop.call_soon_threadsafe(self._deliver, pcm, rate, frag.text if first else None, holding)
                first = False
        if not self.cancel_event.is_set() and not first:
            self.loop.call_soon_threadsafe(self._delivered_fragment, frag.text)

    def _deliver(self, pcm: np.ndarray, rate: int, fragment: str | None, holding: bool = False) -> None:
        """On the loop thread: hand one chunk to the sink (never after a cancel)."""
        if self.cancelled:
            return
        if fragment is not None:
            self.sink.text(fragment)
        self._mark("holding_audio" if holding else "first_audio")
        self.result.audio_seconds += len(pcm) / rate
        self.sink.audio(pcm, rate)

    def _delivered_fragment(self, text: str) -> None:
        if self.cancelled:
            return
        self.result.spoken_text = f"{self.result.spoken_text} {text}".strip()


def _sampling_kwargs(llm: Any, sampling: Any) -> dict[str, Any]:
    """`sampling=` for a backend that takes it; only the temperature for one that does not (a test double)."""
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(llm.stream).parameters
    except (TypeError, ValueError):
        params = {}
    if "sampling" in params:
        return {"sampling": sampling}
    return {"temperature": sampling.temperature}
