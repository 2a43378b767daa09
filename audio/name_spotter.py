"""A keyword spotter for the bot's name: a second opinion, from another acoustic model, for the name look.

`audio.name_look` asks Whisper how likely a transcript is with the name put back. Where the answer is
in between (the transcript loses more than a sure call but less than lines without a call lose), the
spotter decides: PocketSphinx's keyword search (the `pocketsphinx` wheel ships its US English acoustic
model and dictionary, 29 MB, offline) listens for the name in the same 16 kHz audio. Its model was
trained on other speech than Whisper's and errs elsewhere, so the two agreeing is worth more than either.

Pronunciations come from the wheel's CMU dictionary; a name it lacks ("Junie", a persona's invented name)
is spelled from espeak-ng's phonemes (`audio.g2p`), mapped to the dictionary's ARPAbet phones.
Without the `pocketsphinx` package the spotter is off (`available()` is False) and the look keeps its
own, stricter rule.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)

THRESHOLD = 1e-20  # keyword-search threshold per phrase (names bench dev lines; 1e-10 and 1e-30 measured)
MIN_LETTERS = 5  # shorter names and aliases ("June", "Cap") are heard in too many words to spot alone

# espeak-ng's IPA (en-us) to ARPAbet, longest first; stress and length marks are dropped before.
_IPA_TO_ARPABET = (
    ("dʒ", "JH"), ("tʃ", "CH"), ("aɪ", "AY"), ("aʊ", "AW"), ("ɔɪ", "OY"), ("eɪ", "EY"), ("oʊ", "OW"),
    ("əʊ", "OW"), ("ɚ", "ER"), ("ɝ", "ER"), ("ɜ", "ER"), ("iə", "IY AH"), ("i", "IY"), ("u", "UW"),
    ("ɑ", "AA"), ("ɒ", "AA"), ("ɔ", "AO"), ("æ", "AE"), ("ʌ", "AH"), ("ə", "AH"), ("ɐ", "AH"), ("ɪ", "IH"),
    ("ᵻ", "IH"), ("ɛ", "EH"), ("e", "EH"), ("ʊ", "UH"), ("o", "OW"), ("a", "AE"),
    ("b", "B"), ("d", "D"), ("ð", "DH"), ("f", "F"), ("ɡ", "G"), ("g", "G"), ("h", "HH"), ("j", "Y"),
    ("k", "K"), ("l", "L"), ("m", "M"), ("n", "N"), ("ŋ", "NG"), ("p", "P"), ("ɹ", "R"), ("r", "R"),
    ("s", "S"), ("ʃ", "SH"), ("t", "T"), ("θ", "TH"), ("v", "V"), ("w", "W"), ("z", "Z"), ("ʒ", "ZH"),
    ("ɾ", "T"), ("x", "K"), ("ç", "HH"),
)
_SKIPPED = set("ˈˌːˑ-ʔ ")


def available() -> bool:
    """True when the `pocketsphinx` package (and its bundled model) can be imported."""
    try:
        import pocketsphinx  # noqa: F401
    except ImportError:
        return False
    return True


def ipa_to_arpabet(ipa: str) -> list[str]:
    """ARPAbet phones for espeak-ng's IPA ("dʒˈuːnɪpɚ" → JH UW N IH P ER); unknown symbols are dropped."""
    text = "".join(c for c in unicodedata.normalize("NFD", ipa) if not unicodedata.combining(c) and c not in _SKIPPED)
    phones: list[str] = []
    i = 0
    while i < len(text):
        for ipa_part, arpabet in _IPA_TO_ARPABET:
            if text.startswith(ipa_part, i):
                phones.extend(arpabet.split())
                i += len(ipa_part)
                break
        else:
            i += 1
    return phones


@lru_cache(maxsize=1)
def _model_paths() -> tuple[str, str]:
    from pocketsphinx import get_model_path

    root = get_model_path()
    return os.path.join(root, "en-us", "en-us"), os.path.join(root, "en-us", "cmudict-en-us.dict")


@lru_cache(maxsize=1)
def _dictionary() -> dict[str, str]:
    """The wheel's CMU dictionary: word → phones (the first pronunciation of each word)."""
    words: dict[str, str] = {}
    with open(_model_paths()[1], encoding="utf-8") as f:
        for line in f:
            word, _, phones = line.strip().partition(" ")
            if phones and "(" not in word:
                words.setdefault(word, phones)
    return words


def pronounce(word: str) -> str:
    """ARPAbet for one word: the dictionary's, else from espeak-ng's phonemes ('' when neither knows it)."""
    key = word.lower()
    known = _dictionary().get(key)
    if known:
        return known
    from audio.g2p import word_phonemes

    return " ".join(ipa_to_arpabet(word_phonemes(key)))


def keyphrases(names: Sequence[str]) -> tuple[str, ...]:
    """The names worth spotting: long enough to be told from everyday words, every word pronounceable."""
    out: list[str] = []
    for name in names:
        phrase = " ".join(name.lower().split())
        if len(phrase.replace(" ", "")) >= MIN_LETTERS and all(pronounce(w) for w in phrase.split()):
            out.append(phrase)
    return tuple(dict.fromkeys(out))


@dataclass
class _Search:
    decoder: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


class NameSpotter:
    """Spots given names in 16 kHz mono audio (blocking; thread-safe; a few tens of ms a line on 2 cores)."""

    def __init__(self, threshold: float = THRESHOLD) -> None:
        self.threshold = threshold
        self._searches: dict[tuple[str, ...], _Search] = {}
        self._lock = threading.Lock()
        self.calls = 0

    def _search(self, phrases: tuple[str, ...]) -> _Search:
        with self._lock:
            search = self._searches.get(phrases)
            if search is None:
                search = self._searches[phrases] = _Search(self._decoder(phrases))
            return search

    def _decoder(self, phrases: tuple[str, ...]) -> Any:
        from pocketsphinx import Decoder

        hmm, _ = _model_paths()
        words = {w for phrase in phrases for w in phrase.split()}
        with tempfile.TemporaryDirectory(prefix="chorus-kws-") as tmp:
            dict_path, kws_path = os.path.join(tmp, "names.dict"), os.path.join(tmp, "names.kws")
            with open(dict_path, "w", encoding="utf-8") as f:
                f.writelines(f"{w} {pronounce(w)}\n" for w in sorted(words))
            with open(kws_path, "w", encoding="utf-8") as f:
                f.writelines(f"{phrase} /{self.threshold:g}/\n" for phrase in phrases)
            decoder = Decoder(hmm=hmm, dict=dict_path, kws=kws_path, loglevel="FATAL")
        log.info("name spotter ready for %s", ", ".join(phrases))
        return decoder

    def spot(self, audio: np.ndarray, names: Sequence[str]) -> set[str]:
        """The names among `names` heard in `audio` (float32 in [-1, 1] at 16 kHz), as given."""
        by_phrase = {phrase: name for name in names for phrase in keyphrases([name])}
        if not by_phrase or len(audio) == 0:
            return set()
        search = self._search(tuple(sorted(by_phrase)))
        pcm = (np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        with search.lock:
            search.decoder.start_utt()
            search.decoder.process_raw(pcm, full_utt=True)
            search.decoder.end_utt()
            heard = {seg.word.strip() for seg in (search.decoder.seg() or [])}
        self.calls += 1
        return {name for phrase, name in by_phrase.items() if phrase in heard}
