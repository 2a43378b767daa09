"""A real llama.cpp OpenAI-compatible server (`python -m llama_cpp.server`) on a free local port, for tests and
benchmarks that go through `LLM_BACKEND=openai`.

    with LlamaServer(gguf_path, alias="smollm2-135m") as server:
        settings = settings.replace(llm_backend="openai", llm_base_url=server.url, llm_model=server.alias)

or, from an `LLM_MODEL` setting (`embedded`, `preset:<name>`, a path): `with served(settings, "embedded") as settings:`.

`threads` sets both llama.cpp thread counts, generation and prompt (batch) evaluation, as the in-process backend
does (`brain.llama_pool.load_llama`). The server's own default for batch evaluation is every core; on a machine
whose cores are busy with STT, TTS and the bot, its spin-waiting threads stall on a preempted peer, and a prompt
evaluated that way took 20-90 ms a token instead of 5 (docs/model-candidates.md). `prompt_timings()` reads the
server's own account of each request from its log: how many prompt tokens it took from its cache, how many it
evaluated, and in how many milliseconds.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from runtime.settings import Settings


# llama-cpp-python's verbose log, per request: the cached prefix it kept, then llama.cpp's perf line.
_PREFIX_HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")
_PROMPT_EVAL = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")


@dataclass(frozen=True)
class PromptTiming:
    """One request as the server logged it: prompt tokens reused from its cache, evaluated, and the time."""

    cached: int
    evaluated: int
    prompt_ms: float


def parse_prompt_timings(log: str) -> list[PromptTiming]:
    """The requests in a llama-cpp-python server's verbose log that ran to llama.cpp's timing line (a request
    cancelled during its prompt logs none). A request without a prefix-match line reused nothing."""
    timings: list[PromptTiming] = []
    cached: int | None = None
    for line in log.splitlines():
        hit = _PREFIX_HIT.search(line)
        if hit:
            cached = int(hit.group(1))
            continue
        evaluated = _PROMPT_EVAL.search(line)
        if evaluated:
            timings.append(PromptTiming(cached or 0, int(evaluated.group(2)), float(evaluated.group(1))))
            cached = None
    return timings


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
        threads_batch: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        """`threads`: llama.cpp threads for generation and, unless `threads_batch` says otherwise, for prompt
        evaluation (None: the server's defaults, half the cores and all of them). `log_path`: keep the server's
        log there (default: a temporary file, removed on exit)."""
        self.model = str(model)
        self.threads_batch = threads_batch if threads_batch is not None else threads
        self.log_path = log_path
        self.alias = alias
        self.n_ctx = n_ctx
        self.start_timeout_s = start_timeout_s
        self.threads = threads
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self, chars: int = 800) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-chars:]

    def prompt_timings(self) -> list[PromptTiming]:
        """Every finished request so far, in order, as the server itself timed it (`parse_prompt_timings`)."""
        if self._log is None:
            return []
        self._log.flush()
        return parse_prompt_timings(Path(self._log.name).read_text(errors="replace"))

    def __enter__(self) -> "LlamaServer":
        self.port = free_port()
        # A file, not a pipe: llama.cpp's load log would fill a pipe and stall the server.
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "w+b")  # noqa: SIM115 (closed in __exit__)
        else:
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
            "true",  # a few lines per request: the cache hit and llama.cpp's timings (`prompt_timings`)
        ]
        if self.threads:
            command += ["--n_threads", str(self.threads)]
        if self.threads_batch:
            command += ["--n_threads_batch", str(self.threads_batch)]
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
def served(
    settings: Settings,
    model: str,
    *,
    threads: int | None = None,
    threads_batch: int | None = None,
    log_path: Path | None = None,
) -> Iterator[Settings]:
    """A server on the GGUF that `model` (an `LLM_MODEL` setting: `embedded`, `preset:<name>`, a path) names, and
    `settings` pointed at it: `LLM_BACKEND=openai`, its URL, the model's alias (its file name, lower case)."""
    from runtime.models import resolve_gguf

    gguf = resolve_gguf(model)
    alias = gguf.stem.lower()
    with LlamaServer(
        gguf,
        alias=alias,
        n_ctx=settings.llm_context,
        threads=threads,
        threads_batch=threads_batch,
        log_path=log_path,
    ) as server:
        yield settings.replace(llm_backend="openai", llm_base_url=server.url, llm_model=alias)
