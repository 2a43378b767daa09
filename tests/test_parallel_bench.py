"""benchmarks.parallel_bench on the real models: two guilds' replies at once, per variant, each one answered."""

from __future__ import annotations

import argparse
import asyncio

from benchmarks.parallel_bench import parse_variants, run


def test_variants_parse() -> None:
    assert parse_variants("exclusive:1, parallel:2,pipelined") == [("exclusive", 1), ("parallel", 2), ("pipelined", 1)]


def test_two_guilds_per_variant_are_answered_and_reported() -> None:
    args = argparse.Namespace(guilds=[2], rounds=1, variants="exclusive:1,parallel:2", persona="personas/juniper.toml")
    report = asyncio.run(run(args))
    assert report["variants"] == ["exclusive:1", "parallel:2"]
    for row in report["results"]:
        assert row["guilds"] == 2 and row["replies"] == 2 and row["answered"] == 2, row
        assert row["first_audio_s"]["p50"] > 0 and row["process_cores"]["mean"] > 0
        assert 0.0 <= row["same_text_as_first_variant"] <= 1.0
    assert report["results"][0]["same_text_as_first_variant"] == 1.0  # the first variant against itself
