"""Where a turn's time went, stage by stage: waiting for a model (its slot, or the model itself while another
guild's work holds it) or computing.

The stages stamp monotonic times on the turn's trace (`bot.turn_sink.TurnTrace.times`, filled from the final
transcript's timings and the reply's): when the work asked for the model, when it got it, and when its first
result was out. `stage_waits` reads them back; the metrics (`runtime.metrics`) and the load benchmark report them.

A reply's admission (`brain.admission`) stamps its decisions on the same trace: a holding line spoken while the
reply waited, a reply kept short, a reply dropped because its question had grown old.
"""

from __future__ import annotations

from typing import Mapping

# stage -> (asked, granted, done): trace keys
STAGE_MARKS: dict[str, tuple[str, str, str]] = {
    "stt": ("stt_queued", "stt_start", "stt_done"),  # the final transcript (a speculative one, when it stood in)
    "end_of_turn": ("eot_asked", "eot_start", "eot_done"),  # Smart Turn at the pause the final ended
    "llm_first_token": ("llm_asked", "llm_slot", "first_token"),  # the reply: model lock + scheduler slot, then
    # prompt evaluation and the first token
    "tts_first_audio": ("tts_asked", "tts_slot", "first_audio"),  # the reply's first fragment to its first audio
}
PREFILL_STAGE = "prefill"  # background: recorded by the scheduler per guild (`WorkInterval.asked`), not per turn
ADMISSION_MARKS = ("holding_line", "shortened", "dropped_stale")  # trace keys of a reply's admission decisions


def stage_waits(times: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """{stage: (seconds waiting for the model, seconds computing)} for every stage whose three marks are in
    `times` in order (a stage out of order, e.g. a final transcribed before a later pause's judgement, is left
    out rather than reported negative)."""
    out: dict[str, tuple[float, float]] = {}
    for stage, (asked_key, granted_key, done_key) in STAGE_MARKS.items():
        asked, granted, done = times.get(asked_key), times.get(granted_key), times.get(done_key)
        if asked is None or granted is None or done is None or not asked <= granted <= done:
            continue
        out[stage] = (granted - asked, done - granted)
    return out


def admission_reasons(times: Mapping[str, float]) -> list[str]:
    """The admission decisions stamped on a turn's trace (`ADMISSION_MARKS`), in that order."""
    return [mark for mark in ADMISSION_MARKS if mark in times]
