"""A short summary of one member's part in a call, kept as "talked about …" for next time.

Two ways (`MEMORY_SUMMARY`; `off` keeps no summary):
- `llm`: the model writes one sentence from the call's lines. Small models invent; a summary is kept
  only if it starts like a summary and shares content words with what the member said, else the
  extractive one is kept instead.
- `extractive` (the default): the member's own most telling lines (the ones with the most content words),
  quoted. Measured (`benchmarks/memory_bench.py`): as often on topic as SmolLM2-135M's checked summaries and
  more faithful (the model's that pass the check still invent details: "a new recipe for jollof rice").
Both run in the background under the model scheduler (`ModelScheduler.background`), never on a
reply's path; the LLM generation stops at once when a reply needs the model (and is tried again later).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, Sequence

from memory.store import search_terms

log = logging.getLogger(__name__)

MAX_SUMMARY_WORDS = 30
MAX_TRANSCRIPT_LINES = 40
MAX_QUOTE_WORDS = 14
MIN_CONTENT_WORDS = 2  # a member who said less than this gets no summary
SUMMARY_MAX_TOKENS = 48

SYSTEM = (
    "You keep short notes about people after a voice chat, so you can remember them next time. "
    'Write one short sentence about what {name} talked about, starting with "{name} talked about". '
    "Only what {name} said; no other names."
)


@dataclass(frozen=True, slots=True)
class Line:
    speaker: str
    text: str
    user_id: int | None  # None: the bot


class SummaryPreempted(Exception):
    """A reply needed the model: the summary stopped and should be tried again later."""


def content_words(lines: Sequence[str]) -> set[str]:
    return {w for line in lines for w in search_terms(line)}


def extractive_summary(name: str, member_lines: Sequence[str]) -> str | None:
    """'said "…" and "…"' from the member's two most telling lines (None if they said nothing telling)."""
    scored = []
    for index, text in enumerate(member_lines):
        text = " ".join(text.split())
        if text.endswith("?"):
            continue
        words = text.split()
        if len(words) > MAX_QUOTE_WORDS:
            text = " ".join(words[:MAX_QUOTE_WORDS]) + "…"
        scored.append((len(search_terms(text)), index, text))
    best = sorted([s for s in scored if s[0] >= MIN_CONTENT_WORDS], reverse=True)[:2]
    if not best:
        return None
    quotes = [f'"{text.rstrip(".!")}"' for _, _, text in sorted(best, key=lambda s: s[1])]
    return "said " + " and ".join(quotes)


def clean_llm_summary(name: str, raw: str, member_lines: Sequence[str]) -> str | None:
    """The model's sentence as a stored predicate ("talked about …"), or None when it is not usable."""
    text = " ".join(raw.replace("\n", " ").split())
    text = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].strip()
    match = re.match(
        rf"(?i)^(?:{re.escape(name)}\s+)?(talked|spoke|chatted|told|asked|mentioned|said|shared)\b\s*(.*)$", text
    )
    if match is None:
        return None
    predicate = f"{match.group(1).lower()} {match.group(2)}".strip().rstrip(".")
    words = predicate.split()
    if len(words) < 3:
        return None
    predicate = " ".join(words[:MAX_SUMMARY_WORDS])
    said = content_words(member_lines)
    if len(content_words([predicate]) & said) < 1:  # about nothing they said: invented
        return None
    return predicate


def transcript(lines: Sequence[Line], bot_name: str) -> str:
    out = []
    for line in list(lines)[-MAX_TRANSCRIPT_LINES:]:
        speaker = bot_name if line.user_id is None else line.speaker
        out.append(f"{speaker}: {line.text}")
    return "\n".join(out)


def llm_summary(
    llm: Any,
    scheduler: Any,
    name: str,
    lines: Sequence[Line],
    member_lines: Sequence[str],
    *,
    bot_name: str,
    owner: str,
    cancel: threading.Event | None = None,
) -> str | None:
    """Blocking (a worker thread): the model's summary under the scheduler's background slot.
    Raises SummaryPreempted when a reply took the model first."""
    messages = [
        {"role": "system", "content": SYSTEM.format(name=name)},
        {
            "role": "user",
            "content": f'Conversation:\n"""\n{transcript(lines, bot_name)}\n"""\n\nIn one sentence, what '
            f'did {name} talk about? Start with "{name} talked about".',
        },
    ]
    with scheduler.background("llm", owner=owner, cancel=cancel) as preempt:
        raw = ""
        for token in llm.stream(
            messages, max_tokens=SUMMARY_MAX_TOKENS, stop=["\n\n"], cancel=preempt, temperature=0.2
        ):
            raw += token
        if preempt.is_set():
            raise SummaryPreempted(owner)
    summary = clean_llm_summary(name, raw, member_lines)
    if summary is None:
        log.debug("memory: the model's summary was not usable (%r); keeping the member's own lines", raw[:160])
    return summary


def summarize_member(
    method: str,
    name: str,
    lines: Sequence[Line],
    member_lines: Sequence[str],
    *,
    llm: Any = None,
    scheduler: Any = None,
    bot_name: str = "",
    owner: str = "memory",
    cancel: threading.Event | None = None,
) -> str | None:
    """Blocking: the summary of `name`'s part (`method`: llm, extractive or off), None when there is nothing to keep."""
    if method == "off" or len(content_words(member_lines)) < MIN_CONTENT_WORDS:
        return None
    if method == "llm" and llm is not None and scheduler is not None:
        summary = llm_summary(llm, scheduler, name, lines, member_lines, bot_name=bot_name, owner=owner, cancel=cancel)
        if summary is not None:
            return summary
    return extractive_summary(name, member_lines)
