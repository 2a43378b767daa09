"""The server's prompt cache across the turns of a conversation, as the server itself accounts for it: the bot's
own prompts (the `large` profile, the full Juniper persona) through `OpenAiBackend` to llama-cpp-python's server on
the embedded GGUF, and the server's log read back (`LlamaServer.prompt_timings`). The prompts are tokenized here as
the server tokenizes them (the GGUF's chat template, then its tokenizer), so the test knows exactly where two
consecutive prompts part and what the server had to evaluate."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

from simulator.llama_server import LlamaServer, parse_prompt_timings
from runtime.models import embedded_gguf_path
from runtime.scheduler import ModelScheduler
from runtime.settings import load_settings
from brain.llm import make_backend
from brain.prompt import HistoryLine
from brain.responder import Responder
from tests.fixtures_thinking import juniper

pytest.importorskip("uvicorn", reason="llama-cpp-python[server] extras are in requirements-dev.txt")


@pytest.fixture(scope="module")
def vocab() -> Iterator[Any]:
    """The embedded GGUF's tokenizer (no weights)."""
    from llama_cpp import Llama

    llama = Llama(model_path=str(embedded_gguf_path()), vocab_only=True, verbose=False)
    yield llama
    llama.close()


def server_tokens(vocab: Any, messages: list[dict]) -> list[int]:
    """`messages` as llama-cpp-python's server tokenizes them for this GGUF: its chat template (the one the
    server says it uses), then the tokenizer, special tokens parsed."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    text = vocab._model.token_get_text
    formatter = Jinja2ChatFormatter(
        template=vocab.metadata["tokenizer.chat_template"],
        eos_token=text(vocab.token_eos()),
        bos_token=text(vocab.token_bos()),
    )
    rendered = formatter(messages=messages)
    return vocab.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def test_parse_prompt_timings_reads_the_servers_own_account() -> None:
    log = "\n".join(
        [
            "llama_perf_context_print: prompt eval time =     603.87 ms /   491 tokens (  1.23 ms per token)",
            'INFO:     127.0.0.1:42490 - "POST /v1/chat/completions HTTP/1.1" 200 OK',
            "Llama.generate: 482 prefix-match hit, remaining 39 prompt tokens to eval",
            "llama_perf_context_print:        eval time =     334.06 ms /    17 runs   (   19.65 ms per token)",
            "llama_perf_context_print: prompt eval time =      60.50 ms /    39 tokens (  1.55 ms per token)",
            "Llama.generate: 500 prefix-match hit, remaining 12 prompt tokens to eval",
            "disconnected",  # cancelled during its prompt: no timing line, so no entry
            "Llama.generate: 501 prefix-match hit, remaining 11 prompt tokens to eval",
            "llama_perf_context_print: prompt eval time =      20.00 ms /    11 tokens (  1.82 ms per token)",
        ]
    )
    timings = [(t.cached, t.evaluated, t.prompt_ms) for t in parse_prompt_timings(log)]
    assert timings == [(0, 491, 603.87), (482, 39, 60.5), (501, 11, 20.0)]


def test_the_next_turn_evaluates_only_what_follows_the_shared_prefix(vocab) -> None:
    persona = juniper()
    with LlamaServer(embedded_gguf_path(), alias="smollm2", threads=1) as server:
        settings = load_settings(
            env={
                "LLM_BACKEND": "openai",
                "LLM_BASE_URL": server.url,
                "LLM_MODEL": "smollm2",
                "LLM_PROFILE": "large",
                "LLM_TEMPERATURE": "0",
            },
            env_file=None,
        )
        backend = make_backend(settings)
        assert backend.profile.name.startswith("large")
        responder = Responder.from_settings(settings, llm=backend, scheduler=ModelScheduler("exclusive"))
        now = time.monotonic()
        history = [HistoryLine("Alice", "Juniper, what should I cook tonight? I have eggs and rice.", now, False)]
        prompts = []
        for turn, (speaker, line) in enumerate(
            [("Bob", "Juniper, any ideas for a book for a long weekend?"), ("Alice", "And what game should we play?")]
        ):
            messages = responder.build_prompt(persona, history, f"{history[-1].speaker} is talking to you.")
            prompts.append(messages)
            reply = "".join(backend.stream(messages, max_tokens=16, stop=["\n"], cancel=threading.Event()))
            history += [
                HistoryLine(persona.name, reply.strip() or "Hmm.", now + 2 * turn + 1, True),
                HistoryLine(speaker, line, now + 2 * turn + 2, False),
            ]
        messages = responder.build_prompt(persona, history, f"{history[-1].speaker} is talking to you.")
        prompts.append(messages)
        list(backend.stream(messages, max_tokens=4, stop=["\n"], cancel=threading.Event()))
        timings = server.prompt_timings()

    assert len(timings) == 3, timings
    tokens = [server_tokens(vocab, p) for p in prompts]
    first = timings[0]
    assert (first.cached, first.evaluated) == (0, len(tokens[0]))  # a fresh server evaluates all of it
    for turn in (1, 2):
        shared = common_prefix(tokens[turn - 1], tokens[turn])
        timing = timings[turn]
        # the server reused every token the previous prompt shares with this one, and evaluated only the rest
        assert (timing.cached, timing.evaluated) == (shared, len(tokens[turn]) - shared), (turn, timing, shared)
        # and what it evaluated is the conversation's last exchange, not the persona prompt
        assert timing.evaluated < len(tokens[turn]) // 4, (turn, timing, len(tokens[turn]))
        print(
            f"turn {turn + 1}: {len(tokens[turn])} prompt tokens, {timing.cached} from the server's cache, "
            f"{timing.evaluated} evaluated in {timing.prompt_ms:.0f} ms"
        )


def test_a_prefill_on_the_server_leaves_the_reply_only_the_last_words(vocab) -> None:
    """LLM_SERVER_PREFILL: while the member still speaks, `Responder.prefill` has the server evaluate the reply's
    prompt with their words so far; the reply's own request then evaluates only the words that came after."""
    persona = juniper()
    default = load_settings(env={"LLM_BACKEND": "openai"}, env_file=None)
    assert not Responder.from_settings(default, llm=make_backend(default), scheduler=ModelScheduler()).prefill_pays
    with LlamaServer(embedded_gguf_path(), alias="smollm2", threads=1) as server:
        env = {"LLM_BACKEND": "openai", "LLM_BASE_URL": server.url, "LLM_MODEL": "smollm2", "LLM_PROFILE": "large"}
        settings = load_settings(env={**env, "LLM_SERVER_PREFILL": "1", "LLM_TEMPERATURE": "0"}, env_file=None)
        responder = Responder.from_settings(settings, llm=make_backend(settings), scheduler=ModelScheduler("exclusive"))
        assert responder.prefill_pays
        now = time.monotonic()
        history = [
            HistoryLine("Alice", "Juniper, what should I cook tonight? I have eggs and rice.", now, False),
            HistoryLine(persona.name, "Fried rice with an egg on top, quick and good.", now + 1, True),
        ]
        said = "Juniper, and which book should I read on the train this weekend?"
        situation = "Alice is talking to you."
        partial = [*history, HistoryLine("Alice", said.rsplit(" ", 3)[0], now + 2, False)]
        assert responder.prefill(persona, partial, situation=situation) == "done"
        final = [*history, HistoryLine("Alice", said, now + 2, False)]
        messages = responder.build_prompt(persona, final, situation)
        list(responder.llm.stream(messages, max_tokens=4, stop=["\n"], cancel=threading.Event()))
        prefill, reply = server.prompt_timings()[-2:]

    ahead = server_tokens(vocab, responder.build_prompt(persona, partial, situation))
    tokens = server_tokens(vocab, messages)
    shared = common_prefix(ahead, tokens)
    assert (prefill.cached, prefill.evaluated) == (0, len(ahead))  # the prefill paid for the prompt
    assert (reply.cached, reply.evaluated) == (shared, len(tokens) - shared)
    assert reply.evaluated <= 12, reply  # "the train this weekend?" and the turn's end: the words after the prefill
    print(
        f"reply: {len(tokens)} prompt tokens, {reply.evaluated} evaluated after the prefill ({reply.prompt_ms:.0f} ms)"
    )
