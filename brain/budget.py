"""The persona's reply limits (words, sentences), applied fragment by fragment as a reply streams."""

from __future__ import annotations

from brain.chunker import Fragment


class ReplyBudget:
    """Caps a reply at the persona's limits; `take()` returns the fragment (maybe cut) or None."""

    def __init__(self, *, max_words: int | None = None, max_sentences: int | None = None) -> None:
        self.max_words = max_words if max_words and max_words > 0 else None
        self.max_sentences = max_sentences if max_sentences and max_sentences > 0 else None
        self.words = 0
        self.sentences = 0
        self.exhausted = False

    def take(self, fragment: Fragment) -> Fragment | None:
        if self.exhausted:
            return None
        words = fragment.text.split()
        text = fragment.text
        sentence_end = fragment.sentence_end
        if self.max_words is not None and self.words + len(words) >= self.max_words:
            keep = self.max_words - self.words
            if keep < len(words):
                text = " ".join(words[:keep]).rstrip(",;:—–- ")
                if text and text[-1] not in ".!?…":
                    text += "."
                sentence_end = True
            self.exhausted = True
            words = words[:keep]
        self.words += len(words)
        if sentence_end:
            self.sentences += 1
            if self.max_sentences is not None and self.sentences >= self.max_sentences:
                self.exhausted = True
        if not any(ch.isalnum() for ch in text):
            return None
        return Fragment(text, sentence_end)
