"""What an LLM backend needs of the settings: the `LLM_*` ones (the model and where it runs, the server's address
and limits, the prompt profile and the sampling overrides), named as the settings name them. Built from the
settings by `brain.llm.make_backend`; a backend never sees the rest of them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class LlmOptions:
    llm_backend: str  # llama_cpp or openai
    llm_model: str  # a GGUF (embedded, preset:<name>, a path, hf:<repo>/<file>) or the server's model name
    llm_context: int
    llm_gpu_layers: int
    llm_threads: int  # per instance; 0: all cores but one, shared among the instances
    llm_instances: int  # llama.cpp instances (0: auto, runtime.scheduler_policy.llm_instances)
    llm_state_cache_mb: int  # evaluated prompts kept in RAM for any instance to restore (brain.kv_states)
    llm_base_url: str
    llm_timeout_s: float
    llm_max_retries: int
    llm_server_prefill: bool  # evaluate a likely reply's prompt on the server ahead (Responder.prefill)
    llm_api_key: str = field(repr=False)
    llm_profile: str
    llm_temperature: float | None
    llm_top_p: float | None
    llm_top_k: int | None
    llm_min_p: float | None
    llm_repeat_penalty: float | None
    llm_presence_penalty: float | None
    llm_frequency_penalty: float | None
    llm_seed: int | None

    @classmethod
    def from_settings(cls, settings: Any) -> "LlmOptions":
        return cls(**{f.name: getattr(settings, f.name) for f in fields(cls)})
