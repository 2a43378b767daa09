"""Cleaning model text for speech: names, markdown, emoji, stage directions, URLs, other speakers, limits."""

from __future__ import annotations

import pytest

from brain.chunker import Fragment
from brain.budget import ReplyBudget
from brain.clean import SpeechCleaner, clean_reply

MEMBERS = ["Alice", "Bob Smith"]


def stream_clean(text: str, step: int) -> tuple[str, str | None]:
    cleaner = SpeechCleaner(persona_name="Juniper", other_names=MEMBERS)
    out = [cleaner.feed(text[i : i + step]) for i in range(0, len(text), step)]
    out.append(cleaner.finish())
    return "".join(out).strip(), cleaner.stop_reason


def cleaned(text: str) -> str:
    """Streaming in any split must give what cleaning the whole text gives."""
    whole = clean_reply(text, persona_name="Juniper", other_names=MEMBERS)
    for step in (1, 2, 3, 7, 1000):
        assert stream_clean(text, step)[0] == whole, step
    return whole


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Juniper: Hello there!", "Hello there!"),
        ("**Juniper:** Hello there!", "Hello there!"),
        ("Alice: sure, I can help.", ""),  # the model writing Alice's line: nothing of it is the bot's
        ("Note: sure, I can help.", "sure, I can help."),  # another label opening the reply is dropped
        ("I love **pizza** and _pasta_ and `code`.", "I love pizza and pasta and code."),
        ("*laughs* That is so true. *grins widely*", "That is so true."),
        ("Oh (smiles) that's nice [sighs] really.", "Oh that's nice really."),
        ("It is far (about 3 km from here) away.", "It is far, about 3 km from here, away."),
        ("Great idea 😀🎉 let's go 👍🏽!", "Great idea let's go!"),
        ("Sure :) see you ;-) soon <3", "Sure see you soon"),
        ("Check https://www.example.com/a/b?c=1 for that.", "Check example.com for that."),
        ("Read [the docs](https://docs.python.org/3/) first.", "Read the docs first."),
        ("# Plan\n- eggs\n- rice\n1. cook\n2. eat", "Plan. eggs. rice. cook. eat"),
        ("<think>they want food</think>Fried rice!", "Fried rice!"),
        ("Meet at 10:30, okay?", "Meet at 10:30, okay?"),
    ],
)
def test_cleaning_cases(raw: str, expected: str) -> None:
    assert cleaned(raw) == expected


@pytest.mark.parametrize(
    "raw, kept",
    [
        ("Hi Alice, how are you?\nAlice: I'm fine thanks.\nJuniper: great", "Hi Alice, how are you?"),
        ("Sure thing. Bob Smith: what about me?", "Sure thing."),
        ("I think so\nMaybe not\nUser: hi", "I think so. Maybe not"),
        ("Good point.\nCharlie: I disagree!", "Good point."),  # any "Name:" starting a later line
    ],
)
def test_stops_at_another_speakers_line(raw: str, kept: str) -> None:
    for step in (1, 3, 1000):
        text, reason = stream_clean(raw, step)
        assert text.rstrip(".") == kept.rstrip("."), step
        assert reason is not None and "began a line" in reason


def test_own_name_on_a_later_line_is_not_a_stop() -> None:
    text, reason = stream_clean("Hello!\nJuniper: and another thing.", 2)
    assert text == "Hello! and another thing."
    assert reason is None


def test_text_is_released_early_but_held_while_it_may_change() -> None:
    cleaner = SpeechCleaner(persona_name="Juniper", other_names=MEMBERS)
    assert cleaner.feed("Jun") == ""  # may be the start of "Juniper:"
    assert cleaner.feed("iper: Hi there, ") == "Hi there, "  # the space lets the chunker cut at once
    assert cleaner.feed("*laughs") == ""  # an open stage direction waits for its end
    assert cleaner.feed(" softly* you know") == "you"  # "know" may still grow
    assert cleaner.feed(" what") == " know"
    assert cleaner.feed(" I mean.") + cleaner.finish() == " what I mean."
    assert cleaner.text == "Hi there, you know what I mean."


def test_unclosed_markup_is_released_after_a_while_and_at_the_end() -> None:
    cleaner = SpeechCleaner(persona_name="Juniper")
    out = cleaner.feed("Well (this never closes " + "and goes on " * 40)
    assert "goes on" in out  # not held forever
    cleaner2 = SpeechCleaner(persona_name="Juniper")
    assert cleaner2.feed("Fine *smiles ") == "Fine"
    assert cleaner2.finish() == " smiles"  # the reply ended: a dangling marker is just dropped


