"""The rule that picks the default LLM among the measured candidates (benchmarks/candidates_bench.py)."""

from __future__ import annotations

from benchmarks.candidates_bench import choose_default, heldout_on_topic


def quality(single: float, running: float, n_single: int = 27, n_running: int = 16) -> dict:
    return {
        "on_topic": {"heldout/single": single, "heldout/running": running},
        "replies": {"heldout/single": n_single, "heldout/running": n_running},
    }


def row(first_audio_p50: float, q: dict | None) -> dict:
    return {"first_audio": {"p50": first_audio_p50}, "heldout_on_topic": heldout_on_topic(q)}


def test_held_out_rate_weighs_single_and_running_by_their_replies() -> None:
    assert heldout_on_topic(quality(0.5, 0.25, 30, 10)) == 0.438
    assert heldout_on_topic(None) is None


def test_a_better_candidate_wins_only_within_the_latency_limit() -> None:
    rows = {"embedded": row(1.0, quality(0.4, 0.3)), "bigger": row(1.2, quality(0.6, 0.5))}
    assert choose_default(rows)[0] == "bigger"
    rows["bigger"] = row(1.3, quality(0.6, 0.5))  # 1.3x the current default's first audio: too slow
    name, why = choose_default(rows)
    assert name == "embedded" and "1.25x" in why


def test_a_tie_keeps_the_current_default_and_no_quality_keeps_it_too() -> None:
    rows = {"other": row(0.9, quality(0.4, 0.3)), "embedded": row(1.0, quality(0.4, 0.3))}
    assert choose_default(rows)[0] == "embedded"
    assert choose_default({"embedded": row(1.0, None), "other": row(0.5, None)})[0] == "embedded"
