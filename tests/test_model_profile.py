"""Model profiles: the prompt layout for small and large models, sampling per family, the situation's short form,
and the reply screen's addressee rule (no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.settings import load_settings
from brain.clean import clean_reply
from brain.profile import FAMILY_SAMPLING, PromptLayout, family_of, is_small, profile_for
from brain.prompt import HistoryLine, build_messages, short_system_prompt
from conversation.decision import Action, Decision
from conversation.persona_library import load_persona
from conversation.room import Room
from conversation.situation import Situation, situation_for

PERSONAS = Path(__file__).resolve().parent.parent / "personas"
SMALL = PromptLayout(system="short", examples=True, history_lines=3, own_lines="heard", speaker_once=True)


@pytest.fixture(scope="module")
def persona():
    return load_persona(PERSONAS / "juniper.toml")


def history() -> list[HistoryLine]:
    return [
        HistoryLine("Bob", "I went hiking today.", 1.0, False),
        HistoryLine("Juniper", "Oh fun, where did you go", 2.0, True, cut=True),  # cut by a barge-in
        HistoryLine("Chen", "I stayed in and read.", 3.0, False),
        HistoryLine("Juniper", "Reading days are the best days!", 4.0, True),
        HistoryLine("Bob", "Chen, which book?", 5.0, False),
        HistoryLine("Alice", "Juniper, what should I cook tonight?", 6.0, False),
    ]


def test_an_addressed_line_in_the_small_layout_is_the_speakers_words_named_once(persona) -> None:
    situation = Situation("Alice is talking to you; reply to Alice.", short="", addressee="Alice")
    labelled = build_messages(persona, history(), situation=situation, budget_tokens=1500, layout=SMALL)
    assert labelled[1] == {"role": "user", "content": persona.examples[0].user}  # no "Listener:" label
    assert labelled[-1]["content"] == "Bob: Chen, which book?\nAlice: Juniper, what should I cook tonight?"
    bare = PromptLayout(system="short", history_lines=3, own_lines="heard", speaker_once=True, newest_label=False)
    messages = build_messages(persona, history(), situation=situation, budget_tokens=1500, layout=bare)
    assert messages[-1]["content"] == "Bob: Chen, which book?\nJuniper, what should I cook tonight?"


def test_the_small_layout_is_short_windowed_and_names_the_speaker_once(persona) -> None:
    situation = Situation(
        "In the voice channel with you: Alice, Bob and Chen. Alice is talking to you; reply to Alice.",
        short="Alice is talking to you.",
        addressee="Alice",
    )
    messages = build_messages(persona, history(), situation=situation, budget_tokens=1500, layout=SMALL)
    system = messages[0]["content"]
    assert system == short_system_prompt(persona) and len(system) < len(persona.render_system_prompt()) / 2
    assert "Juniper" in system and "35 words" in system
    # examples as real turns, then the last 3 lines (the cut line left out before windowing)
    assert [m["role"] for m in messages[1:9]] == ["user", "assistant"] * 4
    assert messages[1]["content"] == persona.examples[0].user
    rest = messages[9:]
    assert rest[0] == {"role": "assistant", "content": "Reading days are the best days!"}
    assert (
        rest[1]["content"] == "Bob: Chen, which book?\n(Alice is talking to you.)\nJuniper, what should I cook tonight?"
    )
    assert "In the voice channel" not in "".join(m["content"] for m in messages)


def test_the_large_layout_keeps_the_full_persona_and_every_line_but_cut_ones(persona) -> None:
    situation = Situation("Alice is talking to you; reply to Alice.", short="Alice asks.", addressee="Alice")
    layout = PromptLayout(system="full", own_lines="heard")
    messages = build_messages(persona, history(), situation=situation, budget_tokens=1500, layout=layout)
    text = "\n".join(m["content"] for m in messages)
    assert messages[0]["content"] == persona.render_system_prompt()
    assert "where did you go" not in text and "Bob: I went hiking today." in text
    assert messages[-1]["content"] == (
        "(Alice is talking to you; reply to Alice.)\nBob: Chen, which book?\n"
        "Alice: Juniper, what should I cook tonight?"
    )


def test_the_history_window_moves_in_steps_so_consecutive_prompts_share_their_start() -> None:
    from brain.prompt import window_start

    starts = [window_start(n, 6) for n in range(1, 40)]
    assert all(0 <= n + 1 - start - 6 < 3 or start == 0 for n, start in enumerate(starts))  # 6 to 8 lines kept
    moves = sum(1 for a, b in zip(starts, starts[1:]) if a != b)
    assert moves <= len(starts) // 3 + 1  # the start stays put for two lines out of three


def test_own_lines_policies_and_a_flawed_line(persona) -> None:
    def bot_lines(layout, skip=None):
        messages = build_messages(persona, history(), situation="Go.", budget_tokens=1500, layout=layout, skip_own=skip)
        return [m["content"] for m in messages[9:] if m["role"] == "assistant"]

    assert bot_lines(PromptLayout(examples=True, own_lines="all")) == [
        "Oh fun, where did you go",
        "Reading days are the best days!",
    ]
    assert bot_lines(PromptLayout(own_lines="heard")) == ["Reading days are the best days!"]
    assert bot_lines(PromptLayout(own_lines="heard"), skip=lambda line: "Reading" in line.text) == []
    assert bot_lines(PromptLayout(own_lines="none")) == []


def test_a_room_line_cut_by_a_barge_in_is_marked_cut() -> None:
    from brain.prompt import as_history_line
    from conversation.room_lines import RoomLine

    line = RoomLine(3, None, "Juniper", "Oh fun, where…", 1.0, 2.0, True, interrupted=True)
    assert as_history_line(line).cut and as_history_line(line).is_bot


def test_the_situation_has_a_short_form_and_an_addressee(persona) -> None:
    room = Room(bot_name="Juniper")
    for uid, name in ((1, "Alice"), (2, "Bob")):
        room.member_joined(uid, name, 0.0, initial=True)
    from audio.types import Utterance

    line = room.on_utterance(Utterance(1, "Alice", "Juniper, hi!", 1.0, 2.0, True, 0.9))
    addressed = situation_for(
        Decision(Action.RESPOND_NOW, "t", member_id=1, reply_to_seq=line.seq, addressed=True), room, persona, 3.0
    )
    assert isinstance(addressed, str) and "reply to Alice" in addressed
    assert addressed.short == "" and addressed.addressee == "Alice"  # the line names the bot: nothing to add
    topic = situation_for(Decision(Action.START_TOPIC, "t"), room, persona, 90.0)
    assert topic.addressee is None and topic.short.endswith("?") is False and "question" in topic.short
    room.member_left(2, 4.0)
    bye = situation_for(Decision(Action.FAREWELL, "t", member_id=2), room, persona, 5.0)
    assert bye.addressee == "Bob" and "Bob" in bye.short


@pytest.mark.parametrize(
    ("raw", "spoken"),
    [
        ("Sofia, I'm glad you came. ", "I'm glad you came."),
        ("Hi Sofia! Welcome aboard. ", "Hi! Welcome aboard."),
        ("That's a lovely idea, Marcus. ", "That's a lovely idea,"),
        ("Priya, that's a lovely idea. ", "Priya, that's a lovely idea."),  # the member answered
        ("Sofia said it first. ", "Sofia said it first."),  # a name that is no address stays
    ],
)
def test_names_addressing_anyone_but_the_member_answered_are_dropped(raw: str, spoken: str) -> None:
    assert (
        clean_reply(raw, persona_name="Captain Hollis", other_names=["Priya", "Marcus", "Sofia"], addressee="Priya")
        == spoken
    )


def test_the_bot_never_claims_a_members_name() -> None:
    said = clean_reply("Oh, sorry about that. I'm Bob. What's up?", persona_name="Juniper", other_names=["Bob"])
    assert said == "Oh, sorry about that. What's up?"
    assert (
        clean_reply("I'm Juniper, nice to meet you.", persona_name="Juniper", other_names=["Bob"])
        == "I'm Juniper, nice to meet you."
    )


def test_the_bot_never_speaks_of_itself_in_the_third_person() -> None:
    members = ["Bob", "Alice", "Chen"]
    said = "That's a great idea, Bob. Juniper has some amazing books that you'll love reading."
    assert clean_reply(said, persona_name="Juniper", other_names=members) == "That's a great idea, Bob."
    assert clean_reply("I'm so excited, Chen! Juniper loves the weather.", persona_name="Juniper") == (
        "I'm so excited, Chen!"
    )
    storm = "Hollis has seen worse storms. Aye, a bit of weather."
    assert clean_reply(storm, persona_name="Captain Hollis", other_names=members) == "Aye, a bit of weather."
    # its name said otherwise stays: introducing itself, the plant, a greeting naming it
    for kept in (
        "I'm Juniper, nice to meet you.",
        "Juniper berries are what gives gin its taste.",
        "Oh hey, Alice! It's Juniper. Did I miss anything good?",
    ):
        assert clean_reply(kept, persona_name="Juniper", other_names=members) == kept
    # a name too short to tell from a word screens nothing ("Al is" would be every " is")
    assert clean_reply("That is a fine idea.", persona_name="Al", other_names=members) == "That is a fine idea."


def test_a_reply_that_opens_with_a_members_label_is_not_the_bots() -> None:
    assert clean_reply("Priya: I'll bring the snacks.", persona_name="Juniper", other_names=["Priya"]) == ""
    assert (
        clean_reply("Juniper: I'll bring the snacks.", persona_name="Juniper", other_names=["Priya"])
        == "I'll bring the snacks."
    )


def test_small_model_repairs_are_a_setting_of_the_profile() -> None:
    instructions = ["Answer in one or two short spoken sentences, no lists, no emoji."]
    leak = "Sure! Answer in one or two short spoken sentences, no lists, no emoji."
    assert clean_reply(leak, persona_name="Juniper", instructions=instructions) == "Sure!"
    assert clean_reply(leak, persona_name="Juniper", instructions=instructions, small_model_repairs=False) == leak


def test_profiles_by_size_family_and_settings() -> None:
    assert family_of("Smollm2 135M smollm2 llama SmolLM2-135M-Instruct.Q4_1.gguf") == "smollm"
    assert family_of("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf") == "llama"
    assert family_of("qwen2.5-7b-instruct") == "qwen"
    assert is_small("anything", 135_000_000) and not is_small("anything", 8_000_000_000)
    assert is_small("smollm2-360m", None) and not is_small("llama-3.1-8b", None)
    settings = load_settings(env={}, env_file=None)
    small = profile_for(settings, "SmolLM2-135M", 135_000_000)
    assert small.layout.system == "short" and small.small_model_repairs and small.sampling == FAMILY_SAMPLING["smollm"]
    large = profile_for(settings, "Meta-Llama-3.1-8B-Instruct", 8_000_000_000)
    assert large.layout.system == "full" and not large.small_model_repairs
    forced = profile_for(
        load_settings(env={"LLM_PROFILE": "large", "LLM_MIN_P": "0.2", "LLM_SEED": "5"}, env_file=None),
        "SmolLM2-135M",
        135_000_000,
    )
    assert forced.layout.system == "full" and forced.sampling.min_p == 0.2 and forced.sampling.seed == 5
    assert forced.sampling.repeat_penalty == FAMILY_SAMPLING["smollm"].repeat_penalty
