"""Start-up faults read like help: one line that says what to do, never a traceback at the default log level.

* `check_models(settings)`: every model setting is resolved (names, paths, embedded packages) before the bot
  logs in or the demo starts, without loading anything: a typo fails in a second, not after a login.
* `serve(bot, token)`: logs in and connects, retrying with back-off where waiting can help (no route to Discord,
  DNS, timeouts, Discord's 5xx), and turning what waiting cannot fix (a rejected token, refused intents, missing
  access) into a `StartupError` that names the fix. discord.py 2.7.1 cannot retry a first gateway connection
  that failed (it reads the sequence of a websocket it never had), so that retry is ours too.

The tracebacks stay available: at ``CHORUS_LOG_LEVEL=debug`` every failure is logged with its stack.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import shutil
from dataclasses import dataclass, field
from typing import Any, Coroutine

import aiohttp
import discord
from discord.utils import MISSING

from runtime.errors import EXIT_NETWORK, ModelLoadError, StartupError, describe_network_error

log = logging.getLogger("chorus")
_shutdown_log = logging.getLogger("chorus.shutdown")

RETRYABLE = (OSError, aiohttp.ClientError, asyncio.TimeoutError, discord.GatewayNotFound)


@dataclass
class Backoff:
    """Exponential back-off: first, first*factor, ... capped; ``attempts`` None retries for ever."""

    first: float = 2.0
    factor: float = 2.0
    cap: float = 60.0
    attempts: int | None = None
    tried: int = field(default=0, init=False)

    def next_delay(self) -> float | None:
        """Seconds to wait before the next try, or None when no try is left."""
        self.tried += 1
        if self.attempts is not None and self.tried >= self.attempts:
            return None
        return min(self.cap, self.first * self.factor ** (self.tried - 1))

    def reset(self) -> None:
        self.tried = 0


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, discord.HTTPException):
        return exc.status >= 500 or exc.status == 429
    return isinstance(exc, RETRYABLE)


def _fatal(exc: BaseException) -> StartupError | None:
    """What waiting cannot fix, as the line that says what to do (None: not one of those)."""
    if isinstance(exc, discord.LoginFailure):
        return StartupError(
            "DISCORD_TOKEN was rejected by Discord: copy a fresh token from the developer portal "
            "(your application > Bot > Reset Token) into .env"
        )
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return StartupError(
            "Discord refused the gateway intents chorus asks for (guilds, voice states, and server "
            "members with FORGET_MEMBERS_WHO_LEAVE=true): turn Server Members Intent on under the "
            "application's Bot > Privileged Gateway Intents in the developer portal, or set "
            "FORGET_MEMBERS_WHO_LEAVE=false"
        )
    if isinstance(exc, discord.ConnectionClosed) and exc.code in (4004, 4013, 4014):
        return StartupError(
            f"Discord closed the gateway ({exc.code}: {exc.reason or 'refused'}): check the "
            "token and the application's gateway intents in the developer portal"
        )
    if isinstance(exc, discord.Forbidden):
        return StartupError(
            f"Discord refused access ({exc.status} {exc.text or 'Missing Access'}) while publishing "
            "the slash commands: invite the bot with the `bot` and `applications.commands` scopes "
            "(OAuth2 > URL Generator) to the servers in CHORUS_DEV_GUILD_IDS, or sync globally"
        )
    return None


async def _retry_or_raise(exc: BaseException, backoff: Backoff, what: str) -> None:
    fatal = _fatal(exc)
    if fatal is not None:
        log.debug("%s failed", what, exc_info=exc)
        raise fatal from None
    if not _retryable(exc):
        raise exc
    delay = backoff.next_delay()
    reason = describe_network_error(exc)
    log.debug("%s failed", what, exc_info=exc)
    if delay is None:
        raise StartupError(
            f"can't reach Discord: {reason}. Check this machine's network connection "
            f"(DNS, proxy, firewall); gave up after {backoff.tried} tries",
            EXIT_NETWORK,
        ) from None
    log.warning(
        "can't reach Discord (%s): %s. Check the network connection; retrying in %s s",
        what,
        reason,
        f"{delay:.0f}" if delay >= 1 else f"{delay:.1f}",
    )
    await asyncio.sleep(delay)


def default_backoff() -> Backoff:
    """2, 4, 8 ... 60 s between tries, for ever (a bot waits for its network to come back)."""
    return Backoff()


SHUTDOWN_S = 10.0


def run_to_end(main: Coroutine[Any, Any, None], *, shutdown_s: float = SHUTDOWN_S) -> None:
    """`asyncio.run(main)`, except that the tasks still running when `main` ends get `shutdown_s` to finish
    their cancellation: one that ignores it is named in a warning and left, so the process still exits (with
    its real result) instead of hanging in asyncio.run's wait for every task."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main)
    finally:
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                _done, pending = loop.run_until_complete(asyncio.wait(tasks, timeout=shutdown_s))
                for task in pending:
                    _shutdown_log.warning(
                        "task %s did not end within %.0f s of shutdown: left running (%r)",
                        task.get_name(),
                        shutdown_s,
                        task.get_coro(),
                    )
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def _close_login_session(bot: discord.Client) -> None:
    """Close the HTTP session of a failed login. discord.py's `login` opens a new aiohttp session on every call
    and drops the previous one unclosed ("ERROR asyncio: Unclosed client session" once the collector finds it, a
    leak per retry). Closing it closes the connector it owns too, so the next try makes a fresh one."""
    await bot.http.close()
    bot.http.connector = MISSING


