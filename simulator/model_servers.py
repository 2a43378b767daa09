"""Start the real model servers on the embedded models, on 127.0.0.1 (tests, benchmarks, by hand).

    python -m simulator.model_servers   # STT on 10300, TTS on 10200, the LLM on a free port, until Ctrl-C

`wyoming-faster-whisper` gets the embedded tiny.en folder (int8, greedy, English), `wyoming-piper` the embedded
Piper voice (en_US-joe-medium) and llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`) the
embedded SmolLM2 GGUF, served as model `smollm2`; none goes to the network. Each server logs to a file, never a
pipe (a full pipe would stall it).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from simulator.llama_server import LlamaServer, free_port
from runtime.models import embedded_gguf_path, embedded_piper_voice, embedded_whisper_path

READY_TIMEOUT_S = 90.0


def stt_command(port: int, *, cpu_threads: int = 1) -> list[str]:
    return [
        sys.executable,
        "-m",
        "wyoming_faster_whisper",
        "--uri",
        f"tcp://127.0.0.1:{port}",
        "--model",
        str(embedded_whisper_path()),
        "--data-dir",
        tempfile.gettempdir(),
        "--language",
        "en",
        "--compute-type",
        "int8",
        "--beam-size",
        "1",
        "--cpu-threads",
        str(cpu_threads),
        "--local-files-only",
    ]


def tts_command(port: int) -> list[str]:
    model, _config = embedded_piper_voice()
    return [
        sys.executable,
        "-m",
        "wyoming_piper",
        "--uri",
        f"tcp://127.0.0.1:{port}",
        "--voice",
        model.stem.removesuffix(".onnx"),
        "--data-dir",
        str(model.parent),
        "--local-files-only",
    ]


LLM_MODEL_NAME = "smollm2"


async def _describe(port: int) -> bool:
    from wyoming.client import AsyncTcpClient
    from wyoming.info import Describe, Info

    try:
        async with AsyncTcpClient("127.0.0.1", port) as client:
            await client.write_event(Describe().event())
            event = await asyncio.wait_for(client.read_event(), 5)
            return event is not None and Info.is_type(event.type)
    except (OSError, asyncio.TimeoutError):
        return False


@dataclass
class Server:
    url: str
    pid: int


@contextlib.contextmanager
def _server(command: list[str], port: int, log_path: Path, ready: Callable[[int], bool], url: str) -> Iterator[Server]:
    """Run a server until the block ends; yields it once `ready(port)`."""
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not ready(port):
                if proc.poll() is not None:
                    raise RuntimeError(f"{command[2]} exited: {log_path.read_text(errors='replace')[-800:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[2]} did not answer in {READY_TIMEOUT_S:g} s (log: {log_path})")
                time.sleep(0.2)
            yield Server(url, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wyoming_ready(port: int) -> bool:
    from runtime.io_loop import run_blocking

    return run_blocking(_describe(port))  # on the model I/O loop: callable from a thread whose loop runs


def stt_server(log_dir: Path, port: int | None = None, **kw: Any) -> contextlib.AbstractContextManager[Server]:
    """wyoming-faster-whisper; its `url` is the STT_SERVER_URI."""
    port = port or free_port()
    return _server(
        stt_command(port, **kw), port, log_dir / "wyoming-stt.log", _wyoming_ready, f"tcp://127.0.0.1:{port}"
    )


def tts_server(log_dir: Path, port: int | None = None) -> contextlib.AbstractContextManager[Server]:
    """wyoming-piper; its `url` is the TTS_SERVER_URI."""
    port = port or free_port()
    return _server(tts_command(port), port, log_dir / "wyoming-tts.log", _wyoming_ready, f"tcp://127.0.0.1:{port}")


@contextlib.contextmanager
def llm_server(*, threads: int | None = None, n_ctx: int = 2048) -> Iterator[Server]:
    """llama_cpp.server on the embedded GGUF (`simulator.llama_server`); its `url` is the LLM_BASE_URL, the
    model name `smollm2`. `threads` (default: what the in-process backend gets, `brain.llm.default_llm_threads`)
    serve generation and prompt evaluation alike."""
    from brain.llm import default_llm_threads

    threads = threads or default_llm_threads()
    with LlamaServer(embedded_gguf_path(), alias=LLM_MODEL_NAME, n_ctx=n_ctx, threads=threads) as server:
        assert server.proc is not None
        yield Server(server.url, server.proc.pid)


def main() -> int:
    log_dir = Path(tempfile.mkdtemp(prefix="chorus-speech-"))
    with stt_server(log_dir, 10300) as stt, tts_server(log_dir, 10200) as tts, llm_server() as llm:
        print(
            f"STT_BACKEND=wyoming STT_SERVER_URI={stt.url}\nTTS_BACKEND=wyoming TTS_SERVER_URI={tts.url}\n"
            f"LLM_BACKEND=openai LLM_BASE_URL={llm.url} LLM_MODEL={LLM_MODEL_NAME}\nlogs: {log_dir}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
