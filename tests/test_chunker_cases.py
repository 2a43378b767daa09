"""Sentence/clause chunking of streamed reply text (pure Python, no NLTK)."""

from __future__ import annotations

import pytest

from brain.chunker import Fragment, SpeechChunker


def chunk(text: str, step: int | None = None, **kwargs) -> list[tuple[str, bool]]:
    """Feed `text` in pieces of `step` characters (None: word-like tokens) and flush."""
    chunker = SpeechChunker(**kwargs)
    out: list[Fragment] = []
    if step is None:
        pieces = []
        word = ""
        for ch in text:
            if ch == " " and word:
                pieces.append(word)
                word = ""
            word += ch
        pieces.append(word)
    else:
        pieces = [text[i : i + step] for i in range(0, len(text), step)]
    for piece in pieces:
        out += chunker.feed(piece)
    out += chunker.flush()
    return [(f.text, f.sentence_end) for f in out]


def all_splits(text: str, **kwargs) -> list[tuple[str, bool]]:
    """The result must not depend on how the stream is split into tokens."""
    results = {tuple(chunk(text, step, **kwargs)) for step in (None, 1, 2, 3, 5, 8, 1000)}
    assert len(results) == 1, results
    return list(results.pop())


def test_first_fragment_at_a_clause_once_long_enough_then_sentences() -> None:
    text = (
        "Oh wow, that sounds like a lovely plan, honestly. I would bring snacks, drinks, and a blanket. Then we talk."
    )
    assert all_splits(text) == [
        ("Oh wow,", False),  # two words and a comma: the voice starts while the LLM goes on
        ("that sounds like a lovely plan, honestly.", True),  # later fragments: whole sentences
        ("I would bring snacks, drinks, and a blanket.", True),
        ("Then we talk.", True),
    ]
    assert all_splits(text, first_clause_words=4)[:2] == [
        ("Oh wow, that sounds like a lovely plan,", False),  # "Oh wow," is too short to go alone
        ("honestly.", True),
    ]
    assert all_splits("Oh, hi there.")[0] == ("Oh, hi there.", True)  # one word is never a fragment of its own


def test_short_sentence_goes_out_at_once() -> None:
    assert all_splits("Hi! How are you doing today?") == [("Hi!", True), ("How are you doing today?", True)]


def test_a_boundary_waits_for_the_next_character() -> None:
    chunker = SpeechChunker()
    assert chunker.feed("It costs 3.") == []  # could become 3.14
    assert chunker.feed("14 dollars. ") == [Fragment("It costs 3.14 dollars.", True)]
    assert chunker.feed("Great") == []
    assert chunker.flush() == [Fragment("Great", True)]


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Dr. Smith met Mrs. Jones at 5 p.m. yesterday. It went well.",
            ["Dr. Smith met Mrs. Jones at 5 p.m. yesterday.", "It went well."],
        ),
        (
            "We flew to the U.S. and e.g. Canada last year. Fun.",
            ["We flew to the U.S. and e.g. Canada last year.", "Fun."],
        ),
        ("Pi is 3.14159 and e is 2.718 roughly. Neat.", ["Pi is 3.14159 and e is 2.718 roughly.", "Neat."]),
        ("No, no. It is No. 5 on the list.", ["No, no.", "It is No. 5 on the list."]),  # "no." ends a sentence
        (
            "That was 1,000 people, maybe 1,200 in total. Wow.",
            ["That was 1,000 people,", "maybe 1,200 in total.", "Wow."],
        ),
        ("I read J. R. R. Tolkien as a kid. Loved it.", ["I read J. R. R. Tolkien as a kid.", "Loved it."]),
        ("Visit example.com/docs for more. Or not.", ["Visit example.com/docs for more.", "Or not."]),
        ("Meet me at 10:30 near the lake. Okay?", ["Meet me at 10:30 near the lake.", "Okay?"]),
        ('Really?! No way. "Yes." Fine', ["Really?!", "No way.", '"Yes."', "Fine"]),
    ],
)
def test_abbreviations_numbers_and_quotes(text: str, expected: list[str]) -> None:
    assert [t for t, _ in all_splits(text)] == expected


def test_ellipsis_is_a_pause_not_a_sentence_end() -> None:
    frags = all_splits("Well... I guess that could work… maybe. Sure.")
    assert [t for t, _ in frags] == ["Well... I guess that could work…", "maybe.", "Sure."]
    assert frags[0][1] is False  # ended at a pause


def test_no_punctuation_at_all_flushes_at_word_limits_and_at_the_end() -> None:
    words = [f"word{i}" for i in range(50)]
    frags = all_splits(" ".join(words), first_max_words=12, max_words=20)
    assert [len(t.split()) for t, _ in frags] == [12, 20, 18]
    assert " ".join(t for t, _ in frags) == " ".join(words)
    assert [end for _, end in frags] == [False, False, True]


def test_long_sentence_is_cut_at_its_last_clause_break() -> None:
    text = (
        "one two three four five six seven eight nine ten eleven twelve thirteen fourteen, "
        "fifteen sixteen seventeen eighteen nineteen twenty twentyone twentytwo twentythree."
    )
    frags = all_splits("Sure. " + text, max_words=20, clause_words_later=30)
    assert frags[0] == ("Sure.", True)
    assert frags[1][0].endswith("fourteen,") and frags[1][1] is False
    assert frags[2][0].startswith("fifteen") and frags[2][1] is True


def test_dashes_break_clauses_and_read_as_a_pause() -> None:
    frags = all_splits("I think - and I mean it - that cats rule. Wait—what?")
    assert frags[0] == ("I think,", False)
    assert [t for t, _ in frags[1:]] == ["and I mean it - that cats rule.", "Wait—what?"]
    assert all_splits("I think - and I mean it - that cats rule.", first_clause_words=4)[0] == (
        "I think - and I mean it,",
        False,
    )


def test_empty_and_punctuation_only_input_yields_nothing() -> None:
    assert all_splits("") == []
    assert all_splits(" ... !!! ") == []


def test_text_is_never_lost_or_reordered() -> None:
    text = "Okay, so, first: we go. Then, later, we eat 2.5 pizzas... with Dr. Who! Right? Yes"
    frags = all_splits(text)
    assert " ".join(t for t, _ in frags).split() == text.split()


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        SpeechChunker(first_clause_words=10, first_max_words=5)