def test_reply_budget_caps_sentences() -> None:
    budget = ReplyBudget(max_words=100, max_sentences=2)
    assert budget.take(Fragment("Oh wow,", False)) == Fragment("Oh wow,", False)
    assert budget.take(Fragment("that is great.", True)) == Fragment("that is great.", True)
    assert not budget.exhausted
    assert budget.take(Fragment("Tell me more.", True)) == Fragment("Tell me more.", True)
    assert budget.exhausted
    assert budget.take(Fragment("Extra.", True)) is None


def test_reply_budget_caps_words_mid_sentence() -> None:
    budget = ReplyBudget(max_words=6, max_sentences=5)
    assert budget.take(Fragment("One two three,", False)) is not None
    cut = budget.take(Fragment("four five six seven eight.", True))
    assert cut == Fragment("four five six.", True)
    assert budget.exhausted and budget.words == 6


# --- the model reading its instructions aloud ---------------------------------------------------

SYSTEM = "You are Juniper, a cheerful gardener who loves rainy days and tea. Keep replies short and warm."
SITUATION = (
    "In the voice channel with you: Alice and Bob. Alice is talking to you; reply to Alice. "
    "This is a live voice chat: answer in one or two short spoken sentences, no lists, no emoji."
)


def screened(text: str) -> tuple[str, list[str]]:
    """Streaming in any split gives the same spoken text; returns it and what was dropped."""
    results = []
    for step in (1, 2, 5, 1000):
        cleaner = SpeechCleaner(persona_name="Juniper", other_names=MEMBERS, instructions=[SYSTEM, SITUATION])
        out = [cleaner.feed(text[i : i + step]) for i in range(0, len(text), step)]
        out.append(cleaner.finish())
        results.append(("".join(out).strip(), cleaner.dropped))
    assert all(r == results[0] for r in results), results
    return results[0]


def test_a_copied_instruction_sentence_is_not_spoken() -> None:
    text, dropped = screened(
        "Sure thing, Alice! Answer in one or two short spoken sentences, no lists, no emoji. I love rainy days."
    )
    assert text == "Sure thing, Alice! I love rainy days."
    assert dropped == ["Answer in one or two short spoken sentences,", "no lists, no emoji."]


def test_an_instruction_copied_after_a_reply_clause_is_dropped_and_the_clause_kept() -> None:
    text, _ = screened(
        "Oh I really love a good cup of tea, this is a live voice chat: answer in one or two short "
        "spoken sentences. Keep replies short and warm."
    )
    assert text == "Oh I really love a good cup of tea,"
    assert clean_reply("Keep replies short and warm.", persona_name="Juniper", instructions=[SYSTEM]) == ""


@pytest.mark.parametrize(
    "reply",
    [
        "Two short sentences are plenty for me, and I never use lists anyway.",
        "Hi Alice! I'm a gardener, and rainy days with a cup of tea are my favourite.",
        "You are right, Alice, one or two of them is enough.",
        "No.",
    ],
)
def test_a_reply_that_shares_a_few_words_with_the_instructions_is_kept(reply: str) -> None:
    text, dropped = screened(reply)
    assert text == reply and not dropped


def test_screening_holds_text_only_until_a_clause_can_be_judged() -> None:
    cleaner = SpeechCleaner(persona_name="Juniper", instructions=[SITUATION])
    assert cleaner.feed("Oh, ") == "Oh, "  # a short clause that is not in the instructions: spoken at once
    assert cleaner.feed("I would love to, ") == "I would love to, "
    assert cleaner.feed("honestly ") == ""  # no clause break yet
    assert cleaner.feed("it") + cleaner.finish() == "honestly it"


def test_a_short_clause_that_may_start_a_copy_waits_to_be_judged() -> None:
    cleaner = SpeechCleaner(persona_name="Juniper", instructions=["Alice is talking to you; reply to Alice."])
    assert cleaner.feed("Reply to Alice, ") == ""  # these words occur in a row in the instructions
    assert cleaner.feed("in one short sentence. ") == "Reply to Alice, in one short sentence. "  # judged: kept
    leaky = SpeechCleaner(persona_name="Juniper", instructions=["Alice is talking to you; reply to Alice."])
    assert leaky.feed("Alice is talking, ") == ""
    assert leaky.feed("to you; reply to Alice. ") == ""  # the whole copy is dropped, its start included
    assert leaky.feed("Sure thing! ") == "Sure thing! "


# --- the model repeating its own earlier lines ----------------------------------------------------

EARLIER = ["No, no, you're not going to eat it. You're going to eat the cheese.", "Fried rice with a fried egg on top!"]


