"""What a line's words say about the turn, beside who it is for (`conversation.addressing`): a question, a
sentence not finished yet, a backchannel ("mm-hm") or a bid for the floor, and whether two transcripts of
the same speech differ."""

from __future__ import annotations

import re

from conversation.text_words import words

QUESTION_OPENERS = frozenset(
    "what who whom whose which when where why how is are am was were do does did can could will would "
    "should shall may might have has had isn't aren't don't doesn't didn't can't won't wouldn't "
    "couldn't shouldn't".split()
)
BACKCHANNELS = frozenset(
    {
        "mm",
        "mmm",
        "mhm",
        "mm hm",
        "mm hmm",
        "uh huh",
        "uh-huh",
        "mm-hm",
        "mm-hmm",
        "hmm",
        "hm",
        "yeah",
        "yes",
        "yep",
        "yup",
        "right",
        "ok",
        "okay",
        "sure",
        "oh",
        "ah",
        "uh",
        "um",
        "wow",
        "nice",
        "cool",
        "true",
        "i see",
        "got it",
        "oh yeah",
        "yeah yeah",
        "right right",
        "ha",
        "haha",
        "ha ha",
        "hahaha",
        "ha ha ha",
        "lol",
        "heh",
        "hehe",
        "really",
        "oh really",
        "no way",
        "oh wow",
        "oh no",
        "oh nice",
        "awesome",
        "exactly",
        "totally",
        "interesting",
        "for real",
        "oh my god",
        "oh my gosh",
        "aha",
        "ah ha",
        "ooh",
        "oh okay",
        "fair enough",
        "makes sense",
        "i know",
        "same",
        "indeed",
        "wow wow",
    }
)
# Words that bid for the floor even in a short burst over someone ("Wait!", "Stop.", "Sorry, what?").
TAKEOVER_CUES = frozenset(
    "wait stop hold hang sorry excuse pardon what no nope hey listen actually but shut enough quiet question".split()
)
SHORT_BURST_WORDS = 2  # a burst this short over someone, with no cue in it, is taken as a backchannel
SHORT_BURST_S = 0.7  # and one this short (seconds of voice), whatever Whisper made of it
# Words a sentence does not end on: a line that stops on one is not finished, whatever its punctuation
# (Whisper closes every segment with a full stop).
CONTINUATION_WORDS = frozenset(
    "and or but because um uh er erm the a an to of with if whether my your our their his i".split()
)

# Endings that promise a clause still to come (a verb of thinking or asking without its object, a frame like
# "the thing is"): "Juniper, I was wondering…", "my question is…". A pause after one is a pause, whatever
# Whisper's full stop or the voice's falling pitch say; at worst a finished "I was just wondering." waits the
# longer incomplete wait.
PROJECTING_TAILS: tuple[tuple[str, ...], ...] = tuple(
    tuple(t.split())
    for t in (
        "wondering",
        "was thinking",
        "were thinking",
        "wanted to ask",
        "want to ask",
        "wanted to know",
        "want to know",
        "question is",
        "thing is",
        "problem is",
        # a pseudo-cleft before its copula: "What I really want to know is <pause> how long…", "What I mean is",
        # "All I'm saying is" (not "the plan is": "Tell me what the plan is." is whole)
        "know is",
        "mean is",
        "saying is",
        "say is",
        "think is",
        "my point is",
        "best part is",
        "guess what",
        "you know what",
        "let me ask",
        "can i ask",
        "could i ask",
        "i was going to say",
        # a verb of thinking and the "that" that introduces its clause ("I think that <pause> maybe we…")
        "think that",
        "thought that",
        "believe that",
        "believed that",
        "hope that",
        "hoped that",
        "guess that",
        "suppose that",
    )
)
# A sentence that is only a clause opened by one of these ("Trixie, if you could pick <pause> any power…")
# still owes its main clause. ("because" is left out: "Because it's raining." answers a why.)
SUBORDINATORS = frozenset("if unless although though whenever".split())
_CALL_PART_WORDS = 2  # a comma-set part this short before the clause is a call or a marker ("So", "Hey June")
# ...unless it is whole as it is, its verb left out on purpose: "If you want.", "If you could.", "If not."
_ELLIPTICAL_ENDS = frozenset("want like wish please prefer mind insist can could must will would so not".split())


