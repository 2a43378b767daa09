"""Where in a line a name calls someone: set off by commas ("Trixie, explain…", "…, Captain?"), or opening a
question without its comma, as Whisper often writes it ("Captain how do you…"). There a bent name may be
matched more loosely, and a short alias or a title counts as a call (`conversation.addressing`)."""

from __future__ import annotations

import re

from conversation.text_words import words

CALL_WORDS = frozenset("hey hi hello oi yo ok okay so um uh oh well excuse me".split())
_SENTENCE_BREAK = re.compile(r"[.!?;](?=\s|$)")
_WH_OPENERS = frozenset("what whats what's who whos who's which when where why how hows how's".split())
_ASKING_VERBS = frozenset("can could would will do did are have should".split())
_ASKED = frozenset("you we u ya".split())
# Words that open a sentence without calling anyone by name: discourse markers ("Right. Where did you…",
# "Anyway. Who wants…", "Sorry. What did you say?") and calls to the whole group ("Guys. What…").
DISCOURSE_WORDS = frozenset(
    "right alright anyway anyways actually sorry wait listen look hmm hm ah aha er erm huh yeah yep yes no nope "
    "now also honestly seriously basically really then thanks cool great nice wow "
    "guys everyone everybody folks people yall all team".split()  # as `words` writes them ("y'all" → "yall")
)
_NOT_A_NAME = (
    _WH_OPENERS
    | _ASKING_VERBS
    | DISCOURSE_WORDS
    | frozenset("i you we it they he she the a an to and but or if is was be this that there here not".split())
)


def vocative_positions(text: str) -> set[int]:
    """Indices (into `words(text)`) of the words where a name calls someone: before the first comma at the
    start ("Trixie, explain…", "Hey June, …") or after the last comma at the end ("…, Captain?"), one to
    three words. Whisper bends names it does not know ("Trexy"): there they may match more loosely."""
    tokens = words(text)
    out: set[int] = set()
    slot = head_slot(text)
    if slot is not None:
        out.update(range(slot[0], slot[1] + 1))
    parts = text.split(",")
    if len(parts) < 2:
        return out
    head = words(parts[0])
    skip = 0
    while skip < len(head) and head[skip] in CALL_WORDS:
        skip += 1
    if 1 <= len(head) - skip <= 3:
        out.update(range(skip, len(head)))
    tail = words(parts[-1])
    if 1 <= len(tail) <= 3:
        out.update(range(len(tokens) - len(tail), len(tokens)))
    return out


def head_slot(text: str) -> tuple[int, int] | None:
    """(first, last) word indices of a name opening the line without its comma, as Whisper often writes it:
    one to three words (after call words) ended by a full stop ("Always. What is…") or followed by a question
    opener ("Captain how do you…", "June can you…"). Words that open a plain sentence ("I wonder what…",
    "do you know…") are no such head."""
    tokens = words(text)
    skip = 0
    while skip < len(tokens) and tokens[skip] in CALL_WORDS:
        skip += 1
    stop = _SENTENCE_BREAK.search(text)
    end = len(words(text[: stop.start()])) if stop is not None else len(tokens)
    if skip < end <= skip + 3 and end < len(tokens):
        head = tokens[skip:end]
    else:
        opener = next(
            (k for k in range(skip + 1, min(skip + 4, len(tokens))) if _opens_question(tokens[k : k + 2], _ASKED)),
            None,
        )
        if opener is None:
            return None
        head, end = tokens[skip:opener], opener
    if any(w in _NOT_A_NAME for w in head):
        return None
    return skip, end - 1


_ASKING_ABOUT = _ASKED | frozenset({"i"})  # "should I…", "can I…": a question too, though not about the listener


def _opens_question(pair: list[str], asked: frozenset[str]) -> bool:
    """Whether a word (with the one after it) opens a question: a wh-word, or an asking verb before one of `asked`."""
    return bool(pair) and (pair[0] in _WH_OPENERS or (pair[0] in _ASKING_VERBS and len(pair) > 1 and pair[1] in asked))


def question_after_head(text: str) -> str | None:
    """The line from its question opener on, as written, when one to three words come before the opener with no
    comma or full stop between ("You never should I learn…" → "should I learn…"): where a name Whisper bent may
    have stood. Unlike `head_slot` any words may form the head (the acoustic look, not the text, judges them).
    None when no such opener comes second to fourth, after call words."""
    raw = text.split()
    said = [" ".join(words(w)) for w in raw]  # each written word as `words` reads it ("" for punctuation alone)
    skip = 0
    while skip < len(raw) and said[skip] in CALL_WORDS:
        skip += 1
    for k in range(skip + 1, min(skip + 4, len(raw))):
        if _SENTENCE_BREAK.search(raw[k - 1]) or "," in raw[k - 1]:
            return None  # the head ends at a comma or a full stop: `audio.name_look.edits` has that one
        if _opens_question(said[k : k + 2], _ASKING_ABOUT):
            return " ".join(raw[k:])
    return None


def set_off_spans(text: str) -> set[tuple[int, int]]:
    """(first, last) word indices of each comma-delimited part of one to three words, leading call words left
    out ("Hey Juniper," → "juniper"): a name standing alone between commas calls someone wherever it is
    ("Bob, Juniper, what…"); "I told Juniper, and…" is no such part."""
    out: set[tuple[int, int]] = set()
    slot = head_slot(text)
    if slot is not None:
        out.add(slot)
    position = 0
    for part in text.split(","):
        tokens = words(part)
        skip = 0
        while skip < len(tokens) and tokens[skip] in CALL_WORDS:
            skip += 1
        if 1 <= len(tokens) - skip <= 3:
            out.add((position + skip, position + len(tokens) - 1))
        position += len(tokens)
    return out
