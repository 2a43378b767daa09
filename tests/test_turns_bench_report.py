"""The turns benchmark's summary: the backchannel gap is the silence the bot put in (0 when it talked through),
the duck time is reported, and the slowest tenth of answers is broken down by milestone."""

from __future__ import annotations

from benchmarks.turns_bench import slowest_decile, summarize
from simulator.turn_judge import ScenarioResult, StepResult


def speak(i: int, latency: float, final: float) -> StepResult:
    s = StepResult(i, "Alice", "Juniper, what time is it?", "speak", "", 0.0, 1.0, observed="spoke", ok=True)
    s.latency_s = latency
    s.stages = {"final": final, "decided": final + 0.01, "first_packet": latency}
    return s


def keep(gap: float, duck: float | None) -> StepResult:
    s = StepResult(1, "Bob", "Yeah.", "keep", "", 0.0, 0.3, observed="kept", ok=True)
    s.gap_s, s.pause_s, s.duck_s = gap, 0.3, duck
    return s


def result(rid: str, steps: list[StepResult]) -> ScenarioResult:
    return ScenarioResult(rid, "f", "dev", "Juniper", ["Alice", "Bob"], steps)


def test_the_slowest_tenth_is_broken_down_by_milestone_against_the_rest():
    steps = [speak(i, 0.5 + 0.01 * i, 0.3) for i in range(18)] + [speak(18, 3.0, 2.4), speak(19, 2.5, 1.9)]
    summary = slowest_decile([result("a", steps)])
    assert summary["n"] == 2 and summary["of"] == 20
    assert [s["latency_s"] for s in summary["steps"]] == [3.0, 2.5]
    assert summary["median_stages_slowest"]["final"] == 2.15  # the slow ones waited for their final
    assert summary["median_stages_rest"]["final"] == 0.3


def test_the_backchannel_gap_counts_the_silence_the_bot_put_in():
    summary = summarize([result("b", [keep(0.0, 0.12), keep(0.0, 0.1), keep(0.3, 0.2)])])
    assert summary["backchannel_gap_s"]["p50"] == 0.0 and summary["backchannel_gap_s"]["max"] == 0.3
    assert summary["barge_in_duck_s"]["n"] == 3


def test_latency_is_also_split_by_the_rule_that_answered():
    addressed = [speak(i, 0.6, 0.3) for i in range(3)]
    room = [speak(3, 1.7, 0.4), speak(4, 1.9, 0.4)]
    for s in addressed:
        s.rule = "respond_when_addressed"
    for s in room:
        s.rule = "room_question"
    unknown = speak(5, 5.0, 0.3)  # no rule recorded: counted overall only
    by_rule = summarize([result("c", [*addressed, *room, unknown])])["latency_by_rule_s"]
    assert set(by_rule) == {"respond_when_addressed", "room_question"}
    assert by_rule["respond_when_addressed"]["n"] == 3 and by_rule["respond_when_addressed"]["max"] == 0.6
    assert by_rule["room_question"]["n"] == 2 and by_rule["room_question"]["min"] == 1.7
