"""Whether a rubric term is in a reply: the matcher the demo's on-topic count and the quality checks
(`benchmarks.quality_checks`) share."""

from __future__ import annotations

from typing import Sequence

from conversation.text_words import words


def term_in(term: str, reply_words: Sequence[str]) -> bool:
    """A rubric term in the reply's words: a phrase as words in a row; one word as itself, its plural, or
    (4+ letters) the start of a word ("cook" matches "cooking")."""
    parts = words(term)
    if not parts:
        return False
    if len(parts) > 1:
        n = len(parts)
        return any(list(reply_words[i : i + n]) == parts for i in range(len(reply_words) - n + 1))
    t = parts[0]
    for w in reply_words:
        if w == t or w in (t + "s", t + "es") or (len(t) >= 4 and w.startswith(t)):
            return True
    return False
