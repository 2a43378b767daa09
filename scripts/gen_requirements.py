"""Write requirements.txt, requirements-dev.txt and requirements-gpu.txt from pyproject.toml (the one source),
and the lock files of the exact versions the tests passed on.

    python scripts/gen_requirements.py           # rewrite the requirements files
    python scripts/gen_requirements.py --lock    # also re-resolve the lock files (needs the package index)
    python scripts/gen_requirements.py --check   # exit 1 and name the stale files (tests/test_packaging.py)

The requirements files are for `pip install -r` users (container images, other tools). scripts/setup.sh
installs from the lock files (`requirements.lock`, `requirements-dev.lock`, `requirements-nodeps.lock`: every
package pinned with its hashes, resolved by `uv pip compile --universal` for Python >= 3.11), so a fresh clone
runs the versions CI tested, then chorus itself with `--no-deps`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "chorus"
GENERATED = "# GENERATED from pyproject.toml by scripts/gen_requirements.py: edit pyproject.toml, then run it.\n"

GPU_HEADER = """\
# chorus optional GPU extra (pip install -e .[gpu]): Coqui XTTS v2 voices (cloned from a persona's reference WAV)
# and deepspeed. Not needed for the default CPU setup (Piper + SmolLM2 on the CPU).
#
#   pip install -r requirements.txt
#   pip install torch torchaudio --index-url https://download.pytorch.org/whl/<cuda tag>   # a CUDA torch first,
#     matching your driver (see pytorch.org/get-started); an unpinned torch from PyPI is also a CUDA build
#   pip install -r requirements-gpu.txt
#
# XTTS weights download once from the Hugging Face hub (coqui/XTTS-v2, ~1.8 GB) into
# <CHORUS_DATA_DIR>/xtts/<version>, or point XTTS_MODEL at a folder holding config.json,
# model.pth, vocab.json and speakers_xtts.pth. Set a persona's [voice] engine = "xtts" with
# reference_wav = "voices/name.wav" (6-30 s of clean speech), or force TTS_ENGINE=xtts.
# deepspeed: ~2x faster XTTS inference on NVIDIA GPUs (TTS_USE_DEEPSPEED=true, the default, uses it when present).
#
# llama.cpp on the GPU: rebuild llama-cpp-python with CUDA, then set LLM_GPU_LAYERS=-1.
#   CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python==0.3.36
# (or a prebuilt wheel: pip install llama-cpp-python==0.3.36 --extra-index-url
#  https://abetlen.github.io/llama-cpp-python/whl/cu124)
#
# With both models on one GPU, SCHEDULER_POLICY=auto picks `exclusive` below 16 GiB of free GPU
# memory (LLM and TTS take turns) and `pipelined` above it.
"""

LOCKS = {
    "requirements.lock": "requirements.txt",
    "requirements-dev.lock": "requirements-dev.txt",
    "requirements-nodeps.lock": "requirements-nodeps.txt",
}
LOCK_PYTHON = "3.11"  # the oldest Python the lock resolves for (--universal covers the newer ones)
_DIGEST = re.compile(r"^# inputs-sha256: (?P<digest>[0-9a-f]{64})$", re.MULTILINE)
_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;]+)(?:\s*;\s*(?P<marker>[^\\]+?))?\s*\\?$",
    re.MULTILINE,
)

_SELF_EXTRA = re.compile(rf"^{PROJECT}\[(?P<extras>[^\]]+)\]$", re.IGNORECASE)


def load_project(root: Path = ROOT) -> dict:
    with open(root / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def extra(project: dict, name: str) -> list[str]:
    """The requirements of an extra, with `chorus[other]` references expanded in place."""
    out: list[str] = []
    for req in project["optional-dependencies"][name]:
        match = _SELF_EXTRA.match(req.replace(" ", ""))
        if match:
            for other in match.group("extras").split(","):
                out.extend(extra(project, other.strip()))
        else:
            out.append(req)
    return out


def render(root: Path = ROOT) -> dict[str, str]:
    """File name -> the text it should have."""
    project = load_project(root)
    core = (
        GENERATED
        + "# chorus core requirements (CPU, offline-capable). Extras: requirements-dev.txt, requirements-gpu.txt.\n"
    )
    core += "".join(f"{req}\n" for req in project["dependencies"])
    dev = (
        GENERATED
        + "# test, lint and type tools, and the servers the tests start (the `dev` extra)\n-r requirements.txt\n"
    )
    dev += "".join(f"{req}\n" for req in extra(project, "dev"))
    gpu = GENERATED + GPU_HEADER + "".join(f"{req}\n" for req in extra(project, "gpu"))
    return {"requirements.txt": core, "requirements-dev.txt": dev, "requirements-gpu.txt": gpu}


def stale(root: Path = ROOT) -> list[str]:
    """Names of the requirements files that differ from what pyproject.toml gives."""
    out = []
    for name, text in render(root).items():
        path = root / name
        if not path.exists() or path.read_text() != text:
            out.append(name)
    return out


def lock_inputs_digest(lock: str, root: Path = ROOT) -> str:
    """sha256 of what a lock file was resolved from: the requirements it pins (as generated from pyproject.toml)."""
    source = LOCKS[lock]
    text = (root / source).read_text() if source == "requirements-nodeps.txt" else render(root)[source]
    if source == "requirements-dev.txt":
        text = render(root)["requirements.txt"] + text
    return hashlib.sha256(text.encode()).hexdigest()


def locked_versions(text: str) -> dict[str, list[tuple[str, str]]]:
    """Package name (normalized) -> [(version, environment marker or '')] pinned in a lock file."""
    out: dict[str, list[tuple[str, str]]] = {}
    for match in _PIN.finditer(text):
        name = re.sub(r"[-_.]+", "-", match.group("name")).lower()
        out.setdefault(name, []).append((match.group("version"), (match.group("marker") or "").strip()))
    return out


def stale_locks(root: Path = ROOT) -> list[str]:
    """Lock files missing, resolved from other inputs than pyproject.toml gives now, or missing a direct
    requirement (each direct requirement must be pinned, with hashes)."""
    out = []
    for lock, source in LOCKS.items():
        path = root / lock
        if not path.exists():
            out.append(lock)
            continue
        text = path.read_text()
        found = _DIGEST.search(text)
        pins = locked_versions(text)
        direct = render(root)[source] if source != "requirements-nodeps.txt" else (root / source).read_text()
        names = {
            re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", line.strip(), maxsplit=1)[0]).lower()
            for line in direct.splitlines()
            if line.strip() and not line.startswith(("#", "-r"))
        }
        if (
            found is None
            or found.group("digest") != lock_inputs_digest(lock, root)
            or not names <= set(pins)
            or "--hash=sha256:" not in text
        ):
            out.append(lock)
    return out


def write_locks(root: Path = ROOT) -> None:
    """Re-resolve the lock files with uv (a dev dependency), recording what each was resolved from."""
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    for lock, source in LOCKS.items():
        command = [
            uv,
            "pip",
            "compile",
            source,
            "--universal",
            "--python-version",
            LOCK_PYTHON,
            "--generate-hashes",
            "--no-header",
            "--quiet",
            "-o",
            lock,
        ]
        if source == "requirements-nodeps.txt":
            command.append("--no-deps")
        subprocess.run(command, cwd=root, check=True)
        header = (
            f"# LOCKED by scripts/gen_requirements.py --lock from {source}"
            f": the exact versions the tests passed on.\n"
            f"# inputs-sha256: {lock_inputs_digest(lock, root)}\n"
        )
        (root / lock).write_text(header + (root / lock).read_text())
        print(f"wrote {lock}")


def main(argv: list[str]) -> int:
    if "--check" in argv:
        names = stale() + stale_locks()
        if names:
            print(f"stale (run python scripts/gen_requirements.py): {', '.join(names)}", file=sys.stderr)
            return 1
        return 0
    for name, text in render().items():
        (ROOT / name).write_text(text)
        print(f"wrote {name}")
    if "--lock" in argv:
        write_locks()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
