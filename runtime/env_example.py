"""The text of `.env.example`, rendered from the settings' declarations (`runtime.settings.SETTINGS`); a test
keeps the file in step:

    .venv/bin/python -m runtime.env_example > .env.example
"""

from __future__ import annotations

from pathlib import Path

from runtime.settings import PROJECT_ROOT, SETTINGS, SettingSpec


def default_value(spec: SettingSpec) -> str:
    """A setting's default as the environment would spell it ('' for none; paths relative to the project)."""
    default = spec.default
    if default is None:
        return ""
    if isinstance(default, tuple):
        return ",".join(str(x) for x in default)
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, Path):
        try:
            return str(default.relative_to(PROJECT_ROOT))
        except ValueError:
            pass
    return str(default)


def render_env_example() -> str:
    """The text of `.env.example`: every setting with its help and default."""
    lines = [
        "# chorus settings. Copy to .env (never commit it) and change what you need.",
        "# Every line shows the default; the process environment overrides this file.",
        "",
    ]
    for spec in SETTINGS:
        lines.append(f"# {spec.help}")
        lines.append(f"{spec.env}={default_value(spec)}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_env_example(), end="")
