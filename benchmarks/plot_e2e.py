"""Draw the e2e benchmark's per-turn stage breakdown: one stacked bar per turn, grouped by mode.

    .venv/bin/python -m benchmarks.plot_e2e [out/bench/e2e.json] [out/bench/e2e.png]

Each bar goes from the true end of the member's speech to the bot's first voiced packet at the member,
cut into the pipeline's stages (`benchmarks.e2e_bench.INTERVALS`). Stage times are taken as a running
maximum, so a stage that started early (an early start sends the request before the final transcript)
adds nothing and the bar's height is the latency.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = ("#4c72b0", "#8172b2", "#dd8452", "#c44e52", "#55a868", "#937860", "#8c8c8c")


def segments(stages: dict[str, float], intervals: tuple[tuple[str, str, str], ...]) -> list[float]:
    """Non-negative lengths of each interval along the running maximum of the stage times."""
    out, reached = [], 0.0
    for _name, _start, end in intervals:
        t = stages.get(end)
        if t is None:
            out.append(0.0)
            continue
        out.append(max(0.0, t - reached))
        reached = max(reached, t)
    return out


def plot_e2e(report: dict[str, Any], path: Path) -> Path:
    from benchmarks.e2e_bench import GOAL_P50_S, INTERVALS

    modes = list(report["modes"])
    rows = [r for r in report["turns"] if not r["warmup"]]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.55 * len(rows) + 3), 5.5), dpi=110)
    x, labels, group_mid = 0.0, [], []
    legend_done = False
    for mode in modes:
        mode_rows = [r for r in rows if r["mode"] == mode]
        first = x
        for r in mode_rows:
            bottom = 0.0
            if r["latency_s"] is None:
                ax.text(x, 0.05, "no reply", rotation=90, ha="center", va="bottom", fontsize=7, color="#c44e52")
            else:
                for (name, _a, _b), length, color in zip(INTERVALS, segments(r["stages_s"], INTERVALS), COLORS):
                    ax.bar(x, length, bottom=bottom, color=color, width=0.8, label=name if not legend_done else None)
                    bottom += length
                legend_done = True
                ax.text(x, bottom + 0.03, f"{r['latency_s']:.2f}", ha="center", va="bottom", fontsize=7)
            labels.append((x, f"{r['speaker'][0]}{r['turn']}"))
            x += 1.0
        group_mid.append(((first + x - 1.0) / 2, mode, mode_rows))
        x += 1.0
    ax.axhline(GOAL_P50_S, color="black", linestyle="--", linewidth=0.8)
    ax.text(-0.6, GOAL_P50_S, f" goal p50 {GOAL_P50_S} s", va="bottom", fontsize=8)
    ax.set_xticks([p for p, _ in labels], [t for _, t in labels], fontsize=7)
    tallest = max([r["latency_s"] for r in rows if r["latency_s"] is not None] + [GOAL_P50_S])
    top = tallest * 1.3
    for mid, mode, mode_rows in group_mid:  # mode labels above the tallest bar
        p50 = ((report["modes"][mode]["summary"].get("latency_s") or {}).get("p50"))
        text = f"{mode}\np50 {p50:.2f} s" if p50 is not None else f"{mode}\nno replies"
        ax.text(mid, top * 0.98, text, ha="center", va="top", fontsize=9, fontweight="bold")
    ax.set_ylim(0, top)
    ax.set_ylabel("seconds after the member stopped speaking")
    ax.set_xlabel("turn (speaker initial + index), grouped by mode")
    machine = report.get("machine", {})
    threads = report.get("models", {}).get("llm_threads", "?")
    ax.set_title(f"chorus end of speech → first bot audio at the member, per turn\n"
                 f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, LLM threads {threads}, "
                 f"load {machine.get('loadavg_at_start', ['?'])[0]} at start", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="stage", title_fontsize=8)
    if "baseline" in modes:
        fig.text(0.99, 0.01, "baseline: 'first fragment' is the whole LLM reply, 'tts first audio' the whole reply synthesized",
                 ha="right", va="bottom", fontsize=7, color="#555555")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    src = Path(args[0]) if args else Path("out/bench/e2e.json")
    dst = Path(args[1]) if len(args) > 1 else src.with_suffix(".png")
    print(plot_e2e(json.loads(src.read_text(encoding="utf-8")), dst))


if __name__ == "__main__":
    main()