@pytest.mark.parametrize(
    ("reply", "spoken"),
    [
        (
            "Rain? You're not going to eat it, you're going to eat the cheese. Bring an umbrella!",
            "Rain? Bring an umbrella!",
        ),
        # the new words stay, and open the sentence now: no "so" linking them to nothing
        ("You're going to eat the cheese, so bring crackers.", "Bring crackers."),
        ("Fried rice with a fried egg on top, but I've been reading a lot lately.", "I've been reading a lot lately."),
        ("Rain? You're going to eat the cheese, and it tastes great.", "Rain? It tastes great."),
        ("You're going to eat the cheese, you're going to eat the cheese.", ""),
        ("Fried rice again? I would go for noodles tonight.", "Fried rice again? I would go for noodles tonight."),
    ],
)
def test_a_sentence_repeating_an_earlier_line_of_the_bot_is_not_spoken(reply: str, spoken: str) -> None:
    for step in (1, 3, 1000):
        cleaner = SpeechCleaner(persona_name="Juniper", other_names=MEMBERS, said_before=EARLIER)
        out = "".join(cleaner.feed(reply[i : i + step]) for i in range(0, len(reply), step)) + cleaner.finish()
        assert out.strip() == spoken
    assert clean_reply(reply, persona_name="Juniper", said_before=EARLIER) == spoken
    assert clean_reply(reply, persona_name="Juniper") == reply  # without earlier lines nothing is dropped


def test_an_opening_clause_from_an_earlier_line_waits_for_its_sentence() -> None:
    earlier = ["Bob, I'm sorry, I'm not sure."]
    cleaner = SpeechCleaner(
        persona_name="Juniper",
        other_names=MEMBERS,
        said_before=earlier,
        instructions=["Bob is talking to you; reply to Bob."],
    )
    assert cleaner.feed("Bob, ") == ""  # in the instructions
    assert cleaner.feed("I'm sorry, ") == ""  # these words opened an earlier line: held
    assert cleaner.feed("I'm not sure. ") == ""  # the whole sentence repeats it: dropped
    assert cleaner.feed("Oh, ") == "Oh, "  # one word is no copy: spoken at once
    assert cleaner.feed("I'm sorry, ") == ""
    assert cleaner.feed("that sounds rough. ") == "I'm sorry, that sounds rough. "  # judged new: kept


def test_a_short_sentence_repeating_an_earlier_line_is_dropped_but_two_words_are_kept() -> None:
    earlier = ["The thing about movies. You're the best!", "I'm sorry."]
    said = clean_reply(
        "The thing about reading. You're the best! I'm sorry. Tell me more.",
        persona_name="Juniper",
        said_before=earlier,
    )
    assert said == "I'm sorry. Tell me more."


HEARD = [
    "Bob, are you still coming to the game on Saturday?",
    "Juniper, what should I cook tonight? I have eggs, rice and some spinach.",
]


@pytest.mark.parametrize(
    ("reply", "spoken"),
    [
        # a member's line said back (SmolLM2 in a README demo run, answering Bob's next question)
        ("Bob, are you still coming to the game on Saturday?", ""),
        ("Are you still coming to the game on Saturday? Bring chips!", "Bring chips!"),
        # their words taken up, as people do, stay
        ("Eggs and rice? Make fried rice with the spinach.", "Eggs and rice? Make fried rice with the spinach."),
        (
            "With eggs, rice and some spinach you can make a frittata.",
            "With eggs, rice and some spinach you can make a frittata.",
        ),
        ("The game on Saturday? I'll be cheering!", "The game on Saturday? I'll be cheering!"),
    ],
)
def test_a_sentence_saying_a_members_line_back_is_not_spoken(reply: str, spoken: str) -> None:
    for step in (1, 3, 1000):
        cleaner = SpeechCleaner(persona_name="Juniper", other_names=MEMBERS, heard_before=HEARD)
        out = "".join(cleaner.feed(reply[i : i + step]) for i in range(0, len(reply), step)) + cleaner.finish()
        assert out.strip() == spoken, step
    assert clean_reply(reply, persona_name="Juniper") == reply  # without the members' lines nothing is dropped


def test_a_bare_name_waits_for_what_follows_and_alone_is_not_spoken() -> None:
    cleaner = SpeechCleaner(persona_name="Juniper", other_names=MEMBERS, instructions=[SITUATION])
    assert cleaner.feed("Bob. ") == ""
    assert cleaner.feed("Did you bring snacks? ") == "Bob. Did you bring snacks? "
    alone = SpeechCleaner(persona_name="Juniper", other_names=MEMBERS, instructions=[SITUATION])
    assert alone.feed("Alice, Bob. ") + alone.finish() == "" and alone.dropped == ["Alice, Bob."]
