"""The second, acoustic look for a name Whisper left out, on real synthesized speech and the real tiny.en.

Whisper's own transcripts vary with the voice and the load of nothing here: the look is given the words
WITHOUT the name (as tiny.en writes "Juniper, what did Alice want to cook?" in the README's demo), with the
audio that holds it, over several lines and voices, and the assertions leave room for a miss or two.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from audio.name_look import NameHeard, NameLook, edits
from audio.stt import WhisperTranscriber
from benchmarks.names_corpus import BASE_VOICES, NameLine
from conversation.addressing import NameMatcher
from conversation.listen_for import names_to_listen_for
from tests.fixtures_listening import settings, silence, speech

CALLS = [  # (said, the transcript without the name)
    ("Juniper, what did Alice want to cook?", "What did Alice want to cook?"),
    ("Juniper, how far away is the moon?", "How far away is the moon?"),
    ("Juniper, can you tell us a joke?", "Can you tell us a joke?"),
    ("Can you give us a riddle, Juniper?", "Can you give us a riddle?"),
]
PLAIN = [
    "What did Alice want to cook?",
    "Did anyone see the game last night?",
    "Can someone open the window?",
    "I think we should order pizza tonight.",
]


@pytest.fixture(scope="module")
def look():
    return NameLook(WhisperTranscriber(settings()))


def look_as_the_bot_does(look: NameLook, audio: np.ndarray, text: str, members: list[str]) -> NameHeard | None:
    """The look as the listener runs it for the bot Juniper: what it listens for, and where, decided by
    `conversation.listen_for` from the transcript (a member's name only on a question or a lone call)."""
    present = [(100 + i, name) for i, name in enumerate(members)]
    query = names_to_listen_for(text, NameMatcher.for_name("Juniper", ()), "Juniper", (), present)
    if query is None or query.named:
        return None
    return look.look_for(query, audio, text)


def voiced(text: str, voice_index: int) -> np.ndarray:
    from benchmarks.names_bench import line_audio

    line = NameLine(text, "Juniper", True, "test", (), BASE_VOICES[voice_index], None, "dev")
    return line_audio(settings(), line, 0)


def test_edits_put_the_name_where_a_call_goes():
    assert dict(edits("What did Alice want to cook?", "Juniper")) == {
        "start": "Juniper, what did Alice want to cook?",
        "end": "What did Alice want to cook, Juniper?",
    }
    assert ("tail", "Can you give us a riddle, Juniper?") in edits(
        "Can you give us a riddle? Do you know her?", "Juniper"
    )
    assert ("head", "Juniper, how far away is the moon.") in edits("2-meter, how far away is the moon.", "Juniper")
    assert ("middle", "I need something to read, Juniper, any good books lately.") in edits(
        "I need something to read. tunable. any good books lately.", "Juniper"
    )
    assert ("whole", "Juniper.") in edits("Gereple.", "Juniper", whole=True)  # a call alone before a pause
    assert ("whole", "Juniper?") in edits("Help him?", "Juniper", whole=True)
    assert "whole" not in dict(edits("Help him?", "Juniper"))  # only where the line may be a call alone
    assert edits("", "Juniper") == []


def test_a_head_before_a_question_opener_may_be_the_name_bent_into_words():
    from conversation.vocative import question_after_head

    bent = "You never should I learn the guitar or the piano"  # "Juniper, should I…" as tiny.en wrote it
    assert question_after_head(bent) == "should I learn the guitar or the piano"
    assert ("head", "Juniper, should I learn the guitar or the piano?") in edits(
        bent, "Juniper", asked=question_after_head(bent)
    )
    assert question_after_head("Okay so Tunable can you help") == "can you help"  # after call words
    assert question_after_head("How always are you there?") == "are you there?"
    assert question_after_head("What is the time?") is None  # the opener comes first: no head
    assert question_after_head("Bob, can you help?") is None  # set off: the comma's head is another candidate
    assert question_after_head("The dog is very cute today.") is None  # no question opener
    assert question_after_head("I think that maybe what we need is rest") is None  # the opener comes too late
    assert "head" not in dict(edits(bent, "Juniper"))  # only where the listener's query says so


@pytest.mark.parametrize("voice", [0, 1, 4])  # Piper +3, -3 and +1 semitones
def test_a_name_bent_into_the_words_before_a_question_is_heard(look, voice):
    """tiny.en wrote "Juniper, should I learn the guitar or the piano?" as "You never should I learn…" in the load
    benchmark; the look puts the name in place of the words before the question."""
    audio = voiced("Juniper, should I learn the guitar or the piano?", voice)
    heard = look_as_the_bot_does(look, audio, "You never should I learn the guitar or the piano", ["Alice", "Bob"])
    assert heard is not None and heard.name == "Juniper" and heard.position == "head", heard


LOST = "What did Alice want to cook?"  # tiny.en's transcript of "Juniper, what did Alice want to cook?"


def test_a_call_lost_before_a_member_talked_about_is_heard(look):
    """The README demo's "Juniper, what did Alice want to cook?", tiny.en writing "What did Alice want to cook?"
    with Alice present: the line talks about Alice and calls nobody, so the look listens (it did not while any
    member was named); the same words said without the call, and other lines about a member, get no name."""
    members = ["Alice", "Bob", "Dana"]
    heard = sum(
        1
        for voice in (0, 1, 4)  # Piper +3, -3 and +1 semitones
        if (found := look_as_the_bot_does(look, voiced("Juniper, what did Alice want to cook?", voice), LOST, members))
        and found.name == "Juniper"
    )
    assert heard >= 2, f"{heard} of 3 voices"  # 3 of 3 when written (0.7-1.6 nats lost; lines without a call 16+)
    for i, said in enumerate(
        ["What did Alice want to cook?", "Did Bob finish his homework?", "Is Bob coming tonight?"]
    ):
        audio = voiced(said, i % 3)
        transcript = look.transcriber.transcribe([audio])[0]
        assert look_as_the_bot_does(look, audio, transcript.text or said, members) is None, (said, transcript.text)


def test_a_name_lost_from_the_transcript_is_heard_in_the_audio(look):
    heard = 0
    for said, lost in CALLS:
        for voice in (0, 1, 4):  # Piper +3, -3 and +1 semitones
            result = look.look(voiced(said, voice), lost, ["Juniper"], ["Alice", "Bob"])
            if result is not None and "Juniper" in result.text:
                heard += 1
    assert heard >= 9, f"{heard} of 12 lines heard"  # on tiny.en: 12 of 12 when written


def test_no_name_is_put_into_lines_that_hold_none(look):
    for i, text in enumerate(PLAIN):
        audio = voiced(text, i % 3)
        transcript = look.transcriber.transcribe([audio])[0]
        assert look.look(audio, transcript.text or text, ["Juniper"], ["Alice"], encoded=transcript.encoded) is None, (
            text
        )


def test_a_member_called_by_their_own_similar_name_keeps_it(look):
    """Said "Jennifer, …" to Jennifer, and the transcript lost the name: Juniper does not take it."""
    wrong = 0
    for voice in (0, 1, 4):
        audio = voiced("Jennifer, can you pass me the salt?", voice)
        if look.look(audio, "Can you pass me the salt?", ["Juniper"], ["Jennifer", "Bob"]) is not None:
            wrong += 1
    assert wrong <= 1


MEMBER_CALLS = [  # (said, the transcript without the name, the member called)
    ("Marco, are you coming tomorrow?", "Are you coming tomorrow?", "Marco"),
    ("Grace, did you ever get your bike fixed?", "Did you ever get your bike fixed?", "Grace"),
    ("Priya, can you send me the link?", "Can you send me the link?", "Priya"),
    ("Did you finish the book, Alice?", "Did you finish the book?", "Alice"),
]
ROOM_QUESTIONS = ["Does anyone know a good pizza place?", "Who wants to play a game later?", "Is it raining there?"]


def test_a_question_called_to_a_member_gets_their_name_back(look):
    """With `members_too`, a question whose member's name Whisper lost is theirs again (so it is no question
    to the room); the bot's name never goes in its place, and nobody's name goes into a room question."""
    right = wrong = 0
    for said, lost, member in MEMBER_CALLS:
        for voice in (0, 3):  # Piper +3 and -5 semitones
            audio = voiced(said, voice)
            others = [member, "Bob", "Dana"]
            assert look.look(audio, lost, ["Juniper"], others) is None  # not asked: the bot's name only
            heard = look.look(audio, lost, ["Juniper"], others, members_too=True)
            if heard is not None and heard.member and heard.name == member and member in heard.text:
                right += 1
            elif heard is not None:
                wrong += 1
    assert wrong == 0 and right >= 5, f"{right} of 8 right, {wrong} wrong"  # 7 of 8 when written
    for i, text in enumerate(ROOM_QUESTIONS):
        audio = voiced(text, i % 3)
        transcript = look.transcriber.transcribe([audio])[0]
        heard = look.look(audio, transcript.text or text, ["Juniper"], ["Marco", "Grace", "Bob"], members_too=True)
        assert heard is None, (text, heard)


CALLED_ALONE = [  # (said alone, what tiny.en writes for it, whose name it is; the bot is Juniper)
    ("Juniper?", "Tuner.", "Juniper"),
    ("Hey Juniper!", "A tuna.", "Juniper"),
    ("Grace?", "Please.", "Grace"),
    ("Marco?", "Market.", "Marco"),
]


def test_a_name_called_alone_goes_back_to_whoever_it_names(look):
    """A call said alone before a pause is its own segment, and tiny.en bends the whole of it ("Please." for
    "Grace?"): the look puts back the name it sounds like, the bot's or a member's, in place of the words."""
    right = wrong = 0
    for said, bent, name in CALLED_ALONE:
        for voice in (0, 3):  # Piper +3 and -5 semitones
            heard = look_as_the_bot_does(look, voiced(said, voice), bent, ["Grace", "Marco", "Bob"])
            if heard is not None and heard.name == name and heard.position == "whole":
                right += 1
            elif heard is not None:
                wrong += 1
    assert wrong == 0 and right >= 5, f"{right} of 8 right, {wrong} wrong"


@pytest.mark.parametrize("said", ["Yeah.", "Okay.", "Mm-hm.", "Sure, why not.", "No way!", "Pizza.", "Good point."])
def test_a_short_line_that_calls_nobody_gets_no_name(look, said):
    """Short lines are the commonest in a room; as the bot looks at them (members' names too where the line is
    no backchannel), none gets anyone's name."""
    for voice in (0, 3):
        audio = voiced(said, voice)
        transcript = look.transcriber.transcribe([audio])[0]
        text = transcript.text or transcript.raw_text or said
        heard = look_as_the_bot_does(look, audio, text, ["Grace", "Marco", "Bob"])
        assert heard is None, (said, text, heard)


@pytest.mark.asyncio
async def test_the_listener_puts_the_lost_name_back_into_the_final():
    """The README demo's line through the real listener: VAD, the final's transcription, then the look."""
    from audio.listener import Listener
    from tests.fixtures_listening import feed_streams

    said = "Juniper, what did Alice want to cook?"
    asked: list[str] = []

    def names_for(user_id: int, text: str):
        from conversation.listen_for import NameQuery

        asked.append(text)
        return NameQuery(("Juniper",), ("Alice", "Bob"), named="juniper" in text.lower())

    finals = []
    listener = Listener(
        settings(),
        name_of=lambda uid: "Chen",
        on_speaking=lambda e: None,
        on_utterance=lambda u: finals.append(u) if u.final else None,
        fill_gaps=False,
        names_for=names_for,
        end_of_turn=False,
    )
    try:
        await feed_streams(listener, {7: np.concatenate((silence(0.3), speech(said), silence(1.2)))})
        await listener.flush()
        await asyncio.sleep(0)
    finally:
        await listener.close()
    assert len(finals) == 1 and asked, finals
    assert "juniper" in finals[0].text.lower(), (finals[0].text, asked)
    if "juniper" not in asked[0].lower():  # the look, not Whisper, found it
        assert listener.stats.names_restored == 1 and "name_look" in finals[0].timings


@pytest.mark.parametrize(
    "raw,rejected,text,asked",
    [
        ("Juniper", "avg_logprob -1.08 < -1.0", "", ("Juniper", True)),  # a lone call Whisper doubted
        ("What did Alice want to cook?", None, "What did Alice want to cook?", ("What did Alice want to cook?", False)),
        ("Thank you.", "known hallucination", "", None),  # dropped for what it is, not for doubt
        ("Juniper", "no_speech_prob 0.90 > 0.6", "", None),
        ("one two three four five", "avg_logprob -1.5 < -1.0", "", None),  # too long to be a lone call
    ],
)
def test_which_finals_get_a_second_look(raw, rejected, text, asked):
    from audio.doubted_words import DoubtedWords
    from audio.final_name_look import FinalNameLook
    from audio.stt_result import SttResult
    from audio.vad import Segment

    seen = []
    look = FinalNameLook(
        lambda uid, words, doubted: seen.append((words, doubted)),
        send=lambda *args: None,
        doubted=DoubtedWords(),
        audio=lambda seg: np.zeros(16000, np.float32),
    )
    result = SttResult(text, 0.3, -1.08, 0.1, 1.0, rejected, raw, 1.0, 0.1)
    assert look.started(Segment(7, 16000), result, {}, None) is False  # the stand-in asks for no look (None)
    assert seen == ([asked] if asked else [])
