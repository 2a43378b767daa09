"""The rule that picks the default LLM among the measured candidates (benchmarks/candidates_bench.py)."""

from __future__ import annotations

from benchmarks.candidates_bench import choose_default, doc_link, e2e_markdown, e2e_of, heldout_on_topic


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


def e2e_run(first_audio_p50: float) -> dict:
    return {"first_audio": {"p50": first_audio_p50, "p95": first_audio_p50 * 2}}


def test_result_files_in_docs_are_linked_as_they_resolve_from_docs() -> None:
    assert doc_link("docs/e2e-a.json") == "[e2e-a.json](e2e-a.json)"
    assert doc_link("out/bench/e2e.json") == "[e2e.json](out/bench/e2e.json)"


def test_with_e2e_runs_for_every_candidate_the_limit_is_on_end_to_end_first_audio() -> None:
    # think_bench has "bigger" within 1.25x; end to end it is 1.5x the default's: too slow
    rows = {"embedded": row(1.0, quality(0.4, 0.3)), "bigger": row(1.1, quality(0.6, 0.5))}
    rows["embedded"]["e2e"], rows["bigger"]["e2e"] = e2e_run(2.0), e2e_run(3.0)
    name, why = choose_default(rows)
    assert name == "embedded" and "(e2e)" in why
    del rows["bigger"]["e2e"]  # one candidate without an e2e run: think_bench decides
    name, why = choose_default(rows)
    assert name == "bigger" and "(think_bench)" in why


def test_an_e2e_report_becomes_a_row_with_its_ratio_to_the_default(tmp_path) -> None:
    import json

    def turn(first_token: float, first_audio: float | None, on_topic: bool) -> dict:
        from benchmarks.quality_checks import CHECKS

        quality = {"checks": {**dict.fromkeys(CHECKS, True), "on_topic": on_topic}}
        stages = {"first_token": first_token}
        return {"mode": "exclusive", "warmup": False, "latency_s": first_audio, "stages_s": stages, "quality": quality}

    def report(p50: float, setting: str) -> dict:
        turns = [turn(p50 / 2, p50, True), turn(p50 / 2, p50, False), turn(p50 / 2, None, False)]
        models = {"llm": f"llama_cpp: {setting}", "candidate": {"setting": setting, "profile": "small", "backend": "x"}}
        return {
            "command": "python -m benchmarks.e2e_bench",
            "models": models,
            "machine": {"loadavg_at_start": [1.0]},
            "modes": {"exclusive": {"loadavg_after": [2.0], "summary": {"latency_s": {"p50": p50}}}},
            "turns": [{**turns[0], "warmup": True}, *turns],
        }

    paths = {}
    for name, p50 in (("embedded", 2.0), ("large-server", 3.0)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(report(p50, name)))
    runs = {name: e2e_of([path]) for name, path in paths.items()}
    assert runs["large-server"]["first_token"]["p50"] == 1.5 and runs["embedded"]["answered"] == 2
    table = e2e_markdown(runs)
    assert (
        "| large-server | `large-server` (small, x) | 2 / 3 | 1 / 3 | 1.50 s | 3.00 s (3.00) | 1.50 | 3.00 s (1.0 → 2.0) |"
    ) in table
    assert f"[large-server.json]({paths['large-server']})" in table
    pooled = e2e_of([paths["embedded"], paths["large-server"]])  # two runs of one LLM: their turns together
    assert (pooled["turns"], pooled["answered"], pooled["first_audio"]["p50"]) == (6, 4, 2.5)
