"""Draw the e2e benchmark's per-turn timeline: one panel per mode, one row per turn, stages as floating bars.

    .venv/bin/python -m benchmarks.plot_e2e [out/bench/e2e.json] [out/bench/e2e.png]

Every time is seconds after the true end of the member's speech (the report's `stages_s`). Each turn has two
lanes, so work that overlaps shows as overlap: the upper lane is the bot hearing the member (end of speech
confirmed by the VAD, then the final transcript), the lower lane is the reply (LLM to first token, to the first
speakable fragment, TTS first audio, the audio held until the final confirms the turn and sent, then the first
packet's way to the member). With an early start the reply lane begins before the upper lane ends. A black tick
marks the first voiced packet heard at the member, with its time printed. Stages a turn lacks (no reply, keys absent) are left out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from benchmarks.e2e_intervals import GOAL_P50_S, INTERVALS, turn_intervals  # noqa: E402

HEARING, REPLY = -0.21, 0.21  # lane offsets from a turn's row (the y axis is inverted: hearing lane on top)
LANE_HEIGHT = 0.38
# (lane, colour, hatch) of each of the benchmark's INTERVALS, in their order
STYLES: tuple[tuple[float, str, str], ...] = (
    (HEARING, "#4c72b0", ""),
    (HEARING, "#8fb3de", ""),
    (REPLY, "#dd8452", ""),
    (REPLY, "#c44e52", ""),
    (REPLY, "#55a868", ""),
    (REPLY, "#d9d9d9", "////"),
    (REPLY, "#f0e2a8", ""),
)
assert len(STYLES) == len(INTERVALS)
BASELINE_NOTE = (
    "baseline (no early start, seed-style): 'to first speakable fragment' is the whole LLM reply, "
    "'TTS first audio' its first sentence synthesized"
)


def heard_at(row: dict[str, Any]) -> float | None:
    """When the member heard the bot's first voiced packet, if it replied."""
    t = (row.get("stages_s") or {}).get("heard")
    return float(t) if t is not None else row.get("latency_s")


def panel_limits(modes: list[str], rows: list[dict[str, Any]], goal: float) -> dict[str, float]:
    """Right edge of each mode's time axis: modes within 2x of each other share one, so chorus's modes compare
    directly while the slow baseline keeps its own scale."""
    last = {
        m: max(
            [goal]
            + [
                t
                for r in rows
                if r["mode"] == m
                for t in [heard_at(r)] + list((r.get("stages_s") or {}).values())
                if t is not None
            ]
        )
        for m in modes
    }
    return {m: 1.12 * max(v for v in last.values() if v <= 2.0 * last[m]) for m in modes}


def turn_label(row: dict[str, Any]) -> str:
    stages = row.get("stages_s") or {}
    early = "request" in stages and "final" in stages and stages["request"] < stages["final"]
    room = "·alone" if row.get("room") == "alone" else ""
    return f"{(row.get('speaker') or '?')[0]}{row['turn']}{room}" + ("\nearly start" if early else "")


def draw_mode(
    ax: Any, mode: str, rows: list[dict[str, Any]], summary: dict[str, Any], goal: float, right: float
) -> None:
    for y, row in enumerate(rows):
        stages = row.get("stages_s") or {}
        for i, t0, t1 in turn_intervals(stages):
            lane, color, hatch = STYLES[i]
            ax.barh(
                y + lane,
                t1 - t0,
                left=t0,
                height=LANE_HEIGHT,
                color=color,
                hatch=hatch,
                edgecolor="#777777" if hatch else "white",
                linewidth=0.4,
            )
        heard = heard_at(row)
        if heard is None or row.get("latency_s") is None:
            ax.text(0.01 * right, y + REPLY, "no reply", va="center", fontsize=7, color="#c44e52")
        else:
            ax.plot([heard, heard], [y - 0.45, y + 0.45], color="black", linewidth=1.6, solid_capstyle="butt")
            on_topic = ((row.get("quality") or {}).get("checks") or {}).get("on_topic")
            note = "" if on_topic is None else (" on topic" if on_topic else " off topic")
            ax.text(
                heard + 0.008 * right,
                y,
                f"{heard:.2f} s{note}",
                va="center",
                fontsize=7.5,
                fontweight="bold",
                color="black" if on_topic is not False else "#c44e52",
            )
    ax.axvline(goal, color="black", linestyle="--", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [turn_label(r) for r in rows], fontsize=7)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first turn on top
    ax.set_xlim(0.0, right)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    latency = summary.get("latency_s") or {}
    answered = f"{summary.get('answered', '?')}/{summary.get('turns', len(rows))} answered"
    if summary.get("on_topic") is not None:
        answered += f", {summary['on_topic']} on topic"
    p50 = f"p50 {latency['p50']:.2f} s, p95 {latency['p95']:.2f} s" if latency.get("p50") is not None else "no replies"
    ax.set_title(f"{mode}: {p50} ({answered})", fontsize=9.5, fontweight="bold", loc="left")


def plot_e2e(report: dict[str, Any], path: Path) -> Path:
    goal: float = (report.get("goal") or {}).get("p50_latency_s") or GOAL_P50_S
    modes = list(report["modes"])
    rows = [r for r in report["turns"] if not r.get("warmup")]
    per_mode = {m: [r for r in rows if r["mode"] == m] for m in modes}
    rights = panel_limits(modes, rows, goal)
    heights = [2.0] + [max(len(per_mode[m]), 1) + 1.2 for m in modes]  # the legend's row, then one per mode
    fig, axes = plt.subplots(
        len(modes) + 1,
        1,
        figsize=(11.0, 0.42 * sum(heights) + 1.2),
        dpi=110,
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
        layout="constrained",
    )
    legend_ax, axes = axes[0, 0], axes[1:]
    for ax, mode in zip(axes[:, 0], modes):
        draw_mode(ax, mode, per_mode[mode], report["modes"][mode].get("summary", {}), goal, rights[mode])
    axes[-1, 0].set_xlabel("seconds after the true end of the member's speech (panels have their own scale)")
    machine = report.get("machine", {})
    threads = report.get("models", {}).get("llm_threads", "?")
    fig.suptitle(
        f"chorus, end of speech → first bot audio at the member, per turn (upper lane: hearing the member, "
        f"lower lane: the reply)\n{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, LLM threads "
        f"{threads}, load {machine.get('loadavg_at_start', ['?'])[0]} at start",
        fontsize=10,
    )
    handles: list[Any] = [
        Patch(facecolor=c, hatch=h, edgecolor="#777777" if h else c, label=label)
        for (label, _s, _e), (_lane, c, h) in zip(INTERVALS, STYLES)
    ]
    handles += [
        Line2D([], [], color="black", linewidth=1.6, label="heard at the member"),
        Line2D([], [], color="black", linestyle="--", linewidth=0.8, label=f"goal p50 {goal} s"),
    ]
    legend_ax.axis("off")
    legend_ax.legend(handles=handles, loc="center", ncol=4, fontsize=8, frameon=False)
    if "baseline" in modes:
        fig.supxlabel(BASELINE_NOTE, x=0.995, ha="right", fontsize=7, color="#555555")
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
