"""`secbot serve-model` in a subprocess on loopback, with the tiny model."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from peft import PrefixTuningConfig, TaskType, get_peft_model
from servers import clean_env, free_port, secbot_server

from secbot.feedback.store.repositories import Store
from secbot.model.runtime.engine import Engine
from secbot.model.runtime.generation import Sampling
from secbot.model.runtime.loading import load_base
from secbot.model.serving.client import OpenAIClient, Usage

KEY = "model-server-test-key"
SERVER_DATA = {}  # the running server's data dir: its store says which versions exist
SYSTEM = "You are secbot."
QUESTIONS = [f"Question {i}: what is {topic}?" for i, topic in enumerate(
    ["phishing", "ransomware", "MFA", "XSS", "CSRF", "a zero-day", "an IOC", "EDR",
     "横向移动", "勒索软件", "a SIEM", "DLP", "a honeypot", "DNS tunnelling", "privilege escalation", "SQL injection"])]


@pytest.fixture(scope="module")
def running_server(tiny_dir, tmp_path_factory):
    port = free_port()
    SERVER_DATA["dir"] = tmp_path_factory.mktemp("srv")
    env = clean_env(SECBOT_MODEL_API_KEY=KEY, SECBOT_SYSTEM_PROMPT=SYSTEM, SECBOT_MAX_NEW_TOKENS="24",
                    SECBOT_DATA_DIR=str(SERVER_DATA["dir"]))
    base = f"http://127.0.0.1:{port}"
    with secbot_server(["serve-model", "--model", str(tiny_dir), "--host", "127.0.0.1", "--port", str(port),
                        "--max-prompt-tokens", "1024"],
                       env, base + "/health"):
        yield base


@pytest.fixture
def server(running_server):
    """The module's server, back on the base model after each test whatever the test did."""
    yield running_server
    back = httpx.post(running_server + "/admin/adapter", json={"path": None, "version": None},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    assert back.status_code == 200 and back.json()["adapter"] is None, back.text


@pytest.fixture(scope="module")
def local(tiny_dir):
    return Engine.load(tiny_dir, system_prompt=SYSTEM, sampling=Sampling(max_new_tokens=24))


@pytest.fixture(scope="module")
def adapter(tiny_dir, tmp_path_factory):
    import torch

    torch.manual_seed(7)
    out = tmp_path_factory.mktemp("adapter") / "prefix"
    get_peft_model(load_base(tiny_dir).model,
                   PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=8)).save_pretrained(out)
    return out


def complete(base, question, history=(), **extra):
    messages = [{"role": "system", "content": SYSTEM}]
    for q, a in history:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    body = {"model": "secbot", "messages": messages + [{"role": "user", "content": question}], **extra}
    return httpx.post(base + "/v1/chat/completions", json=body, timeout=120,
                      headers={"Authorization": f"Bearer {KEY}"})


def test_answers_equal_the_in_process_engine_streaming_and_not(server, local):
    history = [("What is XSS?", "Cross-site scripting.")]
    for question, hist in (("What is phishing?", []), ("How do I stop it?", history)):
        expected = local.generate(question, hist)
        response = complete(server, question, hist)
        assert response.status_code == 200
        body = response.json()
        assert body["choices"][0]["message"]["content"] == expected
        sampling = Sampling(max_new_tokens=24)
        tokens = local.generate_streams([local.prompt_ids(question, hist, sampling)], [24], sampling).tokens(0)
        finish = "length" if tokens == 24 else "stop"
        assert body["usage"]["completion_tokens"] > 0 and body["choices"][0]["finish_reason"] == finish
        client = OpenAIClient(server + "/v1", KEY, system_prompt=SYSTEM, sampling=Sampling(max_new_tokens=24))
        usage = Usage()
        deltas = list(client.stream(question, hist, usage))
        assert len(deltas) > 1 and "".join(deltas) == expected
        assert usage.completion_tokens == body["usage"]["completion_tokens"]


def test_sixteen_concurrent_requests_are_all_answered_in_batches(server, local):
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda q: complete(server, q), QUESTIONS))
    assert [r.status_code for r in responses] == [200] * 16
    assert [r.json()["choices"][0]["message"]["content"] for r in responses] == \
        [local.generate(q) for q in QUESTIONS]
    metrics = httpx.get(server + "/metrics").text
    count = float(next(l for l in metrics.splitlines() if l.startswith("secbot_batch_size_count")).split()[1])
    total = float(next(l for l in metrics.splitlines() if l.startswith("secbot_batch_size_sum")).split()[1])
    assert total > count  # some batches held more than one request
    assert "secbot_generated_tokens_total" in metrics
    assert "secbot_queued_requests 0.0" in metrics  # all answered: nothing waits


