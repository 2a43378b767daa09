"""The bot's first words come from the persona: its greetings (TOML list, a card's first_mes and
alternate_greetings), picked at random per join, names filled in, spoken as written."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conversation.greeting import fill_names, greeting_line, greetings_of, listeners_phrase
from conversation.persona import PersonaError
from conversation.persona_library import load_persona
from tests.test_persona_loading import card_v2, minimal_toml, write


@pytest.mark.parametrize(
    "names, phrase",
    [
        ([], "everyone"),
        (["Alice"], "Alice"),
        (["Alice", "Bob"], "Alice and Bob"),
        (["Alice", "Bob", "Chen"], "Alice, Bob and Chen"),
        (["A", "B", "C", "D"], "everyone"),
    ],
)
def test_the_people_present_as_a_greeting_names_them(names, phrase):
    assert listeners_phrase(names) == phrase


def test_placeholders_are_filled_with_the_names():
    assert fill_names("Hi {{user}}, {{char}} here! <USER>? <BOT>!", "Juniper", ["Alice", "Bob"]) == (
        "Hi Alice and Bob, Juniper here! Alice and Bob? Juniper!"
    )


def test_a_toml_list_of_greetings_is_picked_from_at_random(tmp_path: Path):
    path = write(
        tmp_path,
        "p.toml",
        minimal_toml('greeting = ["Hello {{user}}!", "Evening, all.", "{{char}} is in."]', name="Maple"),
    )
    persona = load_persona(path)
    assert persona.greeting == "Hello {{user}}!" and persona.greetings == ("Evening, all.", "{{char}} is in.")
    said = {greeting_line(persona, ["Alice", "Bob"], random.Random(seed)) for seed in range(40)}
    assert said == {"Hello Alice and Bob!", "Evening, all.", "Maple is in."}  # every one of them, never another


def test_one_greeting_is_the_only_choice(tmp_path: Path):
    persona = load_persona(write(tmp_path, "p.toml", minimal_toml('greeting = "Hey {{user}}."')))
    assert greetings_of(persona) == ("Hey {{user}}.",)
    assert greeting_line(persona, ["Dana"], random.Random(1)) == "Hey Dana."


@pytest.mark.parametrize("greeting, words", [('greeting = ["Hi", 3]', "greeting[1]"), ("greeting = 5", "greeting")])
def test_a_broken_greeting_names_the_field(tmp_path: Path, greeting: str, words: str):
    with pytest.raises(PersonaError) as err:
        load_persona(write(tmp_path, "p.toml", minimal_toml(greeting)))
    assert words in str(err.value)


def test_an_empty_greeting_list_falls_back_to_the_default(tmp_path: Path):
    persona = load_persona(write(tmp_path, "p.toml", minimal_toml("greeting = []")))
    assert greetings_of(persona) == ("Hi everyone, Tester here!",)


def test_a_cards_first_mes_and_alternate_greetings_keep_user_for_the_names_present(tmp_path: Path):
    path = tmp_path / "card.json"
    path.write_text(
        json.dumps(
            card_v2(
                first_mes="*waves* Welcome, {{user}}, to {{char}}'s glade.",
                alternate_greetings=["Back again, <USER>?", "*nods* Evening."],
            )
        ),
        encoding="utf-8",
    )
    persona = load_persona(path)
    assert persona.greeting == "Welcome, {{user}}, to Seraphina's glade."
    assert persona.greetings == ("Back again, {{user}}?", "Evening.")
    said = {greeting_line(persona, ["Alice"], random.Random(seed)) for seed in range(40)}
    assert said == {"Welcome, Alice, to Seraphina's glade.", "Back again, Alice?", "Evening."}


def test_a_card_with_only_alternate_greetings(tmp_path: Path):
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card_v2(first_mes="", alternate_greetings=["Hi there."])), encoding="utf-8")
    persona = load_persona(path)
    assert persona.greeting == "Hi there." and persona.greetings == ()


def test_a_card_with_broken_alternate_greetings_names_the_field(tmp_path: Path):
    path = tmp_path / "card.json"
    path.write_text(json.dumps(card_v2(alternate_greetings=[1, 2])), encoding="utf-8")
    with pytest.raises(PersonaError, match="alternate_greetings"):
        load_persona(path)


def test_shipped_personas_have_several_greetings():
    from runtime.settings import PROJECT_ROOT

    for path in sorted((PROJECT_ROOT / "personas").glob("*.toml")):
        persona = load_persona(path)
        assert len(greetings_of(persona)) >= 3, path.name
