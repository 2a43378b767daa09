"""Coqui XTTS v2 through RealtimeTTS's CoquiEngine: the optional GPU voice, cloned from a reference WAV.

Needs the GPU extra (`pip install -r requirements-gpu.txt`: coqui-tts, torch with CUDA, and
deepspeed for ~2x faster inference). Imported lazily; without it, `make_xtts_tts` raises a
one-line ModelLoadError. This path cannot run on the CPU-only build machine and is not
exercised by its tests beyond that error.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio.tts import RealtimeEngineTts
from runtime.errors import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_XTTS_VERSION = "v2.0.2"
_HUB_NAMES = ("tts_models/multilingual/multi-dataset/xtts_v2", "xtts_v2", "")


@dataclass(frozen=True)
class XttsOptions:
    """What XTTS needs of the settings (built by the engine table, `audio.tts_factory`)."""

    model: str  # XTTS_MODEL: a hub name, a version tag or a local folder
    data_dir: Path  # CHORUS_DATA_DIR: hub models download into <data_dir>/xtts/<version>
    device: str  # TTS_DEVICE: cpu, cuda or auto
    use_deepspeed: bool  # TTS_USE_DEEPSPEED: when installed and on a GPU


def xtts_model_location(options: XttsOptions) -> tuple[str, str]:
    """(specific_model, local_models_path) for CoquiEngine from XTTS_MODEL.

    A folder with config.json/model.pth/vocab.json is used as is; the hub name or a version
    tag ("v2.0.2") is downloaded once into `<data_dir>/xtts/<version>`.
    """
    setting = options.model.strip()
    path = Path(setting).expanduser()
    if setting and path.is_dir():
        missing = [n for n in ("config.json", "model.pth", "vocab.json") if not (path / n).is_file()]
        if missing:
            raise ModelLoadError(f"XTTS_MODEL={setting}: folder lacks {', '.join(missing)}")
        return path.name, str(path.parent)
    version = DEFAULT_XTTS_VERSION if setting in _HUB_NAMES else setting
    return version, str(Path(options.data_dir) / "xtts")


def _gpu_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def make_xtts_tts(options: XttsOptions, *, reference_wav: Path | str | None, speed: float = 1.0) -> RealtimeEngineTts:
    missing = [m for m in ("torch", "TTS") if importlib.util.find_spec(m) is None]
    if missing:
        raise ModelLoadError(
            f"XTTS needs the GPU extra ({', '.join(missing)} not installed): pip install -r requirements-gpu.txt, or use TTS_ENGINE=piper"
        )
    if reference_wav is None or not Path(reference_wav).is_file():
        raise ModelLoadError(f"XTTS needs the persona's voice.reference_wav (a clean 6-30 s WAV); got {reference_wav}")
    try:
        from RealtimeTTS.engines.coqui_engine import CoquiEngine
    except Exception as exc:  # torchaudio/torchcodec wheels that do not match torch fail here
        raise ModelLoadError(f"cannot import RealtimeTTS CoquiEngine: {type(exc).__name__}: {exc}") from None

    gpu = _gpu_available()
    device = options.device if options.device != "auto" else ("cuda" if gpu else "cpu")
    use_deepspeed = bool(
        options.use_deepspeed and device == "cuda" and importlib.util.find_spec("deepspeed") is not None
    )
    if options.use_deepspeed and device == "cuda" and not use_deepspeed:
        log.info("deepspeed is not installed: XTTS runs without it (slower)")
    specific_model, models_path = xtts_model_location(options)

    def build() -> Any:
        return CoquiEngine(
            specific_model=specific_model,
            local_models_path=models_path,
            voice=str(reference_wav),
            language="en",
            speed=speed,
            use_deepspeed=use_deepspeed,
            device=device,
            stream_chunk_size=20,
            full_sentences=False,
            enable_text_splitting=True,
            level=logging.WARNING,
        )

    try:
        tts = RealtimeEngineTts(build, name="xtts", shared=True, on_gpu=device == "cuda")
    except Exception as exc:
        raise ModelLoadError(f"XTTS failed to start: {type(exc).__name__}: {exc}") from None
    tts.sample_rate = 24_000  # type: ignore[attr-defined]
    log.info("XTTS ready on %s (deepspeed=%s, reference %s)", device, use_deepspeed, reference_wav)
    return tts
