"""`chorus names` (bot/names_cli.py) and the one-line name decision it shares with the names benchmark
(bot/name_hearing.py): on the embedded Whisper and voices, and on given transcripts."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from audio.stt_result import SttResult
from bot.name_hearing import hear_name
from bot.names_cli import PHRASES, QUICK_PHRASES, CheckedLine, main, names_to_check, report
from conversation.persona_library import load_persona
from runtime.settings import PROJECT_ROOT, load_settings

PERSONAS = PROJECT_ROOT / "personas"
SILENCE = np.zeros(16000, np.float32)


def result(text: str, *, raw: str | None = None, rejected: str | None = None) -> SttResult:
    return SttResult(text, 0.5, -0.7, 0.01, 1.2, rejected, text if raw is None else raw, 1.0, 0.1)


def test_a_name_in_the_text_is_heard_without_a_look_and_a_members_name_is_not_the_bots():
    said = hear_name(
        SILENCE, result("Juniper, what time is it?"), bot_name="Juniper", aliases=(), members=(), looker=None
    )
    assert said.detected and said.via == "text" and said.text_detected and said.look_cpu_s is None
    to_bob = hear_name(
        SILENCE, result("Bob, what time is it?"), bot_name="Juniper", aliases=(), members=((2, "Bob"),), looker=None
    )
    assert not to_bob.detected and to_bob.via == "" and to_bob.restored == ""
    # a member called Jennifer is called by "Jennifer", not the bot that Whisper sometimes writes so
    to_jennifer = hear_name(
        SILENCE,
        result("Jennifer, pass the salt."),
        bot_name="Juniper",
        aliases=(),
        members=((3, "Jennifer"),),
        looker=None,
    )
    assert not to_jennifer.detected


def test_a_lone_call_whisper_doubted_is_kept_and_the_look_runs_only_on_lines_naming_nobody():
    from audio.name_look import NameLook
    from audio.stt import WhisperTranscriber

    looker = NameLook(WhisperTranscriber(load_settings(env={}, env_file=None)))
    doubted = result("", raw="Juniper?", rejected="avg_logprob -1.08 < -1.0")
    kept = hear_name(SILENCE, doubted, bot_name="Juniper", aliases=(), members=(), looker=looker)
    assert kept.detected and kept.via == "doubted" and kept.restored == "Juniper?" and looker.calls == 0
    plain = hear_name(SILENCE, result("What time is it?"), bot_name="Juniper", aliases=(), members=(), looker=looker)
    assert looker.calls == 1 and plain.look_cpu_s is not None and plain.closest is not None
    assert not plain.detected  # silence holds no name


def test_the_names_checked_are_the_name_and_the_aliases_the_bot_listens_for():
    hollis = load_persona(PERSONAS / "captain_hollis.toml")
    assert names_to_check(hollis) == ["Captain Hollis", "Captain", "Hollis"]  # "Cap" is too short to listen for


def test_the_report_counts_each_name_and_hints_only_for_a_name_heard_too_rarely():
    hollis = load_persona(PERSONAS / "captain_hollis.toml")
    lines = [CheckedLine("Captain", f"Captain {i}", "v", "Captain, hi.", True, "text") for i in range(5)]
    lines += [
        CheckedLine("Hollis", f"Hollis {i}", "v", "Always, hi.", i == 0, "look" if i == 0 else "") for i in range(5)
    ]
    out = io.StringIO()
    assert report(hollis, lines, "embedded", out) is False
    text = out.getvalue()
    assert "'Captain': heard in 5 of 5 lines" in text and "'Hollis': heard in 1 of 5 lines" in text
    assert text.count("hint:") == 1 and "'Always, hi.' x4" in text
    well = io.StringIO()
    assert report(hollis, lines[:5], "embedded", well) is True and "hint:" not in well.getvalue()


def test_an_unknown_persona_or_a_broken_file_is_a_clear_error(tmp_path: Path):
    out = io.StringIO()
    assert main(["Nobody"], out=out) == 2
    assert "no persona 'Nobody'" in out.getvalue() and "Juniper" in out.getvalue()
    broken = tmp_path / "broken.toml"
    broken.write_text('name = "Broken"\n[style\n', encoding="utf-8")
    out = io.StringIO()
    assert main([str(broken)], out=out) == 2
    assert "broken.toml" in out.getvalue() and "TOML" in out.getvalue()


def test_the_quick_check_says_each_line_and_counts_what_it_marked_heard():
    """On the embedded Whisper and the persona's own voice: which lines are heard depends on the model, so the
    test checks that the lines and the counts agree, not which ones were heard."""
    out = io.StringIO()
    code = main(["--quick", "Juniper"], out=out)
    text = out.getvalue()
    assert code in (0, 1), text
    names = names_to_check(load_persona(PERSONAS / "juniper.toml"))
    lines = re.findall(r"  (.+?) +-> .* (heard \((?:text|look|doubted)\)|MISSED)  \[", text)
    assert len(lines) == QUICK_PHRASES * len(names), text
    all_well = True
    for name in names:
        said = [phrase.format(name=name) for phrase in PHRASES[:QUICK_PHRASES]]
        marks = [mark for line, mark in lines if line in said]
        assert len(marks) == QUICK_PHRASES, (name, text)
        heard = sum(mark != "MISSED" for mark in marks)
        assert f"'{name}': heard in {heard} of {QUICK_PHRASES} lines" in text
        all_well = all_well and heard >= 0.8 * QUICK_PHRASES
    assert (code == 0) == all_well and ("hint:" in text) == (code == 1)
