"""A few prompts of the reply-quality benchmark on the embedded model: the whole pipeline runs and every check is
computed for every reply, in both modes. Quality numbers of the small model are the benchmark's job, not asserted."""

from __future__ import annotations

import json

import pytest

from benchmarks import quality_bench
from benchmarks.quality_checks import CHECKS


@pytest.mark.asyncio
async def test_a_small_selection_runs_through_the_real_responder(tmp_path) -> None:
    report = await quality_bench.main_async(["--parts", "tuning,heldout", "--limit", "2", "--out", str(tmp_path)])
    for part in ("tuning", "heldout"):
        for mode in ("single", "running"):
            summary = report["results"][part][mode]
            assert summary["replies"] == 2
            for check in CHECKS:
                assert 0.0 <= summary[f"{check}_rate"] <= 1.0
            assert report["targets"][part][mode]["on_topic_rate"]["target"] in (0.8, 0.7)
    replies = report["replies"]
    assert len(replies) == 8 and all(set(r["checks"]) == set(CHECKS) for r in replies)
    assert all(r["reply"] or r["why"].get("spoken") for r in replies)
    assert all(r["prompt_tokens"] > 0 for r in replies)
    running = [r for r in replies if r["mode"] == "running"]
    assert running[0]["situation"] != running[1]["situation"] or running[0]["said"] != running[1]["said"]
    saved = json.loads((tmp_path / "quality.json").read_text(encoding="utf-8"))
    assert saved["results"] == report["results"] and saved["model"]["profile"]
    transcript = (tmp_path / "quality.md").read_text(encoding="utf-8")
    assert "## tuning / one prompt at a time" in transcript and "## heldout / running conversation" in transcript
    assert replies[0]["said"] in transcript


@pytest.mark.asyncio
async def test_the_same_seed_gives_the_same_replies(tmp_path) -> None:
    args = ["--parts", "tuning", "--modes", "single", "--limit", "2", "--seed", "3"]
    first = await quality_bench.main_async([*args, "--out", str(tmp_path / "a")])
    second = await quality_bench.main_async([*args, "--out", str(tmp_path / "b")])
    assert [r["reply"] for r in first["replies"]] == [r["reply"] for r in second["replies"]]


def test_a_lever_is_one_setting_of_the_profile() -> None:
    from runtime.settings import load_settings
    from brain.llm import make_backend

    settings = load_settings(env={}, env_file=None)
    llm = make_backend(settings)
    profile = quality_bench.choose_profile(
        "legacy", settings, llm, ["layout.history_lines=4", "sampling.min_p=0.2", "address_only_speaker=true"]
    )
    assert profile.layout.history_lines == 4 and profile.sampling.min_p == 0.2 and profile.address_only_speaker
    with pytest.raises(SystemExit, match="expected layout"):
        quality_bench.choose_profile("legacy", settings, llm, ["nonsense=1"])
