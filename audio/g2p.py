"""Words to IPA phonemes with espeak-ng, in the process, through the bridge Piper ships (`piper.espeakbridge`).

espeak-ng keeps global state (the voice, its buffers) and is not thread-safe: every call into it, Piper's
own phonemization before each synthesis included (`guard_piper_voice`), goes through `ESPEAK_LOCK`.
A word is phonemized once (`word_phonemes` is cached): name spotting asks for the same few words again
and again, and a call costs about 0.1 ms.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache, wraps
from typing import Any, Callable

log = logging.getLogger(__name__)

ESPEAK_LOCK = threading.RLock()
VOICE = "en-us"
_state: dict[str, Any] = {}


def _bridge() -> Any:
    """The initialized bridge (espeak-ng's data dir is the one inside the piper package)."""
    bridge = _state.get("bridge")
    if bridge is None:
        from piper import espeakbridge
        from piper.phonemize_espeak import ESPEAK_DATA_DIR

        espeakbridge.initialize(str(ESPEAK_DATA_DIR))
        _state["bridge"] = bridge = espeakbridge
    return bridge


@lru_cache(maxsize=16384)
def word_phonemes(word: str) -> str:
    """IPA for one word ("juniper" → "dʒˈuːnɪpɚ"), stress marks included; '' for no letters. A number of one or
    two digits is said as a word: Whisper writes what it heard as "two", "to" or "too" as "2" ("2 nipper")."""
    if not any(c.isalpha() for c in word) and not (word.isdigit() and len(word) <= 2):
        return ""
    with ESPEAK_LOCK:
        bridge = _bridge()
        bridge.set_voice(VOICE)
        clauses = bridge.get_phonemes(word)
    return " ".join(phonemes for phonemes, _terminator, _end in clauses).strip()


def guard_piper_voice(voice: Any) -> Any:
    """Make `voice.phonemize` (a `piper.PiperVoice`) take ESPEAK_LOCK, so name spotting on another thread
    never calls into espeak-ng while it phonemizes a sentence."""
    original: Callable[..., Any] = voice.phonemize

    @wraps(original)
    def phonemize(*args: Any, **kwargs: Any) -> Any:
        with ESPEAK_LOCK:
            return original(*args, **kwargs)

    voice.phonemize = phonemize
    return voice
