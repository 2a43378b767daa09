"""The quality benchmark's records and reports: rates per part and mode, the distance to the targets, the
Markdown transcript of every prompt and reply, and the README's table."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from benchmarks.quality_checks import CHECKS, CheckResult, rates
from runtime.settings import Settings

TARGETS = {
    "single": {"on_topic_rate": 0.80, "right_addressee_rate": 0.97, "identity_rate": 1.0, "no_repeat_rate": 1.0},
    "running": {"on_topic_rate": 0.70, "right_addressee_rate": 0.97, "identity_rate": 1.0, "no_repeat_rate": 1.0},
}


@dataclass
class ReplyRecord:
    part: str
    mode: str
    item: str  # prompt id, or conversation id and turn number
    category: str
    persona: str
    speaker: str | None
    said: str
    context: list[str]
    situation: str
    reply: str
    raw: str
    attempts: int
    stop_reason: str
    prompt_tokens: int
    seconds: float
    checks: CheckResult
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "part": self.part,
            "mode": self.mode,
            "item": self.item,
            "category": self.category,
            "persona": self.persona,
            "speaker": self.speaker,
            "said": self.said,
            "context": self.context,
            "situation": str(self.situation),
            "reply": self.reply,
            "raw": self.raw,
            "attempts": self.attempts,
            "stop_reason": self.stop_reason,
            "prompt_tokens": self.prompt_tokens,
            "seconds": round(self.seconds, 3),
            "checks": self.checks.passed,
            "why": self.checks.why,
            "on_topic_evidence": self.checks.evidence,
            "error": self.error,
        }


def summarize(records: Sequence[ReplyRecord]) -> dict[str, Any]:
    out: dict[str, Any] = {"replies": len(records), **rates([r.checks for r in records])}
    out["all_checks_rate"] = round(sum(r.checks.all_passed for r in records) / len(records), 3) if records else None
    out["seconds_per_reply_p50"] = round(float(np.percentile([r.seconds for r in records], 50)), 3) if records else None
    out["resampled"] = sum(1 for r in records if r.attempts > 1)
    out["errors"] = sum(1 for r in records if r.error)
    by_category: dict[str, dict[str, Any]] = {}
    for category in dict.fromkeys(r.category for r in records):
        group = [r for r in records if r.category == category]
        by_category[category] = {"n": len(group), "on_topic_rate": rates([r.checks for r in group])["on_topic_rate"]}
    out["by_category"] = by_category
    return out


def distance_to_targets(summary: dict[str, Any], mode: str) -> dict[str, dict[str, float | None]]:
    out = {}
    for key, target in TARGETS[mode].items():
        value = summary.get(key)
        out[key] = {
            "target": target,
            "measured": value,
            "distance": None if value is None else round(max(0.0, target - value), 3),
        }
    return out


def transcript(records: Sequence[ReplyRecord], header: list[str]) -> str:
    lines = ["# Reply quality: every prompt and reply", "", *header, ""]
    current = None
    for r in records:
        section = (r.part, r.mode)
        if section != current:
            current = section
            lines += [
                "",
                f"## {r.part} / {'one prompt at a time' if r.mode == 'single' else 'running conversation'}",
                "",
            ]
        failed = [f"{k} ({r.checks.why.get(k, '')})" for k in CHECKS if not r.checks.passed[k]]
        mark = "✅" if not failed else "❌"
        lines.append(f"**{r.item}** · {r.category} · {r.persona} {mark}")
        lines.append("")
        for c in r.context:
            lines.append(f"> {c}  ")
        who = r.speaker or "(room)"
        lines.append(f"> **{who}:** {r.said}  " if r.speaker else f"> {r.said}  ")
        lines.append(f"> **{r.persona}:** {r.reply or '*(nothing)*'}")
        lines.append("")
        if failed:
            lines.append(f"failed: {'; '.join(failed)}")
        extra = [f"on topic: {r.checks.evidence}"] if r.checks.evidence else []
        if r.attempts > 1:
            extra.append(f"{r.attempts} samples")
        if r.raw.strip() and r.raw.strip() != r.reply.strip():
            extra.append(f"model wrote: `{' '.join(r.raw.split())[:200]}`")
        if r.error:
            extra.append(f"error: {r.error}")
        if extra:
            lines.append(" · ".join(extra))
        lines.append("")
    return "\n".join(lines) + "\n"


def machine_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
    }
    for package in ("llama_cpp_python",):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            pass
    return info


def model_info(settings: Settings, responder: Any) -> dict[str, Any]:
    llm = responder.llm
    info: dict[str, Any] = {
        "backend": settings.llm_backend,
        "model": settings.llm_model,
        "path": getattr(llm, "model_path", None),
        "base_url": settings.llm_base_url if settings.llm_backend == "openai" else None,
    }
    describe = getattr(responder, "describe", None)
    if describe is not None:
        info.update(describe())
    return {k: v for k, v in info.items() if v is not None}


def markdown_table(report: dict[str, Any]) -> str:
    """The README's table from a saved report: each part and mode, each check's rate, the targets."""
    head = ["part / mode", "replies", *[c.replace("_", " ") for c in CHECKS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for part, modes_ in report["results"].items():
        for mode, summary in modes_.items():
            cells = [f"{part} / {'one at a time' if mode == 'single' else 'running'}", str(summary["replies"])]
            for check in CHECKS:
                value = summary.get(f"{check}_rate")
                target = TARGETS[mode].get(f"{check}_rate")
                cells.append(f"{value}" + (f" (≥ {target})" if target is not None else ""))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