def looks_like_question(text: str) -> bool:
    """Ends with '?', or opens like a question ("what …", "do you …", "can you …") in three words or more."""
    stripped = text.strip()
    if stripped.endswith("?"):
        return True
    tokens = words(stripped)
    if len(tokens) < 3:  # "How about..." is the start of something, not a question yet
        return False
    # Whisper sometimes drops the '?': trust a question opener if no other end mark is there.
    if stripped.endswith((".", "!")):
        return False
    first = tokens[0]
    if first in {"hey", "so", "and", "but", "ok", "okay", "well"} and len(tokens) > 1:
        first = tokens[1]
    return first in QUESTION_OPENERS


def asks_question(bot_line: str) -> bool:
    """The bot's line asks something: a question mark anywhere ("You're on a diet, right? Ah, no!"; the
    model punctuates its own words), or it opens like a question."""
    return "?" in bot_line or looks_like_question(bot_line)


def ends_unfinished(text: str) -> bool:
    """The words stop where a sentence cannot end ("… and", "… for the", "I was wondering if"), on a frame
    that promises more ("I was wondering", "the thing is": `PROJECTING_TAILS`), or after a subordinate clause
    with no main clause yet (`only_a_subordinate_clause`)."""
    tokens = words(text)
    if not tokens:
        return False
    return (
        tokens[-1] in CONTINUATION_WORDS
        or any(tuple(tokens[-len(tail) :]) == tail for tail in PROJECTING_TAILS)
        or only_a_subordinate_clause(text)
    )


def only_a_subordinate_clause(text: str) -> bool:
    """The last sentence is a clause opened by "if", "unless", "although"… and nothing else but a call before
    it ("Trixie, if you could pick.", "So, if we leave at six."): Whisper closes a segment with a full stop at
    the speaker's pause, but the sentence still owes its main clause. A question mark ("If you could fly?")
    counts as finished."""
    stripped = text.strip()
    if stripped.endswith("?"):
        return False
    sentences = [part for part in re.split(r"[.!?]+", stripped) if words(part)]
    if not sentences:
        return False
    parts = [words(part) for part in sentences[-1].split(",") if words(part)]
    while len(parts) > 1 and len(parts[0]) <= _CALL_PART_WORDS and parts[0][0] not in SUBORDINATORS:
        parts = parts[1:]
    clause = parts[0] if len(parts) == 1 else []
    return len(clause) >= 2 and clause[0] in SUBORDINATORS and clause[-1] not in _ELLIPTICAL_ENDS


def looks_complete(text: str) -> bool:
    """A transcript that reads like a finished sentence or question (for an early start)."""
    stripped = text.strip()
    return len(words(stripped)) >= 2 and stripped.endswith((".", "?", "!")) and not ends_unfinished(stripped)


def is_backchannel(text: str) -> bool:
    """'mm-hm', 'yeah', 'okay': acknowledgement, not a bid for the floor."""
    norm = " ".join(words(text))
    return norm in BACKCHANNELS or (
        len(norm.split()) <= 2 and all(w in BACKCHANNELS for w in norm.split()) and bool(norm)
    )


def is_takeover(text: str, voiced_s: float | None = None) -> bool:
    """Words said over someone that claim the floor: more than a short burst, or a short one with a cue
    in it ("Wait!", "Sorry, what?"). A short burst without one is a backchannel even when it is no stock
    phrase: Whisper often writes a clipped "mm-hm" as a few words ("in memory.", "and I'm not."), and
    "Good idea." or "Me too!" do not ask the speaker to stop. Short is two words at most, or less than
    SHORT_BURST_S of voice (`voiced_s`, when known), whatever the words."""
    if not text.strip() or is_backchannel(text):
        return False
    tokens = words(text)
    if any(t in TAKEOVER_CUES for t in tokens):
        return True
    if voiced_s is not None and voiced_s < SHORT_BURST_S:
        return False
    return len(tokens) > SHORT_BURST_WORDS


def texts_differ(a: str, b: str, *, threshold: float = 0.8) -> bool:
    """Word-level difference between two transcripts of the same speech (partial vs final)."""
    import difflib

    wa, wb = words(a), words(b)
    if wa == wb:
        return False
    return difflib.SequenceMatcher(a=wa, b=wb, autojunk=False).ratio() < threshold
