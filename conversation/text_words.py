"""Words of a transcript as the name matchers compare them: lower case, accents folded, punctuation dropped."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_NON_WORD = re.compile(r"[^\w']+|_+")


def normalize(text: str) -> str:
    """Lower case, accents folded, punctuation dropped (apostrophes inside words kept), single spaces."""
    spaced = _NON_WORD.sub(" ", text)  # dashes, em dashes, underscores… separate words
    folded = unicodedata.normalize("NFKD", spaced).encode("ascii", "ignore").decode("ascii").lower()
    return " ".join(_WORD.findall(folded))


def words(text: str) -> list[str]:
    out = []
    for word in normalize(text).split():
        if word.endswith("'s"):  # "Juniper's" → "juniper"
            word = word[:-2]
        out.append(word.replace("'", ""))
    return [w for w in out if w]
