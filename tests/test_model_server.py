"""`secbot serve-model` in a subprocess on loopback, with the tiny model."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from peft import PrefixTuningConfig, TaskType, get_peft_model

from secbot.model.client import OpenAIClient, Usage
from secbot.model.engine import Engine
from secbot.model.generation import Sampling
from secbot.model.loading import load_base
from servers import clean_env, free_port, secbot_server

KEY = "model-server-test-key"
SYSTEM = "You are secbot."
QUESTIONS = [f"Question {i}: what is {topic}?" for i, topic in enumerate(
    ["phishing", "ransomware", "MFA", "XSS", "CSRF", "a zero-day", "an IOC", "EDR",
     "横向移动", "勒索软件", "a SIEM", "DLP", "a honeypot", "DNS tunnelling", "privilege escalation", "SQL injection"])]


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    port = free_port()
    env = clean_env(SECBOT_MODEL_API_KEY=KEY, SECBOT_SYSTEM_PROMPT=SYSTEM, SECBOT_MAX_NEW_TOKENS="24",
                    SECBOT_DATA_DIR=str(tmp_path_factory.mktemp("srv")))
    base = f"http://127.0.0.1:{port}"
    with secbot_server(["serve-model", "--model", str(tiny_dir), "--host", "127.0.0.1", "--port", str(port)],
                       env, base + "/health"):
        yield base


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
        assert body["usage"]["completion_tokens"] > 0 and body["choices"][0]["finish_reason"] in ("stop", "length")
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
        assert results[q].json()["choices"][0]["message"]["content"] in (local.generate(q), tuned.generate(q))
    assert complete(server, QUESTIONS[0]).json()["choices"][0]["message"]["content"] == tuned.generate(QUESTIONS[0])
    back = httpx.post(server + "/admin/adapter", json={"path": None}, headers={"Authorization": f"Bearer {KEY}"})
    assert back.status_code == 200 and back.json()["adapter"] is None
    assert complete(server, QUESTIONS[0]).json()["choices"][0]["message"]["content"] == local.generate(QUESTIONS[0])


def test_bad_requests_get_json_errors(server):
    url = server + "/v1/chat/completions"
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    bad = httpx.post(url, content="{not json", headers=auth)
    assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]["message"]
    not_user_last = httpx.post(url, headers=auth, json={"messages": [{"role": "assistant", "content": "x"}]})
    assert not_user_last.status_code == 400 and "last message" in not_user_last.json()["error"]["message"]
    assert httpx.post(url, headers=auth, json={"messages": []}).status_code == 400
    assert httpx.post(url, headers=auth, json={"messages": [{"role": "user", "content": "x"}],
                                               "max_tokens": 10**6}).status_code == 400
    huge = httpx.post(url, headers=auth, content=json.dumps({"messages": [{"role": "user", "content": "x" * 2_000_000}]}))
    assert huge.status_code == 413
    assert httpx.post(server + "/admin/adapter", json={"path": None}).status_code == 401
    missing = httpx.post(server + "/admin/adapter", json={"path": "/nowhere"}, headers=auth)
    assert missing.status_code == 400 and "/nowhere" in missing.json()["error"]["message"]


def test_models_health_and_readiness(server):
    models = httpx.get(server + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert models["data"][0]["id"] == "secbot"
    assert httpx.get(server + "/health").json() == {"status": "ok"}
    assert httpx.get(server + "/ready").json()["ready"] is True


def test_the_client_switches_the_servers_version_and_answers_say_which_served(server, adapter, local):
    from types import SimpleNamespace

    client = OpenAIClient(server + "/v1", KEY, switches=True, sampling=Sampling(max_new_tokens=8))
    client.use_version(SimpleNamespace(id=7, adapter_path=str(adapter)))
    ready = httpx.get(server + "/ready").json()
    assert (ready["adapter"], ready["version"]) == (str(adapter.resolve()), 7)
    usage = Usage()
    "".join(client.stream("What is phishing?", [], usage))
    assert usage.version_id == 7  # from the answer itself (system_fingerprint)
    client.use_version(None)
    assert httpx.get(server + "/ready").json()["adapter"] is None
    with pytest.raises(Exception, match="refused"):
        client.use_version(SimpleNamespace(id=8, adapter_path="/nowhere"))
    assert httpx.get(server + "/ready").json()["version"] is None


def generated_tokens(base) -> float:
    metrics = httpx.get(base + "/metrics").text
    return float(next(l for l in metrics.splitlines() if l.startswith("secbot_generated_tokens_total")).split()[1])


def test_a_streaming_client_that_disconnects_stops_its_generation(server, local):
    question, limit = "Question 1: list all ports", 1200
    sampling = Sampling(max_new_tokens=limit)
    full = local.generate_streams([local.prompt_ids(question, [], sampling)], [limit], sampling).tokens(0)
    assert full > 400  # left alone, this answer runs long
    before = generated_tokens(server)
    body = {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
            "stream": True, "max_tokens": limit}
    with httpx.stream("POST", server + "/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as response:
        lines = response.iter_lines()
        while '"content"' not in next(lines):
            pass  # hang up after the first piece of the answer
    last, now = -1.0, generated_tokens(server)
    while now != last:  # until the server has stopped generating
        time.sleep(0.5)
        last, now = now, generated_tokens(server)
    assert now - before < full / 4
