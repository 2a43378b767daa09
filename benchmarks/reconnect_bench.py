"""How long chorus can neither hear nor be heard after its voice connection breaks, by fault, p50 / p95.

    python -m benchmarks.reconnect_bench                 # 10 of each fault (about 3 minutes)
    python -m benchmarks.reconnect_bench --trials 3 --faults 4006 udp

A real ChorusBot joins the loopback voice channel by /join (`simulator.scenario`); a member streams quiet room
noise and the bot plays a steady tone through its own player (`simulator.continuity`). Then, over and over,
the voice server breaks the connection: closes the voice websocket (1006: the TCP connection just drops;
4006 session no longer valid; 4009 session timed out; 4015 voice server crashed) or silences the bot's UDP
path while the websocket lives (``udp``). Per fault it reports the outage (the fault -> the member's audio
reaches the listener again, and the bot's voice reaches the member again; the larger of the two) and the
voice layer's own record (resumed or a new session, attempts, seconds). The goal: back within 5 s at p95,
without /join. One JSON object on stdout and in ``out/bench/reconnect.json``.

``--discord-py`` runs the same faults on discord.py 2.7.1's own reconnects (chorus' voice layer off), to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.report import command_line, machine_info, stats, write_json
from runtime.settings import PROJECT_ROOT
from simulator.continuity import ContinuityProbe
from simulator.scenario import ALICE, BOB, bot_in_channel, scenario_settings

GOAL_P95_S = 5.0
FAULTS = ("1006", "4006", "4009", "4015", "udp")
PAUSE_S = 2.0  # between faults: the connection settles, the streams flow


async def inject(sc: Any, fault: str) -> None:
    if fault == "udp":
        sc.server.block_udp()
    else:
        await sc.server.disconnect_client(int(fault))


def use_discord_py_reconnects() -> None:
    """The comparison: voice clients get discord.py's own connection state (no fast reconnect, no watchdog)."""
    from discord.voice_state import VoiceConnectionState

    from audio.voice_seams import GatewayRecorder, ListeningVoiceClient

    def plain(self: ListeningVoiceClient) -> VoiceConnectionState:
        self.gateway_recorder = GatewayRecorder()
        return VoiceConnectionState(self, hook=self.gateway_recorder)

    ListeningVoiceClient.create_connection_state = plain  # type: ignore[method-assign]


async def run(faults: Sequence[str], trials: int, *, wait_s: float = 60.0) -> dict[str, Any]:
    per_fault: dict[str, list[dict[str, Any]]] = {f: [] for f in faults}
    with tempfile.TemporaryDirectory(prefix="chorus-reconnect-") as tmp:
        settings = scenario_settings(Path(tmp))
        async with bot_in_channel(settings, [ALICE, BOB], connect_timeout_s=15.0) as sc:
            probe = ContinuityProbe(sc, "Alice")
            await probe.start()
            try:
                for trial in range(trials):
                    for fault in faults:
                        await asyncio.sleep(PAUSE_S)
                        vc = sc.guild.voice_client
                        records = getattr(vc._connection, "reconnects", [])
                        before = len(records)
                        t0 = time.monotonic()
                        await inject(sc, fault)
                        entry: dict[str, Any] = {"trial": trial}
                        try:
                            outage = await probe.wait_back(t0, timeout=wait_s)
                            entry.update(outage_s=outage.seconds, heard_s=outage.heard_s, spoken_s=outage.spoken_s)
                        except AssertionError as exc:
                            entry.update(outage_s=None, error=str(exc)[:300])
                        records = records[before:] if sc.guild.voice_client is vc else []
                        if records:
                            r = records[-1]
                            entry.update(how=r.how, attempts=r.attempts, reconnect_s=round(r.seconds or -1, 3), ok=r.ok)
                        entry["same_session"] = sc.bot.voice_sessions.get(sc.guild.id) is sc.session
                        per_fault[fault].append(entry)
                        print(f"reconnect_bench: {fault} #{trial + 1}: {entry}", file=sys.stderr, flush=True)
                        if entry.get("outage_s") is None:
                            break
            finally:
                await probe.stop()
    summary: dict[str, dict[str, Any]] = {}
    for fault, entries in per_fault.items():
        outages = [e["outage_s"] for e in entries if e.get("outage_s") is not None]
        summary[fault] = {
            "outage_s": stats(outages),
            "failed": sum(1 for e in entries if e.get("outage_s") is None),
            "how": sorted({e.get("how", "") for e in entries}),
            "trials": entries,
        }
    everything = [e["outage_s"] for entries in per_fault.values() for e in entries if e.get("outage_s") is not None]
    failed = sum(s["failed"] for s in summary.values())
    overall = stats(everything)
    return {
        "faults": summary,
        "outage_s": overall,
        "failed": failed,
        "goal_met": bool(overall and overall["p95"] <= GOAL_P95_S and failed == 0),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", nargs="+", default=list(FAULTS), choices=FAULTS)
    parser.add_argument("--trials", type=int, default=10, help="of each fault")
    parser.add_argument("--discord-py", action="store_true", help="discord.py's own reconnects, for comparison")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: out/bench/reconnect.json (reconnect-discord-py.json with --discord-py)",
    )
    args = parser.parse_args(argv)
    if args.discord_py:
        use_discord_py_reconnects()
    out = args.out or PROJECT_ROOT / "out" / "bench" / (
        "reconnect-discord-py.json" if args.discord_py else "reconnect.json"
    )
    logging.basicConfig(
        level=os.environ.get("CHORUS_LOG_LEVEL", "WARNING").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    started = time.monotonic()
    machine = machine_info()
    result = asyncio.run(run(args.faults, args.trials, wait_s=30.0 if args.discord_py else 60.0))
    report = {
        "benchmark": "reconnect_bench",
        "command": command_line("benchmarks.reconnect_bench", argv),
        "reconnects": "discord.py 2.7.1's own" if args.discord_py else "chorus (audio.voice_connection)",
        "machine": {**machine, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "goal": {"p95_outage_s": GOAL_P95_S},
        **result,
        "wall_s": round(time.monotonic() - started, 1),
    }
    write_json(report, out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
