"""Batched decoding against separate instances: which way makes more tokens per second on this machine.

Issue 22 asks whether replies of several guilds should be decoded together in one llama.cpp context (several
sequences in one batch, as llama.cpp's server does with parallel slots) instead of chorus's pool of contexts
(`brain/llama_pool.py`, `LLM_INSTANCES`, one thread each). On a GPU, a batch of sequences costs little more than
one; on a few CPU cores the matrix work grows with every sequence. This measures both on the reply model:

- `batched`: one context, K sequences, each step decodes one token of every sequence in one `llama_decode`
  call (K in `--seqs`, on 1 and on all cores);
- `instances`: K contexts of one thread each, each decoding its own sequence on its own thread at the same
  time (what the `parallel` policy does).

Each sequence first evaluates its own prompt (real text, different per sequence), then generates `--steps`
tokens greedily (argmax of the logits). The variants are interleaved round by round, so a change in the
machine's load falls on all of them. Prints JSON and writes `out/bench/batch-decode.json`:

    python -m benchmarks.batch_decode_bench [--seqs 1 2 4 8] [--steps 48] [--rounds 3] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.report import command_line, machine_info, stats, write_json

OUT = Path("out/bench/batch-decode.json")
PROMPT_TOKENS = 160  # about a reply prompt's new part after the cached persona prompt
TEXT = (
    "Alice said she wanted to cook something warm tonight, maybe a soup with lentils and carrots, and Bob asked "
    "whether anyone had tried the new bakery on the corner. The captain told a long story about a storm off the "
    "coast, the waves as high as the mast, the crew singing to keep their spirits up until the morning came. "
    "Then the conversation turned to weekend plans: hiking in the hills, a concert in the park, a quiet day at "
    "home with a good book and a pot of tea. Someone wondered why the sky is blue and how rainbows form, and "
    "the answer came slowly, with questions about light and water and the angle of the sun. "
)


def _llama() -> Any:
    import llama_cpp

    from brain.llama_pool import route_llama_logs

    route_llama_logs()  # llama.cpp's housekeeping to the logger, not over the JSON
    llama_cpp.llama_backend_init()
    return llama_cpp


class Model:
    """The GGUF loaded once through llama.cpp's C API (the contexts of every variant share its weights)."""

    def __init__(self, path: str) -> None:
        self.L = _llama()
        self.model = self.L.llama_model_load_from_file(path.encode(), self.L.llama_model_default_params())
        if not self.model:
            raise SystemExit(f"cannot load {path}")
        self.vocab = self.L.llama_model_get_vocab(self.model)
        self.n_vocab = self.L.llama_vocab_n_tokens(self.vocab)
        raw = (TEXT * 8).encode()
        buf = (self.L.llama_token * (len(raw) + 8))()
        n = self.L.llama_tokenize(self.vocab, raw, len(raw), buf, len(buf), True, False)
        self.tokens = [buf[i] for i in range(n)]

    def prompt(self, index: int) -> list[int]:
        """A different stretch of the text for each sequence."""
        start = (index * 37) % (len(self.tokens) - PROMPT_TOKENS)
        return self.tokens[start : start + PROMPT_TOKENS]

    def context(self, seqs: int, threads: int) -> Any:
        params = self.L.llama_context_default_params()
        params.n_ctx = 512 * max(1, seqs)
        params.n_batch = 512
        params.n_seq_max = max(1, seqs)
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = True
        ctx = self.L.llama_init_from_model(self.model, params)
        if not ctx:
            raise SystemExit("cannot create a llama.cpp context")
        return ctx

    def argmax(self, ctx: Any, index: int) -> int:
        ptr = self.L.llama_get_logits_ith(ctx, index)
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))))


def _fill(batch: Any, entries: Sequence[tuple[int, int, int, bool]]) -> None:
    """(token, position, sequence, wants logits) per entry."""
    batch.n_tokens = len(entries)
    for j, (token, pos, seq, logits) in enumerate(entries):
        batch.token[j] = token
        batch.pos[j] = pos
        batch.n_seq_id[j] = 1
        batch.seq_id[j][0] = seq
        batch.logits[j] = logits


def run_batched(model: Model, seqs: int, threads: int, steps: int) -> dict[str, Any]:
    """One context, `seqs` sequences decoded together."""
    L = model.L
    ctx = model.context(seqs, threads)
    batch = L.llama_batch_init(512 * seqs, 0, seqs)
    try:
        started = time.perf_counter()
        last: list[int] = []
        for s in range(seqs):  # each prompt evaluated alone, as a reply's prompt arrives alone
            prompt = model.prompt(s)
            _fill(batch, [(t, i, s, i == len(prompt) - 1) for i, t in enumerate(prompt)])
            if L.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed (prompt)")
            last.append(model.argmax(ctx, len(prompt) - 1))
        prompt_s = time.perf_counter() - started
        step_s: list[float] = []
        first = [last[0]]  # what sequence 0 generated (the same prompt alone on an instance gives the same)
        for k in range(steps):
            t0 = time.perf_counter()
            _fill(batch, [(last[s], PROMPT_TOKENS + k, s, True) for s in range(seqs)])
            if L.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed (step)")
            last = [model.argmax(ctx, s) for s in range(seqs)]
            step_s.append(time.perf_counter() - t0)
            first.append(last[0])
        return _result(seqs, prompt_s, step_s, seqs * len(step_s) / sum(step_s), first)
    finally:
        L.llama_batch_free(batch)
        L.llama_free(ctx)


