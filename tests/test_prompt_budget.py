"""Prompt building: persona + examples + named history + situation, under a token budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.settings import load_settings
from brain.llm import LlamaCppBackend
from brain.llm_options import LlmOptions
from brain.prompt import HistoryLine, build_messages, estimate_tokens, prompt_tokens
from conversation.persona_library import load_persona
from conversation.room_lines import RoomLine

PERSONAS = Path(__file__).resolve().parent.parent / "personas"
SITUATION = "Alice asked you something. Answer her."


@pytest.fixture(scope="module")
def persona():
    return load_persona(PERSONAS / "juniper.toml")


@pytest.fixture(scope="module")
def count_tokens():
    """SmolLM2's own tokenizer (the embedded GGUF)."""
    return LlamaCppBackend(LlmOptions.from_settings(load_settings(env={}, env_file=None))).count_tokens


def long_history(n: int) -> list[HistoryLine]:
    speakers = ["Alice", "Bob", "Chen"]
    lines = []
    for i in range(n):
        if i % 4 == 3:
            lines.append(HistoryLine("Juniper", f"Bot line number {i} about gardening and lakes.", float(i), True))
        else:
            lines.append(
                HistoryLine(
                    speakers[i % 3], f"Line number {i}: I was talking about my week and the weather.", float(i), False
                )
            )
    return lines


def test_roles_names_and_situation(persona, count_tokens) -> None:
    history = [
        HistoryLine("Alice", "Hi everyone!", 1.0, False),
        HistoryLine("Bob", "Hey Alice.", 2.0, False),
        HistoryLine("Juniper", "Hey hey, welcome back!", 3.0, True),
        HistoryLine("Alice", "Juniper, what should I cook tonight?", 4.0, False),
    ]
    messages = build_messages(persona, history, situation=SITUATION, budget_tokens=1500, count_tokens=count_tokens)
    assert messages[0]["role"] == "system"
    assert messages[0]["content"] == persona.render_system_prompt()
    n_examples = 2 * len(persona.examples)
    examples = messages[1 : 1 + n_examples]
    assert [m["role"] for m in examples] == ["user", "assistant"] * len(persona.examples)
    assert examples[1]["content"] == persona.examples[0].bot
    rest = messages[1 + n_examples :]
    assert [m["role"] for m in rest] == ["user", "assistant", "user"]
    assert rest[0]["content"] == "Alice: Hi everyone!\nBob: Hey Alice."  # consecutive humans share a turn
    assert rest[1]["content"] == "Hey hey, welcome back!"  # the bot's own line, no name
    # the situation opens the turn, the newest words close it (a prefill shares all but those words)
    assert rest[2]["content"] == f"({SITUATION})\nAlice: Juniper, what should I cook tonight?"


def test_post_history_instructions_close_the_last_turn(persona, count_tokens) -> None:
    import dataclasses

    strict = dataclasses.replace(persona, post_history_instructions="Stay in character.")
    history = [HistoryLine("Juniper", "Hey hey!", 1.0, True), HistoryLine("Alice", "Juniper, hi.", 2.0, False)]
    messages = build_messages(strict, history, situation=SITUATION, budget_tokens=1500, count_tokens=count_tokens)
    assert messages[-1] == {"role": "user", "content": f"({SITUATION})\nAlice: Juniper, hi.\n\n(Stay in character.)"}
    quiet = build_messages(strict, history[:1], situation=SITUATION, budget_tokens=1500, count_tokens=count_tokens)
    assert quiet[-1] == {"role": "user", "content": f"({SITUATION}\nStay in character.)"}


def test_quiet_room_gets_the_situation_as_its_own_turn(persona, count_tokens) -> None:
    history = [HistoryLine("Juniper", "Anyone there?", 1.0, True)]
    situation = "The room has been quiet; bring up a topic."
    messages = build_messages(persona, history, situation=situation, budget_tokens=1500, count_tokens=count_tokens)
    assert messages[-2] == {"role": "assistant", "content": "Anyone there?"}
    assert messages[-1] == {"role": "user", "content": f"({situation})"}
    empty = build_messages(persona, [], situation=situation, budget_tokens=1500, count_tokens=count_tokens)
    assert empty[-1] == {"role": "user", "content": f"({situation})"}


def test_budget_drops_the_oldest_history_first(persona, count_tokens) -> None:
    history = long_history(120)
    budget = 900
    messages = build_messages(persona, history, situation=SITUATION, budget_tokens=budget, count_tokens=count_tokens)
    assert prompt_tokens(messages, count_tokens) <= budget
    assert messages[0]["content"] == persona.render_system_prompt()  # the persona stays
    assert len([m for m in messages if m["content"].startswith("Listener:")]) == len(persona.examples)  # examples stay
    body = "\n".join(m["content"] for m in messages[1 + 2 * len(persona.examples) :])
    kept = [i for i, line in enumerate(history) if line.text in body]
    assert kept, "the newest lines must be kept"
    assert kept == list(range(kept[0], len(history)))  # a contiguous run ending at the newest line
    assert kept[0] > 0 and len(kept) >= 5  # old lines dropped, several recent lines kept


