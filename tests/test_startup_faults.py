"""Start-up faults read like help: `python -m bot` (its `main`) against a loopback stand-in for Discord's API,
through discord.py's own HTTP and gateway code. Each fault gives one line that says what to do, no traceback at
the default log level (DEBUG keeps it), retries where waiting helps, and checks model settings before login."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from pathlib import Path

import pytest

import bot.startup
from bot.__main__ import main
from bot.startup import Backoff
from runtime.errors import EXIT_NETWORK
from tests.fixtures_discord_api import FakeDiscordApi, free_port, point_discord_py_at

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.fake.tokenvalue"


@contextlib.contextmanager
def api_in_thread(**kw):
    """A `FakeDiscordApi` served from its own event loop thread (main() runs its own loop)."""
    loop = asyncio.new_event_loop()
    api = FakeDiscordApi(**kw)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(api.start(), loop).result(10)
    try:
        yield api
    finally:
        asyncio.run_coroutine_threadsafe(api.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@pytest.fixture
def run_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """main() with a clean environment; returns (exit code, stderr lines)."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    monkeypatch.setenv("CHORUS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.setattr(bot.startup, "default_backoff", lambda: Backoff(first=0.05, cap=0.05, attempts=3))
    # main() points the root logger at this test's (captured) stderr: put the handlers back afterwards, or
    # later tests log into a closed stream.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    for name in ("discord", "discord.gateway"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)

    def run(*args: str, **env: str) -> tuple[int, list[str]]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        code = main(["--env-file", str(env_file), *args])
        err = capsys.readouterr().err
        assert TOKEN not in err
        return code, [line for line in err.splitlines() if line.strip()]

    return run


def chorus_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if " chorus: " in line]


def assert_no_traceback(lines: list[str]) -> None:
    assert not [line for line in lines if "Traceback" in line or line.startswith("  File ")], lines


def test_no_route_to_discord_retries_then_says_what_to_do(run_main, monkeypatch):
    port = free_port()  # nothing listens there: connection refused, like a machine without a route
    point_discord_py_at(monkeypatch, f"http://127.0.0.1:{port}")
    code, lines = run_main()
    assert code == EXIT_NETWORK
    assert_no_traceback(lines)
    ours = chorus_lines(lines)
    assert len(ours) == 3  # two retries announced, then one line that gives up
    assert all("can't reach Discord (login)" in line and "retrying in" in line for line in ours[:2])
    assert f"cannot connect to 127.0.0.1:{port}" in ours[0]
    assert "Check this machine's network connection" in ours[2] and "gave up after 3 tries" in ours[2]


class CollectingBackoff(Backoff):
    """Collects garbage before each wait, as the real waits (seconds to a minute) let the collector do: an HTTP
    session dropped unclosed is reported then ("ERROR asyncio: Unclosed client session")."""

    def next_delay(self) -> float | None:
        gc.collect()
        return super().next_delay()


def test_login_retries_leave_no_unclosed_http_session(run_main, monkeypatch):
    point_discord_py_at(monkeypatch, f"http://127.0.0.1:{free_port()}")
    monkeypatch.setattr(bot.startup, "default_backoff", lambda: CollectingBackoff(first=0.05, cap=0.05, attempts=3))
    code, lines = run_main()
    assert code == EXIT_NETWORK and len(chorus_lines(lines)) == 3  # three tries, each one failed
    assert not [line for line in lines if "Unclosed" in line], lines


def test_dns_failure_is_named(run_main, monkeypatch):
    point_discord_py_at(monkeypatch, "http://discord.invalid")
    code, lines = run_main()
    assert code == EXIT_NETWORK
    assert_no_traceback(lines)
    assert "the DNS lookup for discord.invalid failed" in chorus_lines(lines)[-1]


def test_waiting_helps_when_discord_comes_back(run_main, monkeypatch):
    port = free_port()
    point_discord_py_at(monkeypatch, f"http://127.0.0.1:{port}")
    monkeypatch.setattr(bot.startup, "default_backoff", lambda: Backoff(first=0.5, cap=0.5, attempts=10))
    started: list = []

    def later() -> None:  # the network comes back after the first failed try
        started.append(api_in_thread(port=port, token_ok=False))
        started[0].__enter__()

    timer = threading.Timer(0.2, later)
    timer.start()
    try:
        code, lines = run_main()
    finally:
        timer.join()
        if started:
            started[0].__exit__(None, None, None)
    ours = chorus_lines(lines)
    assert "retrying in" in ours[0]
    assert code == 2 and "DISCORD_TOKEN was rejected" in ours[-1]  # it got through, and Discord answered


