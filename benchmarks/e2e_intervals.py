"""The end-to-end benchmark's latency goal and the per-turn intervals it reports (`benchmarks.e2e_bench`) and
draws (`benchmarks.plot_e2e`)."""

from __future__ import annotations

GOAL_P50_S = 0.8

# Intervals reported and drawn: (name, from stage or None for the true end of speech, to stage). They form two
# lanes, hearing the member (to vad_end, final) and the reply (request onwards): with an early start they overlap.
INTERVALS: tuple[tuple[str, str | None, str], ...] = (
    ("end of speech confirmed (VAD)", None, "vad_end"),
    ("final transcript", "vad_end", "final"),
    ("LLM to first token", "request", "first_token"),
    ("to first speakable fragment", "first_token", "first_fragment"),
    ("TTS first audio", "first_fragment", "first_audio"),
    ("held until confirmed / sent", "first_audio", "first_packet"),
    ("first packet on its way to the member", "first_packet", "heard"),
)


def turn_intervals(stages: dict[str, float]) -> list[tuple[int, float, float]]:
    """(index into INTERVALS, start, end) for each interval whose two ends the turn has, in seconds after the
    end of speech. Without a VAD end (an early start confirmed) the final transcript confirms the end."""
    out = []
    for i, (_name, start, end) in enumerate(INTERVALS):
        if end == "vad_end" and "vad_end" not in stages:
            end = "final"
        t0 = 0.0 if start is None else stages.get(start)
        t1 = stages.get(end)
        if t0 is not None and t1 is not None and t1 >= t0:
            out.append((i, float(t0), float(t1)))
    return out
