"""Which LLM the end-to-end benchmark runs, and what it reports about the models.

The bot's own `LLM_*` settings from the environment (`LLM_MODEL=preset:gemma3-270m`, `LLM_PROFILE=large`, ...),
overridden by the command line: ``--llm`` (an `LLM_MODEL` value: `embedded`, `preset:<name>`, a path),
``--profile`` (an `LLM_PROFILE` value), ``--llama-server`` (a GGUF served by llama.cpp's OpenAI-compatible
server, `simulator.llama_server`, the bot on `LLM_BACKEND=openai`: the path a user with a bigger model on a
server takes). The candidates of `benchmarks.candidates_bench` are run through the real pipeline this way.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any, Iterator

from runtime.settings import Settings
from benchmarks.report import stats
from brain.llm import default_llm_threads, make_backend

PROFILES = ("auto", "small", "large", "transcript")


def add_llm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--llm",
        metavar="LLM_MODEL",
        default=None,
        help="the LLM to run (an LLM_MODEL value: embedded, preset:<name>, a GGUF path); default: LLM_MODEL",
    )
    parser.add_argument("--profile", choices=PROFILES, default=None, help="LLM_PROFILE; default: LLM_PROFILE or auto")
    parser.add_argument(
        "--llama-server",
        metavar="LLM_MODEL",
        default=None,
        help="serve this GGUF (embedded, preset:<name>, a path) with llama.cpp's OpenAI-compatible server and "
        "run the bot through LLM_BACKEND=openai",
    )
    parser.add_argument(
        "--server-threads-batch",
        type=int,
        default=None,
        help="the server's prompt-evaluation threads (default: its generation threads, as in process; "
        "llama-cpp-python's own default is every core)",
    )


SERVER_LOG = "llama-server.log"


def llm_settings(base: Settings, llm: str | None = None, profile: str | None = None) -> Settings:
    """`base` with the LLM and profile the command line names (the environment's where it names none)."""
    changes: dict[str, Any] = {}
    if llm:
        changes["llm_model"] = llm
    if profile:
        changes["llm_profile"] = profile
    return base.replace(**changes) if changes else base


@contextlib.contextmanager
def chosen_llm(base: Settings, args: argparse.Namespace) -> Iterator[Settings]:
    """The settings of the run: the chosen LLM, behind a llama.cpp server for as long as the run lasts when
    --llama-server names one (with the threads the in-process backend would get, for generation and prompt
    evaluation alike); the server's log, with its own account of each request, is kept as --out/llama-server.log
    (`server_prompt_summary`)."""
    settings = llm_settings(base, args.llm, args.profile)
    if args.llama_server is None:
        yield settings
        return
    if args.llm:
        raise SystemExit("e2e_bench: --llm and --llama-server both name the LLM; give one")
    from simulator.llama_server import served

    threads = settings.llm_threads or default_llm_threads()
    out = getattr(args, "out", None)
    log_path = Path(out) / SERVER_LOG if out else None
    batch = getattr(args, "server_threads_batch", None) or threads
    with served(settings, args.llama_server, threads=threads, threads_batch=batch, log_path=log_path) as on_server:
        yield on_server


def server_prompt_summary(out: Path, threads_batch: int | None = None) -> dict[str, Any] | None:
    """What the LLM server said of its prompts in a run (its log in `out`): per finished request, the prompt
    tokens it took from its cache, those it evaluated, and the milliseconds per evaluated token."""
    from simulator.llama_server import parse_prompt_timings

    path = out / SERVER_LOG
    if not path.exists():
        return None
    timings = parse_prompt_timings(path.read_text(errors="replace"))
    evaluated = [t for t in timings if t.evaluated > 1]  # one token: a prompt it already held whole
    return {
        "threads_batch": threads_batch or "the generation threads",
        "requests": len(timings),
        "cached_tokens": stats([t.cached for t in timings], 0),
        "evaluated_tokens": stats([t.evaluated for t in timings], 0),
        "prompt_ms_per_token": stats([t.prompt_ms / t.evaluated for t in evaluated], 2),
        "log": str(path),
    }


def llm_info(settings: Settings, served_model: str | None = None) -> dict[str, Any]:
    """The LLM as the bot makes it from `settings` (a local model loads once per process; the bot shares it)."""
    llm = make_backend(settings)
    info: dict[str, Any] = {
        "setting": served_model or settings.llm_model,
        "backend": llm.name,
        "model_name": getattr(llm, "model_name", settings.llm_model),
        "profile": llm.profile.name,
        "threads": settings.llm_threads or default_llm_threads(),
    }
    if served_model is not None:
        info["served_by"] = f"llama_cpp.server at {settings.llm_base_url}"
    return info


def models_info(settings: Settings, served_model: str | None = None) -> dict[str, Any]:
    from runtime.models import embedded_gguf_path, embedded_piper_voice, embedded_whisper_path

    def name(fn: Any) -> str:
        try:
            value = fn()
            return Path(value[0] if isinstance(value, tuple) else value).name
        except Exception as exc:  # a missing model is reported, not fatal to the report
            return f"unavailable ({exc})"

    whisper = name(embedded_whisper_path) if settings.stt_model == "embedded" else settings.stt_model
    llm = name(embedded_gguf_path) if settings.llm_model == "embedded" else settings.llm_model
    return {
        "stt": f"faster-whisper {settings.stt_model} ({whisper}, tiny.en) {settings.stt_compute_type}",
        "vad": "silero VAD (ONNX)",
        "llm": f"{settings.llm_backend}: {llm}",
        "tts": f"piper in-process ({name(embedded_piper_voice)})",
        "llm_threads": settings.llm_threads or default_llm_threads(),
        "candidate": llm_info(settings, served_model),
    }
