"""benchmarks.batch_decode_bench on the embedded model: both ways decode, and decode the same tokens."""

from __future__ import annotations

import json

from benchmarks.batch_decode_bench import main


def test_batched_and_separate_instances_decode_the_same_greedy_tokens(tmp_path):
    out = tmp_path / "batch.json"
    assert main(["--seqs", "1", "2", "--steps", "6", "--rounds", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    variants = report["variants"]
    assert set(variants) >= {
        "batched seqs=1 threads=1",
        "instances seqs=1 threads=1",
        "batched seqs=2 threads=1",
        "instances seqs=2 threads=2",
    }
    tokens = {key: value["rounds"][0]["sequence_0_tokens"] for key, value in variants.items()}
    assert all(len(t) == 7 for t in tokens.values())  # the prompt's next token, then 6 steps
    # one sequence alone: the same computation whichever way it is driven
    assert tokens["batched seqs=1 threads=1"] == tokens["instances seqs=1 threads=1"]
    assert all(v["tokens_per_s"] > 0 and v["prompt_tokens_per_s"] > 0 for v in variants.values())
    assert report["tokens_per_s_vs_one_sequence_one_thread"]["batched seqs=1 threads=1"] == 1.0
