"""The batchers behind `secbot serve-model`, in process, on the tiny model."""

import threading
import time

import pytest
from peft import LoraConfig, PrefixTuningConfig, TaskType

from secbot.model.batching import BatchQueue, ContinuousBatcher, Job, make_batcher
from secbot.model.generation import Sampling, drain
from test_adapters import make_adapter

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


def test_static_batching_equals_one_at_a_time_generation(engine):
    batcher = BatchQueue(engine, max_batch=4)
    jobs = [batcher.submit(job(engine, q, n)) for q, n in zip(QUESTIONS, LIMITS)]
    assert ["".join(drain(j.out)) for j in jobs] == [expected(engine, q, n) for q, n in zip(QUESTIONS, LIMITS)]


def test_the_tiny_model_gets_continuous_batching(engine):
    assert isinstance(make_batcher(engine), ContinuousBatcher)


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
    from secbot.model.engine import Engine
    from secbot.model.tiny import build_tiny_model

    model_dir = build_tiny_model(tmp_path / "glm4", seed=1, architecture="glm4")
    engine = Engine.load(model_dir, system_prompt="You are secbot.")
    assert type(engine.loaded.model).__name__ == "Glm4ForCausalLM" and engine.steppable()
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
