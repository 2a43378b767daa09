"""Known Whisper hallucinations: text Whisper invents on silence, noise, music or breathing.

Whisper was trained on subtitles, so on non-speech it tends to emit closing credits ("thanks for
watching", "subscribe") or a lone filler word ("you"). These phrases are dropped only when they are
the WHOLE utterance. Short phrases people really say to a bot ("thank you", "okay", "bye") are NOT
listed: VAD and the confidence guards must catch those when they come from noise.
"""

from __future__ import annotations

import re
import unicodedata

# Normalized forms (see `normalize_text`): lower case, no punctuation, single spaces.
KNOWN_HALLUCINATIONS: frozenset[str] = frozenset(
    {
        "",
        "you",
        "thank you very much",
        "thank you so much",
        "thanks for watching",
        "thank you for watching",
        "thanks for watching and see you next time",
        "thank you for watching and see you next time",
        "thanks for listening",
        "thank you for listening",
        "please subscribe",
        "subscribe",
        "like and subscribe",
        "please like and subscribe",
        "dont forget to like and subscribe",
        "subscribe to my channel",
        "please subscribe to my channel",
        "see you next time",
        "see you in the next video",
        "so",
        "oh",
        "uh",
        "um",
        "hmm",
        "mm",
        "ah",
        "music",
        "applause",
        "laughter",
        "silence",
        "blank audio",
        "no audio",
        "inaudible",
        "sound",
        "noise",
        "sigh",
        "breathing",
        "subtitles by the amaraorg community",
        "subtitles by amaraorg",
        "transcription by castingwords",
        "the end",
    }
)

# Whole-utterance patterns: bracketed/parenthesized tags ("[Music]", "(wind blowing)"), music notes.
_TAG_ONLY = re.compile(r"^\s*(?:[\[\(\*♪♫][^\]\)]*[\]\)\*♪♫]?\s*)+$")
_MUSIC_SYMBOLS = re.compile(r"^[\s♪♫🎵🎶.\-–—]*$")
_PUNCT = re.compile(r"[^\w\s']+")
_APOS = re.compile(r"'")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lower case, punctuation and apostrophes removed, whitespace collapsed (for comparisons)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _PUNCT.sub(" ", text)
    text = _APOS.sub("", text)
    return _SPACES.sub(" ", text).strip()


def is_hallucination(text: str) -> bool:
    """True when `text`, taken as a whole utterance, is a known non-speech artefact of Whisper."""
    stripped = text.strip()
    if not stripped or _MUSIC_SYMBOLS.match(stripped) or _TAG_ONLY.match(stripped):
        return True
    norm = normalize_text(stripped)
    if norm in KNOWN_HALLUCINATIONS:
        return True
    # The same short phrase repeated ("you you you", "thank you. thank you.").
    words = norm.split()
    for size in (1, 2, 3):
        if len(words) >= 2 * size and len(words) % size == 0:
            unit = words[:size]
            if all(words[i : i + size] == unit for i in range(0, len(words), size)):
                if " ".join(unit) in KNOWN_HALLUCINATIONS or len(words) // size >= 4:
                    return True
    return False
