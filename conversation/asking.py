"""What a line asks of whoever hears it, by its words: a question (also one Whisper closed with a full stop), or
a request for talk ("tell us a fun fact", "explain how bread is made"). Either, put to the room, is open to
anyone at the table, the bot included (`reply_rules.rule_room_question`)."""

from __future__ import annotations

import re

from conversation.line_shape import looks_like_question
from conversation.vocative import CALL_WORDS

_WH_WORDS = frozenset("what who whom whose which when where why how".split())
_AUXILIARIES = frozenset("is are am was were do does did can could will would should shall may might have has".split())
_SUBJECTS = frozenset(
    "i you we they he she it there anyone anybody someone somebody everyone everybody one the "
    "this that these those your my our his her their".split()
)
_HOW_NEXT = _AUXILIARIES | frozenset("many much long often far old".split())
_LEAD_WORDS = CALL_WORDS | frozenset({"and", "but", "then", "guys", "everyone"})
_CLAUSE_WORDS = re.compile(r"[A-Za-z][A-Za-z']*")
_CLAUSE_BREAK = re.compile(r"[,.!?;:]")
_COMMA = re.compile(",")

# Verbs whose imperative asks for talk, with the words that may follow them in such a request (None: any).
# "Tell me a story", "ask us something", "name one good thing", "explain how…"; not "tell him I said hi",
# "name the dog Rex", "say no".
_TALK_OBJECTS = frozenset(
    "me us everyone everybody something anything a an one some another more your about the".split()
)
_REQUESTS: dict[str, frozenset[str] | None] = {
    "tell": _TALK_OBJECTS,
    "ask": frozenset("me us everyone everybody something anything a an one some another".split()),
    "name": frozenset("one a an some something any two three five your".split()),
    "say": frozenset("something anything a an some more".split()),
    "share": _TALK_OBJECTS,
    "teach": frozenset("me us".split()),
    "sing": frozenset("me us a an something some".split()),
    "talk": frozenset("about to".split()),
    "explain": None,
    "describe": None,
    "recommend": None,
    "suggest": None,
}
_REQUEST_LEAD = _LEAD_WORDS | frozenset({"please", "now", "somebody", "someone", "anyone", "come", "on"})
_IDIOMS = frozenset({"tell me about it", "you tell me", "tell me something i don't know", "say no more"})


def _clauses(text: str, *, breaks: re.Pattern[str]) -> list[list[str]]:
    return [_CLAUSE_WORDS.findall(part) for part in breaks.split(text)]


def asks_something(text: str) -> bool:
    """A question by its words, also when Whisper closed it with a full stop: `looks_like_question`, or a
    clause (of three words or more) that opens with a question word ("what did Alice want to cook.") or an
    inverted auxiliary before its subject ("did you see", "can we", "is Bob"), the way English marks a
    question. Exclamations ("What a day.", "How nice.") and statements ("Had a good time.") are not."""
    if looks_like_question(text):
        return True
    for tokens in _clauses(text, breaks=_COMMA):
        while tokens and tokens[0].lower() in _LEAD_WORDS:
            tokens.pop(0)
        if len(tokens) < 3:
            continue
        first, second = tokens[0].lower(), tokens[1].lower()
        if first in _WH_WORDS and second not in ("a", "an") and (first != "how" or second in _HOW_NEXT):
            return True
        if (
            first in _AUXILIARIES
            and (second in _SUBJECTS or tokens[1][0].isupper())
            and (first, second) != ("do", "it")
        ):
            return True  # "Do it later." is an order
    return False


def requests_talk(text: str) -> bool:
    """A request for talk in the imperative: a clause of three words or more that opens with a verb of
    telling ("Tell us a fun fact.", "Somebody explain how tides work.", "Name one good thing about rain.").
    Idioms that only sound like one ("Tell me about it.", "You tell me.") are not."""
    for tokens in _clauses(text, breaks=_CLAUSE_BREAK):
        lowered_tokens = [t.lower() for t in tokens]
        if " ".join(lowered_tokens) in _IDIOMS:
            continue
        while lowered_tokens and lowered_tokens[0] in _REQUEST_LEAD:
            lowered_tokens.pop(0)
        if len(lowered_tokens) < 3 or " ".join(lowered_tokens) in _IDIOMS:
            continue
        verb, following = lowered_tokens[0], lowered_tokens[1]
        if verb in _REQUESTS:
            allowed = _REQUESTS[verb]
            if allowed is None or following in allowed:
                return True
    return False


def asks_the_room(text: str) -> bool:
    """A question or a request for talk: something anyone who hears it may take up."""
    return asks_something(text) or requests_talk(text)
