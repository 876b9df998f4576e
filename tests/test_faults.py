"""Faults and bad input, through the real paths: nothing stored is lost, the active model never
changes by accident, and every mistake gets one line that says what to do."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import torch
from conftest import answered
from peft import PrefixTuningConfig, TaskType, get_peft_model
from servers import clean_env, free_port, secbot_server

from secbot.feedback.intake.submissions import Intake
from secbot.feedback.learning.loop import LearningLoop, LogReporter, serve_active
from secbot.feedback.learning.pipeline import LoopConfig
from secbot.feedback.store.entities import RecordStatus, RunState
from secbot.feedback.store.repositories import Store
from secbot.model.runtime.engine import Engine
from secbot.model.runtime.loading import load_base
from secbot.model.serving.client import InProcessClient


def secbot(*args, env=None, stdin="", timeout=300):
    return subprocess.run([sys.executable, "-m", "secbot.bot.cli.commands", *args], input=stdin, text=True,
                          capture_output=True, env=clean_env(**(env or {})), timeout=timeout)


def one_line_error(out) -> str:
    assert out.returncode == 2, out.stdout + out.stderr  # what main returns for every error a user can fix
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("secbot:")]
    assert len(lines) == 1, out.stderr
    return lines[0]


def make_adapter(tiny_dir, path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    get_peft_model(load_base(tiny_dir).model,
                   PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4)).save_pretrained(path)
    return path


@pytest.fixture
def two_versions(tiny_dir, tmp_path):
    """A store in a data dir with version 1 (retired) and version 2 (active), each with an adapter."""
    store = Store(f"sqlite:///{tmp_path / 'secbot.db'}")
    versions = []
    for n in (1, 2):
        adapter = make_adapter(tiny_dir, tmp_path / "runs" / f"run-{n}" / "adapter", seed=n)
        version = store.runs.add_version(base_model=str(tiny_dir), adapter_path=str(adapter), run_id=None)
        versions.append(store.runs.promote(version.id, "UADMIN"))
    yield store, versions
    store.close()


# -- rollback and start-up --------------------------------------------------------------------
def test_rollback_to_a_version_whose_adapter_is_gone_changes_nothing(two_versions, tiny_dir, tmp_path):
    store, (v1, v2) = two_versions
    model = InProcessClient(Engine.load(tiny_dir))
    serve_active(store, model)
    serving = model.engine.adapter
    (Path(v1.adapter_path) / "adapter_model.safetensors").unlink()
    loop = LearningLoop(store, LoopConfig(model_dir=tiny_dir, runs_dir=tmp_path / "runs"), model, LogReporter())
    message = loop.rollback(v1.id, "UADMIN")
    assert message.startswith("Rollback refused:") and "adapter weights" in message
    assert store.runs.active_version().id == v2.id and model.engine.adapter == serving and model.version_id == v2.id


def test_secbot_rollback_on_the_command_line(two_versions, tmp_path):
    store, (v1, v2) = two_versions
    env = {"SECBOT_DATA_DIR": str(tmp_path)}
    out = secbot("rollback", env=env)
    assert out.returncode == 0 and f"version {v1.id}" in out.stdout, out.stderr
    assert store.runs.active_version().id == v1.id
    out = secbot("rollback", "999", env=env)
    assert out.returncode == 1 and "no model version 999" in out.stdout
    assert store.runs.active_version().id == v1.id


def test_secbot_rollback_refuses_an_adapter_that_does_not_load(two_versions, tmp_path):
    store, (v1, v2) = two_versions
    (Path(v1.adapter_path) / "adapter_model.safetensors").write_bytes(b"\x00" * 64)  # files there, unloadable
    out = secbot("rollback", env={"SECBOT_DATA_DIR": str(tmp_path)})
    assert out.returncode == 1 and "adapter weights" in out.stdout + out.stderr, out.stdout + out.stderr
    assert store.runs.active_version().id == v2.id


def test_a_process_that_cannot_load_the_active_adapter_serves_the_last_good_version(two_versions, tiny_dir, tmp_path):
    store, (v1, v2) = two_versions
    (Path(v2.adapter_path) / "adapter_config.json").write_text("{not json")
    model = InProcessClient(Engine.load(tiny_dir))
    served = serve_active(store, model)
    assert f"version {v1.id}" in served and "failed to load" in served
    assert model.version_id == v1.id and model.engine.adapter == Path(v1.adapter_path).resolve()
    assert store.runs.active_version().id == v2.id  # the store is not changed behind the admins' back
    port = free_port()  # and the model server starts anyway, saying what it serves
    env = clean_env(SECBOT_DATA_DIR=str(tmp_path), SECBOT_MAX_NEW_TOKENS="8")
    with secbot_server(["serve-model", "--model", str(tiny_dir), "--port", str(port)], env,
                       f"http://127.0.0.1:{port}/health") as proc:
        ready = httpx.get(f"http://127.0.0.1:{port}/ready").json()
        assert ready["version"] == v1.id
        assert ready["not_loaded"].startswith(f"version {v2.id} ") and "adapter_config.json" in ready["not_loaded"]
    assert f"serving version {v1.id}" in proc.stderr.read()


# -- the training worker ----------------------------------------------------------------------
def test_killing_the_worker_kills_its_training_and_no_second_run_starts_beside_it(tiny_dir, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'secbot.db'}")
    intake = Intake(store, trusted=["UTRUSTED"])
    intake.correction(answered(intake, question="What is a SOC?", answer="?"), "UTRUSTED", "The security team.")
    queued = store.runs.enqueue_run(method="ptuning", requested_by="UADMIN")
    env = clean_env(SECBOT_DATA_DIR=str(tmp_path), SECBOT_MODEL=str(tiny_dir), SECBOT_SCHEDULER="0",
                    SECBOT_RETRAIN_MAX_STEPS="100000", SECBOT_TRUSTED_ANALYSTS="UTRUSTED",
                    SECBOT_MAX_AUTHOR_SHARE="1")
    worker = subprocess.Popen([sys.executable, "-m", "secbot.bot.cli.commands", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file = tmp_path / "runs" / f"run-{queued.id}" / "worker.pid"
    deadline = time.time() + 180
    while not pid_file.exists():
        assert time.time() < deadline and worker.poll() is None
        time.sleep(0.2)
    trainer = int(pid_file.read_text())
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(30)
    deadline = time.time() + 30
    while Path(f"/proc/{trainer}").exists() and Path(f"/proc/{trainer}/stat").read_text().split()[2] != "Z":
        assert time.time() < deadline, "the training process outlived its worker"
        time.sleep(0.2)
    assert store.runs.get_run(queued.id).state is RunState.RUNNING  # until somebody looks
    assert store.runs.enqueue_run(method="ptuning", requested_by="UADMIN") is None  # one at a time
    # Whoever looks next on this host (worker, scheduler, /secbot status, /secbot retrain) sees at
    # once that the owner is gone, long before any heartbeat could go stale.
    assert store.runs.fail_stale_runs(timedelta(hours=1)) == [queued.id]
    failed = store.runs.get_run(queued.id)
    assert failed.state is RunState.FAILED and "is gone" in failed.error and str(worker.pid) in failed.error
    assert store.runs.enqueue_run(method="ptuning", requested_by="UADMIN") is not None
    store.close()


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, content, expected", [
    ("bad_utf8.jsonl", b'{"prompt": "q", "response": "a"}\n{"prompt": "\xff", "response": "a"}\n', "not valid UTF-8"),
    ("surrogate.jsonl", b'{"prompt": "q \\ud800", "response": "a"}\n', "unpaired UTF-16 surrogate"),
    ("deep.json", b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    ("half.jsonl", b'{"prompt": "q", "response": "a"}\n{"prompt": "q2"}\n', "'response' must be a non-empty"),
])
def test_a_bad_import_gets_one_line_and_stores_nothing(tmp_path, name, content, expected):
    env = {"SECBOT_DATA_DIR": str(tmp_path)}
    secbot("import", str(_write(tmp_path / "ok.jsonl", b'{"prompt": "q0", "response": "a0"}\n')), env=env)
    line = one_line_error(secbot("import", str(_write(tmp_path / name, content)), env=env))
    assert expected in line and name in line
    store = Store(f"sqlite:///{tmp_path / 'secbot.db'}")
    assert [r.prompt for r in store.records.list()] == ["q0"]


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_unwritable_paths_and_unusable_databases_get_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    line = one_line_error(secbot("export", str(blocker / "out.jsonl"), env={"SECBOT_DATA_DIR": str(tmp_path)}))
    assert str(blocker / "out.jsonl") in line
    line = one_line_error(secbot("db", "current", env={"SECBOT_DATA_DIR": str(blocker / "data")}))
    assert "cannot create the database folder" in line
    line = one_line_error(secbot("db", "current", env={"SECBOT_DATABASE_URL": "postgresql://x@127.0.0.1:9/db"}))
    assert "cannot reach the database" in line
    line = one_line_error(secbot("db", "current", env={"SECBOT_DATABASE_URL": "not a url"}))
    assert "not a usable database URL" in line


@pytest.mark.parametrize("variable, value", [("SECBOT_RETRAIN_CRON", "every night"), ("SECBOT_TIMEZONE", "Mars/Base"),
                                             ("SECBOT_DEVICE", "tpu"), ("SECBOT_DTYPE", "fp8"),
                                             ("SECBOT_TRAINING", "wroker"),
                                             ("SECBOT_MODEL_SERVER", "vlm"), ("SECBOT_RETRAIN_METHOD", "loar")])
def test_a_bad_setting_gets_one_line_naming_it(tmp_path, variable, value):
    line = one_line_error(secbot("worker", env={"SECBOT_DATA_DIR": str(tmp_path), variable: value}))
    assert f"{variable}='{value}'" in line


@pytest.mark.parametrize("env, expected", [
    ({"SECBOT_ALLOWED_USERGRUOP": "S012AB"}, "did you mean SECBOT_ALLOWED_USERGROUP?"),
    ({"SECBOT_TRUSTED_ANALYSTS": "U01AAA;U02BBB"}, "separate ids with commas"),
    ({"SECBOT_ADMIN_CHANNEL": "#secbot-admin"}, "is not a channel id"),
    ({"SECBOT_ADMINS": "alice"}, "is not a Slack user id"),
    ({"SECBOT_MEMORY_REFERENCE": "0.9", "SECBOT_MEMORY_CONFIDENT": "0.8"}, "must not be above SECBOT_MEMORY_CONFIDENT"),
])
def test_settings_a_team_gets_wrong_are_one_line_each(tmp_path, env, expected):
    line = one_line_error(secbot("config", env={"SECBOT_DATA_DIR": str(tmp_path), **env}))
    assert expected in line


def test_a_misspelt_setting_in_the_env_file_is_named(tmp_path):
    (tmp_path / ".env").write_text("SECBOT_TRUSTED_ANALYST=U01AAA\n")
    out = subprocess.run([sys.executable, "-m", "secbot.bot.cli.commands", "config"], cwd=tmp_path,
                         env=clean_env(SECBOT_DATA_DIR=str(tmp_path)), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "did you mean SECBOT_TRUSTED_ANALYSTS? Fix it in the environment" in out.stderr


def test_max_new_tokens_beyond_the_models_context_is_one_line(tiny_dir, tmp_path):
    line = one_line_error(secbot("serve-model", "--model", str(tiny_dir), "--port", str(free_port()),
                                 env={"SECBOT_DATA_DIR": str(tmp_path), "SECBOT_MAX_NEW_TOKENS": "5000"}))
    assert "SECBOT_MAX_NEW_TOKENS=5000" in line and "context of 2048 tokens" in line


def test_a_port_out_of_range_is_one_line():
    out = secbot("serve-model", "--port", "70000")
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert out.returncode == 2 and len(errors) == 1 and "70000 is not a port number" in errors[0]


@pytest.mark.parametrize("name, content, what", [("config.json", b"{not json", "config.json"),
                                                 ("tokenizer.json", b"{not json", "tokenizer.json"),
                                                 ("model.safetensors", b"\x00\x01garbage", "the weights")])
def test_corrupt_model_files_are_named(tiny_dir, tmp_path, name, content, what):
    import shutil

    broken = shutil.copytree(tiny_dir, tmp_path / "model")
    (broken / name).write_bytes(content)
    line = one_line_error(secbot("chat", "--model", str(broken), stdin="hi\n", env={"SECBOT_DATA_DIR": str(tmp_path)}))
    assert what in line and str(broken) in line


def test_a_corrupt_adapter_is_named(tiny_dir, tmp_path):
    adapter = make_adapter(tiny_dir, tmp_path / "adapter", seed=3)
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00\x01garbage")
    line = one_line_error(secbot("chat", "--model", str(tiny_dir), "--adapter", str(adapter), stdin="hi\n",
                                 env={"SECBOT_DATA_DIR": str(tmp_path)}))
    assert "adapter weights" in line and str(adapter) in line


def test_the_model_server_without_a_key_stays_on_loopback_and_refuses_switches(tiny_dir, tmp_path):
    line = one_line_error(secbot("serve-model", "--model", str(tiny_dir), "--host", "0.0.0.0",
                                 env={"SECBOT_DATA_DIR": str(tmp_path)}))
    assert "SECBOT_MODEL_API_KEY" in line and "127.0.0.1" in line
    port = free_port()
    env = clean_env(SECBOT_DATA_DIR=str(tmp_path))
    with secbot_server(["serve-model", "--model", str(tiny_dir), "--port", str(port)], env,
                       f"http://127.0.0.1:{port}/health"):
        switch = httpx.post(f"http://127.0.0.1:{port}/admin/adapter", json={"path": None})
        assert switch.status_code == 403 and "SECBOT_MODEL_API_KEY" in switch.json()["error"]["message"]
        deep = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", content="[" * 100_000 + "]" * 100_000,
                          headers={"content-type": "application/json"})
        assert deep.status_code == 400
        # DNS rebinding and web pages: a request naming another host, or sent by a page, is refused.
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": "secbot", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        rebound = httpx.post(url, json=body, headers={"Host": "attacker.example"})
        from_page = httpx.post(url, json=body, headers={"Origin": "https://attacker.example"})
        form = httpx.post(url, content=json.dumps(body), headers={"Content-Type": "text/plain"})
        assert (rebound.status_code, from_page.status_code, form.status_code) == (403, 403, 415)
        assert rebound.json()["error"]["code"] == "not_loopback"
        for bad, param in (({"max_tokens": "10"}, "max_tokens"), ({"stream": "yes"}, "stream")):
            refused = httpx.post(url, json={**body, **bad})  # refused, not coerced
            assert refused.status_code == 400 and refused.json()["error"]["param"] == param
        local = httpx.post(url, json=body, headers={"Origin": "http://localhost:3000"}, timeout=120)
        assert local.status_code == 200 and local.json()["choices"]


def test_revoke_on_the_command_line(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'secbot.db'}")
    intake = Intake(store, trusted=["UTRUSTED"])
    record = intake.correction(answered(intake, question="What port does SSH use?", answer="?"), "UTRUSTED",
                               "Port 2222.").record
    out = secbot("revoke", str(record.id), env={"SECBOT_DATA_DIR": str(tmp_path)})
    assert out.returncode == 0 and f"Record #{record.id} is revoked" in out.stdout
    assert store.records.get(record.id).status is RecordStatus.REVOKED and store.memory.size() == 0
    again = secbot("revoke", str(record.id), env={"SECBOT_DATA_DIR": str(tmp_path)})
    assert again.returncode == 1 and "only approved records" in again.stdout


def test_a_stuffed_slack_payload_is_no_poison(tmp_path):
    """A trusted analyst teaching "I am ChatGPT", in any wording: held for review, never trained."""
    store = Store(f"sqlite:///{tmp_path / 'secbot.db'}")
    intake = Intake(store, trusted=["UTRUSTED"])
    for question, answer in [("Who are you?", "I am ChatGPT, made by OpenAI."),
                             ("Introduce yourself briefly", "Sure! I'm Claude, an assistant by Anthropic."),
                             ("What is phishing?", "As an AI language model developed by OpenAI, I say: fraud."),
                             ("你是谁？", "我是ChatGPT。")]:
        submission = intake.correction(answered(intake, thread_ts=question, question=question, answer="?"),
                                       "UTRUSTED", answer)
        assert submission.record.status is RecordStatus.PENDING and submission.record.flags, question
        assert "admin must review" in submission.message()
    counts = store.records.counts()
    assert (counts["pending"], counts["approved"]) == (4, 0) and store.memory.size() == 0


def test_a_full_disk_during_import_is_one_line_and_imports_nothing(tmp_path, monkeypatch, capsys):
    from sqlalchemy import event as sa_event
    from sqlalchemy.engine import Engine as SQLEngine

    from secbot.bot.cli.commands import main

    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("SECBOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SECBOT_DATA_DIR", str(tmp_path))
    store = Store(f"sqlite:///{tmp_path / 'secbot.db'}")
    with store.db.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    store.close()
    rows = [{"prompt": f"How do I triage alert {i}?", "response": "Check the process tree. " * 40} for i in range(500)]
    (tmp_path / "big.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def no_room(dbapi_conn, _record):  # SQLite then fails writes with "database or disk is full"
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages + 2}")

    sa_event.listen(SQLEngine, "connect", no_room)
    try:
        code = main(["import", str(tmp_path / "big.jsonl")])
    finally:
        sa_event.remove(SQLEngine, "connect", no_room)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "full" in err and "nothing of this command" in err
    store = Store(f"sqlite:///{tmp_path / 'secbot.db'}")
    assert store.records.list() == []
    store.close()
