"""A small slice of the names benchmark, so CI runs its code: synthesis, the real transcriber, the look, the
JSON's shape (the before/after against another git revision is left to the full run)."""

from __future__ import annotations

from benchmarks.names_bench import run
from benchmarks.names_corpus import BASE_VOICES, NameLine, build_lines
from tests.fixtures_listening import settings


def test_the_corpus_is_big_enough_and_keeps_its_held_out_part_apart():
    lines = build_lines()
    addressed = [line for line in lines if line.expected]
    others = [line for line in lines if not line.expected]
    assert len(addressed) >= 240 and len(others) >= 120
    assert {line.kind for line in addressed} == {"start", "middle", "end", "alone"}
    assert {line.persona for line in lines} == {"Juniper", "Trixie", "Captain Hollis"}
    held = {line.text for line in lines if line.split == "heldout"}
    assert held and not held & {line.text for line in lines if line.split == "dev"}
    assert any(line.noise_snr_db is not None for line in lines) and any(line.noise_snr_db is None for line in lines)
    assert build_lines() == lines  # seeded


def test_a_slice_of_the_benchmark_runs_end_to_end():
    lines = [
        NameLine(
            "Juniper, how far away is the moon?",
            "Juniper",
            True,
            "start",
            ("Alice", "Bob"),
            BASE_VOICES[0],
            None,
            "dev",
        ),
        NameLine(
            "Can you give us a riddle, Trixie?", "Trixie", True, "end", ("Alice", "Dixie"), BASE_VOICES[1], 18.0, "dev"
        ),
        NameLine(
            "Juniper, what should we play next?", "Juniper", True, "start", ("Chen",), BASE_VOICES[4], None, "heldout"
        ),
        NameLine(
            "Jennifer, can you pass me the salt?",
            "Juniper",
            False,
            "similar_member",
            ("Jennifer", "Bob"),
            BASE_VOICES[0],
            None,
            "dev",
        ),
        NameLine(
            "Did anyone see the game last night?", "Juniper", False, "no_name", ("Alice",), BASE_VOICES[1], None, "dev"
        ),
    ]
    out = run(lines, settings=settings(), compare_ref=None)
    for key in (
        "name_recall",
        "name_false_rate",
        "per_position",
        "per_voice",
        "stt_model",
        "cpu_ms_per_line",
        "lines",
        "held_out",
        "text_only",
        "stt_wer",
    ):
        assert key in out, key
    assert len(out["lines"]) == 5 and all(row["transcript"] for row in out["lines"])
    assert {"text", "voice", "transcript", "detected", "expected", "via"} <= set(out["lines"][0])
    detected = sum(row["detected"] for row in out["lines"] if row["expected"])
    assert detected >= 2, out["lines"]
    assert not any(row["detected"] for row in out["lines"] if not row["expected"]), out["lines"]
    assert out["cpu_ms_per_line"]["stt"]["n"] == 5
