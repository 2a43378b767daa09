"""The bot's name as a small STT writes it: phoneme matching over word windows, weighed against the members
present, and the name said about the bot rather than to it."""

from __future__ import annotations

import threading

import pytest

from audio.g2p import word_phonemes
from conversation.addressing import NameMatcher, resolve_names
from conversation.listen_for import NameQuery, names_to_listen_for
from conversation.phonetic import phoneme_distance, phonetic_similarity, split_phonemes

JUNIPER = NameMatcher.for_name("Juniper", ["June", "Junie"])
TRIXIE = NameMatcher.for_name("Trixie", ["Trix"])
HOLLIS = NameMatcher.for_name("Captain Hollis", ["Captain", "Hollis", "Cap"])


def calls_bot(text: str, bot: NameMatcher = JUNIPER, members: tuple[tuple[int, str], ...] = ()) -> bool:
    return resolve_names(text, bot, members).bot


def test_espeak_phonemes_and_their_units():
    assert split_phonemes(word_phonemes("juniper")) == ("dʒ", "uː", "n", "ɪ", "p", "ɚ")
    assert word_phonemes("123") == "" and word_phonemes("") == ""
    # near sounds cost less than far ones; an extra sound costs one
    assert phoneme_distance(("dʒ",), ("j",)) < phoneme_distance(("dʒ",), ("k",)) == 1.0
    assert phoneme_distance(("a", "b"), ("a",)) == 1.0
    assert phonetic_similarity(("you", "nipper"), ("juniper",)) > 0.9
    assert phonetic_similarity(("table",), ("juniper",)) < 0.3
    assert phonetic_similarity(("a",), ("juniper",)) == 0.0  # far too short to be it


@pytest.mark.parametrize(
    "text",
    [
        "You nipper, what did Alice want to cook?",  # whole-clip tiny.en on the README demo's line
        "Junie per, how are you?",
        "Juniper!",
        "Junipur, hi",
        "So tell me, Juni per, what's up?",
        "what do you think, genie per?",
        "2 nipper, what time is it?",  # tiny.en writes a heard "two"/"to" as a digit
        "2 nipper what time is it?",
    ],
)
def test_bent_forms_of_the_name_are_heard(text):
    assert calls_bot(text), text


@pytest.mark.parametrize(
    "bot,text",
    [
        (TRIXIE, "Trexy, explain how volcanoes work."),
        (TRIXIE, "Trick see, tell us a joke"),
        (TRIXIE, "Trixy, what should we play next?"),
        (HOLLIS, "Captain Hollies, do you like salty snacks?"),
        (HOLLIS, "Okay, so Captain Holis, what would you cook?"),
    ],
)
def test_bent_forms_of_other_personas(bot, text):
    assert calls_bot(text, bot), text


@pytest.mark.parametrize(
    "bot,text",
    [
        (JUNIPER, "You never know what will happen tomorrow."),
        (JUNIPER, "Did you never go there?"),
        (JUNIPER, "The janitor locked the front door."),
        (JUNIPER, "Jupiter is the biggest planet."),
        (JUNIPER, "My junior colleague started today."),
        (JUNIPER, "Do you need her phone number?"),
        (TRIXIE, "That puzzle was really tricky."),
        (TRIXIE, "Those tricks he showed us were great."),
        (TRIXIE, "I need a taxi to the airport."),
        (HOLLIS, "We had a lovely holiday by the sea."),
        (HOLLIS, "The hollow tree fell down last night."),
        (HOLLIS, "His hobbies are fishing and golf."),
        (JUNIPER, "I have 2 nippers in the toolbox."),
        (JUNIPER, "Give me 2 minutes, Alice."),
        (TRIXIE, "We need 2 taxis to the airport."),
    ],
)
def test_common_english_is_not_the_name(bot, text):
    assert not calls_bot(text, bot), text


@pytest.mark.parametrize(
    "bot,text,member",
    [
        (JUNIPER, "Jennifer, can you pass me the salt?", "Jennifer"),
        (JUNIPER, "Junie, are you coming?", "Junie"),
        (JUNIPER, "Did you finish the homework, Jenifer?", "Jennifer"),
        (TRIXIE, "Dixie, did you feed the cat?", "Dixie"),
        (TRIXIE, "Tracy, are you coming?", "Tracy"),
        (HOLLIS, "Holly, where did you put the keys?", "Holly"),
    ],
)
def test_members_with_similar_names_keep_their_name(bot, text, member):
    said = resolve_names(text, bot, ((7, member), (8, "Bob")))
    assert not said.bot and said.members == (7,), (text, said)