def test_tight_budget_keeps_persona_and_the_newest_line_only(persona, count_tokens) -> None:
    history = long_history(41)  # the newest line is Bob's
    system_cost = count_tokens(persona.render_system_prompt())
    budget = system_cost + 50
    messages = build_messages(persona, history, situation=SITUATION, budget_tokens=budget, count_tokens=count_tokens)
    assert prompt_tokens(messages, count_tokens) <= budget
    assert messages[0]["content"] == persona.render_system_prompt()
    assert not any(m["content"].startswith("Listener:") for m in messages)  # examples go before the newest line
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[-1]["content"] == f"({SITUATION})\n{history[-1].speaker}: {history[-1].text}"


def test_an_overlong_newest_line_keeps_its_end(persona, count_tokens) -> None:
    words = [f"w{i}" for i in range(800)]
    history = [HistoryLine("Alice", " ".join(words) + " so what do you think?", 1.0, False)]
    budget = count_tokens(persona.render_system_prompt()) + 120
    messages = build_messages(persona, history, situation=SITUATION, budget_tokens=budget, count_tokens=count_tokens)
    last = messages[-1]["content"]
    assert last.startswith(f"({SITUATION})\nAlice: … ")
    assert "so what do you think?" in last
    assert "w0 " not in last
    assert prompt_tokens(messages, count_tokens) <= budget + 8


def test_room_lines_are_accepted(persona) -> None:
    lines = [
        RoomLine(seq=1, user_id=7, name="Alice", text="Hello there", start=0.0, end=1.0, is_bot=False),
        RoomLine(seq=2, user_id=None, name="Juniper", text="Hi Alice!", start=1.5, end=2.0, is_bot=True),
    ]
    messages = build_messages(persona, lines, situation="Alice spoke.", budget_tokens=2000)
    assert messages[-3:] == [
        {"role": "user", "content": "Alice: Hello there"},
        {"role": "assistant", "content": "Hi Alice!"},
        {"role": "user", "content": "(Alice spoke.)"},
    ]


def test_estimate_is_close_to_the_real_tokenizer(count_tokens) -> None:
    text = "I finally finished that puzzle, all thousand pieces, and the last one was under the couch."
    real = count_tokens(text)
    assert 0.6 * real <= estimate_tokens(text) <= 1.6 * real


def test_the_spoken_notice_stays_out_of_the_prompts_the_greeting_stays_in(persona) -> None:
    """The notice is an announcement, not the persona talking: a small model shown it answers in its register
    ("I don't have a channel to talk about it"). The session tells the responder to leave it out."""
    from bot.notice import spoken_notice
    from bot.voice_session import VoiceSession
    from brain.responder import Responder

    settings = load_settings(env={}, env_file=None)
    responder = Responder.from_settings(
        settings, llm=LlamaCppBackend(LlmOptions.from_settings(settings)), scheduler=None
    )
    notice = spoken_notice(persona.name)
    VoiceSession(
        settings=settings,
        persona=persona,
        responder=responder,
        player=None,
        bot_user_id=1,
        members=((2, "Alice"),),
        notice=notice,
    )
    history = [
        HistoryLine(persona.name, notice, 1.0, True),
        HistoryLine(persona.name, "Hey Alice, good to see you!", 2.0, True),
        HistoryLine("Alice", "Juniper, what should I cook tonight?", 3.0, False),
    ]
    prompt = " ".join(str(m["content"]) for m in responder.build_prompt(persona, history, SITUATION))
    assert "good to see you" in prompt and "cook tonight" in prompt
    assert "opt out" not in prompt and "transcribe" not in prompt


def test_a_full_history_keeps_its_start_for_several_turns(persona) -> None:
    """Past the budget the oldest lines go at an anchor, not one by one: consecutive prompts then share all but
    their last exchange (the LLM's prompt cache keeps it) in most turns, where a cut that moved with every line
    would change the prompt right after the persona every turn."""
    from brain.prompt import HISTORY_ANCHOR_EVERY, HISTORY_KEPT_MIN as KEPT_MIN, is_anchor

    budget = 1500
    history: list[HistoryLine] = []
    previous: list[dict] | None = None
    turns = kept_start = 0
    for turn in range(90):
        history.append(
            HistoryLine(["Alice", "Bob"][turn % 2], f"Question {turn}: what about the lake trip?", turn, False)
        )
        messages = build_messages(persona, history, situation=SITUATION, budget_tokens=budget)
        assert prompt_tokens(messages) <= budget
        body = [m["content"] for m in messages[1 + 2 * len(persona.examples) :]]
        first = next(i for i, line in enumerate(history) if line.text in body[0])
        shown = [t for m in body for t in m.split("\n") if t != f"({SITUATION})"]
        assert shown == [line.text if line.is_bot else f"{line.speaker}: {line.text}" for line in history[first:]]
        if previous is not None and first > 0:  # the budget is full
            turns += 1
            assert (
                is_anchor(history[first])
                or first == len(history) - 1
                or not any(
                    is_anchor(line)
                    for line in history[first : min(len(history) - 1 - KEPT_MIN, first + 2 * HISTORY_ANCHOR_EVERY)]
                )
            )
            assert len(history) - 1 - first >= KEPT_MIN  # never most of the context for the cache's sake
            # everything the previous prompt had, up to its last user turn, is this prompt's start
            kept_start += messages[: len(previous) - 1] == previous[:-1]
        previous = messages
        history.append(
            HistoryLine("Juniper", f"Reply {turn}: the lake is lovely in spring, go early.", turn + 0.5, True)
        )
    assert turns >= 30, "the conversation must outgrow the budget"
    assert kept_start >= turns * 0.6, (kept_start, turns)
