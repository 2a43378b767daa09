"""How alike two spoken forms sound: espeak-ng phonemes (`audio.g2p`) compared by a weighted edit distance.

Whisper writes a name it does not know as the English words it heard: "Juniper" becomes "You nipper"
(/juː nɪpɚ/ against /dʒuːnɪpɚ/: one close consonant apart) or "Junie per". Spelling hides that likeness,
the phonemes show it. Near sounds cost less to swap than far ones: vowels of one family (ɪ i iː, ʊ u uː,
ɚ ɜː ɝ, …), a voiced/voiceless pair (p b), dʒ/j, nasals among themselves; a schwa comes and goes
cheaply. `phonetic_similarity` is 1 - cost / the name's phoneme count (1.0 = sounds the same).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Sequence

from audio.g2p import word_phonemes

_MULTI = ("dʒ", "tʃ", "eɪ", "aɪ", "ɔɪ", "oʊ", "aʊ", "əʊ", "ɪə", "eə", "ʊə")  # one sound written with two symbols
_IGNORED = set("ˈˌ-‿ .,?!'")
_VOWELS = set("aeiouæɐɑɒɔəɘɚɛɜɝɞɤɪʊʌʏyøœɯɵʉɨ")
# (cost, sets of sounds that swap for it), cheapest first
_NEAR: tuple[tuple[float, tuple[frozenset[str], ...]], ...] = (
    (
        0.25,
        tuple(
            frozenset(s.split())
            for s in (
                "ɪ i iː ɨ",
                "ʊ u uː ʉ",
                "ɚ ɜː ɝ ɜ ər əɹ",
                "ə ʌ ɐ",
                "ɑ ɑː ɒ ɔ ɔː",
                "ɛ e eɪ",
                "æ a",
                "oʊ o oː əʊ",
                "ɾ t d",
                "dʒ ʒ",
            )
        ),
    ),
    (
        0.4,
        tuple(
            frozenset(s.split())
            for s in (
                "p b",
                "t d",
                "k ɡ g",
                "f v",
                "s z",
                "θ ð",
                "ʃ ʒ",
                "tʃ dʒ",
                "dʒ j",
                "n m ŋ",
                "ɹ ɚ",
                "j i iː",
                "w u uː",
                "ɪ ɛ",
                "ə ɪ",
                "ə ɚ",
            )
        ),
    ),
    (0.6, tuple(frozenset(s.split()) for s in ("l ɹ", "p f", "b v", "tʃ ʃ", "θ f", "ð v"))),
)
_CHEAP_INDEL = {"ə": 0.5, "ɐ": 0.5}  # a schwa comes and goes (an h does not: "tricks he" is not "Trixie")
VOWEL_SWAP = 0.5  # any other vowel for a vowel


def split_phonemes(ipa: str) -> tuple[str, ...]:
    """ "dʒˈuːnɪpɚ" → ("dʒ", "uː", "n", "ɪ", "p", "ɚ"): stress dropped, length marks kept on their vowel."""
    text = "".join(c for c in unicodedata.normalize("NFC", ipa) if c not in _IGNORED)
    out: list[str] = []
    i = 0
    while i < len(text):
        unit = next((m for m in _MULTI if text.startswith(m, i)), text[i])
        i += len(unit)
        while i < len(text) and text[i] in "ːˑ̃ʲʰ":  # length and other modifiers stay with their sound
            unit += text[i]
            i += 1
        out.append(unit)
    return tuple(out)


@lru_cache(maxsize=16384)
def phonemes_of(words: tuple[str, ...]) -> tuple[str, ...]:
    """The phonemes of words said one after another ("you", "nipper")."""
    out: list[str] = []
    for word in words:
        out.extend(split_phonemes(word_phonemes(word)))
    return tuple(out)


def _is_vowel(unit: str) -> bool:
    return unit[0] in _VOWELS


@lru_cache(maxsize=4096)
def swap_cost(a: str, b: str) -> float:
    if a == b:
        return 0.0
    for cost, groups in _NEAR:
        if any(a in g and b in g for g in groups):
            return cost
    if _is_vowel(a) and _is_vowel(b):
        return VOWEL_SWAP
    return 1.0


def _indel(unit: str) -> float:
    return _CHEAP_INDEL.get(unit, 1.0)


def phoneme_distance(a: Sequence[str], b: Sequence[str]) -> float:
    """Weighted edit distance between two phoneme sequences."""
    previous = [0.0]
    for unit in b:
        previous.append(previous[-1] + _indel(unit))
    for ua in a:
        current = [previous[0] + _indel(ua)]
        for j, ub in enumerate(b, 1):
            current.append(
                min(previous[j] + _indel(ua), current[j - 1] + _indel(ub), previous[j - 1] + swap_cost(ua, ub))
            )
        previous = current
    return previous[-1]


@lru_cache(maxsize=65536)
def phonetic_similarity(words: tuple[str, ...], name: tuple[str, ...]) -> float:
    """How much `words` sound like `name` (both as word tuples): 1 - distance / the name's phoneme count, 0..1."""
    said, target = phonemes_of(words), phonemes_of(name)
    if not said or not target:
        return 0.0
    if abs(len(said) - len(target)) > len(target) // 2:  # far too long or short to be it
        return 0.0
    return max(0.0, 1.0 - phoneme_distance(said, target) / len(target))