def test_a_bent_name_goes_to_whoever_it_sounds_most_like():
    # "Trexy" is Trixie by sound (0.96) more than Tracy by spelling (0.8)
    assert calls_bot("Tell us a story about a dragon, Trexy.", TRIXIE, ((7, "Tracy"),))
    assert calls_bot("Juniper, do you like salty snacks?", JUNIPER, ((7, "Jennifer"),))


@pytest.mark.parametrize(
    "text,members",
    [
        ("I told Juniper about the trip yesterday.", ()),
        ("Juniper's voice is really nice.", ()),
        ("I agree with Juniper on that one.", ()),
        ("Bob, did you hear what Juniper said?", ((5, "Bob"),)),
        ("Alice, ask Juniper about the picnic later.", ((6, "Alice"),)),
        ("Eve, Juniper told me a great joke.", ((7, "Eve"),)),
        ("We could ask Juniper later.", ()),
    ],
)
def test_the_name_said_about_the_bot_is_a_mention_not_a_call(text, members):
    said = resolve_names(text, JUNIPER, members)
    assert not said.bot and said.bot_mentioned, (text, said)


@pytest.mark.parametrize(
    "text",
    [
        "Juniper, what time is it?",
        "What do you think, Juniper?",
        "Bob, Juniper, what do you think?",
        "Juniper what time is it",
        "Hey Juniper did you see that",
        "So tell me, Juniper, what is your favourite season?",
        "Thank you Juniper",
    ],
)
def test_a_call_stays_a_call(text):
    assert resolve_names(text, JUNIPER, ((5, "Bob"),)).bot, text


@pytest.mark.parametrize(
    "text,called",
    [
        # Whisper puts an "'s" on a name it does not know; before a question or a request, or ending a question,
        # it owns nothing, and the name calls
        ("So tell me Captain Harley's what is your favourite season?", True),
        ("Captain Holly's tell us a story.", True),
        ("What do you think Captain Harley's?", True),
        # a real possessive stays a mention, also when what it owns is left out in a statement
        ("Captain Hollis's voice is really nice.", False),
        ("That one is Captain Hollis's.", False),
        ("Did you like Captain Hollis's story?", False),
    ],
)
def test_an_s_on_a_bent_name_before_a_question_is_no_possessive(text, called):
    said = resolve_names(text, HOLLIS, ((5, "Bob"),))
    assert said.bot is called and said.bot_mentioned is not called, (text, said)


def test_what_the_second_look_listens_for():
    members = ((5, "Bob"), (6, "Jennifer"))
    query = names_to_listen_for(
        "What did Alice want to cook?", HOLLIS, "Captain Hollis", ("Captain", "Hollis", "Cap"), members
    )
    assert query == NameQuery(("Captain Hollis", "Captain", "Hollis"), ("Bob", "Jennifer"), named=False, question=True)
    assert names_to_listen_for("Please.", JUNIPER, "Juniper", (), members).call_alone  # the name in place of it all
    assert not query.call_alone
    # a line that asks nothing: a member's name the look might hear would change nothing the rules decide
    assert not names_to_listen_for("I made pasta again.", JUNIPER, "Juniper", (), members).question
    # a word or two alone may be a call before a pause ("Please." for "Grace, <pause> did you…"): whose it is
    assert names_to_listen_for("Please.", JUNIPER, "Juniper", (), members).question
    assert not names_to_listen_for("Mm-hm.", JUNIPER, "Juniper", (), members).question  # a backchannel calls nobody
    assert not names_to_listen_for("Yeah.", JUNIPER, "Juniper", (), members).question
    assert names_to_listen_for("Juniper, hi", JUNIPER, "Juniper", ("June", "Junie"), members).named
    assert names_to_listen_for("Bob, hi", JUNIPER, "Juniper", ("June", "Junie"), members) is None
    assert names_to_listen_for("I told Juniper so", JUNIPER, "Juniper", (), members) is None
    # a member's name is not listened for as the bot's alias
    assert names_to_listen_for("Hi", JUNIPER, "Juniper", ("June", "Junie"), ((7, "Junie"),)).names == ("Juniper",)


@pytest.mark.parametrize(
    "text, open_",
    [
        ("What did Alice want to cook?", True),  # "Juniper, what did Alice…" with the call lost: it may be the bot's
        ("Did you see what Alice cooked?", True),
        ("I told Alice so.", True),
        ("What about Alice?", True),  # after a preposition: talked about
        ("Alice, what did you cook?", False),  # called: the line is hers
        ("Alice what did you cook?", False),  # called without the comma, before a question opener
        ("What do you think, Alice?", False),
        ("What do you think Alice?", False),  # ending the line, comma left out
        ("What do you think Mary Jane?", False),  # a name of two words
        ("Alice?", False),  # a call alone
    ],
)
def test_a_member_talked_about_leaves_the_line_to_the_look_a_member_called_does_not(text, open_):
    members = ((5, "Alice"), (6, "Bob"), (7, "Mary Jane"))
    query = names_to_listen_for(text, JUNIPER, "Juniper", ("Junie",), members)
    assert (query is not None) is open_, (text, query)


