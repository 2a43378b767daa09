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
import collections
import logging
import threading
import time
from typing import Any, Callable, Iterable, Sequence

from audio.tts import TtsEngine
from runtime.scheduler import ModelScheduler, SchedulerCancelled
from brain.chunker import SpeechChunker
from brain.llm import LlmBackend
from brain.profile import ModelProfile, profile_for
from brain.reply_options import ReplyOptions, VoiceLoader
from brain.prompt import HistoryLine, as_history_line, build_messages
from brain.admission import HoldingVoice, first_item
from brain.reply_run import SAID_BEFORE_LINES, ReplyResult, ReplyRun, ReplySink
from conversation.greeting import holding_lines
from conversation.text_words import normalize
from runtime.metrics import record_stage_time
from runtime.stage_times import PREFILL_STAGE

__all__ = ["Responder", "ReplyOptions", "ReplyResult", "ReplySink", "SAID_BEFORE_LINES"]

log = logging.getLogger(__name__)

PROMPT_MARGIN_TOKENS = 16
CANCEL_GRACE_S = 0.25  # after a cancel, how long respond() waits for its threads to wind down
FLAWED_LINES_KEPT = 256  # replies remembered as flawed (the model slipped), left out of later prompts
PREFILL_WAITED_S = 0.05  # a prefill that waited longer than this for replies gives way to a newer request


