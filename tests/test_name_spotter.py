"""The keyword spotter (PocketSphinx, its bundled model) on real synthesized speech, and the look's use of it.

Margins leave room for a miss or two: the spotter is a second opinion, its rates are measured by
`python -m benchmarks.names_bench` (docs/names.md), not here.
"""

from __future__ import annotations

import pytest

from audio.name_look import NameLook
from audio.name_spotter import NameSpotter, available, ipa_to_arpabet, keyphrases, pronounce
from audio.stt import WhisperTranscriber
from tests.fixtures_listening import settings
from tests.test_name_look import CALLS, PLAIN, voiced

pytestmark = pytest.mark.skipif(not available(), reason="pocketsphinx is a core dependency; not installed here")


@pytest.fixture(scope="module")
def spotter() -> NameSpotter:
    return NameSpotter()


def test_espeak_phonemes_map_to_the_dictionarys_phones():
    from audio.g2p import word_phonemes

    for word in ("trixie", "astrid", "nyx"):  # words the CMU dictionary knows, spelled the same both ways
        assert " ".join(ipa_to_arpabet(word_phonemes(word))) == pronounce(word)
    assert ipa_to_arpabet("dʒˈuːnɪpɚ") == ["JH", "UW", "N", "IH", "P", "ER"]
    assert pronounce("Zephyrine").split()[:3] == ["Z", "EH", "F"]  # not in the dictionary: from espeak-ng
    assert pronounce("Junie") == "JH UW N IY"


def test_short_names_are_not_spotted_alone():
    assert keyphrases(["Juniper", "June", "Cap", "Captain Hollis"]) == ("juniper", "captain hollis")


def test_the_name_is_spotted_in_calls_and_not_in_plain_lines(spotter):
    calls = [spotter.spot(voiced(said, voice), ["Juniper"]) for said, _ in CALLS for voice in (0, 1, 4)]
    plain = [spotter.spot(voiced(line, voice), ["Juniper"]) for line in PLAIN for voice in (0, 1, 4)]
    assert sum(s == {"Juniper"} for s in calls) >= 9, calls  # 12 lines
    assert sum(bool(s) for s in plain) <= 1, plain  # 12 lines


def test_the_look_keeps_a_costly_candidate_only_when_the_spotter_hears_the_name(spotter):
    transcriber = WhisperTranscriber(settings())
    # max_loss below any real loss: every candidate is "doubtful" and only the spotter can keep it
    strict = NameLook(transcriber, max_loss=-100.0)
    confirmed = NameLook(transcriber, max_loss=-100.0, spotter=spotter, confirm_loss=100.0)
    said, lost = CALLS[0]
    audio = voiced(said, 0)
    assert strict.look(audio, lost, ["Juniper"], ["Alice"]) is None
    heard = confirmed.look(audio, lost, ["Juniper"], ["Alice"])
    assert heard is not None and "Juniper" in heard.text and confirmed.confirmed == 1
    plain = voiced(PLAIN[1], 0)
    assert confirmed.look(plain, PLAIN[1], ["Juniper"], ["Alice"]) is None
