"""Settings: defaults, parsing, every error path, secrets never shown, .env.example in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.settings import PROJECT_ROOT, SETTINGS, SettingsError, load_settings
from runtime.env_example import render_env_example


def test_defaults_without_environment():
    s = load_settings(env={}, env_file=None)
    assert s.discord_token == ""
    assert s.stt_model == "embedded" and s.llm_model == "embedded"
    assert s.scheduler_policy == "auto"
    assert s.dev_guild_ids == ()
    assert s.data_dir == PROJECT_ROOT / "data"


def test_values_are_parsed_to_types():
    s = load_settings(
        env={
            "CHORUS_DEV_GUILD_IDS": "1, 2 3",
            "VAD_END_SILENCE_MS": "450",
            "LLM_TEMPERATURE": "0.2",
            "TTS_USE_DEEPSPEED": "off",
            "SCHEDULER_POLICY": "Exclusive",
            "CHORUS_DATA_DIR": "/tmp/chorus-data",
            "CHORUS_PERSONAS_DIR": "my-personas",
        },
        env_file=None,
    )
    assert s.dev_guild_ids == (1, 2, 3)
    assert s.vad_end_silence_ms == 450
    assert s.llm_temperature == pytest.approx(0.2)
    assert s.tts_use_deepspeed is False
    assert s.scheduler_policy == "exclusive"
    assert s.data_dir == Path("/tmp/chorus-data")
    assert s.personas_dir == PROJECT_ROOT / "my-personas"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("VAD_END_SILENCE_MS", "soon", "expected an integer"),
        ("VAD_END_SILENCE_MS", "10", "expected an integer in [60, 5000]"),
        ("VAD_THRESHOLD", "high", "expected a number"),
        ("VAD_THRESHOLD", "1.5", "expected a number in"),
        ("SCHEDULER_POLICY", "fast", "expected one of auto, exclusive, parallel, pipelined"),
        ("TTS_USE_DEEPSPEED", "maybe", "expected true/false"),
        ("CHORUS_DEV_GUILD_IDS", "12,abc", "expected comma-separated integer ids"),
        ("LLM_BACKEND", "gpt", "expected one of llama_cpp, openai"),
        ("MEMORY_SUMMARY", "always", "expected one of llm, extractive, off"),
    ],
)
def test_bad_values_name_the_setting_and_the_expectation(name, value, expected):
    with pytest.raises(SettingsError) as info:
        load_settings(env={name: value}, env_file=None)
    message = str(info.value)
    assert message.startswith(f"{name}={value!r}")
    assert expected in message


def test_every_setting_has_a_parser_error_path_or_accepts_free_text():
    # Free-text settings accept anything; every other setting must reject garbage.
    free_text = {
        "discord_token",
        "persona_role",
        "default_persona",
        "stt_model",
        "stt_compute_type",
        "stt_language",
        "llm_model",
        "llm_base_url",
        "llm_api_key",
        "xtts_model",
        "data_dir",
        "personas_dir",
        "memory_llm_model",
        "tts_server_voice",
    }
    for spec in SETTINGS:
        if spec.attr in free_text:
            continue
        with pytest.raises(SettingsError):
            load_settings(env={spec.env: "\x00garbage"}, env_file=None)


def test_env_file_is_read_and_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("VAD_END_SILENCE_MS=500\nLLM_MAX_TOKENS=33\n")
    s = load_settings(env={"LLM_MAX_TOKENS": "44"}, env_file=env_file)
    assert s.vad_end_silence_ms == 500
    assert s.llm_max_tokens == 44


def test_token_is_never_shown():
    secret = "MTIzNDU2Nzg5MDEy.secret-token-value"
    s = load_settings(env={"DISCORD_TOKEN": secret, "LLM_API_KEY": "sk-very-secret"}, env_file=None)
    assert secret not in repr(s) and secret not in str(s)
    assert "sk-very-secret" not in repr(s)
    assert "discord_token='***'" in repr(s)


def test_database_url_is_checked_and_its_password_never_shown():
    s = load_settings(env={"DATABASE_URL": "postgresql://bot:pg-pass-123@db:5432/chorus"}, env_file=None)
    assert s.database_url.startswith("postgresql://") and "pg-pass-123" not in repr(s)
    with pytest.raises(SettingsError) as info:
        load_settings(env={"DATABASE_URL": "mysql://bot:pg-pass-123@db/chorus"}, env_file=None)
    assert str(info.value).startswith("DATABASE_URL=<hidden>") and "postgresql://" in str(info.value)
    assert "pg-pass-123" not in str(info.value)


def test_env_example_documents_every_setting():
    text = (PROJECT_ROOT / ".env.example").read_text()
    assert text == render_env_example(), "regenerate with: .venv/bin/python -m runtime.env_example > .env.example"
    for spec in SETTINGS:
        assert f"\n{spec.env}=" in text
