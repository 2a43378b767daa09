"""Downloads one model file from the Hugging Face hub (or a server that speaks its file API, `HF_ENDPOINT`):
with a progress bar, resumed where a cut connection or an earlier run left it, verified against its checksum,
and refused before a byte is fetched when the disk cannot hold it.

huggingface_hub does the HTTP (the metadata HEAD with the hub's redirects and headers, the ranged GET that
resumes after a dropped connection, the tqdm progress bar). Its own `hf_hub_download` starts a fresh
temporary file in every process, so a download stopped by Ctrl-C would start over; here the partial file
keeps a stable name (`<file>.part`) beside its destination, and the next pull asks only for the rest.

Files land in `$HF_HOME/chorus/<owner>/<repo>/<revision>/<path>` (HF_HOME defaults to ~/.cache/huggingface).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from runtime.model_presets import HubFile
from runtime.errors import ModelLoadError

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1 = re.compile(r"^[0-9a-f]{40}$")
DISK_MARGIN_BYTES = 100_000_000  # keep this much free after a download


class ModelFetchError(ModelLoadError):
    """A download was refused or failed; the message says why and what to do."""


class NotOnHubError(ModelFetchError):
    """The repository has no such file (HTTP 404)."""


class NotEnoughDiskError(ModelFetchError):
    pass


class ChecksumError(ModelFetchError):
    pass


@dataclass(frozen=True)
class RemoteFile:
    """What the hub says about a file before it is downloaded."""

    url: str
    size: int
    etag: str | None
    commit: str | None


def hf_home() -> Path:
    """Read at call time (huggingface_hub reads it once at import)."""
    home = os.environ.get("HF_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "huggingface"


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def models_dir() -> Path:
    return hf_home() / "chorus"


def local_path(file: HubFile) -> Path:
    return models_dir() / file.repo / file.revision / file.path


def partial_path(file: HubFile) -> Path:
    path = local_path(file)
    return path.with_name(path.name + ".part")


def is_present(file: HubFile) -> bool:
    return local_path(file).is_file()


def disk_free(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def remote_file(file: HubFile) -> RemoteFile:
    """HEAD the file on the hub: its size, its hash (etag) and the commit it is at."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(file.repo, file.path, revision=file.revision, endpoint=hub_endpoint())
    try:
        meta = get_hf_file_metadata(url)
    except Exception as exc:
        if getattr(getattr(exc, "response", None), "status_code", None) == 404:
            raise NotOnHubError(f"{file.repo}/{file.path}: no such file on the hub at {hub_endpoint()}") from None
        raise ModelFetchError(
            f"{file.repo}/{file.path}: the hub at {hub_endpoint()} did not answer ({type(exc).__name__}: {exc})"
        ) from None
    if meta.size is None:
        raise ModelFetchError(f"{file.repo}/{file.path}: the hub did not say the file's size")
    return RemoteFile(url=meta.location or url, size=int(meta.size), etag=meta.etag, commit=meta.commit_hash)


def check_disk(file: HubFile, remote: RemoteFile, free_bytes: Callable[[Path], int] = disk_free) -> int:
    """Bytes still to download; raises `NotEnoughDiskError` when they would not fit (with a margin)."""
    part = partial_path(file)
    have = part.stat().st_size if part.is_file() else 0
    need = max(0, remote.size - have)
    free = free_bytes(local_path(file).parent)
    if need + DISK_MARGIN_BYTES > free:
        raise NotEnoughDiskError(
            f"not enough disk for {file.path}: it needs {_gb(need)} more (and {_gb(DISK_MARGIN_BYTES)} to spare), "
            f"{_gb(free)} is free at {models_dir()} (set HF_HOME to a bigger disk, or free some space)"
        )
    return need


def fetch(file: HubFile, *, free_bytes: Callable[[Path], int] = disk_free, progress: bool = True) -> Path:
    """The file's local path, downloading (the rest of) it first when needed."""
    dest = local_path(file)
    if dest.is_file():
        return dest
    from filelock import FileLock  # huggingface_hub's own dependency

    part = partial_path(file)
    part.parent.mkdir(parents=True, exist_ok=True)
    lock = models_dir() / ".locks" / file.repo / file.revision / (file.path + ".lock")  # not beside the model
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):  # two pulls of one file (two bots, or a pull beside a start) take turns
        if dest.is_file():
            return dest
        return _fetch_locked(file, dest, part, free_bytes, progress)


def _fetch_locked(file: HubFile, dest: Path, part: Path, free_bytes: Callable[[Path], int], progress: bool) -> Path:
    remote = remote_file(file)
    check_disk(file, remote, free_bytes)
    have = part.stat().st_size if part.is_file() else 0
    if have > remote.size:  # a stale partial file of another version
        part.unlink()
        have = 0
    if have:
        log.info("resuming %s at %s of %s", file.path, _gb(have), _gb(remote.size))
    _download(remote, part, have, file.path, progress)
    verify(file, remote, part)
    part.replace(dest)
    return dest


def _download(remote: RemoteFile, part: Path, have: int, name: str, progress: bool) -> None:
    from huggingface_hub import utils as hf_utils
    from huggingface_hub.file_download import http_get
    from tqdm import tqdm

    # A plain tqdm bar on stderr, in a terminal or not (huggingface_hub's own hides itself off a TTY).
    bar: Any = tqdm if progress else functools.partial(tqdm, disable=True)
    try:
        with open(part, "ab") as out:
            http_get(
                remote.url,
                out,
                resume_size=have,
                expected_size=remote.size,
                displayed_filename=name,
                headers=hf_utils.build_hf_headers(),
                tqdm_class=bar,
            )
    except Exception as exc:  # kept: the next pull resumes from what arrived
        got = part.stat().st_size if part.is_file() else 0
        raise ModelFetchError(
            f"download of {name} stopped at {_gb(got)} of {_gb(remote.size)} ({type(exc).__name__}: "
            f"{exc}); run `chorus models pull` again to resume"
        ) from None


def verify(file: HubFile, remote: RemoteFile, path: Path) -> None:
    """Check the file against the preset's sha256, else the hub's (LFS sha256 or git blob sha1); a mismatch
    deletes it (a corrupt or substituted file is never kept) and raises `ChecksumError`."""
    etag = (remote.etag or "").lower()
    if file.sha256:
        kind, expected, actual = "sha256", file.sha256.lower(), _digest(path, "sha256")
    elif _SHA256.match(etag):
        kind, expected, actual = "sha256", etag, _digest(path, "sha256")
    elif _GIT_SHA1.match(etag):
        kind, expected, actual = "git blob sha1", etag, _digest(path, "sha1", git_blob=True)
    else:
        log.warning("%s: no checksum to verify against (the hub sent etag %r)", file.path, remote.etag)
        return
    if actual != expected:
        path.unlink(missing_ok=True)
        raise ChecksumError(
            f"{file.repo}/{file.path}: checksum mismatch ({kind} {actual[:12]}…, expected "
            f"{expected[:12]}…): the download was deleted; run `chorus models pull` again"
        )
    log.info("%s: %s verified", file.path, kind)


def _digest(path: Path, algorithm: str, *, git_blob: bool = False) -> str:
    digest = hashlib.new(algorithm)
    if git_blob:
        digest.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 100_000_000 else f"{n / 1e6:.1f} MB"
