"""The seed's reply path with chorus' models, for the end-to-end benchmark's `baseline` mode.

The seed waited for a long end of speech, transcribed, asked the LLM for the WHOLE reply, then played it
with RealtimeTTS sentence by sentence, each sentence as soon as it was synthesized. `WholeReplyResponder`
does that through chorus' own prompt, sampling, cleaning, limits and voice; `baseline_parts` puts it (and
a seed-like listener: a long endpoint, no partial or speculative transcripts) into a voice session.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Sequence

from runtime.settings import Settings
from brain.budget import ReplyBudget
from brain.chunker import Fragment, SpeechChunker
from brain.clean import clean_reply
from brain.prompt import as_history_line
from brain.responder import SAID_BEFORE_LINES, Responder, ReplyResult


class WholeReplyResponder:
    """The seed's reply path with chorus' models: the whole LLM reply first, then spoken sentence by sentence.

    As the seed did with RealtimeTTS: the complete reply is cleaned and cut into sentences, each sentence is
    synthesized in turn and its audio played as soon as it is made (the first audio is the first sentence's,
    not the whole reply's). Same `respond(...)` signature as `brain.responder.Responder`, and through one the
    same LLM backend, scheduler, prompt, sampling, cleaning, persona limits and voice. Cancelling the task stops
    generation and synthesis; no sink call happens after it.
    """

    def __init__(self, settings: Settings, *, llm: Any, scheduler: Any, player: Any = None) -> None:
        self.settings = settings
        self.llm = llm
        self.scheduler = scheduler
        self.player = player  # when given, respond() returns once the reply has been played (RealtimeTTS' play())
        self._streaming = Responder.from_settings(settings, llm=llm, scheduler=scheduler)

    async def respond(
        self,
        persona: Any,
        history: Sequence[Any],
        *,
        situation: str,
        sink: Any,
        member_names: Sequence[str] | None = None,
    ) -> ReplyResult:
        loop = asyncio.get_running_loop()
        result = ReplyResult()
        result.timings["request"] = time.monotonic()
        names = (
            list(member_names)
            if member_names is not None
            else list(dict.fromkeys(item.speaker for item in map(as_history_line, history) if not item.is_bot))
        )
        cancel = threading.Event()
        cancelled = False

        def deliver(kind: str, payload: Any) -> None:  # on the loop thread, never after a cancel
            if cancelled:
                return
            if kind == "text":
                sink.text(payload)
            else:
                result.timings.setdefault("first_audio", time.monotonic())
                sink.audio(*payload)

        def post(kind: str, payload: Any) -> None:
            loop.call_soon_threadsafe(deliver, kind, payload)

        work = asyncio.ensure_future(
            asyncio.to_thread(self._generate, persona, list(history), situation, names, cancel, result, post)
        )
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            cancelled = True
            cancel.set()
            result.cancelled = True
            result.stop_reason = "cancelled"
            raise
        await asyncio.sleep(0)  # the last posted chunks reach the sink first
        result.stop_reason = result.stop_reason or "end"
        sink.done()
        if self.player is not None and result.audio_seconds:
            # The seed's play() blocks until the audio has gone out.
            give_up = time.monotonic() + result.audio_seconds + 10.0
            while self.player.is_playing_audio and time.monotonic() < give_up:
                await asyncio.sleep(0.02)
        result.timings["done"] = time.monotonic()
        return result

    def _generate(
        self,
        persona: Any,
        history: list[Any],
        situation: str,
        names: list[str],
        cancel: threading.Event,
        result: ReplyResult,
        post: Any,
    ) -> None:
        streaming = self._streaming
        messages = streaming.build_prompt(persona, history, situation)
        result.timings["prompt_built"] = time.monotonic()
        raw: list[str] = []
        owner = f"baseline-{id(result)}"
        with self.scheduler.hold("llm", owner=owner, cancel=cancel):
            stream = self.llm.stream(
                messages,
                max_tokens=streaming.max_reply_tokens(persona),
                stop=streaming.stop_strings(persona, names),
                cancel=cancel,
                sampling=streaming.sampling_for(1),
            )
            try:
                for token in stream:
                    if cancel.is_set():
                        break
                    if token:
                        result.timings.setdefault("first_token", time.monotonic())
                        raw.append(token)
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
        result.timings["llm_done"] = time.monotonic()
        result.raw_text = "".join(raw)
        instructions = [m["content"] for m in messages if m.get("role") == "system"] + [
            situation,
            getattr(situation, "short", ""),
        ]
        said_before = [line.text for line in map(as_history_line, history) if line.is_bot][-SAID_BEFORE_LINES:]
        text = clean_reply(
            result.raw_text,
            persona_name=persona.name,
            other_names=names,
            instructions=instructions,
            said_before=said_before,
            addressee=getattr(situation, "addressee", None),
            small_model_repairs=streaming.profile.small_model_repairs,
        )
        budget = ReplyBudget(
            max_words=getattr(persona, "max_reply_words", None),
            max_sentences=getattr(persona, "max_reply_sentences", None),
        )
        chunker = SpeechChunker()
        sentences = [frag for frag in chunker.feed(text + " ") + chunker.flush()]
        kept = [f.text for f in (budget.take(Fragment(f.text, True)) for f in _whole_sentences(sentences)) if f]
        result.fragments = kept
        result.text = " ".join(kept)
        if kept:
            result.timings["first_fragment"] = time.monotonic()  # the whole reply is there: its first sentence
        tts = streaming.tts_for(persona)
        result.tts_engine = tts.name
        for sentence in kept:  # RealtimeTTS: each sentence played as soon as it is synthesized
            if cancel.is_set():
                return
            post("text", sentence)
            with self.scheduler.hold("tts", owner=owner, cancel=cancel):
                for pcm, rate in tts.synthesize(sentence, cancel):
                    if cancel.is_set():
                        return
                    result.timings.setdefault("tts_first_chunk", time.monotonic())
                    result.audio_seconds += len(pcm) / rate
                    post("audio", (pcm, rate))
            result.spoken_text = f"{result.spoken_text} {sentence}".strip()
        result.timings["tts_done"] = time.monotonic()


def _whole_sentences(fragments: list[Fragment]) -> list[Fragment]:
    """Fragments joined into whole sentences (the chunker may cut a first clause early; the seed did not)."""
    out: list[Fragment] = []
    pending = ""
    for frag in fragments:
        pending = f"{pending} {frag.text}".strip()
        if frag.sentence_end:
            out.append(Fragment(pending, True))
            pending = ""
    if pending:
        out.append(Fragment(pending, True))
    return out


def baseline_parts(end_silence_ms: int):
    """`PrompterCog.session_parts` replacement: seed-style listener (endpoint, then STT) and responder."""

    async def parts(cog: Any, guild: Any) -> dict[str, Any]:
        from audio.listener import Listener
        from audio.playback import StreamPlayer

        llm, scheduler = await cog._shared_parts()
        bot_id = cog.bot.user.id if cog.bot.user is not None else None

        def make_listener(settings: Settings, **callbacks: Any) -> Listener:
            return Listener(
                settings,
                ignore_user_ids=(bot_id,) if bot_id else (),
                speculative=False,
                partials=False,
                end_silence_ms=end_silence_ms,
                **callbacks,
            )

        player = StreamPlayer()
        return {
            "responder": WholeReplyResponder(cog.bot.settings, llm=llm, scheduler=scheduler, player=player),
            "player": player,
            "make_listener": make_listener,
        }

    return parts
