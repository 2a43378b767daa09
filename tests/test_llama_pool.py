"""Two llama.cpp instances of the embedded SmolLM2 (LLM_INSTANCES=2): concurrent generations on different
instances, a request routed to the instance holding its prompt, the same sampling on every instance; with saved
states (LLM_STATE_CACHE_MB), a conversation picked up on the other instance without evaluating it again."""

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
    b = make_backend(load_settings(env={"LLM_INSTANCES": "2", "LLM_STATE_CACHE_MB": "0"}, env_file=None))
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


@pytest.fixture(scope="module")
def saving() -> LlamaCppBackend:
    """The same two instances (loaded once per process), their pool keeping evaluated prompts in RAM."""
    b = make_backend(load_settings(env={"LLM_INSTANCES": "2", "LLM_STATE_CACHE_MB": "256"}, env_file=None))
    assert isinstance(b, LlamaCppBackend) and b.pool.states.enabled
    return b


def counting_evals(backend: LlamaCppBackend, monkeypatch) -> list[int]:
    """Tokens each llama.cpp `eval` call evaluates, per call, on every instance."""
    counts: list[int] = []
    for inst in backend.pool.instances:
        original = inst.llm.eval

        def counted(tokens, _original=original):
            counts.append(len(tokens))
            return _original(tokens)

        monkeypatch.setattr(inst.llm, "eval", counted)
    return counts


def test_a_conversation_moves_to_another_instance_without_being_evaluated_again(saving, monkeypatch) -> None:
    """Alice's guild was evaluated on one instance; Bob's guild took it since. Alice's reply, on whichever instance,
    restores her saved state and evaluates only its new line, and says what a cold evaluation says."""
    served_by(saving, ALICE)
    for inst in saving.pool.instances:  # both instances now hold Bob's guild: Alice's lives only in RAM
        inst.lock.acquire()
    try:
        for inst in saving.pool.instances:
            inst.lock.release()
            served_by(saving, BOB)
            inst.lock.acquire()
    finally:
        for inst in saving.pool.instances:
            inst.lock.release()
    assert all("Bob:" in inst.last_prompt for inst in saving.pool.instances)
    restored_before = saving.pool.states.restored
    reply = [*ALICE, {"role": "user", "content": "Alice: Juniper?"}]
    counts = counting_evals(saving, monkeypatch)
    sampling = saving.profile.sampling.replace(seed=11, temperature=0.8)
    _, restored_text = served_by(saving, reply, max_tokens=16, sampling=sampling)
    assert saving.pool.states.restored == restored_before + 1
    assert counts, counts
    restored_evals = counts[0]
    for inst in saving.pool.instances:  # now cold: the whole prompt evaluated
        inst.llm.n_tokens = 0
        inst.last_prompt = ""
    monkeypatch.setattr(saving.pool, "states", type(saving.pool.states)(0))
    counts.clear()
    _, cold_text = served_by(saving, reply, max_tokens=16, sampling=sampling)
    assert counts and restored_evals * 4 < counts[0], (restored_evals, counts)  # the new line, not the prompt
    assert restored_text == cold_text  # a restore changes what is evaluated, never what is said


def test_saved_states_stay_within_their_budget_and_drop_what_they_extend(saving) -> None:
    from brain.kv_states import KvStates

    served_by(saving, ALICE)
    llm = next(inst for inst in saving.pool.instances if "Alice:" in inst.last_prompt).llm
    states = KvStates(1 << 30)
    assert states.save(llm, "Alice: the garden") and states.save(llm, "Alice: the garden, and then")
    assert states.prompts() == {"Alice: the garden, and then"}  # the longer prompt serves both
    assert states.best("Alice: the garden, and then the sunflowers")[1] == len("Alice: the garden, and then")
    one = states.bytes_used
    small = KvStates(int(one * 1.5))
    assert small.save(llm, "Alice") and small.save(llm, "Bob")
    assert small.prompts() == {"Bob"} and small.bytes_used <= small.capacity_bytes  # the oldest went
    assert not KvStates(0).save(llm, "Alice")  # off
    talk = KvStates(1 << 30)  # one state per conversation, not one per turn
    system = "\x00system\x01You are Juniper, a cheerful friend in a voice chat. Answer briefly, and kindly."
    talk.save(llm, f"{system}\x00user\x01Alice: the garden\x00user\x01Alice: Junip")  # a prefill on a partial line
    talk.save(llm, f"{system}\x00user\x01Alice: the garden\x00user\x01Alice: Juniper, what now?")  # its reply
    talk.save(llm, f"{system}\x00user\x01Bob: the coast\x00user\x01Bob: was it worth it?")  # another guild
    last_lines = sorted(prompt.rsplit("\x01", 1)[1] for prompt in talk.prompts())
    assert last_lines == ["Alice: Juniper, what now?", "Bob: was it worth it?"]


def test_an_evaluation_cut_short_does_not_count_as_cached(backend) -> None:
    """A cancel that aborts llama_decode mid-prompt leaves the context with what it held before, not the new
    prompt: the pool must not route the conversation's next request there as if it were (that request would
    evaluate the whole prompt again, cold: seconds on one thread)."""
    long_bob = [*BOB, {"role": "user", "content": "Bob: " + "and then we walked along the pier for a while, " * 12}]

    class CancelOnceEvaluating(threading.Event):
        """Set as soon as an instance evaluates with it: llama_decode's abort callback stops the prompt at once,
        however fast the machine."""

        def is_set(self) -> bool:
            return any(inst.active_cancel is self for inst in backend.pool.instances)

    stream = backend.stream(long_bob, max_tokens=4, stop=[], cancel=CancelOnceEvaluating())
    assert next(stream) == ""
    served = next(inst for inst in backend.pool.instances if inst.lock.locked())
    before = served.held_before
    assert "".join(stream) == ""
    believed = served.last_prompt
    index, _ = served_by(backend, long_bob)  # evaluated in full this time: what the pool then records
    full = backend.pool.instances[index].last_prompt
    assert believed != full and believed == full[: common_prefix(before, full)]