def test_rejected_token_is_one_line(run_main, monkeypatch):
    with api_in_thread(token_ok=False) as api:
        point_discord_py_at(monkeypatch, api.base)
        code, lines = run_main()
    assert code == 2 and api.requests == ["GET /users/@me"]  # no retry: waiting cannot fix a bad token
    assert_no_traceback(lines)
    (line,) = chorus_lines(lines)
    assert "DISCORD_TOKEN was rejected by Discord" in line and "Reset Token" in line


def test_debug_level_keeps_the_traceback(run_main, monkeypatch):
    with api_in_thread(token_ok=False) as api:
        point_discord_py_at(monkeypatch, api.base)
        code, lines = run_main(CHORUS_LOG_LEVEL="debug")
    assert code == 2 and any("Traceback" in line for line in lines)
    assert any("LoginFailure" in line for line in lines)


def test_refused_gateway_intents(run_main, monkeypatch):
    with api_in_thread(gateway_close=4014) as api:
        point_discord_py_at(monkeypatch, api.base)
        code, lines = run_main()
    assert "IDENTIFY" in api.requests
    assert code == 2
    assert_no_traceback(lines)
    assert "Privileged Gateway Intents" in chorus_lines(lines)[-1]


def test_missing_access_when_publishing_commands(run_main, monkeypatch):
    with api_in_thread(sync_status=403) as api:
        point_discord_py_at(monkeypatch, api.base)
        code, lines = run_main("--sync", CHORUS_DEV_GUILD_IDS="123456789012345678")
    assert f"PUT /applications/{'900000000000000001'}/guilds/123456789012345678/commands" in api.requests
    assert code == 2
    assert_no_traceback(lines)
    line = chorus_lines(lines)[-1]
    assert "Missing Access" in line and "applications.commands" in line


def test_first_gateway_connection_is_retried(run_main, monkeypatch):
    """discord.py 2.7.1 cannot retry a first gateway connection that failed; chorus does, without tracebacks."""
    with api_in_thread() as api:
        point_discord_py_at(monkeypatch, api.base)
        closed = free_port()
        import yarl
        from discord.gateway import DiscordWebSocket

        monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(f"ws://127.0.0.1:{closed}/"))
        code, lines = run_main()
    assert code == EXIT_NETWORK
    assert_no_traceback(lines)
    ours = chorus_lines(lines)
    assert "can't reach Discord (gateway connection)" in ours[0] and "gave up" in ours[-1]


@pytest.mark.parametrize(
    "env, words",
    [
        ({"STT_MODEL": "nonexistent-model"}, "STT_MODEL=nonexistent-model: not a faster-whisper model size"),
        ({"STT_MODEL": "/no/such/whisper"}, "STT_MODEL=/no/such/whisper: no such folder"),
        ({"LLM_MODEL": "/no/such/model.gguf"}, "LLM_MODEL=/no/such/model.gguf: no such GGUF file"),
    ],
)
def test_model_settings_are_checked_before_login(run_main, monkeypatch, env, words):
    with api_in_thread() as api:
        point_discord_py_at(monkeypatch, api.base)
        code, lines = run_main(**env)
    assert code == 3 and api.requests == []  # never logged in
    assert_no_traceback(lines)
    (line,) = chorus_lines(lines)
    assert words in line


def test_demo_with_a_bad_model_name_is_one_line(run_main, monkeypatch):
    monkeypatch.delenv("DISCORD_TOKEN")
    code, lines = run_main("--demo", STT_MODEL="nonexistent-model")
    assert code == 3
    assert_no_traceback(lines)
    assert "not a faster-whisper model size" in chorus_lines(lines)[-1]


def test_metrics_port_in_use_is_one_line_before_login(run_main, monkeypatch):
    import socket

    with socket.socket() as taken, api_in_thread() as api:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        point_discord_py_at(monkeypatch, api.base)
        code, lines = run_main(CHORUS_METRICS_PORT=str(port))
    assert code == 2 and api.requests == []
    assert_no_traceback(lines)
    (line,) = chorus_lines(lines)
    assert f"CHORUS_METRICS_PORT={port}: the port is already in use" in line
