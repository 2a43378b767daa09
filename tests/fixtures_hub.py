"""A local HTTP server that plays the Hugging Face hub's file API (what `huggingface_hub` calls to download a
file): HEAD and GET `/{owner}/{repo}/resolve/{revision}/{path}` answering with `X-Repo-Commit`, `ETag` /
`X-Linked-Etag` (the file's sha256, as the hub sends for LFS files), `X-Linked-Size`, and HTTP Range requests
(206 + Content-Range). It can cut the connection partway through a file, once, to test resuming, and lie
about a file's hash, to test verification. Loopback only.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

COMMIT = "4f1c2b8e9d0a7b6c5d4e3f2a1b0c9d8e7f6a5b4c"


@dataclass
class HubFileServed:
    path: Path
    sha256: str
    etag_override: str | None = None  # what the server claims instead of the real hash
    cut_after: int | None = None  # the next GET sends this many bytes, then drops the connection


@dataclass
class FakeHub:
    url: str = ""
    files: dict[str, HubFileServed] = field(default_factory=dict)  # "owner/repo/path" → served file
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, url path, Range)

    def serve(self, repo: str, path: str, local: Path, **options: object) -> HubFileServed:
        digest = hashlib.sha256(local.read_bytes()).hexdigest()
        served = HubFileServed(local, digest, **options)  # type: ignore[arg-type]
        self.files[f"{repo}/{path}"] = served
        return served

    def gets(self, path_end: str) -> list[str | None]:
        """The Range header of each GET of a file whose URL ends with `path_end`."""
        return [rng for method, path, rng in self.requests if method == "GET" and path.endswith(path_end)]


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def _file(self) -> HubFileServed | None:
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                return None
            return hub.files.get("/".join(parts[:2] + parts[4:]))

        def _headers(self, served: HubFileServed, status: int, length: int, content_range: str | None) -> None:
            etag = served.etag_override or served.sha256
            self.send_response(status)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{etag}"')
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(served.path.stat().st_size))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(length))
            if content_range:
                self.send_header("Content-Range", content_range)
            self.end_headers()

        def _not_found(self) -> None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Error-Message", "Entry not found")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
            hub.requests.append(("HEAD", self.path, None))
            served = self._file()
            if served is None:
                return self._not_found()
            self._headers(served, 200, served.path.stat().st_size, None)

        def do_GET(self) -> None:  # noqa: N802
            rng = self.headers.get("Range")
            hub.requests.append(("GET", self.path, rng))
            served = self._file()
            if served is None:
                return self._not_found()
            data = served.path.read_bytes()
            start = int(rng.split("=")[1].split("-")[0]) if rng else 0
            body = data[start:]
            if rng:
                self._headers(served, 206, len(body), f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self._headers(served, 200, len(body), None)
            if served.cut_after is not None:
                cut, served.cut_after = served.cut_after, None
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the connection drops mid-file
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A fake hub on 127.0.0.1 with HF_ENDPOINT pointing at it and HF_HOME in a temporary folder."""
    hub = FakeHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
