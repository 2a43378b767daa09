"""Write requirements.txt, requirements-dev.txt and requirements-gpu.txt from pyproject.toml (the one source).

    python scripts/gen_requirements.py           # rewrite the files
    python scripts/gen_requirements.py --check   # exit 1 and name the stale files (tests/test_packaging.py)

The files are for `pip install -r` users (container images, other tools); scripts/setup.sh installs the
project itself (`pip install -e .[dev]`), which reads pyproject.toml directly.
"""

from __future__ import annotations

import re
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
    core = GENERATED + "# chorus core requirements (CPU, offline-capable). Extras: requirements-dev.txt, requirements-gpu.txt.\n"
    core += "".join(f"{req}\n" for req in project["dependencies"])
    dev = GENERATED + "# test, lint and type tools, and the servers the tests start (the `dev` extra)\n-r requirements.txt\n"
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


def main(argv: list[str]) -> int:
    if "--check" in argv:
        names = stale()
        if names:
            print(f"stale (run python scripts/gen_requirements.py): {', '.join(names)}", file=sys.stderr)
            return 1
        return 0
    for name, text in render().items():
        (ROOT / name).write_text(text)
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
