"""A name said ABOUT someone rather than TO them: "I told Juniper yesterday", "Juniper's voice is nice".

The rule for the bot's name (people in a room do the same: they turn when called, not when talked about):
* a name that stands alone between commas (or the line's ends), maybe after "hey", calls: it is an address
  whatever else the line holds ("Bob, Juniper, what do you think?" calls both; the caller checks this);
* otherwise it is a mention when the line calls a member by name ("Bob, did Juniper hear that?"), when it is
  possessive ("Juniper's idea"; not an "'s" Whisper put on a bent name before a question or a request, or at
  the end of a question: "Captain Harley's, what…", "Captain Holly's tell us a story", "…think Captain
  Harley's?", which own nothing), when it is the object of a telling/asking/preposition word right before it
  ("I told Juniper", "ask Juniper", "with Juniper"), or the subject of a third-person verb right after it
  ("Juniper said…", "Juniper thinks…");
* anything else ("Juniper what time is it", "what do you think Juniper") stays an address: Whisper often
  leaves the commas out, and a missed call costs more than an answer to a remark about the bot.
"""

from __future__ import annotations

from typing import Sequence

from conversation.line_shape import QUESTION_OPENERS

REFERENCE_BEFORE = frozenset(
    "told tell tells telling ask asked asks asking about with to from and than said says call called named "
    "meet met heard saw".split()
)
REFERENCE_AFTER = frozenset(
    "said says thinks thought told knows knew likes liked loves wants wanted seems seemed sounds sounded gave "
    "gets got keeps kept reckons".split()  # not "did", "was", "is": "Juniper did you…" is Whisper without its comma
)

# Words a possessive does not own: after "Name's" they open a question or a request, so the "'s" is Whisper's
# spelling of a name it does not know ("Harley's what should we play next?"), not a possessive.
NOT_OWNED = QUESTION_OPENERS | frozenset(
    "tell say ask name give show sing explain describe recommend suggest help please listen".split()
)


def is_reference(
    raw_tokens: Sequence[str], first: int, last: int, member_called: bool, *, question: bool = False
) -> bool:
    """Is the name at `raw_tokens[first:last + 1]` (words with their possessive 's: `normalize(text).split()`),
    not set off by commas, said about the bot rather than to it? `member_called`: the line calls a member by
    name; `question`: the line ends with a question mark."""
    if member_called:
        return True
    before = raw_tokens[first - 1] if first > 0 else ""
    after = raw_tokens[last + 1] if last + 1 < len(raw_tokens) else ""
    if raw_tokens[last].endswith("'s"):
        return not (after in NOT_OWNED or (not after and question))
    if before in REFERENCE_BEFORE:
        return True
    return after in REFERENCE_AFTER
