"""Does the bot hear its name in one spoken line? The listener's decision on a final, in one call.

The text matcher first, with the members present (`conversation.addressing.resolve_names`); where the text names
nobody, the second, acoustic look (`audio.name_look`); words Whisper's confidence guard dropped that call the bot
are kept (a lone "Juniper?" often scores low). This is what `audio.listener` and `bot.voice_session` do on the STT
worker, for one clip at a time: the names check (`chorus names`) and the names benchmark use it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from audio.final_name_look import doubted_words
from audio.name_look import NameLook
from audio.stt_result import SttResult
from conversation.addressing import NameMatcher, resolve_names
from conversation.listen_for import names_to_listen_for


@dataclass(frozen=True)
class NameHearing:
    """What was heard of one line: the transcript, and whether (and how) the bot's name was in it."""

    transcript: str  # the final's text ("" when Whisper's guards dropped it)
    detected: bool  # the bot's name is heard, by the text or the look
    via: str  # "text", "look", "doubted" (dropped words kept because they call the bot) or "" (not heard)
    restored: str  # the text with the name put back by the look, or the doubted words kept; else ""
    closest: tuple[str, str, float] | None  # the look's best try (name, place, nats lost), when it ran
    text_detected: bool  # the text alone named the bot
    look_cpu_s: float | None  # process CPU time of the look, when it ran


def hear_name(
    audio: np.ndarray,
    result: SttResult,
    *,
    bot_name: str,
    aliases: Sequence[str],
    members: Sequence[tuple[int, str]],
    looker: NameLook | None,
) -> NameHearing:
    """Whether the bot is called in `audio`, transcribed as `result`, with `members` (id, name) present.
    `looker`: the acoustic look (None: the text alone, as with `STT_NAME_LOOK=false`). Blocking."""
    text = result.text
    bot = NameMatcher.for_name(bot_name, aliases)
    said = resolve_names(text, bot, members)
    detected, via, restored, closest, look_cpu = said.bot, "text" if said.bot else "", "", None, None
    doubted = doubted_words(result)
    heard_text = text or doubted
    query = names_to_listen_for(heard_text, bot, bot_name, aliases, members) if looker and heard_text else None
    if query is not None and query.named and doubted:
        detected, via, restored = True, "doubted", doubted
    elif query is not None and not query.named and looker is not None:
        started = time.process_time()
        own_score = result.avg_logprob if (result.raw_text or "").strip() == text else None
        heard = looker.look_for(query, audio, heard_text, encoded=result.encoded, avg_logprob=own_score)
        look_cpu = time.process_time() - started
        closest = looker.last_closest
        if heard is not None:
            restored = heard.text
            detected, via = resolve_names(restored, bot, members).bot, "look"
    return NameHearing(
        transcript=text,
        detected=bool(detected),
        via=via if detected else "",
        restored=restored,
        closest=closest,
        text_detected=bool(said.bot),
        look_cpu_s=look_cpu,
    )