def test_activating_an_adapter_mid_traffic_loses_no_request(server, local, adapter, tiny_dir):
    tuned = Engine.load(tiny_dir, adapter, system_prompt=SYSTEM, sampling=Sampling(max_new_tokens=24))
    results = {}

    def ask(q):
        results[q] = complete(server, q)

    threads = [threading.Thread(target=ask, args=(q,)) for q in QUESTIONS]
    for i, t in enumerate(threads):
        t.start()
        if i == 7:
            switch = httpx.post(server + "/admin/adapter", json={"path": str(adapter)},
                                headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
            assert switch.status_code == 200 and switch.json()["adapter"] == str(adapter.resolve())
    for t in threads:
        t.join(120)
    assert all(results[q].status_code == 200 for q in QUESTIONS)
    for q in QUESTIONS:  # every answer comes whole from one adapter or the other
        assert local.generate(q) != tuned.generate(q), q  # (the two can be told apart)
        assert results[q].json()["choices"][0]["message"]["content"] in (local.generate(q), tuned.generate(q))
    assert complete(server, QUESTIONS[0]).json()["choices"][0]["message"]["content"] == tuned.generate(QUESTIONS[0])
    back = httpx.post(server + "/admin/adapter", json={"path": None}, headers={"Authorization": f"Bearer {KEY}"})
    assert back.status_code == 200 and back.json()["adapter"] is None
    assert complete(server, QUESTIONS[0]).json()["choices"][0]["message"]["content"] == local.generate(QUESTIONS[0])


def test_bad_requests_get_json_errors(server):
    url = server + "/v1/chat/completions"
    body = {"model": "secbot", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    bad = httpx.post(url, content="{not json", headers=auth)
    assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]["message"]
    not_user_last = httpx.post(url, headers=auth, json={"model": "secbot",
                                                        "messages": [{"role": "assistant", "content": "x"}]})
    assert not_user_last.status_code == 400 and "last message" in not_user_last.json()["error"]["message"]
    assert httpx.post(url, headers=auth, json={"model": "secbot", "messages": []}).status_code == 400
    assert httpx.post(url, headers=auth, json={**body, "max_tokens": 10**6}).status_code == 400
    deep = httpx.post(url, headers=auth, content="[" * 100_000 + "]" * 100_000)
    assert deep.status_code == 400 and "nested" in deep.json()["error"]["message"]
    huge = httpx.post(url, headers=auth, content=json.dumps({"model": "secbot", "messages": [{"role": "user", "content": "x" * 2_000_000}]}))
    assert huge.status_code == 413
    assert httpx.post(server + "/admin/adapter", json={"path": None}).status_code == 401
    for body, code in (({"version": 999, "path": None}, "unknown_version"), ({"version": 0}, "invalid_value")):
        refused = httpx.post(server + "/admin/adapter", json=body, headers=auth)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == code, refused.text
    missing = httpx.post(server + "/admin/adapter", json={"path": "/nowhere"}, headers=auth)
    assert missing.status_code == 400 and "/nowhere" in missing.json()["error"]["message"]


def test_health_and_readiness(server):
    assert httpx.get(server + "/health").json() == {"status": "ok"}
    assert httpx.get(server + "/ready").json()["ready"] is True


def test_the_client_switches_the_servers_version_and_answers_say_which_served(server, adapter, local):
    from types import SimpleNamespace

    store = Store(f"sqlite:///{SERVER_DATA['dir'] / 'secbot.db'}")
    version = store.runs.add_version(base_model="tiny", adapter_path=str(adapter), run_id=None)  # the server's store
    store.close()
    client = OpenAIClient(server + "/v1", KEY, switches=True, sampling=Sampling(max_new_tokens=8))
    client.use_version(SimpleNamespace(id=version.id, adapter_path=str(adapter)))
    ready = httpx.get(server + "/ready").json()
    assert (ready["adapter"], ready["version"]) == (str(adapter.resolve()), version.id)
    usage = Usage()
    "".join(client.stream("What is phishing?", [], usage))
    assert usage.version_id == version.id  # from the answer itself (system_fingerprint)
    client.use_version(None)
    assert httpx.get(server + "/ready").json()["adapter"] is None
    with pytest.raises(Exception, match="refused"):
        client.use_version(SimpleNamespace(id=8, adapter_path="/nowhere"))
    assert httpx.get(server + "/ready").json()["version"] is None


def metric(base, name: str) -> float:
    """One sample of the server's /metrics, by its name with labels (0 when absent)."""
    return next((float(line.rsplit(" ", 1)[1]) for line in httpx.get(base + "/metrics").text.splitlines()
                 if line.startswith(name + " ")), 0.0)


def generated_tokens(base) -> float:
    return metric(base, "secbot_generated_tokens_total")


def until(condition, what: str, deadline_s: float = 300.0):
    """Poll `condition` until it holds; the deadline only turns a hang into a failure that says so."""
    ends = time.monotonic() + deadline_s
    while not (value := condition()):
        assert time.monotonic() < ends, f"gave up waiting for {what}"
        time.sleep(0.05)
    return value


def hang_up_once_decoding(base, body: dict) -> None:
    """Send a chat request over a raw socket, wait until the server is generating its answer,
    then close the connection (what a client that gives up does, whatever its timeout)."""
    import socket

    payload = json.dumps(body).encode()
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: srv\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
        until(lambda: metric(base, "secbot_decoding_requests") >= 1, "the request to start decoding")


def test_a_streaming_client_that_disconnects_stops_its_generation(server, local):
    question, limit = "Question 1: list all ports", 1200
    sampling = Sampling(max_new_tokens=limit)
    full = local.generate_streams([local.prompt_ids(question, [], sampling)], [limit], sampling).tokens(0)
    assert full > 400  # left alone, this answer runs long
    before = generated_tokens(server)
    body = {"model": "secbot", "messages": [{"role": "system", "content": SYSTEM},
                                            {"role": "user", "content": question}],
            "stream": True, "max_tokens": limit}
    with httpx.stream("POST", server + "/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as response:
        lines = response.iter_lines()
        while '"content"' not in next(lines):
            pass  # hang up after the first piece of the answer
    until(lambda: metric(server, "secbot_decoding_requests") == 0, "the batch to empty")
    assert generated_tokens(server) - before < full / 4


# -- conformance, with the official OpenAI SDK as the client ----------------------------------

LONG = "Question 1: list all ports"  # the tiny model answers this with hundreds of tokens


@pytest.fixture(scope="module")
def sdk(running_server):
    import openai

    return openai.OpenAI(base_url=running_server + "/v1", api_key=KEY, max_retries=0, timeout=120)


def ask(sdk, question, system=SYSTEM, **extra):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    return sdk.chat.completions.create(model="secbot", messages=messages, **extra)


def test_max_completion_tokens_bounds_the_answer(sdk, local):
    reply = ask(sdk, LONG, max_completion_tokens=3)
    assert reply.usage.completion_tokens == 3 and reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == local.generate(LONG, [], Sampling(max_new_tokens=3))
    assert reply.choices[0].logprobs is None and reply.object == "chat.completion"


def test_stop_strings_end_the_answer_before_them_streaming_or_not(sdk, local):
    full = local.generate(LONG, [], Sampling(max_new_tokens=24))
    stop = full[8:11]
    expected = full[: full.index(stop)]
    reply = ask(sdk, LONG, max_completion_tokens=24, stop=[stop, "never appears"])
    assert reply.choices[0].message.content == expected and reply.choices[0].finish_reason == "stop"
    chunks = list(ask(sdk, LONG, max_completion_tokens=24, stop=stop, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_n_choices_and_seed(sdk, local):
    greedy = ask(sdk, "What is phishing?", n=2, max_completion_tokens=12)
    assert [c.index for c in greedy.choices] == [0, 1]
    expected = local.generate("What is phishing?", [], Sampling(max_new_tokens=12))
    assert [c.message.content for c in greedy.choices] == [expected, expected]
    sampled = dict(n=3, temperature=1.0, top_p=1.0, max_completion_tokens=16)
    first = ask(sdk, "What is phishing?", seed=42, **sampled)
    again = ask(sdk, "What is phishing?", seed=42, **sampled)
    other = ask(sdk, "What is phishing?", seed=7, **sampled)
    texts = [c.message.content for c in first.choices]
    assert texts == [c.message.content for c in again.choices]  # a seed repeats the answers
    assert texts != [c.message.content for c in other.choices] and len(set(texts)) > 1
    streamed = list(ask(sdk, "What is phishing?", seed=42, stream=True, **sampled))
    pieces = {0: "", 1: "", 2: ""}
    for chunk in streamed:
        for choice in chunk.choices:
            pieces[choice.index] += choice.delta.content or ""
    assert [pieces[i] for i in range(3)] == texts


def test_text_parts_and_the_developer_role_read_as_plain_messages(sdk, local):
    expected = local.generate("What is phishing?")
    parts = sdk.chat.completions.create(model="secbot", messages=[
        {"role": "developer", "content": [{"type": "text", "text": SYSTEM}]},
        {"role": "user", "content": [{"type": "text", "text": "What is "}, {"type": "text", "text": "phishing?"}]}])
    assert parts.choices[0].message.content == expected


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]}, "tools"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logprobs": True}, "logprobs"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"store": True}, "store"),
    ({"extra_body": {"best_of": 2}}, "best_of"),
])
def test_fields_not_served_are_refused_naming_them(sdk, extra, param):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        ask(sdk, "What is phishing?", **extra)
    assert caught.value.status_code == 400 and param in caught.value.message
    assert caught.value.body["param"] == param and isinstance(caught.value.body["code"], str)