def run_instances(model: Model, seqs: int, steps: int) -> dict[str, Any]:
    """`seqs` contexts of one thread each, decoding at the same time on their own threads."""
    L = model.L
    contexts = [model.context(1, 1) for _ in range(seqs)]
    barrier = threading.Barrier(seqs)
    prompt_s = [0.0] * seqs
    step_s: list[list[float]] = [[] for _ in range(seqs)]
    first: list[int] = []
    errors: list[BaseException] = []

    def one(index: int) -> None:
        ctx = contexts[index]
        batch = L.llama_batch_init(512, 0, 1)
        try:
            barrier.wait()
            t0 = time.perf_counter()
            prompt = model.prompt(index)
            _fill(batch, [(t, i, 0, i == len(prompt) - 1) for i, t in enumerate(prompt)])
            if L.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed (prompt)")
            token = model.argmax(ctx, len(prompt) - 1)
            prompt_s[index] = time.perf_counter() - t0
            if index == 0:
                first.append(token)
            for k in range(steps):
                t1 = time.perf_counter()
                _fill(batch, [(token, PROMPT_TOKENS + k, 0, True)])
                if L.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed (step)")
                token = model.argmax(ctx, 0)
                step_s[index].append(time.perf_counter() - t1)
                if index == 0:
                    first.append(token)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            L.llama_batch_free(batch)

    threads = [threading.Thread(target=one, args=(i,), name=f"instance-{i}") for i in range(seqs)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    for ctx in contexts:
        L.llama_free(ctx)
    if errors:
        raise errors[0]
    # the steps overlap: throughput is every token over the slowest instance's generation time
    gen_s = max(sum(per) for per in step_s)
    result = _result(seqs, max(prompt_s), [s for per in step_s for s in per], seqs * steps / gen_s, first)
    result["wall_s"] = round(wall, 3)
    return result


def _result(seqs: int, prompt_s: float, step_s: list[float], tokens_per_s: float, first: list[int]) -> dict[str, Any]:
    return {
        "sequence_0_tokens": first,
        "prompt_s": round(prompt_s, 3),
        "prompt_tokens_per_s": round(seqs * PROMPT_TOKENS / prompt_s, 1),
        "step_ms": stats([s * 1000 for s in step_s], digits=2),
        "tokens_per_s": round(tokens_per_s, 1),
    }


def _median(values: list[float]) -> float:
    return round(float(np.median(values)), 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from runtime.models import embedded_gguf_path

    path = args.model or str(embedded_gguf_path())
    model = Model(path)
    cores = os.cpu_count() or 1
    variants: list[tuple[str, int, int]] = []  # (kind, seqs, threads)
    for seqs in args.seqs:
        for threads in sorted({1, cores}):
            variants.append(("batched", seqs, threads))
        variants.append(("instances", seqs, 1))
    rounds: dict[str, list[dict[str, Any]]] = {}
    for _ in range(args.rounds):
        for kind, seqs, threads in variants:
            key = f"{kind} seqs={seqs} threads={threads if kind == 'batched' else seqs}"
            if kind == "batched":
                result = run_batched(model, seqs, threads, args.steps)
            else:
                result = run_instances(model, seqs, args.steps)
            rounds.setdefault(key, []).append(result)
    summary: dict[str, dict[str, Any]] = {
        key: {
            "tokens_per_s": _median([r["tokens_per_s"] for r in results]),
            "prompt_tokens_per_s": _median([r["prompt_tokens_per_s"] for r in results]),
            "step_ms_p50": _median([r["step_ms"]["p50"] for r in results]),
            "rounds": results,
        }
        for key, results in rounds.items()
    }
    single = float(summary.get("batched seqs=1 threads=1", {}).get("tokens_per_s") or 0.0)
    gains = {key: round(float(value["tokens_per_s"]) / single, 2) for key, value in summary.items() if single}
    L = model.L
    L.llama_model_free(model.model)
    return {
        "benchmark": "batch_decode_bench",
        "command": command_line("benchmarks.batch_decode_bench", args.argv),
        "machine": machine_info(),
        "model": os.path.basename(path),
        "prompt_tokens": PROMPT_TOKENS,
        "steps": args.steps,
        "rounds_per_variant": args.rounds,
        "tokens_per_s_vs_one_sequence_one_thread": gains,
        "variants": summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seqs", type=int, nargs="+", default=[1, 2, 4, 8], help="sequences decoded at once")
    parser.add_argument("--steps", type=int, default=48, help="tokens generated per sequence")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each running every variant once")
    parser.add_argument("--model", help="GGUF path (default: the embedded SmolLM2)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.argv = argv
    payload = run(args)
    path = write_json(payload, args.out)
    print(json.dumps({k: v for k, v in payload.items() if k != "variants"}, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
