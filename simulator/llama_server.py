"""A real llama.cpp OpenAI-compatible server (`python -m llama_cpp.server`) on a free local port, for tests and
benchmarks that go through `LLM_BACKEND=openai`.

    with LlamaServer(gguf_path, alias="smollm2-135m") as server:
        settings = settings.replace(llm_backend="openai", llm_base_url=server.url, llm_model=server.alias)

or, from an `LLM_MODEL` setting (`embedded`, `preset:<name>`, a path): `with served(settings, "embedded") as settings:`.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from runtime.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """Starts the server on enter (waits until `/v1/models` answers), stops it on exit."""

    def __init__(
        self,
        model: Path | str,
        *,
        alias: str,
        n_ctx: int = 2048,
        start_timeout_s: float = 90.0,
        threads: int | None = None,
    ) -> None:
        self.model = str(model)
        self.alias = alias
        self.n_ctx = n_ctx
        self.start_timeout_s = start_timeout_s
        self.threads = threads
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self, chars: int = 800) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def __enter__(self) -> "LlamaServer":
        self.port = free_port()
        # A file, not a pipe: llama.cpp's load log would fill a pipe and stall the server.
        self._log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log")
        command = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--model_alias",
            self.alias,
            "--verbose",
            "false",
        ]
        if self.threads:
            command += ["--n_threads", str(self.threads)]
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout_s
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"llama_cpp.server exited: {self.log_tail()}")
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                    conn.request("GET", "/v1/models")
                    if conn.getresponse().status == 200:
                        return self
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not come up in {self.start_timeout_s:.0f} s")
                time.sleep(0.2)
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def served(settings: Settings, model: str, *, threads: int | None = None) -> Iterator[Settings]:
    """A server on the GGUF that `model` (an `LLM_MODEL` setting: `embedded`, `preset:<name>`, a path) names, and
    `settings` pointed at it: `LLM_BACKEND=openai`, its URL, the model's alias (its file name, lower case)."""
    from runtime.models import resolve_gguf

    gguf = resolve_gguf(model)
    alias = gguf.stem.lower()
    with LlamaServer(gguf, alias=alias, n_ctx=settings.llm_context, threads=threads) as server:
        yield settings.replace(llm_backend="openai", llm_base_url=server.url, llm_model=alias)
