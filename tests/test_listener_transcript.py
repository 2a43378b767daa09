"""conversation.transcript: the bounded, speaker-attributed room transcript."""

from __future__ import annotations

from audio.types import Utterance
from conversation.transcript import RoomTranscript


def utt(uid, name, text, start, end, final=True):
    return Utterance(uid, name, text, start, end, final, 0.9, {})


def test_lines_are_attributed_and_merged_per_turn():
    tr = RoomTranscript(merge_gap_s=1.0)
    tr.add(utt(1, "Alice", "Hi Bob.", 0.0, 1.0))
    tr.add(utt(1, "Alice", "How are you?", 1.5, 2.5))  # same speaker, short gap: same line
    tr.add(utt(2, "Bob", "Fine, thanks.", 3.0, 4.0))
    tr.add(utt(1, "Alice", "Great.", 6.0, 6.5))
    assert tr.render() == "Alice: Hi Bob. How are you?\nBob: Fine, thanks.\nAlice: Great."
    assert tr.render(last=1) == "Alice: Great."


def test_partials_are_live_lines_replaced_by_the_final():
    tr = RoomTranscript()
    assert tr.add(utt(2, "Bob", "I think", 0.0, 1.0, final=False)) is None
    assert tr.render(include_live=True) == "Bob: I think"
    assert tr.render() == ""
    tr.add(utt(2, "Bob", "I think so.", 0.0, 1.2))
    assert tr.render(include_live=True) == "Bob: I think so."
    tr.add(utt(2, "Bob", "", 2.0, 2.1))  # empty finals add nothing
    assert len(tr) == 1


def test_bounded_by_lines_and_characters():
    tr = RoomTranscript(max_lines=3, max_chars=50, merge_gap_s=0)
    for i in range(10):
        tr.add(utt(i % 2, f"M{i % 2}", f"line {i}", i * 10.0, i * 10.0 + 1))
    assert [line.text for line in tr] == ["line 7", "line 8", "line 9"]
    tr.add(utt(5, "Long", "x" * 500, 200.0, 201.0))
    assert len(tr) == 1 and len(tr.lines()[0].text) == 50 and tr.lines()[0].text.startswith("…")
