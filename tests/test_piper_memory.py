"""Piper's ONNX Runtime arena gives back what a long piece took (`audio.tts_engines.piper._AbortableSession`):
without that, the arena doubles each time a piece needs more than it holds and keeps it for the life of the
process, which a soak showed as RSS rising in steps of 100+ MB."""

from __future__ import annotations

import dataclasses

import pytest

from audio.tts_engines.piper import _AbortableSession, load_piper_voice
from runtime.heap import heap_mb
from runtime import heap

LONG = (
    "Well, the thing about a really long rainy afternoon is that you can read a whole novel, bake some bread, "
    "call an old friend, and still have time left to watch the clouds roll over the hills before dinner."
)


@pytest.mark.skipif(heap._LIBC is None, reason="the heap is read through glibc's mallinfo2")
def test_a_long_piece_leaves_no_memory_behind() -> None:
    voice = load_piper_voice()
    view = dataclasses.replace(voice, session=_AbortableSession(voice.session))
    for _ in view.synthesize("Short one."):
        pass
    used_before, _free = heap_mb()
    audio = b"".join(chunk.audio_int16_bytes for chunk in view.synthesize(LONG))
    used_after, _free = heap_mb()
    assert len(audio) > 2 * 22050 * 5  # it really spoke (over 5 s of audio)
    assert used_after - used_before < 40, (used_before, used_after)  # MB; unshrunk: hundreds
