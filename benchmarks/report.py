"""What every benchmark reports besides its numbers: the machine, percentiles, the command, the JSON file."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

DEFAULT_PACKAGES = (
    "discord.py",
    "davey",
    "faster-whisper",
    "ctranslate2",
    "llama_cpp_python",
    "piper-tts",
    "onnxruntime",
    "numpy",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """The machine and the versions that matter, with the load when the benchmark started."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    for package in packages:
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            pass
    return info


def stats(values: Sequence[float], digits: int = 3) -> dict[str, float] | None:
    """p50 / p95 / mean / min / max / n of `values` (None when there are none)."""
    if len(values) == 0:
        return None
    arr = np.asarray(values, dtype=float)
    return {
        "p50": round(float(np.percentile(arr, 50)), digits),
        "p95": round(float(np.percentile(arr, 95)), digits),
        "mean": round(float(arr.mean()), digits),
        "min": round(float(arr.min()), digits),
        "max": round(float(arr.max()), digits),
        "n": int(arr.size),
    }


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """How the run was started, to reproduce it."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", "-m", module, *(shlex.quote(a) for a in args)])


def write_json(payload: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return path
