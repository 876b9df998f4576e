"""The batchers behind `secbot serve-model`, in process, on the tiny model."""

import threading
import time

import pytest
import torch
from peft import LoraConfig, PrefixTuningConfig, TaskType
from test_adapters import make_adapter

from secbot.model.runtime.generation import Sampling, TextDeltas, drain
from secbot.model.runtime.step_decoder import Decoder, Row
from secbot.model.serving.batching import ContinuousBatcher, Job

QUESTIONS = [f"Q{i}: " + "how do we contain it? " * (i % 4 + 1) for i in range(12)]
LIMITS = [3, 24, 9, 16, 1, 20, 12, 5, 24, 7, 14, 2]


@pytest.fixture(scope="module")
def adapters(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("batching-adapters")
    return {
        "prefix": make_adapter(tiny_dir, root / "prefix", PrefixTuningConfig(
            task_type=TaskType.CAUSAL_LM, num_virtual_tokens=8), 11),
        "lora": make_adapter(tiny_dir, root / "lora", LoraConfig(
            task_type=TaskType.CAUSAL_LM, r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False), 12),
    }


def job(engine, question, limit, sampling=None):
    sampling = sampling or Sampling(max_new_tokens=limit)
    return Job(engine.prompt_ids(question, [], sampling), limit, sampling)


def expected(engine, question, limit):
    return engine.generate(question, [], Sampling(max_new_tokens=limit))


@pytest.mark.parametrize("adapter, attention", [(None, "sdpa"), ("prefix", "sdpa"), ("lora", "sdpa"),
                                                ("prefix", "eager")])
def test_continuous_batching_equals_one_at_a_time_generation(fresh_engine, adapters, adapter, attention):
    engine = fresh_engine
    engine.loaded.model.set_attn_implementation(attention)
    engine.use_adapter(adapters.get(adapter))
    steps = []
    batcher = ContinuousBatcher(engine, max_batch=4, on_step=lambda rows, tokens, s: steps.append(rows))
    jobs = [batcher.submit(job(engine, q, n)) for q, n in zip(QUESTIONS[:6], LIMITS[:6])]
    time.sleep(0.2)  # the rest arrive while the first ones are decoding
    jobs += [batcher.submit(job(engine, q, n)) for q, n in zip(QUESTIONS[6:], LIMITS[6:])]
    answers = ["".join(drain(j.out)) for j in jobs]
    assert answers == [expected(engine, q, n) for q, n in zip(QUESTIONS, LIMITS)]
    assert all(j.tokens <= n for j, n in zip(jobs, LIMITS)) and sum(j.tokens == n for j, n in zip(jobs, LIMITS)) > 3
    assert max(steps) == 4 and 1 in steps  # rows joined and left between steps


def test_sampled_and_greedy_requests_share_a_batch(engine):
    batcher = ContinuousBatcher(engine, max_batch=8)
    sampled = Sampling(max_new_tokens=12, do_sample=True, top_p=0.7, temperature=0.95)
    jobs = [batcher.submit(job(engine, q, 12, sampled if i % 2 else None)) for i, q in enumerate(QUESTIONS[:8])]
    answers = ["".join(drain(j.out)) for j in jobs]
    assert answers[::2] == [expected(engine, q, 12) for q in QUESTIONS[:8:2]]
    assert answers[1::2] != [expected(engine, q, 12) for q in QUESTIONS[1:8:2]]  # sampled, not greedy
    assert all(j.tokens <= 12 for j in jobs) and any(j.tokens == 12 for j in jobs[1::2])


def test_a_cancelled_request_leaves_the_batch(engine):
    batcher = ContinuousBatcher(engine, max_batch=2)
    gone = batcher.submit(job(engine, QUESTIONS[0], 2000))
    next(drain(gone.out))  # it is running
    gone.cancelled.set()
    list(drain(gone.out))  # and ends at the next step
    assert gone.tokens < 2000
    after = batcher.submit(job(engine, QUESTIONS[1], 8))
    assert "".join(drain(after.out)) == expected(engine, QUESTIONS[1], 8)


def test_an_adapter_switch_waits_for_running_rows(fresh_engine, adapters):
    engine = fresh_engine
    batcher = ContinuousBatcher(engine, max_batch=4)
    early = [batcher.submit(job(engine, q, 24)) for q in QUESTIONS[:4]]
    for j in early:
        j.started.wait(30)
    switch = threading.Thread(target=engine.use_adapter, args=(adapters["prefix"],))
    switch.start()
    late = [batcher.submit(job(engine, q, 24)) for q in QUESTIONS[4:8]]
    early_answers = ["".join(drain(j.out)) for j in early]
    late_answers = ["".join(drain(j.out)) for j in late]
    switch.join(30)
    assert all(j.adapter is None for j in early)
    assert all(j.adapter == adapters["prefix"].resolve() for j in late)
    assert late_answers == [expected(engine, q, 24) for q in QUESTIONS[4:8]]
    engine.use_adapter(None)
    assert early_answers == [expected(engine, q, 24) for q in QUESTIONS[:4]]


def test_the_glm4_0414_architecture_decodes_the_same_way(tmp_path):
    from secbot.model.runtime.engine import Engine
    from secbot.model.runtime.tiny import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "glm4", seed=1, architecture="glm4")
    engine = Engine.load(model_dir, system_prompt="You are secbot.")
    assert type(engine.loaded.model).__name__ == "Glm4ForCausalLM"
    prefix = make_adapter(model_dir, tmp_path / "glm4-prefix", PrefixTuningConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=8), 13)
    for adapter in (None, prefix):
        engine.use_adapter(adapter)
        sampling = Sampling(max_new_tokens=16)
        assert engine.generate_batch([(q, []) for q in QUESTIONS[:6]], sampling) == \
            [engine.generate(q, [], sampling) for q in QUESTIONS[:6]]


