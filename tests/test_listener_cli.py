"""python -m audio.transcribe_cli: one speaker per file, through the streaming Listener."""

from __future__ import annotations

import re
import wave

import numpy as np
import pytest

from audio import transcribe_cli
from tests.fixtures_listening import silence, speech, words


def write_wav(path, pcm):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())


def test_cli_prints_timed_speaker_lines(tmp_path, capsys):
    write_wav(tmp_path / "a.wav", np.concatenate((silence(0.5), speech("Did you finish the report?"), silence(2.5))))
    write_wav(tmp_path / "b.wav", np.concatenate((silence(2.6), speech("Yes, this morning."), silence(1.0))))
    assert transcribe_cli.main([str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--names", "Alice,Bob"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    parsed = [re.match(r"\[(\d\d):(\d\d\.\d\d)-(\d\d):(\d\d\.\d\d)\] (\w+): (.*)", line) for line in lines]
    assert all(parsed), lines
    by_name = {m.group(5): m for m in parsed}
    assert words(by_name["Alice"].group(6)) == words("Did you finish the report?")
    assert words(by_name["Bob"].group(6)) == words("Yes, this morning.")
    assert 0.3 < float(by_name["Alice"].group(2)) < 1.0  # timed from the start of the files
    assert 2.4 < float(by_name["Bob"].group(2)) < 3.2


def test_cli_reports_a_missing_file(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        transcribe_cli.main([str(tmp_path / "nope.wav")])
