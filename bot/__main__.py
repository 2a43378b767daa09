"""`python -m bot`: run chorus on Discord when DISCORD_TOKEN is set, else the offline demo.
`python -m bot models [list|presets|pull]`: the models the settings need (bot/model_cli.py).
`python -m bot names [PERSONA ...]`: does the speech-to-text hear the personas' names (bot/names_cli.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from runtime.heap import limit_malloc_arenas
from runtime.logging_setup import setup_logging
from runtime.errors import ModelLoadError
from runtime.settings import SettingsError, load_settings
from runtime.errors import EXIT_MODELS, StartupError
from bot.startup import check_models

log = logging.getLogger("chorus")

NO_TOKEN_HELP = """\
No DISCORD_TOKEN is set, so chorus runs its offline demo on the loopback voice channel.
To run the real bot:
  1. https://discord.com/developers/applications -> New Application -> Bot -> Reset Token, copy it.
  2. cp .env.example .env and set DISCORD_TOKEN=... (never commit .env).
  3. Invite it: OAuth2 -> URL Generator, scopes `bot` + `applications.commands`,
     permissions Connect, Speak, Use Voice Activity (and Send Messages for captions).
  4. scripts/run.sh --sync once to publish the slash commands, then /join in a voice channel.
See README.md for details.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    parser.add_argument(
        "--sync",
        action="store_true",
        help="publish slash commands (to CHORUS_DEV_GUILD_IDS if set, else globally) at start",
    )
    parser.add_argument("--demo", action="store_true", help="run the offline demo even when a token is set")
    parser.add_argument("--env-file", type=Path, default=None, help="read settings from this file instead of ./.env")
    parser.add_argument(
        "--out", type=Path, default=Path("out/demo"), help="demo: folder for the channel WAV and the turn trace"
    )
    parser.add_argument("--quick", action="store_true", help="demo: a short two-turn conversation")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["models"]:  # `chorus models [list|presets|pull]`
        from bot.model_cli import main as models_main

        return models_main(argv[1:])
    if argv[:1] == ["names"]:  # `chorus names [PERSONA ...]`
        from bot.names_cli import main as names_main

        setup_logging("WARNING", "text")
        return names_main(argv[1:])
    limit_malloc_arenas()  # before any model's threads allocate
    args = parse_args(argv)
    try:
        settings = load_settings(env_file=args.env_file) if args.env_file else load_settings()
    except SettingsError as exc:
        print(f"chorus: bad setting: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    debug = log.isEnabledFor(logging.DEBUG)  # tracebacks of start-up faults only in DEBUG
    try:
        for note in check_models(settings):  # before logging in: a typo fails now, not after the login
            log.warning(note)
        if settings.discord_token and not args.demo:
            from bot.launch import run_bot

            run_bot(settings, sync=args.sync)
            return 0
        if not settings.discord_token:
            print(NO_TOKEN_HELP, file=sys.stderr)
        from simulator.demo import run_demo

        return run_demo(settings, out_dir=args.out, quick=args.quick)
    except ModelLoadError as exc:
        log.error("model error: %s", exc, exc_info=exc if debug else None)
        return EXIT_MODELS
    except (StartupError, SettingsError) as exc:
        log.error("%s", exc, exc_info=exc if debug else None)
        return getattr(exc, "exit_code", 2)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