async def serve(bot: discord.Client, token: str, *, backoff: Backoff | None = None) -> None:
    """Log in, then stay connected (see the module docstring). Raises `StartupError` for what waiting cannot fix."""
    backoff = backoff or default_backoff()
    while True:
        try:
            await bot.login(token)
            break
        except Exception as exc:
            await _close_login_session(bot)
            await _retry_or_raise(exc, backoff, "login")
    backoff.reset()
    while not bot.is_closed():
        try:
            await bot.connect(reconnect=True)
            return
        except AttributeError as exc:
            if bot.ws is not None:
                raise
            # discord.py 2.7.1 retries a failed FIRST gateway connection by reading self.ws.sequence (None.sequence)
            await _retry_or_raise(getattr(exc, "__context__", None) or exc, backoff, "gateway connection")
        except Exception as exc:
            await _retry_or_raise(exc, backoff, "gateway connection")


# --- models -------------------------------------------------------------------------------------------------------


def check_models(settings: Any) -> list[str]:
    """Resolve every model setting without loading a model; raises `ModelLoadError` (one line) for one that
    cannot work. Returns notes worth a log line (a model that will download on first use)."""
    from runtime import models

    notes: list[str] = []
    presets = {
        "stt": models.model_preset("stt", settings.stt_model) if settings.stt_backend == "local" else None,
        "llm": models.model_preset("llm", settings.llm_model) if settings.llm_backend == "llama_cpp" else None,
    }
    for kind, preset in presets.items():
        if preset is not None and not models.preset_is_local(preset):
            notes.append(
                f"{kind.upper()}_MODEL={preset.setting} is not here yet: `chorus models pull` fetches it "
                f"({preset.size_bytes / 1e9:.1f} GB), else it downloads on first use"
            )
    if settings.stt_backend == "local":
        stt = models.resolve_whisper_model(settings.stt_model) if presets["stt"] is None else ""
        if (
            stt
            and settings.stt_model not in ("", "embedded")
            and not _is_dir(stt)
            and not models.whisper_is_cached(stt)
        ):
            notes.append(
                f"STT_MODEL={settings.stt_model} is not downloaded yet: it downloads on first use (needs internet)"
            )
    else:
        notes.append(
            f"STT_BACKEND=wyoming: transcription by the Wyoming server at {settings.stt_server_uri} (no authentication: keep it private)"
        )
    if settings.llm_backend == "llama_cpp":
        if presets["llm"] is not None and not presets["llm"].package:
            pass  # a hub preset: noted above when it is not here yet
        elif settings.llm_model.startswith("hf:"):
            if not models.gguf_is_cached(settings.llm_model):
                notes.append(f"LLM_MODEL={settings.llm_model} is not downloaded yet: it downloads on first use")
        else:
            models.resolve_gguf(settings.llm_model)
    elif not settings.llm_base_url.startswith(("http://", "https://")):
        raise ModelLoadError(
            f"LLM_BASE_URL={settings.llm_base_url}: expected an http(s):// URL of an OpenAI-compatible server"
        )
    models.silero_vad_path()
    if getattr(settings, "turn_model", "off") == "smart_turn":
        models.smart_turn_path()
    engine = settings.tts_engine
    if settings.tts_backend == "wyoming":
        notes.append(
            f"TTS_BACKEND=wyoming: speech by the Wyoming server at {settings.tts_server_uri} (no authentication: keep it private)"
        )
        engine = "remote"
    if engine in ("persona", "piper"):
        models.embedded_piper_voice()  # personas without a voice of their own use it
    if engine == "espeak" and shutil.which("espeak-ng") is None and shutil.which("espeak") is None:
        raise ModelLoadError("TTS_ENGINE=espeak: espeak-ng is not installed (sudo apt-get install espeak-ng)")
    if engine == "xtts" and importlib.util.find_spec("TTS") is None:
        raise ModelLoadError("TTS_ENGINE=xtts needs the GPU extra: pip install -r requirements-gpu.txt")
    return notes


def _is_dir(path: str) -> bool:
    from pathlib import Path

    return Path(path).is_dir()