def test_phonemes_come_from_many_threads_while_piper_speaks():
    """espeak-ng is not thread-safe: name spotting and Piper's own phonemization share one lock."""
    from audio.tts_engines.piper import load_piper_voice

    voice = load_piper_voice()
    errors: list[BaseException] = []

    def speak() -> None:
        try:
            for _ in range(3):
                for _chunk in voice.synthesize("Juniper, what shall we cook tonight?"):
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=speak)
    thread.start()
    seen = {word_phonemes.__wrapped__(f"word{i}juniper") for i in range(200)}  # uncached calls
    thread.join()
    assert not errors and len(seen) > 1 and all(seen)


@pytest.mark.parametrize(
    "text,called",
    [
        ("I told Juniper, and then she laughed.", False),
        ("Hey Juniper, did you see that?", True),
        ("Okay so Juniper, what now?", True),
        ("We asked Juniper", False),
    ],
)
def test_only_a_name_set_off_by_itself_is_a_call_where_a_mention_could_be(text, called):
    assert resolve_names(text, JUNIPER, ()).bot is called, text


@pytest.mark.parametrize(
    "bot,text,called",
    [
        (HOLLIS, "Put the cap back on the bottle.", False),
        (HOLLIS, "The captain of the team was late.", False),
        (HOLLIS, "Okay Captain, what should we have for dinner?", True),
        (HOLLIS, "Hey Cap, tell us a joke", True),
        (JUNIPER, "In June we went camping.", False),
        (JUNIPER, "June, what do you think?", True),
        (HOLLIS, "Captain Holly's voice is really nice.", False),
        (HOLLIS, "We could ask Captain Hollis later.", False),
        (HOLLIS, "Captain Hollis, do you ever lose your keys?", True),
    ],
)
def test_short_aliases_and_titles_call_only_when_set_off(bot, text, called):
    assert resolve_names(text, bot, ()).bot is called, text


def test_a_title_opening_a_part_set_off_by_commas_calls():
    """tiny.en keeps "Captain" and bends "Hollis": "Captain Harley, what…" still calls Captain Hollis."""
    assert resolve_names("Okay, so Captain Harley, what would you cook?", HOLLIS, ()).bot
    assert resolve_names("Captain Howers, do you like salty snacks?", HOLLIS, ()).bot
    assert not resolve_names("Eve, Captain Hollis told me a great joke earlier.", HOLLIS, ((5, "Eve"),)).bot


@pytest.mark.parametrize(
    "bot,text,called",
    [
        # Whisper often drops the comma after a name that opens a question: the name still calls
        (HOLLIS, "Captain how do you tie a good knot?", True),
        (JUNIPER, "June can you help us decide?", True),
        (HOLLIS, "Okay so Cap what would you cook?", True),
        # …but a plain sentence that starts with the word is no call
        (JUNIPER, "June is my favourite month.", False),
        (JUNIPER, "I wonder what June will be like.", False),
        (HOLLIS, "The captain said what?", False),
    ],
)
def test_a_name_opening_a_question_without_its_comma_calls(bot, text, called):
    assert resolve_names(text, bot, ((5, "Bob"),)).bot is called, text


def test_the_title_and_a_bent_name_call_without_commas():
    """ "Captain" said exactly is half of "Captain Hollis": the rest may be bent as a call's name may be
    ("Captain Howies", "Captain Harley"); another name after the title is still someone else."""
    assert resolve_names("Captain Howies how do you tie a good knot on a boat?", HOLLIS, ()).bot
    assert resolve_names("How do you make pancakes Captain Harley?", HOLLIS, ()).bot
    assert not resolve_names("Did you see Captain America last night?", HOLLIS, ()).bot
    assert not resolve_names("Captain Morgan is my favourite rum.", HOLLIS, ()).bot


def test_the_bots_name_at_the_end_calls_no_member_with_a_name_like_it():
    """ "What do you think Juniper?" with Jennifer present calls the bot, not Jennifer (the bot's name wins a tie,
    as in `resolve_names`); "…Jennifer?" calls her."""
    from conversation.addressing import members_called

    members = ((5, "Jennifer"), (6, "Bob"))
    assert members_called("What do you think Juniper?", JUNIPER, members) == ()
    assert members_called("Juniper", JUNIPER, members) == ()
    assert members_called("What do you think Jennifer?", JUNIPER, members) == (5,)
    assert members_called("What do you think Bob", JUNIPER, members) == (6,)
