"""The text of `.env.example`, rendered from the settings' declarations (`runtime.settings.SETTINGS`); a test
keeps the file in step:

    .venv/bin/python -m runtime.env_example > .env.example
"""

from __future__ import annotations

from pathlib import Path

from runtime.settings import PROJECT_ROOT, SETTINGS


def render_env_example() -> str:
    """The text of `.env.example`: every setting with its help and default."""
    lines = [
        "# chorus settings. Copy to .env (never commit it) and change what you need.",
        "# Every line shows the default; the process environment overrides this file.",
        "",
    ]
    for spec in SETTINGS:
        default = spec.default
        if default is None:
            default = ""
        elif isinstance(default, tuple):
            default = ",".join(str(x) for x in default)
        elif isinstance(default, bool):
            default = "true" if default else "false"
        elif isinstance(default, Path):
            try:
                default = default.relative_to(PROJECT_ROOT)
            except ValueError:
                pass
        lines.append(f"# {spec.help}")
        lines.append(f"{spec.env}={default}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_env_example(), end="")