def test_an_image_part_is_refused_naming_it(sdk):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="secbot", messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]}])
    assert caught.value.body["param"] == "messages[0].content[1].type"


def test_unknown_model_is_404_model_not_found(sdk):
    import openai

    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"


def test_models_list_as_vllm_shapes_it(sdk):
    [card] = sdk.models.list().data
    assert card.id == "secbot" and card.object == "model" and isinstance(card.created, int)


def test_prompts_over_the_context_are_refused_never_cut(sdk):
    import openai

    question = "failed login from 10.0.0.7; " * 150  # about 2,100 tokens: over the tiny model's 2,048
    with pytest.raises(openai.BadRequestError) as caught:
        ask(sdk, question, max_completion_tokens=10)
    assert caught.value.code == "context_length_exceeded" and "maximum context length is 2048" in caught.value.message
    fits_context = "failed login from 10.0.0.7; " * 80  # about 1,150 tokens: over --max-prompt-tokens 1024
    with pytest.raises(openai.BadRequestError) as caught:
        ask(sdk, fits_context, max_completion_tokens=10)
    assert caught.value.code == "context_length_exceeded" and "--max-prompt-tokens" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:  # the answer's room counts too
        ask(sdk, "failed login from 10.0.0.7; " * 60, max_completion_tokens=4000)
    assert caught.value.code == "context_length_exceeded"


