"""Chat messages for one reply: persona, example dialogue, the room's recent lines, the situation.

Humans' lines become user turns with their names ("Alice: …"; consecutive ones share a turn,
which also keeps strict chat templates happy); the bot's own lines become assistant turns. The
situation (why the bot speaks now) OPENS the last user turn, so the newest words come last: a
prompt evaluated while a member is still speaking (`Responder.prefill`, with the situation the
reply will have) then differs from the reply's only in their last words, and the reply evaluates
little more than those. A persona's post-history instructions close the last user turn. Memories of the members
present (`memory`, a block built by `memory.recall`) open the last user turn, before the situation: near the end,
where a small model attends to them (measured: SmolLM2-135M used a memory it was asked about in 15-21% of replies
there, 3% when it sat in the system prompt) and where a change of memories costs only the last turn's evaluation.
Under a token budget the oldest history goes first, then the example dialogue; the system prompt, the newest line and the
situation always stay (the newest line is shortened from the front only if it alone is too big). History that outgrows
the budget is cut at an anchor line (`stable_start`), not line by line: a cut that moved with every new line would
change the prompt right after the persona on every turn, and the whole history would be evaluated afresh each time. A `PromptLayout`
(`brain.profile`) shapes all this for the model's size.
"""

from __future__ import annotations

import logging
import math
import re
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from brain.profile import PromptLayout

log = logging.getLogger(__name__)

MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators a chat template adds per message
HISTORY_ANCHOR_EVERY = 12  # on average one history line in this many is a place where a budget cut may start
HISTORY_KEPT_MIN = 4  # a cut at an anchor keeps at least this many history lines before the newest
EXAMPLE_LISTENER = "Listener"


@dataclass(frozen=True, slots=True)
class HistoryLine:
    """One line of the room's conversation. `t` is a monotonic time; `is_bot` marks the bot's own lines."""

    speaker: str
    text: str
    t: float
    is_bot: bool
    cut: bool = False  # a bot line stopped before its end (a barge-in): what was heard of it


class PersonaLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def examples(self) -> Sequence[Any]: ...  # items with .user and .bot
    @property
    def post_history_instructions(self) -> str: ...

    def render_system_prompt(self) -> str: ...


def estimate_tokens(text: str) -> int:
    """Token count without a tokenizer: about 3.6 characters per token for English text."""
    return max(1, math.ceil(len(text) / 3.6)) if text else 0


def as_history_line(line: Any) -> HistoryLine:
    """Accept a HistoryLine or a room line (`name`/`speaker`, `text`, `end`/`t`, `is_bot`)."""
    if isinstance(line, HistoryLine):
        return line
    speaker = getattr(line, "speaker", None) or getattr(line, "name", "") or "Someone"
    t = getattr(line, "t", None)
    if t is None:
        t = getattr(line, "end", 0.0)
    return HistoryLine(
        speaker=str(speaker),
        text=str(line.text),
        t=float(t or 0.0),
        is_bot=bool(line.is_bot),
        cut=bool(getattr(line, "interrupted", False) or getattr(line, "cut", False)),
    )


