"""Where the time of a load run went: per stage and per guild, waiting for a model vs computing, and what the
replies' admission did (`brain.admission`). Used by `benchmarks.load_bench`.

* ``stages``: over every answered question, per stage (`runtime.stage_times.STAGE_MARKS`: STT of the final, the
  end-of-turn judgement, the reply's LLM to its first token, TTS to its first audio) the seconds waiting for
  the model (``wait_s``) and computing (``compute_s``), p50 / p95; ``per_guild``: the means per guild.
* ``prefill``: the scheduler's records of prefills (`WorkInterval.asked` -> start: waiting for a quiet moment
  and the model; start -> end: evaluating), per guild and over all.
* ``model_slots``: per model kind, seconds granted and seconds waited over the run (the scheduler's records).
* ``admission``: replies by admission decision (`runtime.stage_times.ADMISSION_MARKS`), and how late answers came.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Sequence

from benchmarks.report import stats
from runtime.stage_times import ADMISSION_MARKS, STAGE_MARKS, stage_waits
from simulator.replies import TurnRecord

LATE_ANSWER_S = 5.0  # an answer whose voice starts later than this after the question counts as late


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def stage_breakdown(per_guild: Sequence[Sequence[TurnRecord]]) -> dict[str, Any]:
    """Wait vs compute per stage over the answered questions of every guild (index = guild)."""
    waits: dict[str, list[float]] = defaultdict(list)
    computes: dict[str, list[float]] = defaultdict(list)
    guilds: dict[str, dict[str, dict[str, float | None]]] = {}
    for index, turns in enumerate(per_guild):
        g_wait: dict[str, list[float]] = defaultdict(list)
        g_compute: dict[str, list[float]] = defaultdict(list)
        for turn in turns:
            answer = turn.answer
            if not turn.expect_reply or answer is None:
                continue
            for stage, (waited, computed) in stage_waits(answer.times_s).items():
                for into, value in ((waits, waited), (g_wait, waited)):
                    into[stage].append(value)
                for into, value in ((computes, computed), (g_compute, computed)):
                    into[stage].append(value)
        guilds[str(index)] = {
            stage: {"wait_s": _mean(g_wait[stage]), "compute_s": _mean(g_compute[stage])}
            for stage in STAGE_MARKS
            if g_wait[stage]
        }
    return {
        "stages": {
            stage: {"wait_s": stats(waits[stage]), "compute_s": stats(computes[stage])}
            for stage in STAGE_MARKS
            if waits[stage]
        },
        "per_guild": guilds,
    }


def scheduler_breakdown(intervals: Iterable[Any], since: float, guild_ids: Sequence[int]) -> dict[str, Any]:
    """Prefills per guild and every model kind's slots, from the scheduler's `WorkInterval`s that started at or
    after `since` (monotonic). `guild_ids[i]` is guild i's id (the prefill's group)."""
    index_of = {str(guild_id): str(i) for i, guild_id in enumerate(guild_ids)}
    prefill_wait: dict[str, list[float]] = defaultdict(list)
    prefill_compute: dict[str, list[float]] = defaultdict(list)
    slots: dict[str, dict[str, float]] = defaultdict(lambda: {"grants": 0, "busy_s": 0.0, "waited_s": 0.0})
    for iv in intervals:
        if iv.start < since:
            continue
        waited = iv.start - iv.asked if iv.asked is not None else 0.0
        slot = slots[iv.kind]
        slot["grants"] += 1
        slot["busy_s"] += iv.seconds
        slot["waited_s"] += waited
        if iv.kind == "llm" and iv.owner.startswith("prefill-"):
            guild = index_of.get(iv.group, iv.group)
            prefill_wait[guild].append(waited)
            prefill_compute[guild].append(iv.seconds)
    every_wait = [v for values in prefill_wait.values() for v in values]
    every_compute = [v for values in prefill_compute.values() for v in values]
    return {
        "prefill": {
            "wait_s": stats(every_wait),
            "compute_s": stats(every_compute),
            "per_guild": {
                guild: {
                    "n": len(prefill_wait[guild]),
                    "wait_s": _mean(prefill_wait[guild]),
                    "compute_s": _mean(prefill_compute[guild]),
                }
                for guild in sorted(prefill_wait, key=lambda g: (len(g), g))
            },
        },
        "model_slots": {kind: {k: round(v, 3) for k, v in slot.items()} for kind, slot in sorted(slots.items())},
    }


def admission_summary(turns: Sequence[TurnRecord]) -> dict[str, Any]:
    """Bot lines by admission decision; the answers' own first audio (holding lines apart) and how many came late."""
    counts = {mark: 0 for mark in ADMISSION_MARKS}
    for turn in turns:
        for reply in turn.replies:
            for mark in ADMISSION_MARKS:
                counts[mark] += mark in reply.times_s
    asked = [t for t in turns if t.expect_reply]
    answer_audio = [
        t.answer.times_s["first_audio"] for t in asked if t.answer is not None and "first_audio" in t.answer.times_s
    ]
    holding_only = sum(
        1
        for t in asked
        if t.answer is not None and "first_audio" not in t.answer.times_s and "holding_audio" in t.answer.times_s
    )
    return {
        "by_reason": counts,
        # the answer's own voice (a holding line before it not counted), bot side: seconds after the question
        "answer_first_audio_s": stats(answer_audio),
        "answered_with_answer_rate": round(len(answer_audio) / len(asked), 3) if asked else None,
        "holding_line_only": holding_only,  # the question got a holding line and then its answer was dropped
        "late_answers": sum(1 for s in answer_audio if s > LATE_ANSWER_S),
        "late_answer_bound_s": LATE_ANSWER_S,
    }