def test_the_bot_client_drops_the_oldest_turns_when_the_server_says_too_long(server, local):
    history = [(f"old question {i}: " + "details " * 120, f"old answer {i}") for i in range(4)]
    client = OpenAIClient(server + "/v1", KEY, system_prompt=SYSTEM, sampling=Sampling(max_new_tokens=24))
    kept = next(k for k in range(5) if len(local.prompts.ids("What now?", history[k:])) <= 1024)
    assert kept > 0
    usage = Usage()
    assert "".join(client.stream("What now?", history, usage)) == local.generate("What now?", history[kept:])


def test_a_non_streaming_client_that_disconnects_stops_its_generation(server, local):
    sampling = Sampling(max_new_tokens=1200)
    full = local.generate_streams([local.prompt_ids(LONG, [], sampling)], [1200], sampling).tokens(0)
    assert full > 400
    before, hung_up = generated_tokens(server), metric(server, 'secbot_requests_total{status="499"}')
    hang_up_once_decoding(server, {"model": "secbot", "max_completion_tokens": 1200,
                                   "messages": [{"role": "system", "content": SYSTEM},
                                                {"role": "user", "content": LONG}]})
    until(lambda: metric(server, 'secbot_requests_total{status="499"}') > hung_up, "the server to see the hang-up")
    until(lambda: metric(server, "secbot_decoding_requests") == 0, "the batch to empty")
    assert generated_tokens(server) - before < full / 2  # it stopped, well before the answer's end


def test_ready_turns_503_when_the_batcher_stops(fresh_engine):
    """/ready is what an orchestrator routes by: it must say no when answers cannot come."""
    import asyncio

    from secbot.model.serving.http_api import create_server

    app = create_server(fresh_engine)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            for _ in range(50):  # the batching thread starts with the app
                ready = await client.get("/ready")
                if ready.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert ready.status_code == 200 and ready.json()["ready"] is True

            def broken():
                raise RuntimeError("engine lost its device")

            fresh_engine.wait_for_switches = broken  # the batching thread dies on its next request
            body = {"model": "secbot", "messages": [{"role": "user", "content": "hi"}]}
            failed = await asyncio.wait_for(client.post("/v1/chat/completions", json=body), 30)
            assert failed.status_code == 500  # the request it died on is answered, not left hanging
            ready = await client.get("/ready")
            assert ready.status_code == 503 and ready.json()["ready"] is False and "batching" in ready.json()["why"]
            refused = await client.post("/v1/chat/completions", json=body)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready"

    asyncio.run(scenario())



def test_a_question_longer_than_the_server_takes_says_how_long_it_may_be(server):
    from secbot.model.errors import QuestionTooLong

    client = OpenAIClient(server + "/v1", KEY, system_prompt=SYSTEM, sampling=Sampling(max_new_tokens=24))
    paste = "Dec  3 10:14:07 bastion sshd[48213]: Failed password for invalid user admin from 203.0.113.45\n" * 60
    with pytest.raises(QuestionTooLong) as caught:
        list(client.stream("Why do we see this?\n" + paste, [("What is SSH?", "A remote shell.")], Usage()))
    # The figures come from the server's own error message (its context window or --max-prompt-tokens).
    assert caught.value.prompt_tokens > caught.value.limit > 0
