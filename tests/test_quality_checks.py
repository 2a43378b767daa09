"""The reply-quality checks themselves: each one fails on the reply it exists to catch, and passes a good one."""

from __future__ import annotations

import pytest

from benchmarks.quality_checks import CHECKS, ReplyContext, check_reply, rates
from benchmarks.quality_corpus import CATEGORIES, CorpusError, Rubric, load_corpus
from conversation.text_words import words
from simulator.term_match import term_in

KINDS = {"dish": ("rice", "egg", "omelet", "fried", "pasta"), "greeting": ("hi", "hello", "welcome")}
SYSTEM = (
    "You are Juniper, a friend who hangs out in this voice channel. Answer in plain, speech-friendly sentences: "
    "no lists, markdown, emoji, or stage directions."
)
SITUATION = "In the voice channel with you: Alice, Bob and Chen. Alice is talking to you; reply to Alice."


def context(**changes) -> ReplyContext:
    base = dict(
        persona_name="Juniper",
        persona_aliases=("June",),
        speaker="Alice",
        members=("Alice", "Bob", "Chen"),
        known_names=("Alice", "Bob", "Chen", "Priya"),
        prompt_text="Juniper, what should I cook tonight with eggs and rice?",
        instructions=(SYSTEM, SITUATION),
        max_words=35,
        max_sentences=2,
        rubric=Rubric(any=("stir fry",), kinds=("dish",)),
        kinds=KINDS,
    )
    base.update(changes)
    return ReplyContext(**base)


def failed(reply: str, *, raw: str = "", **changes) -> set[str]:
    result = check_reply(reply, context(**changes), raw=raw or reply)
    return {c for c in CHECKS if not result.passed[c]}


def test_a_good_answer_passes_every_check() -> None:
    assert failed("Fried rice! Crack an egg on top and you're done, Alice.") == set()


@pytest.mark.parametrize(
    "reply",
    [
        "I'm sorry, I'm not here. I'm the other one.",  # the confident non-answer of issue 12
        "You can take an egg.",  # only the prompt's own word: no answer
        "What should I cook tonight with eggs and rice?",  # says the prompt back
        "That sounds lovely!",
    ],
)
def test_a_non_answer_fails_on_topic(reply: str) -> None:
    assert "on_topic" in failed(reply)


def test_prompt_words_count_only_together_and_phrases_match_words_in_a_row() -> None:
    assert "on_topic" not in failed("Rice and eggs, the classic pair.")  # two rubric words, both from the prompt
    assert "on_topic" not in failed("How about a stir fry?")
    assert "on_topic" in failed("Stir it and fry it.")  # not "stir fry"
    assert term_in("cook", words("I love cooking")) and not term_in("egg", words("eggplant"))
    # where the prompt's words are the answer: a choice, a greeting
    assert "on_topic" not in failed("Rice, always.", prompt_text="Juniper, rice or pasta?")
    assert "on_topic" not in failed(
        "Hi! Good to see you.", prompt_text="Hi Juniper!", rubric=Rubric(kinds=("greeting",))
    )


def test_a_question_kind_wants_a_question() -> None:
    rubric = Rubric(kinds=("question",))
    assert "on_topic" in failed("The room is quiet.", rubric=rubric, prompt_text="")
    assert "on_topic" not in failed("What's everyone reading?", rubric=rubric, prompt_text="")


@pytest.mark.parametrize(
    "reply",
    [
        "I'm so glad you're interested, Bob.",  # the wrong member named (issue 12)
        "Bob, fried rice is the answer.",
        "Hi Chen! Fried rice.",
        "Fried rice, Priya!",  # a name from another room
        "Listener, fried rice.",  # the example dialogue's speaker
    ],
)
def test_a_wrong_name_fails_right_addressee(reply: str) -> None:
    assert "right_addressee" in failed(reply)