def test_requests_beyond_max_batch_wait_in_the_queue(engine):
    gate, stepped = threading.Event(), threading.Event()

    def hold(rows, tokens, seconds):  # the batcher pauses after each step until the gate opens
        stepped.set()
        gate.wait(30)

    batcher = ContinuousBatcher(engine, max_batch=1, on_step=hold)
    jobs = [batcher.submit(job(engine, q, 8)) for q in QUESTIONS[:3]]
    assert stepped.wait(30)
    assert batcher.queued() == 2 and jobs[0].started.is_set() and not jobs[1].started.is_set()
    gate.set()
    assert ["".join(drain(j.out)) for j in jobs] == [expected(engine, q, 8) for q in QUESTIONS[:3]]
    assert batcher.queued() == 0


@pytest.mark.parametrize("adapter", [None, "prefix"])
def test_chunked_prefill_gives_the_same_answers(fresh_engine, adapters, adapter):
    engine = fresh_engine
    engine.use_adapter(adapters.get(adapter))
    batcher = ContinuousBatcher(engine, max_batch=4, prefill_chunk=5)  # every prompt takes several chunks
    jobs = [batcher.submit(job(engine, q, n)) for q, n in zip(QUESTIONS, LIMITS)]
    assert ["".join(drain(j.out)) for j in jobs] == [expected(engine, q, n) for q, n in zip(QUESTIONS, LIMITS)]
    engine.use_adapter(None)


def never_ending(engine, prompt_ids, limit):
    """A row without EOS: it runs for exactly `limit` tokens."""
    return Row(prompt_ids, Sampling(max_new_tokens=limit), TextDeltas(engine.tokenizer, set(), limit))


def test_a_long_prompt_joining_does_not_stop_running_streams(engine):
    chunk = 64
    short_ids = engine.prompt_ids("What is phishing?", [], Sampling())
    long_ids = engine.prompt_ids("Summarise this incident log: " + "failed login from 10.0.0.7; " * 60,
                                 [], Sampling())
    assert len(long_ids) > 10 * chunk
    running, joining = never_ending(engine, short_ids, 120), never_ending(engine, long_ids, 5)
    trace = []  # (tokens of the running stream, tokens of the joining one) after each step

    taken = []

    def take(active):
        if not taken:
            taken.append(running)
            return [running]
        if len(running.text.ids) >= 5 and len(taken) == 1:  # joins while the first one streams
            taken.append(joining)
            return [joining]
        return []

    with engine._lock:
        Decoder(engine, prefill_chunk=chunk).run(take, lambda rows, tokens, s: trace.append(
            (len(running.text.ids), len(joining.text.ids))))
    during = [r for r, j in trace if r >= 5 and j == 0]
    chunks = -(-len(long_ids) // chunk)
    # The running stream got a token on every step of the long prefill, one chunk per step.
    assert len(during) >= chunks - 1 and during == list(range(during[0], during[0] + len(during)))
    # And both answers are exactly what each gets alone.
    for row, ids, limit in ((running, short_ids, 120), (joining, long_ids, 5)):
        alone = never_ending(engine, ids, limit)
        with engine._lock:
            Decoder(engine).run(lambda active, pending=[alone]: [pending.pop()] if pending else [])
        assert row.text.ids == alone.text.ids


def test_an_out_of_memory_prefill_fails_only_its_own_request(engine, monkeypatch):
    bad_question = "zebra quagga okapi " * 12
    others = {t for q in QUESTIONS for t in engine.prompt_ids(q, [], Sampling())}
    poison = next(t for t in engine.prompt_ids(bad_question, [], Sampling()) if t not in others)
    forward = Decoder._forward

    def failing(self, input_ids, *args):
        if (input_ids == poison).any():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        return forward(self, input_ids, *args)

    monkeypatch.setattr(Decoder, "_forward", failing)
    batcher = ContinuousBatcher(engine, max_batch=8)
    first = batcher.submit(job(engine, QUESTIONS[0], 24))  # already running when the others join
    first.started.wait(30)
    group = [batcher.submit(job(engine, q, 12)) for q in QUESTIONS[1:4]]
    bad = batcher.submit(job(engine, bad_question, 12))
    group += [batcher.submit(job(engine, q, 12)) for q in QUESTIONS[4:6]]
    with pytest.raises(torch.OutOfMemoryError):
        list(drain(bad.out))
    assert "".join(drain(first.out)) == expected(engine, QUESTIONS[0], 24)
    assert ["".join(drain(j.out)) for j in group] == [expected(engine, q, 12) for q in QUESTIONS[1:6]]
    after = batcher.submit(job(engine, QUESTIONS[7], 8))
    assert "".join(drain(after.out)) == expected(engine, QUESTIONS[7], 8)


def test_admission_keeps_the_batch_within_its_token_budget(engine):
    jobs = [job(engine, q, 24) for q in QUESTIONS[:8]]
    budget = max(j.cost for j in jobs) * 2 + 1  # room for two requests at a time, never three
    rows = []
    batcher = ContinuousBatcher(engine, max_batch=8, max_batch_tokens=budget,
                                on_step=lambda n, tokens, s: rows.append(n))
    for j in jobs:
        batcher.submit(j)
    assert ["".join(drain(j.out)) for j in jobs] == [expected(engine, q, 24) for q in QUESTIONS[:8]]
    assert max(rows) == 2
    with pytest.raises(ValueError, match="--max-batch-tokens"):
        batcher.submit(job(engine, QUESTIONS[0], budget))
