"""Automatic checks on one spoken reply: is it worth hearing?

Shared by the reply-quality benchmark (`benchmarks.quality_bench`) and the end-to-end benchmark
(`benchmarks.e2e_bench`). Each check is a plain function of the reply and what the bot knew; `check_reply`
runs them all and says why a check failed.

- `spoken`: something speakable is left (a word with a letter).
- `on_topic`: the reply contains a word of the prompt's rubric (`Rubric.any`, or a word of one of its
  `kinds`; kind "question": it asks something), and is not just the prompt said back.
- `right_addressee`: no name other than the member who spoke is used to address someone ("Thanks, Bob!"
  to Alice). When nobody spoke (a topic start), any member present may be addressed.
- `identity`: it does not claim to be someone else ("I'm Alice", "my name is Bob") nor write a member's line
  (a reply that opens with "Alice:"). Saying it is a bot is no claim to be someone else: it is honest.
- `no_repeat`: it does not repeat one of its earlier lines (60 % of its words in order, in runs of 3+).
- `no_instructions`: it does not read its instructions aloud (the same measure against the system prompt
  and situation, plus phrases only instructions contain).
- `length`: within the persona's limits (words, sentences).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from benchmarks.quality_corpus import QUESTION_KIND, Rubric
from brain.chunker import SpeechChunker
from conversation.text_words import words
from conversation.text_overlap import copies
from simulator.term_match import term_in

CHECKS = ("spoken", "on_topic", "right_addressee", "identity", "no_repeat", "no_instructions", "length")
REPEAT_SHARE = 0.6
REPEAT_MIN_WORDS = 4
INSTRUCTION_MIN_WORDS = 5
ECHO_SHARE = 0.6  # a reply this much made of the prompt's own words (in order) only says it back
COPY_RUN = 3
SOCIAL_KINDS = ("greeting", "goodbye")  # "Hi!" answers "Hi Juniper!": a greeting's words may be the prompt's
GENERIC_NAMES = ("User", "Listener", "Assistant", "Human", "System")
# Phrases that only instructions contain.
INSTRUCTION_PHRASES = (
    "speech-friendly",
    "text-to-speech",
    "stage directions",
    "speaker label",
    "in the voice channel with you",
    "is talking to you",
    "add one short",
    "keep each reply",
    "never start with a name",
)
_VOCATIVE_LEAD = (
    r"(?:hi|hey|hello|thanks|thank you|bye|goodbye|night|good night|welcome|welcome back|sorry|oh|well|"
    r"okay|ok|yes|no|yeah|come on|dear|congrats|congratulations|wow|ah|aw|ahoy|evening|morning)"
)


@dataclass(frozen=True)
class ReplyContext:
    """What a reply is judged against."""

    persona_name: str
    persona_aliases: tuple[str, ...] = ()
    speaker: str | None = None  # the member the bot answers; None: nobody spoke (a topic start)
    members: tuple[str, ...] = ()  # who is in the channel
    known_names: tuple[str, ...] = ()  # every member name the benchmark uses (a name from another room is wrong too)
    prompt_text: str = ""
    instructions: tuple[str, ...] = ()  # system prompt and situation the model was given
    earlier_replies: tuple[str, ...] = ()  # the bot's earlier lines (in this run)
    max_words: int | None = None
    max_sentences: int | None = None
    rubric: Rubric = field(default_factory=Rubric)
    kinds: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass
class CheckResult:
    passed: dict[str, bool]
    why: dict[str, str]  # failed check -> reason
    evidence: str = ""  # why on_topic passed (the rubric term found)

    @property
    def all_passed(self) -> bool:
        return all(self.passed.values())


def spoken(reply: str) -> bool:
    return any(ch.isalpha() for ch in reply)


def rubric_hits(reply: str, rubric: Rubric, kinds: Mapping[str, Sequence[str]]) -> list[str]:
    """Every rubric term the reply contains ("?" for the question kind)."""
    reply_words = words(reply)
    hits = [term for term in rubric.any if term_in(term, reply_words)]
    for kind in rubric.kinds:
        if kind == QUESTION_KIND:
            if "?" in reply:
                hits.append("?")
            continue
        hits += [term for term in kinds.get(kind, ()) if term_in(term, reply_words)]
    return list(dict.fromkeys(hits))


def on_topic(reply: str, ctx: ReplyContext) -> tuple[bool, str]:
    """A rubric term that the prompt did not already say is enough; terms taken from the prompt ("eggs" in a
    reply to "what can I cook with eggs?") count only two together, so naming the prompt's words is not an answer.
    Except where the prompt's words are the answer: a choice ("cats or dogs?"), a greeting or goodbye."""
    if not spoken(reply):
        return False, "nothing spoken"
    if ctx.prompt_text and copies(reply, [ctx.prompt_text], min_share=ECHO_SHARE, min_words=3, min_run=COPY_RUN):
        return False, "says the prompt back"
    hits = rubric_hits(reply, ctx.rubric, ctx.kinds)
    prompt_words = words(ctx.prompt_text)
    if "or" in prompt_words:  # a choice ("cats or dogs?") is answered by naming one of the prompt's words
        prompt_words = []
    social = {t for kind in SOCIAL_KINDS for t in ctx.kinds.get(kind, ()) if kind in ctx.rubric.kinds}
    fresh = [h for h in hits if h == "?" or h in social or not term_in(h, prompt_words)]
    if fresh:
        return True, f"has {fresh[0]!r}"
    if len(hits) >= 2:
        return True, f"has {hits[0]!r} and {hits[1]!r}"
    return False, (f"only {hits[0]!r}, from the prompt" if hits else "no rubric word")


