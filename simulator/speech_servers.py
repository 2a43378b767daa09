"""Start the real Wyoming speech servers on the embedded models, on 127.0.0.1 (tests, benchmarks, by hand).

    python -m simulator.speech_servers   # both servers on 10300 (STT) and 10200 (TTS) until Ctrl-C

`wyoming-faster-whisper` gets the embedded tiny.en folder (int8, greedy, English) and `wyoming-piper` the
embedded Piper voice (en_US-joe-medium); neither goes to the network. Each server logs to a file, never a pipe
(a full pipe would stall it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from bot.models import embedded_piper_voice, embedded_whisper_path

READY_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stt_command(port: int, *, cpu_threads: int = 1) -> list[str]:
    return [sys.executable, "-m", "wyoming_faster_whisper", "--uri", f"tcp://127.0.0.1:{port}",
            "--model", str(embedded_whisper_path()), "--data-dir", tempfile.gettempdir(), "--language", "en",
            "--compute-type", "int8", "--beam-size", "1", "--cpu-threads", str(cpu_threads), "--local-files-only"]


def tts_command(port: int) -> list[str]:
    model, _config = embedded_piper_voice()
    return [sys.executable, "-m", "wyoming_piper", "--uri", f"tcp://127.0.0.1:{port}", "--voice", model.stem.removesuffix(".onnx"),
            "--data-dir", str(model.parent), "--local-files-only"]


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


@contextlib.contextmanager
def wyoming_server(command: list[str], port: int, log_path: Path) -> Iterator[str]:
    """Run a Wyoming server until the block ends; yields its tcp:// URI once it answers `describe`."""
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not asyncio.run(_describe(port)):
                if proc.poll() is not None:
                    raise RuntimeError(f"{command[2]} exited: {log_path.read_text(errors='replace')[-800:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[2]} did not answer in {READY_TIMEOUT_S:g} s (log: {log_path})")
                time.sleep(0.2)
            yield f"tcp://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stt_server(log_dir: Path, port: int | None = None, **kw) -> contextlib.AbstractContextManager[str]:
    port = port or free_port()
    return wyoming_server(stt_command(port, **kw), port, log_dir / "wyoming-stt.log")


def tts_server(log_dir: Path, port: int | None = None) -> contextlib.AbstractContextManager[str]:
    port = port or free_port()
    return wyoming_server(tts_command(port), port, log_dir / "wyoming-tts.log")


def main() -> int:
    log_dir = Path(tempfile.mkdtemp(prefix="chorus-speech-"))
    with stt_server(log_dir, 10300) as stt, tts_server(log_dir, 10200) as tts:
        print(f"STT_BACKEND=wyoming STT_SERVER_URI={stt}\nTTS_BACKEND=wyoming TTS_SERVER_URI={tts}\nlogs: {log_dir}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
