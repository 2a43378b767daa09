"""Settings for a bot under test: its own data folder and a copy of the shipped personas under `tmp_path`."""

from __future__ import annotations

import shutil
from pathlib import Path

from runtime.settings import PROJECT_ROOT, Settings, load_settings


def bot_settings(tmp_path: Path, **env: str) -> Settings:
    """Settings with CHORUS_DATA_DIR and CHORUS_PERSONAS_DIR (a copy of personas/) in `tmp_path`, plus `env`."""
    personas = tmp_path / "personas"
    shutil.copytree(PROJECT_ROOT / "personas", personas)
    return load_settings(
        env={"CHORUS_DATA_DIR": str(tmp_path / "data"), "CHORUS_PERSONAS_DIR": str(personas), **env}, env_file=None
    )
