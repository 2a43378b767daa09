"""Typed settings for chorus, read once from the environment and `.env`.

Every setting is declared once in `SETTINGS` (name, type, default, help). The `.env.example` file documents each
of them (rendered by `runtime.env_example`); a test keeps the two in sync.
A wrong value raises `SettingsError` naming the setting and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from dotenv import dotenv_values

from runtime.setting_types import (  # noqa: F401  (SettingsError, SettingSpec: part of this module's API)
    PROJECT_ROOT,
    SettingSpec,
    SettingsError,
    _bool,
    _choice,
    _database_url,
    _float_range,
    _host,
    _id_list,
    _int_range,
    _optional_float_range,
    _optional_int,
    _optional_int_range,
    _path,
    _str,
    _tcp_uri,
)


# One row per setting, as a table reads best (docs/settings.md and .env.example are generated from it).
# fmt: off
SETTINGS: tuple[SettingSpec, ...] = (
    # --- Discord -----------------------------------------------------------------
    SettingSpec("DISCORD_TOKEN", "discord_token", _str, "", "Bot token from the Discord developer portal. Empty: run the offline demo instead.", secret=True),
    SettingSpec("DISCORD_SHARD_COUNT", "shard_count", _int_range(0, 100_000), 0, "Discord shards in all (across every bot process); 0: one connection, unsharded (Discord requires shards from 2,500 guilds, about 1 per 1,000 guilds)."),
    SettingSpec("DISCORD_SHARD_IDS", "shard_ids", _id_list, (), "The shards THIS process runs (comma-separated ids below DISCORD_SHARD_COUNT); empty: all of them. Processes that share the guilds must share DATABASE_URL."),
    SettingSpec("CHORUS_DEV_GUILD_IDS", "dev_guild_ids", _id_list, (), "Comma-separated guild ids: `--sync` copies slash commands there (instant) instead of globally (up to an hour)."),
    SettingSpec("CHORUS_PERSONA_ROLE", "persona_role", _str, "", "Id of a role (or several, comma separated) allowed to switch personas besides members with Manage Server. Empty: Manage Server only."),
    SettingSpec("CHORUS_DATA_DIR", "data_dir", _path, PROJECT_ROOT / "data", "Where the SQLite database (server settings, memories) and downloaded voices are kept."),
    SettingSpec("CHORUS_PERSONAS_DIR", "personas_dir", _path, PROJECT_ROOT / "personas", "Folder of persona files (TOML, Character Card JSON/PNG)."),
    SettingSpec("CHORUS_DEFAULT_PERSONA", "default_persona", _str, "Juniper", "Persona used in a guild that has not chosen one."),
    SettingSpec("CHORUS_LOG_LEVEL", "log_level", _choice("debug", "info", "warning", "error"), "info", "Logging level."),
    SettingSpec("CHORUS_LOG_FORMAT", "log_format", _choice("text", "json"), "text", "Log line format: human text or one JSON object per line."),
    SettingSpec("CHORUS_METRICS_PORT", "metrics_port", _int_range(0, 65535), 0, "Serve Prometheus metrics (/metrics) and a health check (/healthz) on this port, e.g. 9108. 0: off."),
    SettingSpec("HEAP_TRIM_INTERVAL_S", "heap_trim_interval_s", _float_range(0.0, 86400.0), 60.0, "Every this many seconds, when no one is being answered, freed memory is given back to the system (glibc malloc_trim; keeps a long session's RSS flat). 0: never."),
    SettingSpec("CHORUS_METRICS_HOST", "metrics_host", _host, "127.0.0.1", "Address the metrics server listens on (0.0.0.0: every interface)."),
    # --- Speech to text ----------------------------------------------------------
    SettingSpec("STT_BACKEND", "stt_backend", _choice("local", "wyoming"), "local", "`local`: faster-whisper in this process; `wyoming`: a Wyoming STT server (wyoming-faster-whisper) at STT_SERVER_URI does every transcription (partials and finals; VAD and end of turn stay here)."),
    SettingSpec("STT_SERVER_URI", "stt_server_uri", _tcp_uri, "tcp://127.0.0.1:10300", "Wyoming STT server (STT_BACKEND=wyoming). The protocol has no authentication: keep it on this host or a private network."),
    SettingSpec("STT_MODEL", "stt_model", _str, "embedded", "faster-whisper model: `embedded` (tiny.en shipped on PyPI), `preset:<name>` (`chorus models presets`), a size (base.en, small, large-v3, ...) or a local path. Sizes download once."),
    SettingSpec("STT_DEVICE", "stt_device", _choice("cpu", "cuda", "auto"), "cpu", "Device for faster-whisper."),
    SettingSpec("STT_COMPUTE_TYPE", "stt_compute_type", _str, "int8", "CTranslate2 compute type (int8, int8_float16, float16, float32)."),
    SettingSpec("STT_LANGUAGE", "stt_language", _str, "en", "Spoken language code; `auto` to detect (multilingual models only)."),
    SettingSpec("STT_PARTIAL_INTERVAL_S", "stt_partial_interval_s", _float_range(0.2, 10.0), 0.8, "Seconds between partial transcripts while a member speaks."),
    SettingSpec("STT_BEAM_SIZE", "stt_beam_size", _int_range(1, 10), 1, "Beam size for final transcripts (1 = greedy, fastest)."),
    SettingSpec("STT_NO_SPEECH_THRESHOLD", "stt_no_speech_threshold", _float_range(0.0, 1.0), 0.6, "Drop a segment whose no_speech_prob is above this."),
    SettingSpec("STT_LOGPROB_THRESHOLD", "stt_logprob_threshold", _float_range(-10.0, 0.0), -1.0, "Drop a segment whose average log-probability is below this."),
    SettingSpec("STT_ENCODER_WINDOW_S", "stt_encoder_window_s", _float_range(0.0, 30.0), 10.0, "Encoder window (s) for utterances that fit it: 10 is ~4x cheaper than Whisper's 30 on CPU, same words on tiny.en; 0 = always 30."),
    SettingSpec("STT_NAME_LOOK", "stt_name_look", _bool, True, "When a final transcript names nobody, listen again for the bot's name (Whisper drops or bends names it does not know): one more encoder pass and a batched forced decode, tens of ms on tiny.en (audio/name_look.py)."),
    SettingSpec("TURN_MODEL", "turn_model", _choice("smart_turn", "off"), "smart_turn", "Semantic end of turn: `smart_turn` (Smart Turn v3.2, shipped in the pipecat-ai wheel) judges from the voice whether a member finished or only paused; `off`: silence and the transcript alone."),
    SettingSpec("TURN_MODEL_THRESHOLD", "turn_model_threshold", _float_range(0.0, 1.0), 0.2, "Below this end-of-turn probability a member is taken as not done yet (the bot waits PROMPTER_INCOMPLETE_WAIT_MS for more). The model's middle range means unsure: only a confident `unfinished` holds a reply back."),
    SettingSpec("TURN_MODEL_STATEMENT_THRESHOLD", "turn_model_statement_threshold", _float_range(0.0, 1.0), 0.9, "The end-of-turn probability a statement to the bot that asks nothing must reach to count as finished (\"Juniper, for the picnic we have bread.\", \"Juniper, I have a question.\": as often the first of several sentences as a whole turn); below it the bot waits PROMPTER_UNSURE_WAIT_MS. Questions, requests and short lines keep TURN_MODEL_THRESHOLD."),
    SettingSpec("VAD_THRESHOLD", "vad_threshold", _float_range(0.05, 0.95), 0.5, "Silero speech probability above which a frame is speech."),
    SettingSpec("VAD_ENERGY_GATE_DBFS", "vad_energy_gate_dbfs", _float_range(-90.0, 0.0), -50.0, "Frames quieter than this (dBFS) skip the VAD model and count as silence."),
    SettingSpec("VAD_END_SILENCE_MS", "vad_end_silence_ms", _int_range(60, 5000), 300, "Silence that ends a member's speech segment."),
    SettingSpec("VAD_MIN_SPEECH_MS", "vad_min_speech_ms", _int_range(0, 5000), 120, "Shorter bursts are ignored (coughs, clicks)."),
    SettingSpec("VAD_PREROLL_MS", "vad_preroll_ms", _int_range(0, 2000), 300, "Audio kept before speech start so the first syllable is not lost."),
    # --- LLM -----------------------------------------------------------------------
    SettingSpec("LLM_BACKEND", "llm_backend", _choice("llama_cpp", "openai"), "llama_cpp", "`llama_cpp` (local GGUF in-process) or `openai` (an OpenAI-compatible server)."),
    SettingSpec("LLM_MODEL", "llm_model", _str, "embedded", "GGUF: `embedded` (SmolLM2-135M shipped on PyPI), `preset:<name>` (`chorus models presets`), a local .gguf path, or `hf:<repo>/<file.gguf>` (downloads once). For `openai`: the model name."),
    SettingSpec("LLM_CONTEXT", "llm_context", _int_range(256, 131072), 2048, "Context window in tokens."),
    SettingSpec("LLM_GPU_LAYERS", "llm_gpu_layers", _int_range(-1, 1000), 0, "Layers offloaded to the GPU (-1 = all). Needs a CUDA build of llama-cpp-python."),
    SettingSpec("LLM_THREADS", "llm_threads", _int_range(0, 256), 0, "CPU threads for llama.cpp, per instance (0 = all cores but one, shared among the instances, at least one each)."),
    SettingSpec("LLM_INSTANCES", "llm_instances", _int_range(0, 16), 0, "llama.cpp instances of the reply model, so that replies of different guilds decode at once (the `parallel` scheduler policy gives each one a slot; each has its own KV cache, the weights are shared). 0 = auto: 3 under the `parallel` policy (what SCHEDULER_POLICY=auto picks on 2-4 CPU cores) on a CPU, else 1 (docs/scaling.md)."),
    SettingSpec("LLM_STATE_CACHE_MB", "llm_state_cache_mb", _int_range(0, 65536), 256, "With several llama.cpp instances: RAM for evaluated prompts (their KV state, about 14 MB for 600 tokens of the embedded model), so a guild's reply on any instance restores its conversation in milliseconds instead of evaluating it again (seconds on one CPU thread). 0: off."),
    SettingSpec("LLM_MAX_TOKENS", "llm_max_tokens", _int_range(8, 4096), 80, "Upper bound on a reply's tokens (the persona may set a lower one)."),
    SettingSpec("LLM_PROFILE", "llm_profile", _choice("auto", "small", "large", "transcript"), "auto", "Prompt layout and reply repairs: `small` (short system prompt, examples as turns, a short history window; for models under 1B parameters), `large` (the full persona), `transcript` (a pretrained model continues the call's transcript; no chat template), `auto` (by the model's size and name, or a server model's name)."),
    SettingSpec("LLM_TEMPERATURE", "llm_temperature", _optional_float_range(0.0, 2.0), None, "Sampling temperature. Empty: the model family's default (brain/profile.py)."),
    SettingSpec("LLM_TOP_P", "llm_top_p", _optional_float_range(0.0, 1.0), None, "Nucleus sampling. Empty: the model family's default."),
    SettingSpec("LLM_TOP_K", "llm_top_k", _optional_int_range(0, 1000), None, "Top-k sampling (0 = off). Empty: the model family's default."),
    SettingSpec("LLM_MIN_P", "llm_min_p", _optional_float_range(0.0, 1.0), None, "Min-p sampling: drop tokens below this share of the likeliest one. Empty: the model family's default."),
    SettingSpec("LLM_REPEAT_PENALTY", "llm_repeat_penalty", _optional_float_range(0.5, 2.0), None, "llama.cpp repetition penalty (1 = off): keeps small models out of \"I'm sorry, I'm sorry\" loops. Empty: the model family's default."),
    SettingSpec("LLM_PRESENCE_PENALTY", "llm_presence_penalty", _optional_float_range(-2.0, 2.0), None, "OpenAI-style presence penalty. Empty: the model family's default."),
    SettingSpec("LLM_FREQUENCY_PENALTY", "llm_frequency_penalty", _optional_float_range(-2.0, 2.0), None, "OpenAI-style frequency penalty. Empty: the model family's default."),
    SettingSpec("LLM_SEED", "llm_seed", _optional_int_range(0, 2**31 - 1), None, "Sampling seed, for reproducible replies (benchmarks). Empty: random."),
    SettingSpec("LLM_BASE_URL", "llm_base_url", _str, "http://127.0.0.1:8080/v1", "Base URL of the OpenAI-compatible server (LLM_BACKEND=openai)."),
    SettingSpec("LLM_TIMEOUT_S", "llm_timeout_s", _float_range(1.0, 3600.0), 60.0, "OpenAI-compatible server: longest wait for the first token or the next one (connecting: 10 s)."),
    SettingSpec("LLM_MAX_RETRIES", "llm_max_retries", _int_range(0, 10), 2, "OpenAI-compatible server: retries with exponential back-off (0.5 s, 1 s, ... or the server's Retry-After) on HTTP 408/409/429/5xx and connection errors, before a reply's stream starts."),
    SettingSpec("LLM_SERVER_PREFILL", "llm_server_prefill", _bool, False, "OpenAI-compatible server: evaluate a likely reply's prompt on the server while the member still speaks (one request of one token; the server's prompt cache keeps it), so the reply evaluates only the last words, as the in-process backend does. Pays where prompt evaluation is slow (a CPU server, a big model); with one server slot for several busy guilds, one guild's prefill can push another's prompt out of the cache."),
    SettingSpec("LLM_API_KEY", "llm_api_key", _str, "", "API key for the OpenAI-compatible server, if it needs one.", secret=True),
    # --- TTS -----------------------------------------------------------------------
    SettingSpec("TTS_BACKEND", "tts_backend", _choice("local", "wyoming"), "local", "`local`: the persona's engine in this process; `wyoming`: a Wyoming TTS server (wyoming-piper) at TTS_SERVER_URI speaks every line."),
    SettingSpec("TTS_SERVER_URI", "tts_server_uri", _tcp_uri, "tcp://127.0.0.1:10200", "Wyoming TTS server (TTS_BACKEND=wyoming). No authentication: keep it on this host or a private network."),
    SettingSpec("TTS_SERVER_VOICE", "tts_server_voice", _str, "", "Voice the Wyoming TTS server should use (e.g. en_US-joe-medium); empty: the persona's Piper voice name if it has one, else the server's default."),
    SettingSpec("TTS_ENGINE", "tts_engine", _choice("persona", "piper", "xtts", "espeak"), "persona", "`persona`: the engine the persona names; or force piper / xtts (GPU extra) / espeak."),
    SettingSpec("TTS_DEVICE", "tts_device", _choice("cpu", "cuda", "auto"), "auto", "Device for XTTS."),
    SettingSpec("TTS_USE_DEEPSPEED", "tts_use_deepspeed", _bool, True, "Use deepspeed for XTTS when it is installed and a GPU is present."),
    SettingSpec("XTTS_MODEL", "xtts_model", _str, "tts_models/multilingual/multi-dataset/xtts_v2", "Coqui XTTS model name or local folder."),
    # --- Scheduling and turn-taking --------------------------------------------------
    SettingSpec("SCHEDULER_POLICY", "scheduler_policy", _choice("auto", "exclusive", "parallel", "pipelined"), "auto", "`exclusive`: one LLM or TTS job at a time (small GPU); `parallel`: one per LLM instance (LLM_INSTANCES), each reply's LLM and TTS taking turns (CPU cores with room to spare); `pipelined`: stream LLM into TTS concurrently; `auto`: from the hardware."),
    SettingSpec("REPLY_HOLD_AFTER_S", "reply_hold_after_s", _float_range(0.0, 60.0), 1.5, "A reply still waiting for the model (busy with other guilds' replies) this long after it was asked for speaks one of the persona's short holding lines, and is kept to one sentence (0 = off)."),
    SettingSpec("REPLY_DROP_AFTER_S", "reply_drop_after_s", _float_range(0.0, 600.0), 4.0, "A reply that gets the model, or would start speaking its answer, later than this after it was asked for is dropped: no answer to a question long gone (0 = off)."),
    SettingSpec("PROMPTER_REPLY_SILENCE_MS", "reply_silence_ms", _int_range(0, 10000), 250, "Silence after a human finishes before the bot answers when addressed."),
    SettingSpec("PROMPTER_GROUP_SILENCE_MS", "group_silence_ms", _int_range(0, 20000), 1200, "Silence before the bot joins in when it was not addressed and several humans are active."),
    SettingSpec("PROMPTER_IDLE_TOPIC_S", "idle_topic_s", _float_range(5.0, 3600.0), 45.0, "Quiet time after which the bot starts a topic."),
    SettingSpec("PROMPTER_COOLDOWN_S", "cooldown_s", _float_range(0.0, 600.0), 4.0, "Minimum time between two unprompted lines of the bot."),
    SettingSpec("PROMPTER_BARGE_IN_MS", "barge_in_ms", _int_range(100, 5000), 1000, "The bot turns its voice down as soon as someone speaks over it, and goes on after a backchannel (\"mm-hm\", \"yeah\", a laugh); speech over it this long takes the floor whatever its words (a shorter takeover is told by its words)."),
    SettingSpec("PROMPTER_DUCK_MS", "duck_ms", _int_range(0, 3000), 500, "Someone speaking over the bot first turns its voice down (by 12 dB) and it talks on, as people do through a \"yeah\"; after this much of their voice it falls silent to listen. 0: silent at once."),
    SettingSpec("PROMPTER_INCOMPLETE_WAIT_MS", "incomplete_wait_ms", _int_range(0, 10000), 1800, "Silence after a line that sounds unfinished (\"I was wondering...\") before the bot answers it anyway."),
    SettingSpec("PROMPTER_UNSURE_WAIT_MS", "unsure_wait_ms", _int_range(0, 10000), 1000, "Silence after a line whose words read finished while the end-of-turn model heard an unfinished voice, before the bot answers."),
    SettingSpec("PROMPTER_ROOM_QUESTION_WAIT_MS", "room_question_wait_ms", _int_range(0, 20000), 1600, "With two or more humans, a question put to the room (no name; not inside two members' back-and-forth; the bot spoke in the last minute, or joined then and the line opens with a call Whisper could not spell) that no human takes up within this silence is answered by the bot. People answer within ~0.2 s, and a silence past ~1 s reads as trouble; 0: never."),
    SettingSpec("PROMPTER_GREET", "greet_members", _bool, True, "Greet members who join the voice channel."),
    SettingSpec("PROMPTER_MAX_UNPROMPTED", "max_unprompted", _int_range(0, 20), 2, "At most this many bot lines in a row without a human reply (topic starts); 0: never start topics."),
    SettingSpec("PROMPTER_PREEMPTIVE", "preemptive_start", _bool, True, "Start thinking on a complete-looking partial transcript when an addressing member pauses (kept only if the final transcript agrees)."),
    SettingSpec("PROMPTER_PREPARE_IN_WAIT", "prepare_in_wait", _bool, True, "While the bot waits to see whether a member goes on (an unsure end of turn, a question to the room), it prepares its reply with the audio held back: the reply goes out the moment the wait ends, and is dropped unheard if anyone speaks."),
    # --- Storage, memory and privacy ----------------------------------------------
    SettingSpec("DATABASE_URL", "database_url", _database_url, "", "Empty: a SQLite file (chorus.db) in CHORUS_DATA_DIR. Several bot processes: postgresql://user:password@host:5432/dbname.", secret=True),
    SettingSpec("MEMORY_ENABLED", "memory_enabled", _bool, True, "Remember what members tell about themselves and a short summary of each call (a server can turn it off with /memory off)."),
    SettingSpec("MEMORY_RETENTION_DAYS", "memory_retention_days", _int_range(0, 36500), 90, "Memories not renewed for this many days are deleted (checked hourly); 0 keeps them until forgotten."),
    SettingSpec("REMOVAL_GRACE_DAYS", "removal_grace_days", _int_range(0, 365), 7, "When the bot is removed from a server, everything it keeps about that server (settings, opt-outs, memories) is deleted after this many days (checked hourly) unless it is added back; likewise what it keeps about a member who leaves a server (with FORGET_MEMBERS_WHO_LEAVE) unless they rejoin."),
    SettingSpec("FORGET_MEMBERS_WHO_LEAVE", "forget_members_who_leave", _bool, False, "Ask Discord for the privileged Server Members intent, so that when a member leaves a server, everything kept about them there (their memories, others' call summaries made from their lines, their name in others' memories, their opt-out) is deleted after REMOVAL_GRACE_DAYS unless they rejoin. Turn the intent on first in the developer portal (Bot > Privileged Gateway Intents), or Discord refuses the login. Off (the default): the bot is not told who leaves; their memories are deleted when MEMORY_RETENTION_DAYS ends (or with the server's data when the bot is removed), and an opt-out is kept until they opt in again."),
    SettingSpec("MEMORY_PROMPT_TOKENS", "memory_prompt_tokens", _int_range(0, 2000), 96, "Token budget of the memories recalled into a reply's prompt (the most relevant first)."),
    SettingSpec("MEMORY_SUMMARY", "memory_summary", _choice("llm", "extractive", "off"), "extractive", "Call summaries: `extractive` (the member's own most telling lines), `llm` (written by MEMORY_LLM_MODEL; use it with a bigger model than SmolLM2-135M), `off`."),
    SettingSpec("MEMORY_LLM_MODEL", "memory_llm_model", _str, "", "Model that writes call summaries: empty = the reply model (LLM_MODEL); or another GGUF (path, `hf:`) / server model name, e.g. a bigger one."),
    SettingSpec("MEMORY_SUMMARY_INTERVAL_S", "memory_summary_interval_s", _float_range(60.0, 86400.0), 600.0, "During a long call, what was said is summarized in the background every this many seconds (when the room is quiet)."),
    SettingSpec("PRIVACY_NOTICE_SPOKEN", "privacy_notice_spoken", _bool, True, "On /join the bot posts that it listens and transcribes (and how to opt out); also say it out loud, briefly."),
)
# fmt: on


@dataclass(frozen=True)
class Settings:
    discord_token: str
    shard_count: int
    shard_ids: tuple[int, ...]
    dev_guild_ids: tuple[int, ...]
    persona_role: str
    data_dir: Path
    personas_dir: Path
    default_persona: str
    log_level: str
    log_format: str
    metrics_port: int
    heap_trim_interval_s: float
    metrics_host: str
    stt_backend: str
    stt_server_uri: str
    stt_model: str
    stt_device: str
    stt_compute_type: str
    stt_language: str
    stt_partial_interval_s: float
    stt_beam_size: int
    stt_no_speech_threshold: float
    stt_logprob_threshold: float
    stt_encoder_window_s: float
    stt_name_look: bool
    turn_model: str
    turn_model_threshold: float
    turn_model_statement_threshold: float
    vad_threshold: float
    vad_energy_gate_dbfs: float
    vad_end_silence_ms: int
    vad_min_speech_ms: int
    vad_preroll_ms: int
    llm_backend: str
    llm_model: str
    llm_context: int
    llm_gpu_layers: int
    llm_threads: int
    llm_instances: int
    llm_state_cache_mb: int
    llm_max_tokens: int
    llm_profile: str
    llm_temperature: float | None
    llm_top_p: float | None
    llm_top_k: int | None
    llm_min_p: float | None
    llm_repeat_penalty: float | None
    llm_presence_penalty: float | None
    llm_frequency_penalty: float | None
    llm_seed: int | None
    llm_base_url: str
    llm_timeout_s: float
    llm_max_retries: int
    llm_server_prefill: bool
    llm_api_key: str
    tts_backend: str
    tts_server_uri: str
    tts_server_voice: str
    tts_engine: str
    tts_device: str
    tts_use_deepspeed: bool
    xtts_model: str
    scheduler_policy: str
    reply_hold_after_s: float
    reply_drop_after_s: float
    reply_silence_ms: int
    group_silence_ms: int
    idle_topic_s: float
    cooldown_s: float
    barge_in_ms: int
    incomplete_wait_ms: int
    unsure_wait_ms: int
    duck_ms: int
    room_question_wait_ms: int
    greet_members: bool
    max_unprompted: int
    preemptive_start: bool
    prepare_in_wait: bool
    database_url: str
    memory_enabled: bool
    memory_retention_days: int
    removal_grace_days: int
    forget_members_who_leave: bool
    memory_prompt_tokens: int
    memory_summary: str
    memory_llm_model: str
    memory_summary_interval_s: float
    privacy_notice_spoken: bool

    def __repr__(self) -> str:  # never print secrets
        parts = []
        for spec in SETTINGS:
            value = getattr(self, spec.attr)
            parts.append(f"{spec.attr}={'***' if spec.secret and value else value!r}")
        return f"Settings({', '.join(parts)})"

    __str__ = __repr__

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def load_settings(env: Mapping[str, str] | None = None, env_file: Path | str | None = None) -> Settings:
    """Build Settings from `env` (default: os.environ) over the values of `env_file`.

    The process environment wins over `.env`. Raises SettingsError on the first bad value.
    """
    values: dict[str, str] = {}
    if env_file is None and env is None:
        env_file = PROJECT_ROOT / ".env"
    if env_file is not None and Path(env_file).is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if env is None else env)

    parsed: dict[str, Any] = {}
    for spec in SETTINGS:
        raw = values.get(spec.env)
        if raw is None or (raw.strip() == "" and not isinstance(spec.default, str)):
            parsed[spec.attr] = spec.default
            continue
        try:
            parsed[spec.attr] = spec.parse(raw)
        except ValueError as exc:
            shown = "<hidden>" if spec.secret else repr(raw)
            raise SettingsError(f"{spec.env}={shown}: {exc}") from None
    if parsed["shard_ids"]:
        if not parsed["shard_count"]:
            raise SettingsError("DISCORD_SHARD_IDS is set but DISCORD_SHARD_COUNT is 0: set the total number of shards")
        bad = [i for i in parsed["shard_ids"] if i >= parsed["shard_count"]]
        if bad:
            raise SettingsError(
                f"DISCORD_SHARD_IDS: {', '.join(map(str, bad))} not below DISCORD_SHARD_COUNT={parsed['shard_count']}"
            )
    return Settings(**parsed)


assert {f.name for f in fields(Settings)} == {s.attr for s in SETTINGS}, "Settings fields and SETTINGS drift"