class Responder:
    """Speaks persona replies. One instance can serve many concurrent replies."""

    def __init__(
        self,
        options: ReplyOptions,
        *,
        llm: LlmBackend,
        scheduler: ModelScheduler,
        chunker_factory: Callable[[], SpeechChunker] = SpeechChunker,
        profile: ModelProfile | None = None,
    ) -> None:
        self.options = options
        self.llm = llm
        self.scheduler = scheduler
        self._chunker_factory = chunker_factory
        # What suits the model: prompt layout, sampling, small-model repairs (brain.profile).
        self.profile = profile or getattr(llm, "profile", None) or profile_for(options.llm, getattr(llm, "name", ""))
        self.seed: int | None = self.profile.sampling.seed  # a benchmark sets one per reply (reproducible samples)
        # Replies for which the model slipped (resampled, or a piece read its instructions or repeated itself):
        # what was said of them stays out of later prompts (layout own_lines="heard"), so one bad line does
        # not pull the next ones down. Keyed by normalized text; bounded.
        self._flawed: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._flawed_lock = threading.Lock()
        self.admission = options.admission  # a reply that waits too long for the model (brain.admission)
        self.holding = HoldingVoice()  # the audio of holding lines, per voice

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        *,
        llm: LlmBackend,
        scheduler: ModelScheduler,
        profile: ModelProfile | None = None,
        voice: VoiceLoader | None = None,
    ) -> "Responder":
        """A responder with the settings' `ReplyOptions` (`voice` replaces their voice loader)."""
        return cls(ReplyOptions.from_settings(settings, voice=voice), llm=llm, scheduler=scheduler, profile=profile)

    def tts_for(self, persona: Any) -> TtsEngine:
        """The persona's voice, or the loader's fallback (`audio.tts_factory.load_voice`). Blocking."""
        return self.options.voice(getattr(persona, "voice", None))

    def warm_up(self, persona: Any, group: Any = None) -> None:
        """Blocking (run in a thread): load the persona's voice, put its prompt prefix in the LLM's cache, then
        synthesize its holding lines. `group`: the guild it warms up for, whose first reply (or greeting) lets
        the prompt finish evaluating instead of cutting it short and evaluating it all again, cold."""
        tts = self.tts_for(persona)
        self.prefill(persona, [], group=group, record=False)
        if self.admission.hold_after_s > 0:
            for line in holding_lines(persona):
                for _ in self.holding.chunks(
                    tts, line, lambda: self.scheduler.hold("tts", owner="warm-up", group=group), threading.Event()
                ):
                    pass

    @property
    def prefill_pays(self) -> bool:
        """Whether evaluating a prompt ahead pays: a local llama.cpp keeps the last prompt's evaluation. An LLM
        server keeps its own prompt cache (`cache_prompt`); a prefill there is a request of its own, made only
        with LLM_SERVER_PREFILL (it pays where the server evaluates prompts slowly)."""
        return bool(getattr(self.llm, "local_prompt_cache", False))

    def prefill(
        self,
        persona: Any,
        history: Sequence[Any],
        cancel: threading.Event | None = None,
        *,
        situation: str = "",
        memory: str = "",
        group: Any = None,
        give_way: Callable[[], bool] | None = None,
        record: bool = True,
    ) -> str:
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
        messages = self.build_prompt(persona, history, situation, memory=memory)
        asked = time.monotonic()
        owner = f"prefill-{group}" if record else f"warm-up-{group}"
        try:
            with self.scheduler.background(None, owner=owner, quiet_s=0.0, group=group, preempt=cancel):
                if time.monotonic() - asked > PREFILL_WAITED_S and give_way is not None and give_way():
                    return "superseded"
                stream = self.llm.stream(messages, max_tokens=1, stop=[], cancel=cancel)
                try:
                    first_item(stream)  # waits for the model itself, outside any scheduler slot
                    # the record's wait: for quiet, then for the model (`runtime.stage_times.PREFILL_STAGE`)
                    with self.scheduler.background_slot("llm", owner=owner, preempt=cancel, group=group, asked=asked):
                        started = time.monotonic()
                        for _ in stream:
                            pass
                    if group is not None and record:  # a guild's prefill (not a warm-up)
                        record_stage_time(PREFILL_STAGE, str(group), started - asked, time.monotonic() - started)
                finally:
                    close = getattr(stream, "close", None)
                    if close is not None:
                        close()
        except SchedulerCancelled:
            return "cancelled"
        return "cancelled" if cancel.is_set() else "done"

    def build_prompt(self, persona: Any, history: Sequence[Any], situation: str, *, memory: str = "") -> list[dict]:
        """The chat messages of a reply (or prefill) to `history` in this `situation`, with the `memory` block."""
        return build_messages(
            persona,
            history,
            situation=situation,
            budget_tokens=self.prompt_budget(persona),
            count_tokens=self.llm.count_tokens,
            layout=self.profile.layout,
            skip_own=self.is_flawed,
            memory=memory,
        )

    def is_flawed(self, line: HistoryLine) -> bool:
        """Whether this line of the bot's came from a reply for which the model slipped."""
        if not line.is_bot:
            return False
        with self._flawed_lock:
            return normalize(line.text) in self._flawed

    def leave_out_of_prompts(self, text: str) -> None:
        """A line of the bot's that later prompts must not show the model: one it slipped in (`note_flawed`), or
        an out-of-character announcement such as the spoken listening notice, which a small model otherwise
        imitates ("I don't have a channel to talk about it", "check my Instagram")."""
        self.note_flawed(text)

    def note_flawed(self, text: str) -> None:
        key = normalize(text)
        if not key:
            return
        with self._flawed_lock:
            self._flawed[key] = None
            self._flawed.move_to_end(key)
            while len(self._flawed) > FLAWED_LINES_KEPT:
                self._flawed.popitem(last=False)

    def sampling_for(self, attempt: int, temperature: float | None = None) -> Any:
        """The profile's sampling for one sample of a reply (another seed for each resample)."""
        sampling = self.profile.sampling
        changes: dict[str, Any] = {}
        if self.seed is not None:
            changes["seed"] = self.seed + attempt - 1
        if temperature is not None:
            changes["temperature"] = temperature
        return sampling.replace(**changes) if changes else sampling

    def describe(self) -> dict[str, Any]:
        """The profile in use (for benchmark reports)."""
        return self.profile.describe()

    def max_reply_tokens(self, persona: Any) -> int:
        max_tokens = self.options.max_tokens
        if hasattr(persona, "max_reply_tokens"):
            max_tokens = max(8, min(max_tokens, int(persona.max_reply_tokens())))
        return max_tokens

    def prompt_budget(self, persona: Any) -> int:
        """Prompt-side token budget; the same for replies and prefills, so both keep the same lines."""
        return max(64, self.options.context_tokens - self.max_reply_tokens(persona) - PROMPT_MARGIN_TOKENS)

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
        script: str | None = None,
        group: Any = None,
    ) -> ReplyResult:
        """Think and speak one reply; returns what was generated. Cancel the task to stop it.
        `memory`: what the bot remembers of the members present (a `memory.recall` block), or nothing.
        `script`: a line to speak as written instead (the listening notice, the persona's greeting): no LLM.
        `group`: the guild it is for: its model work spares that guild's own background work (`ModelScheduler`)."""
        loop = asyncio.get_running_loop()
        reply = ReplyRun(
            responder=self,
            persona=persona,
            history=list(history),
            situation=situation,
            memory=memory,
            member_names=list(member_names) if member_names is not None else _speakers(history),
            sink=sink,
            loop=loop,
            result=result if result is not None else ReplyResult(),
            script=script,
            group=group,
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
        if reply.result.stop_reason == "stale":  # dropped before its first words (brain.admission): none was said
            reply.result.text, reply.result.fragments = "", []
        sink.done()
        return reply.result


def _speakers(history: Sequence[Any]) -> list[str]:
    names = []
    for line in history:
        item = as_history_line(line)
        if not item.is_bot and item.speaker not in names:
            names.append(item.speaker)
    return names
