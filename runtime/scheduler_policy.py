"""Which scheduling policy (`runtime.scheduler.ModelScheduler`) fits where the models run: `SCHEDULER_POLICY=auto`.

`auto` is pipelined unless the LLM and TTS would slow each other down: on a few CPU cores `parallel` (one slot
per llama.cpp instance, `llm_instances`; exclusive with a single one), both on a GPU with < 16 GiB free
(measured with nvidia-smi, else torch.cuda.mem_get_info) exclusive.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from typing import Any, Callable

from runtime.settings import Settings

log = logging.getLogger(__name__)

SMALL_GPU_FREE_BYTES = 16 * 1024**3


def gpu_free_bytes() -> int | None:
    """Free memory of GPU 0 in bytes (nvidia-smi, else torch if already importable), None if unknown."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.split()
            if out:
                return int(float(out[0])) * 1024**2
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            log.debug("nvidia-smi failed: %s", exc)
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        try:
            import torch

            if torch.cuda.is_available():
                free, _total = torch.cuda.mem_get_info()
                return int(free)
        except Exception as exc:
            log.debug("torch.cuda.mem_get_info failed: %s", exc)
    return None


def llm_on_gpu(settings: Settings | Any) -> bool:
    """Does the local LLM offload layers to a GPU (needs a GPU build of llama-cpp-python)? `settings`: anything
    with `llm_backend` and `llm_gpu_layers` (the settings, or the LLM's options)."""
    if settings.llm_backend != "llama_cpp" or settings.llm_gpu_layers == 0:
        return False
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:
        return False


FEW_CPU_CORES = 4  # at or below this many cores, `auto` on CPU runs LLM and TTS one at a time
PARALLEL_CPU_INSTANCES = 3  # LLM_INSTANCES=0 under SCHEDULER_POLICY=parallel on a CPU with 2+ cores


def llm_instances(requested: int, *, llm_gpu: bool, policy: str, cpu_count: int | None = None) -> int:
    """How many llama.cpp instances of the reply model to load: `requested` (LLM_INSTANCES) if set; else
    PARALLEL_CPU_INSTANCES under the `parallel` policy (resolved, not `auto`) on a CPU with 2+ cores, one otherwise
    (one context on a GPU batches better than several competing; other policies run one reply's LLM at a time)."""
    if requested > 0:
        return requested
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    if policy != "parallel" or llm_gpu or cores < 2:
        return 1
    return PARALLEL_CPU_INSTANCES


def scheduler_slots(settings: Settings, policy: str) -> int:
    """Heavy-work slots of the scheduler: one per llama.cpp instance under `parallel`, else one."""
    if policy != "parallel":
        return 1
    if settings.llm_backend != "llama_cpp":
        return max(1, settings.llm_instances)
    return llm_instances(settings.llm_instances, llm_gpu=llm_on_gpu(settings), policy=policy)


def resolve_policy(
    settings: Settings,
    *,
    tts_on_gpu: bool | None = None,
    gpu_probe: Callable[[], int | None] | None = None,
    llm_gpu: bool | None = None,
    cpu_count: int | None = None,
) -> tuple[str, str]:
    """(policy, why) for SCHEDULER_POLICY, resolving `auto` from where the models run.

    `gpu_probe` returns free GPU bytes (default: nvidia-smi / torch); `llm_gpu` and
    `tts_on_gpu` override the detection of where each model runs.
    """
    if settings.scheduler_policy != "auto":
        return settings.scheduler_policy, f"SCHEDULER_POLICY={settings.scheduler_policy}"
    llm_gpu = llm_on_gpu(settings) if llm_gpu is None else llm_gpu
    if tts_on_gpu is None:
        tts_on_gpu = settings.tts_engine == "xtts" and settings.tts_device != "cpu"
    if not llm_gpu and not tts_on_gpu:
        cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
        if cores <= FEW_CPU_CORES:
            # Both models of one reply on the same few cores just slow each other down (2 cores, e2e_bench:
            # exclusive p50 1.40 s vs pipelined 1.58 s to the first packet); replies of different guilds on
            # different instances use the cores one reply leaves idle (2 cores: docs/scaling.md).
            many = llm_instances(settings.llm_instances, llm_gpu=False, policy="parallel", cpu_count=cores) > 1
            if settings.llm_backend == "llama_cpp" and many:
                return "parallel", f"auto: LLM instances and TTS share {cores} CPU cores, one reply per instance"
            return "exclusive", f"auto: LLM and TTS share {cores} CPU cores"
        return "pipelined", f"auto: LLM and TTS on {cores} CPU cores"
    if not (llm_gpu and tts_on_gpu):
        where = f"LLM on {'GPU' if llm_gpu else 'CPU'}, TTS on {'GPU' if tts_on_gpu else 'CPU'}"
        return "pipelined", f"auto: {where}"
    free = (gpu_probe or gpu_free_bytes)()
    if free is None:
        return "exclusive", "auto: LLM and TTS both on the GPU, free memory unknown"
    gib = free / 1024**3
    if free >= SMALL_GPU_FREE_BYTES:
        return "pipelined", f"auto: LLM and TTS on a GPU with {gib:.1f} GiB free"
    return "exclusive", f"auto: LLM and TTS share a small GPU ({gib:.1f} GiB free < 16 GiB)"
