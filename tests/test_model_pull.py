"""`chorus models` and `chorus models pull` against a local server that plays the hub's file API, serving the
embedded files (SmolLM2's GGUF, tiny.en's files) under the `laptop` presets' names: listing, progress, resuming
after a cut connection and after an interrupted run, checksum mismatch, too little disk or memory."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot import model_cli
from runtime import model_fetch
from runtime.model_presets import LLM_PRESETS, STT_PRESETS, find_preset
from runtime.errors import ModelLoadError
from runtime.models import embedded_gguf_path, embedded_whisper_path, resolve_gguf, resolve_whisper_model
from tests.fixtures_hub import FakeHub, fake_hub  # noqa: F401 (fixture)

LLM = LLM_PRESETS["laptop"]
STT = STT_PRESETS["laptop"]
GGUF = LLM.files[0]


def write_env(tmp_path: Path, llm: str = "preset:laptop", stt: str = "preset:laptop") -> Path:
    env = tmp_path / "models.env"
    env.write_text(f"LLM_MODEL={llm}\nSTT_MODEL={stt}\nCHORUS_DATA_DIR={tmp_path / 'data'}\n")
    return env


def serve_presets(hub: FakeHub, **gguf_options: object) -> None:
    hub.serve(GGUF.repo, GGUF.path, embedded_gguf_path(), **gguf_options)
    tiny = embedded_whisper_path()
    for file in STT.files:
        if (tiny / file.path).is_file():
            hub.serve(file.repo, file.path, tiny / file.path)


def run_cli(argv: list[str], env: Path, **seams: object) -> tuple[int, str]:
    out = io.StringIO()
    code = model_cli.main(argv, out=out, env_file=env, **seams)  # type: ignore[arg-type]
    return code, out.getvalue()


def plenty(_path: Path) -> int:
    return 500 * 10**9


def test_list_then_pull_then_list(fake_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    serve_presets(fake_hub)
    env = write_env(tmp_path)
    code, listing = run_cli([], env)
    assert code == 0
    assert "LLM_MODEL=preset:laptop" in listing and "STT_MODEL=preset:laptop" in listing
    assert listing.count("missing") == 2 and "986 MB" in listing  # the preset's size before the hub is asked
    assert f"{fake_hub.url}/{GGUF.repo} {GGUF.path}" in listing

    code, report = run_cli(["pull"], env, free_bytes=plenty)
    assert code == 0, report
    assert "verified" in report and report.rstrip().endswith("done")
    progress = capsys.readouterr().err
    assert GGUF.path[-30:] in progress and "100%" in progress  # huggingface_hub's tqdm bar, per file

    gguf = model_fetch.local_path(GGUF)
    assert gguf.read_bytes() == embedded_gguf_path().read_bytes()
    code, listing = run_cli([], env)
    assert listing.count("here") == 2 and str(gguf) in listing

    # The pulled files are what the bot loads: the GGUF answers, the whisper folder transcribes nothing wrong.
    assert resolve_gguf("preset:laptop") == gguf
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=256, verbose=False)
    assert llm.create_completion("The capital of France is", max_tokens=4, temperature=0)["choices"][0]["text"].strip()
    folder = resolve_whisper_model("preset:laptop")
    from faster_whisper import WhisperModel

    WhisperModel(folder, device="cpu", compute_type="int8")
    assert run_cli(["pull"], env, free_bytes=plenty)[1].strip() == "every model the configuration needs is here"


def test_pull_resumes_after_the_connection_drops(fake_hub: FakeHub, tmp_path: Path) -> None:
    cut = 30_000_000
    serve_presets(fake_hub, cut_after=cut)
    code, report = run_cli(["pull"], write_env(tmp_path, stt="embedded"), free_bytes=plenty)
    assert code == 0, report
    first, second = fake_hub.gets(GGUF.path)
    assert first is None and second is not None and second.endswith("-")
    resumed_at = int(second.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= cut  # the second GET asks only for the rest (from the last whole chunk written)
    assert model_fetch.local_path(GGUF).read_bytes() == embedded_gguf_path().read_bytes()


def test_pull_resumes_what_an_interrupted_run_left(fake_hub: FakeHub, tmp_path: Path) -> None:
    serve_presets(fake_hub)
    part = model_fetch.partial_path(GGUF)
    part.parent.mkdir(parents=True)
    have = 40_000_000
    with open(embedded_gguf_path(), "rb") as f:
        part.write_bytes(f.read(have))
    code, report = run_cli(["pull"], write_env(tmp_path, stt="embedded"), free_bytes=plenty)
    assert code == 0, report
    assert fake_hub.gets(GGUF.path) == [f"bytes={have}-"]
    assert not part.exists()
    assert model_fetch.local_path(GGUF).read_bytes() == embedded_gguf_path().read_bytes()


def test_checksum_mismatch_is_refused_and_nothing_kept(fake_hub: FakeHub, tmp_path: Path) -> None:
    serve_presets(fake_hub, etag_override="0" * 64)
    code, report = run_cli(["pull"], write_env(tmp_path, stt="embedded"), free_bytes=plenty)
    assert code == 1
    assert "checksum mismatch" in report and "deleted" in report
    assert not model_fetch.local_path(GGUF).exists() and not model_fetch.partial_path(GGUF).exists()
    with pytest.raises(ModelLoadError, match="checksum mismatch"):  # first use verifies the same way
        resolve_gguf("preset:laptop")


def test_not_enough_disk_is_refused_before_downloading(fake_hub: FakeHub, tmp_path: Path) -> None:
    serve_presets(fake_hub)
    seen: list[Path] = []

    def small_disk(path: Path) -> int:
        seen.append(path)
        return 60_000_000

    code, report = run_cli(["pull"], write_env(tmp_path), free_bytes=small_disk)
    assert code == 1
    assert report.startswith("refused: not enough disk") and "set HF_HOME" in report
    assert seen and fake_hub.gets(GGUF.path) == []  # asked the hub for sizes, fetched nothing


def test_not_enough_memory_is_refused(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.serve(LLM_PRESETS["gpu"].files[0].repo, LLM_PRESETS["gpu"].files[0].path, embedded_gguf_path())
    env = write_env(tmp_path, llm="preset:gpu", stt="embedded")
    code, report = run_cli(["pull"], env, free_bytes=plenty, total=lambda: 4 * 10**9, gpu=lambda: None)
    assert code == 1
    assert "refused: LLM_MODEL=preset:gpu needs about 6.50 GB" in report and "4.00 GB of RAM" in report
    assert fake_hub.requests == []
    code, report = run_cli(["pull"], env, free_bytes=plenty, total=lambda: 4 * 10**9, gpu=lambda: 24 * 2**30)
    assert code == 0, report  # a GPU with room: its memory is what counts


def test_presets_are_listed_and_an_unknown_one_named() -> None:
    out = io.StringIO()
    assert model_cli.main(["presets"], out=out) == 0
    for preset in (*LLM_PRESETS.values(), *STT_PRESETS.values()):
        assert f"  {preset.name} " in out.getvalue()
    with pytest.raises(ValueError, match="no such preset .*laptop, laptop-llama, gpu, big-gpu"):
        find_preset("llm", "preset:lapt0p")
    with pytest.raises(ModelLoadError, match="no such preset"):
        resolve_gguf("preset:lapt0p")


def test_a_hub_preset_downloads_on_first_use_once(fake_hub: FakeHub) -> None:
    serve_presets(fake_hub)
    path = resolve_gguf("preset:laptop")
    assert path == model_fetch.local_path(GGUF)
    assert resolve_gguf("preset:laptop") == path
    assert len(fake_hub.gets(GGUF.path)) == 1


def test_start_up_notes_a_preset_not_pulled_yet_without_downloading(fake_hub: FakeHub, tmp_path: Path) -> None:
    from runtime.settings import load_settings
    from bot.startup import check_models

    serve_presets(fake_hub)
    settings = load_settings(
        env={"LLM_MODEL": "preset:laptop", "STT_MODEL": "preset:laptop", "CHORUS_DATA_DIR": str(tmp_path / "data")},
        env_file=None,
    )
    notes = check_models(settings)
    assert sum("is not here yet: `chorus models pull` fetches it" in n for n in notes) == 2, notes
    assert fake_hub.requests == []
    with pytest.raises(ModelLoadError, match="no such preset"):
        check_models(settings.replace(llm_model="preset:huge"))


def test_chorus_models_is_a_subcommand_of_the_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.__main__ import main

    assert main(["models", "presets"]) == 0
    assert "LLM_MODEL=preset:<name>" in capsys.readouterr().out


def test_a_file_some_conversions_lack_is_skipped_when_the_hub_has_none(fake_hub: FakeHub) -> None:
    big = STT_PRESETS["big-gpu"]
    tiny = embedded_whisper_path()
    sources = {"vocabulary.json": tiny / "vocabulary.txt"}
    for file in big.files:
        if file.required:
            fake_hub.serve(file.repo, file.path, sources.get(file.path, tiny / file.path))
    folder = Path(resolve_whisper_model("preset:big-gpu"))
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.bin", "tokenizer.json", "vocabulary.json"]
    assert ("HEAD", f"/{big.files[0].repo}/resolve/main/preprocessor_config.json", None) in fake_hub.requests


def test_an_hf_setting_is_pulled_too_and_then_used_without_asking_the_hub(fake_hub: FakeHub, tmp_path: Path) -> None:
    fake_hub.serve("someone/Tiny-GGUF", "tiny.gguf", embedded_gguf_path())
    code, report = run_cli(
        ["pull"], write_env(tmp_path, llm="hf:someone/Tiny-GGUF/tiny.gguf", stt="embedded"), free_bytes=plenty
    )
    assert code == 0, report
    asked = len(fake_hub.requests)
    assert resolve_gguf("hf:someone/Tiny-GGUF/tiny.gguf").read_bytes() == embedded_gguf_path().read_bytes()
    assert len(fake_hub.requests) == asked