def build_messages(
    persona: PersonaLike,
    history: Sequence[Any],
    *,
    situation: str,
    budget_tokens: int,
    count_tokens: Callable[[str], int] = estimate_tokens,
    layout: PromptLayout | None = None,
    skip_own: Callable[[HistoryLine], bool] | None = None,
    memory: str = "",
) -> list[dict]:
    """OpenAI-style chat messages for the next reply, within `budget_tokens` (prompt side).

    `layout` (default: the full persona, every line the budget allows) shapes it for a model size;
    `skip_own(line)` tells which of the bot's own lines stay out of the prompt under `own_lines="heard"`.
    """
    layout = layout or PromptLayout()
    lines = [as_history_line(line) for line in history if str(line.text).strip()]
    if not layout.own_name:
        lines = [_without_own_name(line, persona) for line in lines]
    lines = _own_lines(lines, layout.own_lines, skip_own)
    if layout.history_lines is not None:
        lines = lines[window_start(len(lines), layout.history_lines) :]

    def cost(text: str) -> int:
        return count_tokens(text) + MESSAGE_OVERHEAD_TOKENS

    system = (short_system_prompt(persona) if layout.system == "short" else persona.render_system_prompt()).strip()
    if layout.speaker_once and hasattr(situation, "short"):
        situation = situation.short  # one plain sentence, or nothing when the newest line says it all
    situation = str(situation).strip()
    post = (getattr(persona, "post_history_instructions", "") or "").strip()
    memory = memory.strip()
    closing = "\n".join(part for part in (situation, post) if part)
    closing_text = "\n".join(
        part for part in (f"({memory})" if memory else "", f"({closing})" if closing else "") if part
    )

    used = cost(system) + (cost(closing_text) if closing_text else 0)
    kept: list[HistoryLine] = []
    if lines:
        newest = lines[-1]
        room = budget_tokens - used - cost(_render(newest))
        if room < 0:
            newest = _shorten_front(newest, budget_tokens - used - MESSAGE_OVERHEAD_TOKENS - 8, count_tokens)
            log.warning("prompt budget %d too small: the newest line was shortened", budget_tokens)
        kept.append(newest)
        used += cost(_render(newest))

    examples: list[dict] = []
    for exchange in (getattr(persona, "examples", ()) or ()) if layout.examples else ():
        pair = [
            {
                "role": "user",
                "content": exchange.user if layout.speaker_once else f"{EXAMPLE_LISTENER}: {exchange.user}",
            },
            {"role": "assistant", "content": exchange.bot},
        ]
        pair_cost = sum(cost(m["content"]) for m in pair)
        if used + pair_cost > budget_tokens:
            log.info("prompt budget: example dialogue dropped after %d exchange(s)", len(examples) // 2)
            break
        examples.extend(pair)
        used += pair_cost

    dropped = 0
    for index in range(len(lines) - 2, -1, -1):
        line_cost = cost(_render(lines[index]))
        if used + line_cost > budget_tokens:
            dropped = index + 1
            break
        kept.append(lines[index])
        used += line_cost
    if dropped:
        start = stable_start(lines, dropped, len(lines) - 1)
        del kept[len(kept) - (start - dropped) :]  # kept runs newest first: its last ones are the oldest
        log.debug("prompt budget: %d oldest history line(s) dropped", start)
    kept.reverse()

    messages: list[dict] = [{"role": "system", "content": system}, *examples]
    if layout.transcript:
        messages[0]["name"] = persona.name  # the label the transcript ends with (brain/transcript.py)
    # Small layout: the situation names the speaker once, right before their words (no "Alice:" label).
    newest_bare = bool(
        layout.speaker_once
        and kept
        and not kept[-1].is_bot
        and ((situation and kept[-1].speaker in situation) or (not situation and not layout.newest_label))
    )
    for index, line in enumerate(kept):
        role = "assistant" if line.is_bot else "user"
        content = _render(line)
        if newest_bare and index == len(kept) - 1:
            content = f"({situation})\n{line.text.strip()}" if situation else line.text.strip()
        if messages[-1]["role"] == role and len(messages) > 1 + len(examples):  # never merge into examples
            messages[-1] = {"role": role, "content": messages[-1]["content"] + "\n" + content}
        else:
            messages.append({"role": role, "content": content})
    if messages[-1]["role"] == "user" and len(messages) > 1 + len(examples):
        content = messages[-1]["content"]
        if situation and not newest_bare:
            content = f"({situation})\n{content}"
        if memory:
            content = f"({memory})\n{content}"
        if post:
            content = f"{content}\n\n({post})"
        messages[-1] = {"role": "user", "content": content}
    elif closing_text:
        messages.append({"role": "user", "content": closing_text})
    else:
        messages.append({"role": "user", "content": "(Go on.)"})
    return messages


def is_anchor(line: HistoryLine) -> bool:
    """Whether a budget cut may start the history at this line: a property of the line itself (its speaker and
    words), so every prompt of the conversation agrees on it, whatever came before or after."""
    return zlib.crc32(f"{line.speaker}\x00{line.text}".encode()) % HISTORY_ANCHOR_EVERY == 0


def stable_start(lines: Sequence[HistoryLine], first_fitting: int, newest: int) -> int:
    """Where the history starts when the budget holds only `lines[first_fitting:]`: at the first anchor line from
    there on (before the `newest`), else at `first_fitting`. As the conversation grows the cut stays on one
    anchor for several turns, so consecutive prompts share everything up to their last lines (the LLM's prompt
    cache keeps them), and it moves about `HISTORY_ANCHOR_EVERY` lines at a time. An anchor more than twice that
    far on, or one that would leave fewer than `HISTORY_KEPT_MIN` lines, is not used: the context matters more."""
    last = min(newest - HISTORY_KEPT_MIN, first_fitting + 2 * HISTORY_ANCHOR_EVERY)  # never cut away most of it
    for index in range(first_fitting, last):
        if is_anchor(lines[index]):
            return index
    return first_fitting


def window_start(n_lines: int, window: int) -> int:
    """Where a history window of about `window` lines starts. It moves in steps of half a window (keeping
    `window` to `window + step - 1` lines), not line by line: consecutive prompts then share their start,
    so llama.cpp's prompt cache (and a prefill made while the member spoke) stays valid."""
    window = max(1, window)
    step = max(1, window // 2)
    return (max(0, n_lines - window) // step) * step


def short_system_prompt(persona: PersonaLike) -> str:
    """The system prompt of the small layout: who the persona is, how it speaks, how long a reply is."""
    name = persona.name
    identity = _first_sentence(getattr(persona, "identity", "") or "")
    style = _first_sentence(getattr(persona, "speaking_style", "") or "")
    words = getattr(persona, "max_reply_words", None)
    sentences = getattr(persona, "max_reply_sentences", None)
    limit = (
        f" Answer in {'one short sentence' if sentences == 1 else 'one or two short sentences'}" if sentences else ""
    )
    limit += f", at most {words} words." if words and limit else "."
    parts = [f"You are {name}, talking with friends in a voice chat.", identity, style, limit.strip()]
    return " ".join(p for p in parts if p)


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    for end in (". ", "! ", "? "):
        cut = text.find(end)
        if cut != -1:
            text = text[: cut + 1]
    return text if not text or text[-1] in ".!?" else text + "."


def _own_lines(
    lines: list[HistoryLine], policy: str, skip_own: Callable[[HistoryLine], bool] | None
) -> list[HistoryLine]:
    """The bot's own lines that go back into the prompt: all, only those heard whole and not flawed, or none."""
    if policy == "all":
        return lines
    if policy == "none":
        return [line for line in lines if not line.is_bot]
    return [
        line
        for line in lines
        if not line.is_bot
        or not (line.cut or line.text.rstrip().endswith("…") or (skip_own is not None and skip_own(line)))
    ]


_CALL_LEAD = r"hey|hi|hello|okay|ok|so|oh|well|honestly|sorry|thanks|yo"


def _without_own_name(line: HistoryLine, persona: PersonaLike) -> HistoryLine:
    """A member's line without the words that call the bot by name ("Juniper, what..." → "What...")."""
    if line.is_bot:
        return line
    names = [n for n in (persona.name, *getattr(persona, "aliases", ())) if n]
    if not names:
        return line
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    text = line.text
    text = re.sub(rf"^\s*(?:(?i:{_CALL_LEAD})[ ,]+)?(?:{alternatives})\s*[,:;]\s*", "", text)  # opening call
    text = re.sub(
        rf"([.!?]\s+)(?:(?i:{_CALL_LEAD})[ ,]+)?(?:{alternatives})\s*[,:;]\s*(\w?)",
        lambda m: m.group(1) + m.group(2).upper(),
        text,
    )  # calling it at a later sentence
    text = re.sub(rf",\s*(?:{alternatives})\s*(?=[,.!?]|$)", "", text)  # "..., Juniper?" / ", Juniper, ..."
    text = text.strip()
    if not text or text == line.text:
        return line
    text = text[0].upper() + text[1:]
    return HistoryLine(line.speaker, text, line.t, line.is_bot, line.cut)


def _render(line: HistoryLine) -> str:
    return line.text.strip() if line.is_bot else f"{line.speaker}: {line.text.strip()}"


def _shorten_front(line: HistoryLine, max_tokens: int, count_tokens: Callable[[str], int]) -> HistoryLine:
    """Keep the end of an over-long line (its last words matter most for a reply)."""
    words = line.text.split()
    while (
        len(words) > 1
        and count_tokens(_render(HistoryLine(line.speaker, " ".join(words), line.t, line.is_bot))) > max_tokens
    ):
        words = words[max(1, len(words) // 8) :]
    return HistoryLine(line.speaker, "… " + " ".join(words), line.t, line.is_bot)


def prompt_tokens(messages: Sequence[dict], count_tokens: Callable[[str], int] = estimate_tokens) -> int:
    """What `build_messages` counts for a message list (for logs and tests)."""
    return sum(count_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)
