"""Privacy fault matrix (issue #20): what is left of a member after each fault, and whether commands answer in time.

    python -m benchmarks.privacy_faults            # every built case (the opt-out ones run the real pipeline)
    python -m benchmarks.privacy_faults --quick    # without the three loopback opt-out cases
    python -m benchmarks.privacy_faults --only member_leaves_server    # one case (or several), JSON not kept

Each case provokes one fault on the real code (loopback voice channel with the real models, a SQLite file that
goes away, a write lock held on it) and counts what is found afterwards about the member who opted out or asked
to be forgotten: words, rows, log lines (`leaks`, must be 0), and the commands whose first answer to Discord
came later than 3 s (`late_replies`, must be 0). Prints one JSON object, written to out/bench/privacy.json and
docs/privacy-faults.json (keys `cases`, `leaks_total`, `late_replies`). The commands run through the cogs' real
callbacks and each case lists them with when they answered (`commands`). The cases: the database and command
faults in `benchmarks.privacy_cases`, `/memory forget` during call summaries in `benchmarks.privacy_summary_cases`,
the bot removed and members leaving in `benchmarks.privacy_removal_cases` (what they share:
`benchmarks.privacy_rig`), the loopback opt-outs here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from benchmarks.privacy_cases import DB_CASES
from benchmarks.privacy_rig import DISCORD_ACK_S, Result
from benchmarks.privacy_removal_cases import REMOVAL_CASES
from benchmarks.privacy_summary_cases import SUMMARY_CASES
from benchmarks.report import command_line, machine_info, write_json

OUT = Path("out/bench/privacy.json")
DOCS = Path("docs/privacy-faults.json")

FIRST = "I keep bees in my garden behind the old stone house."
LONG = (
    "My cousin Robert and I go sailing on the lake near the harbour every summer, and we always "
    "bring sandwiches, lemonade and a big yellow umbrella for the afternoon sun."
)

LOOPBACK_CASES = ("optout_between_partial_and_final", "optout_mid_word", "optout_mid_partial")  # one call, in order


# --- the loopback opt-out cases (real pipeline) --------------------------------------------------------------------


async def _optout_cases(tmp: Path) -> dict[str, Result]:
    from simulator.privacy_witness import LogTap, PartialWatch, Witness, opt_in, opt_out, settled, words_of
    from simulator.scenario import ALICE as CAST_ALICE, BOB as CAST_BOB, bot_in_channel, scenario_settings

    settings = scenario_settings(tmp, MEMORY_SUMMARY="extractive")
    bob = CAST_BOB.user_id
    out: dict[str, Result] = {}
    with LogTap() as logs:
        async with bot_in_channel(settings, [CAST_ALICE, CAST_BOB], synthesize=[("Bob", FIRST), ("Bob", LONG)]) as sc:
            witness = Witness(sc)
            members = sc.session.room.members
            said = await sc.say("Bob", FIRST)
            await sc.wait_for(lambda: [ln for ln in sc.human_lines(said.start) if ln.user_id == bob], 90, "Bob's line")
            await sc.wait_idle()

            started = time.monotonic()
            speaking = asyncio.create_task(sc.say("Bob", LONG))
            await sc.wait_for(
                lambda: (
                    (m := members.get(bob)) is not None and m.partial is not None and m.partial.start >= started - 0.5
                ),
                120,
                "a partial of Bob's",
            )
            in_time = not speaking.done()
            since = await opt_out(sc, bob)
            done_s = time.monotonic() - since
            heard = words_of(witness.texts_of(bob, before=since))
            await settled(sc, speaking)
            found = await witness.leaks(bob, "Bob", since, heard, logs)
            out["optout_between_partial_and_final"] = _leak_result(
                found, done_s, heard=sorted(heard), opted_out_before_his_line_ended=in_time
            )

            await opt_in(sc, bob)
            started = time.monotonic()
            speaking = asyncio.create_task(sc.say("Bob", LONG))
            tap: Any = sc.heard
            await sc.wait_for(lambda: tap.starts(bob, since=started), 60, "Bob's speech start")
            since = await opt_out(sc, bob)
            done_s = time.monotonic() - since
            await settled(sc, speaking)
            found = await witness.leaks(bob, "Bob", since, heard, logs)
            out["optout_mid_word"] = _leak_result(
                found, done_s, dropped_at_receive=sc.session.receiver.stats.as_dict()["dropped_opted_out"]
            )

            await opt_in(sc, bob)
            watch = PartialWatch(sc.session.listener.scheduler, bob)
            speaking = asyncio.create_task(sc.say("Bob", LONG))
            await sc.wait_for(lambda: watch.running, 120, "a partial of Bob's being transcribed")
            since = await opt_out(sc, bob)  # takes effect before its first await: the partial still runs
            done_s = time.monotonic() - since
            await settled(sc, speaking)
            found = await witness.leaks(bob, "Bob", since, heard, logs)
            out["optout_mid_partial"] = _leak_result(found, done_s, partials_watched=watch.runs)
    return out


def _leak_result(found: dict[str, list], done_s: float, **detail: Any) -> Result:
    """`done_s`: how long /privacy optout took until its last answer (its first went out no later)."""
    return {
        "built": True,
        "leaks": sum(len(v) for v in found.values()),
        "late_replies": int(done_s > DISCORD_ACK_S),
        "found": {k: v for k, v in found.items() if v},
        "commands": [{"command": "/privacy optout", "last_answer_s": round(done_s, 3)}],
        **detail,
    }


# --- the run --------------------------------------------------------------------------------------------------------


async def run(quick: bool, only: Sequence[str] = ()) -> dict[str, Any]:
    """Every case (`only`: those named), each on its own data under one temporary folder."""
    tmp = Path(tempfile.mkdtemp(prefix="chorus-privacy-"))
    cases: dict[str, Result] = {}
    try:
        for name, case in [*DB_CASES, *SUMMARY_CASES, *REMOVAL_CASES]:
            if not only or name in only:
                t0 = time.monotonic()
                cases[name] = {**await case(tmp), "seconds": round(time.monotonic() - t0, 2)}
        if quick:
            for name in LOOPBACK_CASES:
                cases[name] = {"built": True, "skipped": "--quick"}
        elif not only or set(only) & set(LOOPBACK_CASES):
            t0 = time.monotonic()
            for name, result in (await _optout_cases(tmp)).items():
                cases[name] = {**result, "seconds": round(time.monotonic() - t0, 2)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    measured = [c for c in cases.values() if c.get("built") and "leaks" in c]
    return {
        "cases": cases,
        "leaks_total": sum(c["leaks"] for c in measured),
        "late_replies": sum(c["late_replies"] for c in measured),
        "built": len(measured),
    }


def case_names() -> list[str]:
    return [name for name, _ in [*DB_CASES, *SUMMARY_CASES, *REMOVAL_CASES]] + list(LOOPBACK_CASES)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the three loopback opt-out cases")
    parser.add_argument(
        "--only",
        nargs="+",
        default=[],
        choices=case_names(),
        metavar="CASE",
        help="run only these cases (the three loopback ones run together); nothing written to docs/",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--docs", default=str(DOCS), help="also written here (empty: not)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.time()
    result = {
        "command": command_line("benchmarks.privacy_faults", argv),
        "machine": machine_info(),
        **asyncio.run(run(args.quick, args.only)),
        "wall_s": round(time.time() - started, 1),
    }
    write_json(result, args.out)
    if args.docs and not args.only:
        write_json(result, Path(args.docs))
    import json

    print(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