def test_the_speaker_and_names_that_are_not_addressed_pass_right_addressee() -> None:
    assert "right_addressee" not in failed("Alice, try fried rice.")
    assert "right_addressee" not in failed("Fried rice, like Bob made last week.")  # Bob mentioned, not addressed
    assert "right_addressee" not in failed("Bobby's fried rice is the best.")
    # A topic start is for the whole room: anyone present may be addressed, a stranger may not.
    assert "right_addressee" not in failed("Bob, what are you reading?", speaker=None)
    assert "right_addressee" in failed("Priya, what are you reading?", speaker=None)


@pytest.mark.parametrize(
    ("reply", "raw"),
    [
        ("I'm Alice, and I'd make fried rice.", ""),
        ("My name is Bob, and fried rice.", ""),
        ("Fried rice sounds great to me.", "Alice: Fried rice sounds great to me."),  # the model wrote Alice's line
    ],
)
def test_claiming_to_be_someone_else_fails_identity(reply: str, raw: str) -> None:
    assert "identity" in failed(reply, raw=raw)


def test_its_own_name_and_being_a_bot_pass_identity() -> None:
    assert "identity" not in failed("I'm Juniper, and I say fried rice.")
    assert "identity" not in failed("I'm a bot, but I'd still say fried rice.")  # honest, not someone else
    assert "identity" not in failed("Call me June. Fried rice!")


def test_repeating_an_earlier_line_fails_no_repeat() -> None:
    earlier = ("I'm sorry, I'm not sure about that one.", "Fried rice with an egg on top!")
    assert "no_repeat" in failed("I'm sorry, I'm not sure about that one.", earlier_replies=earlier)
    assert "no_repeat" in failed("Oh, I'm sorry, I'm not sure about that one at all.", earlier_replies=earlier)
    assert "no_repeat" not in failed("Fried rice again, or pasta?", earlier_replies=earlier)


def test_reading_the_instructions_aloud_fails_no_instructions() -> None:
    assert "no_instructions" in failed("Answer in plain, speech-friendly sentences: no lists, markdown, emoji.")
    assert "no_instructions" in failed("Alice is talking to you; reply to Alice with fried rice.")
    assert "no_instructions" not in failed("Fried rice, and no lists needed.")


def test_too_long_fails_length() -> None:
    assert "length" in failed("Fried rice. Or pasta. Or an omelet.")  # three sentences, the persona allows two
    assert "length" in failed("Fried rice " + "and more rice " * 12 + ".")
    assert "length" not in failed("Fried rice... or pasta? Both work.")  # an ellipsis ends no sentence
    assert "length" not in failed("Read anything by A.J. Finn. Or Dr. Seuss!")  # nor do initials and titles


def test_nothing_spoken_fails_spoken_and_on_topic() -> None:
    assert {"spoken", "on_topic"} <= failed("")


def test_rates_are_shares_of_replies() -> None:
    good = check_reply("Fried rice!", context())
    bad = check_reply("Bob, hello.", context())
    assert rates([good, bad])["on_topic_rate"] == 0.5 and rates([good, bad])["right_addressee_rate"] == 0.5
    assert rates([])["spoken_rate"] is None


def test_the_corpus_loads_with_every_category_and_enough_prompts() -> None:
    tuning, heldout = load_corpus("tuning"), load_corpus("heldout")
    assert len(tuning.prompts) + len(heldout.prompts) >= 60
    assert {p.category for p in tuning.prompts} == set(CATEGORIES)
    for corpus in (tuning, heldout):
        for convo in corpus.conversations:
            assert len(convo.turns) >= 24 and len(set(t.speaker for t in convo.turns)) == 3
    # The held-out part is another room: no member name in common with the tuning part.
    assert not (set(tuning.names) & set(heldout.names))


def test_a_broken_corpus_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "quality_x.toml"
    path.write_text(
        'members = ["A"]\n[kinds]\n[[prompt]]\nid = "x"\ncategory = "alone"\nspeaker = "A"\n'
        'text = "hi"\nkinds = ["nope"]\n',
        encoding="utf-8",
    )
    with pytest.raises(CorpusError, match="prompt 'x': unknown kind"):
        load_corpus("x", path)
