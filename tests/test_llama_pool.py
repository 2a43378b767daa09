"""Two llama.cpp instances of the embedded SmolLM2 (LLM_INSTANCES=2): concurrent generations on different
instances, a request routed to the instance holding its prompt, the same sampling on every instance."""

from __future__ import annotations

import threading

import pytest

from runtime.settings import load_settings
from brain.llama_pool import common_prefix, instance_threads
from brain.llm import LlamaCppBackend, make_backend

SYSTEM = {"role": "system", "content": "You are Juniper, a cheerful friend in a voice chat. Answer briefly."}
ALICE = [
    SYSTEM,
    {
        "role": "user",
        "content": "Alice: I spent the whole afternoon in the garden planting tomatoes, basil and a row of "
        "sunflowers along the fence, and now my back hurts but it looks lovely. What would you plant next?",
    },
]
BOB = [
    SYSTEM,
    {
        "role": "user",
        "content": "Bob: We drove to the coast on Saturday, the traffic was terrible for two hours and then the "
        "beach was packed anyway, so we ate fish and chips in the car. Was it worth it, do you think?",
    },
]


@pytest.fixture(scope="module")
def backend() -> LlamaCppBackend:
    b = make_backend(load_settings(env={"LLM_INSTANCES": "2"}, env_file=None))
    assert isinstance(b, LlamaCppBackend) and len(b.pool.instances) == 2
    return b


def served_by(backend: LlamaCppBackend, messages: list[dict], **kwargs) -> tuple[int, str]:
    """(index of the instance that served `messages`, its text)."""
    stream = backend.stream(
        messages, max_tokens=kwargs.pop("max_tokens", 1), stop=[], cancel=threading.Event(), **kwargs
    )
    before = {inst.index for inst in backend.pool.instances if inst.lock.locked()}
    assert next(stream) == ""
    taken = {inst.index for inst in backend.pool.instances if inst.lock.locked()} - before
    text = "".join(stream)
    assert len(taken) == 1
    return taken.pop(), text


def hold_instance(backend: LlamaCppBackend, messages: list[dict]):
    """A stream that has taken an instance (its ready marker read) and computes nothing until resumed."""
    stream = backend.stream(messages, max_tokens=1, stop=[], cancel=threading.Event())
    assert next(stream) == ""
    return stream


def test_instance_threads_share_the_cores() -> None:
    assert instance_threads(0, 1, cores=2) == 1 and instance_threads(0, 2, cores=2) == 1
    assert instance_threads(0, 2, cores=8) == 3 and instance_threads(0, 1, cores=8) == 7
    assert instance_threads(3, 2, cores=2) == 3  # LLM_THREADS wins
    assert common_prefix("abcd", "abxy") == 2 and common_prefix("", "a") == 0


def test_two_generations_run_on_two_instances_at_once(backend) -> None:
    first = hold_instance(backend, ALICE)
    second = hold_instance(backend, BOB)  # would wait forever with a single instance
    assert all(inst.lock.locked() for inst in backend.pool.instances)
    for stream in (first, second):
        list(stream)
    assert not any(inst.lock.locked() for inst in backend.pool.instances)


def test_a_request_goes_to_the_instance_holding_its_prompt(backend) -> None:
    a, _ = served_by(backend, ALICE)  # a prefill of Alice's guild
    b, _ = served_by(backend, BOB)  # another guild: not over Alice's evaluation
    assert a != b
    reply = [*ALICE, {"role": "user", "content": "Alice: Juniper?"}]
    assert served_by(backend, reply)[0] == a  # the reply lands where its prefill is
    assert served_by(backend, [*BOB, {"role": "user", "content": "Bob: Right?"}])[0] == b


def test_a_reply_waits_for_its_own_prefill_rather_than_a_cold_instance(backend, monkeypatch) -> None:
    """A prefill of the reply's prompt holds one instance when the reply comes: the reply waits for it (a cold
    instance evaluates the whole prompt on one thread: seconds), but not past CACHE_WAIT_MAX_S."""
    import time

    import brain.llama_pool as llama_pool

    a, _ = served_by(backend, ALICE)
    b, _ = served_by(backend, BOB)
    reply = [*ALICE, {"role": "user", "content": "Alice: and what would you plant in the shade, Juniper?"}]
    prefill = hold_instance(backend, reply)
    assert backend.pool.instances[a].lock.locked()  # the prefill went where Alice's conversation is
    threading.Timer(0.3, lambda: list(prefill)).start()
    cold = backend.pool.instances[b]
    started = time.monotonic()
    list(backend.stream(reply, max_tokens=1, stop=[], cancel=threading.Event()))
    assert time.monotonic() - started >= 0.25 and not cold.lock.locked()  # it waited for the prefill's instance
    assert cold.last_prompt != backend.pool.instances[a].last_prompt  # and the cold one kept Bob's
    monkeypatch.setattr(llama_pool, "CACHE_WAIT_MAX_S", 0.2)
    held = hold_instance(backend, reply)  # e.g. a reply of the same guild that goes on
    assert served_by(backend, reply)[0] == b  # past the bound it takes the free one
    list(held)
    assert cold.last_prompt == backend.pool.instances[a].last_prompt


def test_every_instance_samples_alike(backend) -> None:
    """Overlap must not change what is said: one seed gives one reply, whichever instance computes it."""
    texts = {}
    for index in (0, 1):
        other = backend.pool.instances[1 - index]
        other.lock.acquire()  # only `index` is free
        try:
            sampling = backend.profile.sampling.replace(seed=7, temperature=0.8)
            served, text = served_by(backend, ALICE, max_tokens=24, sampling=sampling)
        finally:
            other.lock.release()
        assert served == index
        texts[index] = text
    assert texts[0] and texts[0] == texts[1]