def addressed_names(reply: str, names: Iterable[str]) -> list[str]:
    """Names the reply uses to address someone: "Bob, ...", "..., Bob!", "Thanks Bob" (names as written)."""
    found = []
    for name in dict.fromkeys(n for n in names if n):
        n = re.escape(name)
        patterns = (
            rf"(?:^|[.!?…]\s+)[\"“]?{n}\s*[,!?.:;—–-]",  # opens a sentence, then a break
            rf",\s*{n}\s*(?:[.!?,;…]|$)",  # closes a clause
            rf"\b(?i:{_VOCATIVE_LEAD})[,!]?\s+{n}\b",  # "Hi Bob", "Thanks, Bob"
            rf"^\s*{n}\s*$",  # the whole reply
        )
        if any(re.search(p, reply) for p in patterns):
            found.append(name)
    return found


def right_addressee(reply: str, ctx: ReplyContext) -> tuple[bool, str]:
    allowed = {ctx.speaker} if ctx.speaker else set(ctx.members)
    own = {ctx.persona_name, *ctx.persona_aliases}
    candidates = [n for n in (*ctx.members, *ctx.known_names, *GENERIC_NAMES) if n not in allowed and n not in own]
    wrong = addressed_names(reply, candidates)
    return (False, f"addresses {', '.join(wrong)}") if wrong else (True, "")


def identity(reply: str, raw: str, ctx: ReplyContext) -> tuple[bool, str]:
    own = {n.casefold() for n in (ctx.persona_name, *ctx.persona_aliases)}
    others = [n for n in dict.fromkeys((*ctx.members, *ctx.known_names, *GENERIC_NAMES)) if n.casefold() not in own]
    for name in others:
        n = re.escape(name)
        if re.search(rf"\b(?:i'?m|i am|i’m|my name is|my name's|call me|this is|it's me,?)\s+{n}\b", reply, re.I):
            return False, f"claims to be {name}"
        if re.match(rf"\s*[*_]*{n}[*_]*\s*:", raw or "", re.I):
            return False, f"writes {name}'s line"
    return True, ""


def no_repeat(reply: str, ctx: ReplyContext) -> tuple[bool, str]:
    earlier = [r for r in ctx.earlier_replies if r.strip()]
    if copies(reply, earlier, min_share=REPEAT_SHARE, min_words=REPEAT_MIN_WORDS, min_run=COPY_RUN):
        return False, "repeats an earlier line"
    return True, ""


def no_instructions(reply: str, ctx: ReplyContext) -> tuple[bool, str]:
    low = reply.lower()
    phrase = next((p for p in INSTRUCTION_PHRASES if p in low), None)
    if phrase:
        return False, f"says {phrase!r}"
    if copies(reply, ctx.instructions, min_share=REPEAT_SHARE, min_words=INSTRUCTION_MIN_WORDS, min_run=COPY_RUN):
        return False, "copies its instructions"
    return True, ""


def sentences(text: str) -> int:
    """Sentences as the reply path counts them (`brain.chunker`: "Dr." or "5.3" ends none, "No, no." does)."""
    chunker = SpeechChunker()
    fragments = chunker.feed(text + " ") + chunker.flush()
    return sum(1 for f in fragments if f.sentence_end) or (1 if text.strip() else 0)


def length(reply: str, ctx: ReplyContext) -> tuple[bool, str]:
    n_words = len(reply.split())
    n_sentences = sentences(reply)
    if ctx.max_words and n_words > ctx.max_words:
        return False, f"{n_words} words (at most {ctx.max_words})"
    if ctx.max_sentences and n_sentences > ctx.max_sentences:
        return False, f"{n_sentences} sentences (at most {ctx.max_sentences})"
    return True, ""


def check_reply(reply: str, ctx: ReplyContext, *, raw: str = "") -> CheckResult:
    """Every check on one reply (the cleaned, spoken text; `raw`: what the model wrote)."""
    results = {
        "spoken": (spoken(reply), "nothing speakable"),
        "on_topic": on_topic(reply, ctx),
        "right_addressee": right_addressee(reply, ctx),
        "identity": identity(reply, raw, ctx),
        "no_repeat": no_repeat(reply, ctx),
        "no_instructions": no_instructions(reply, ctx),
        "length": length(reply, ctx),
    }
    passed = {k: bool(v[0]) for k, v in results.items()}
    why = {k: v[1] for k, v in results.items() if not v[0]}
    evidence = results["on_topic"][1] if passed["on_topic"] else ""
    return CheckResult(passed=passed, why=why, evidence=evidence)


def rates(results: Sequence[CheckResult]) -> dict[str, float | None]:
    """`<check>_rate` for each check: the share of replies that passed it (None without replies)."""
    out: dict[str, float | None] = {}
    for check in CHECKS:
        out[f"{check}_rate"] = round(sum(r.passed[check] for r in results) / len(results), 3) if results else None
    return out
