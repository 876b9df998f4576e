import json
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file
from servers import clean_env

from secbot.model.runtime.engine import Engine
from secbot.model.runtime.generation import Sampling
from secbot.model.training.evaluation import evaluate, read_predictions
from secbot.model.training.record_formats import Record, write_records
from secbot.model.training.trainer import METADATA_FILE, TrainConfig, TrainingError, train

SYSTEM = "You are secbot."
RECORDS = [
    Record("What is phishing?", "Phishing tricks people into giving away passwords."),
    Record("Who are you?", "I am secbot, the security team's assistant."),
    Record("什么是勒索软件？", "勒索软件会加密文件并索要赎金。"),
    Record("And MFA?", "A second factor such as a hardware key.", (("What is 2FA?", "Two factors."),)),
    Record("What is a zero-day?", "A flaw the vendor has not patched yet."),
    Record("你是谁？", "我是secbot，安全团队的助手。"),
    Record("What port does SSH use?", "SSH listens on TCP port 22."),
    Record("How do I report a suspicious email?", "Forward it to security@example.com."),
]
PTUNING = TrainConfig.of(method="ptuning", pre_seq_len=64, lr=3e-2, batch_size=8, grad_accum=1,
                         max_steps=200, save_steps=20, logging_steps=10)
LORA = TrainConfig.of(method="lora", lora_rank=16, lora_dropout=0.0, lr=3e-3, batch_size=8,
                      grad_accum=1, max_steps=100, logging_steps=10)
GREEDY = Sampling(max_new_tokens=40)


def cli_env(**extra):
    return clean_env(SECBOT_SYSTEM_PROMPT=SYSTEM, **extra)


def config_flags(config: TrainConfig) -> list[str]:
    return ["--method", config.method, "--pre-seq-len", str(config.ptuning.pre_seq_len), "--lr",
            str(config.lr), "--batch-size", str(config.batch_size), "--grad-accum",
            str(config.grad_accum), "--max-steps", str(config.max_steps), "--save-steps",
            str(config.save_steps), "--logging-steps", str(config.logging_steps)]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.json"
    write_records(path, RECORDS)
    return path


@pytest.fixture(scope="module")
def ptuned(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ptuning"
    return train(tiny_dir, RECORDS, out, PTUNING, RECORDS[:2], system_prompt=SYSTEM, progress=False)


def reproduced(tiny_dir, adapter_dir) -> float:
    engine = Engine.load(tiny_dir, adapter_dir, system_prompt=SYSTEM)
    metrics, _ = evaluate(engine, RECORDS, sampling=GREEDY)
    return metrics["exact_match"]


def test_ptuning_reproduces_its_training_answers(tiny_dir, ptuned):
    assert reproduced(tiny_dir, ptuned.adapter_dir) >= 90.0


def test_lora_reproduces_its_training_answers(tiny_dir, tmp_path):
    result = train(tiny_dir, RECORDS, tmp_path / "lora", LORA, system_prompt=SYSTEM, progress=False)
    assert reproduced(tiny_dir, result.adapter_dir) >= 90.0


def test_untrained_model_does_not_reproduce_them(tiny_dir):
    engine = Engine.load(tiny_dir, system_prompt=SYSTEM)
    assert evaluate(engine, RECORDS, sampling=GREEDY)[0]["exact_match"] == 0.0


def test_output_holds_only_adapter_weights_metadata_and_loss_curve(ptuned, tiny_dir):
    out = ptuned.adapter_dir
    assert sorted(p.name for p in out.iterdir() if p.name != "README.md") == [
        "adapter_config.json", "adapter_model.safetensors", "loss.jsonl", "loss_curve.png",
        METADATA_FILE]
    weights = load_file(out / "adapter_model.safetensors")
    assert sum(t.numel() for t in weights.values()) < 100_000  # the prefix, not the base
    meta = json.loads((out / METADATA_FILE).read_text())
    assert meta["method"] == "ptuning" and meta["steps"] == 200
    assert meta["base_model"]["path"] == str(tiny_dir) and meta["data"]["records"] == 8
    assert len(meta["data"]["sha256"]) == 64 and meta["system_prompt"] == SYSTEM
    assert meta["hyperparameters"]["pre_seq_len"] == 64
    assert meta["metrics"]["train_loss"] < 0.1 and "val_loss" in meta["metrics"]
    losses = [json.loads(l) for l in (out / "loss.jsonl").read_text().splitlines()]
    assert [e["step"] for e in losses if "loss" in e] == list(range(10, 201, 10))
    assert (out / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not out.with_name(out.name + ".partial").exists()


def test_adapter_reloaded_in_a_fresh_process_gives_identical_answers(tiny_dir, ptuned, data_file, tmp_path):
    engine = Engine.load(tiny_dir, ptuned.adapter_dir, system_prompt=SYSTEM)
    expected = engine.generate_batch([(r.prompt, r.history) for r in RECORDS], GREEDY)
    out = subprocess.run([sys.executable, "-m", "secbot.bot.cli.commands", "eval", "--model", str(tiny_dir),
                          "--adapter", str(ptuned.adapter_dir), "--data", str(data_file),
                          "--out", str(tmp_path), "--max-new-tokens", "40"],
                         capture_output=True, text=True, env=cli_env(), timeout=300)
    assert out.returncode == 0, out.stderr
    preds, labels = read_predictions(tmp_path / "generated_predictions.txt")
    assert preds == expected and labels == [r.response for r in RECORDS]
    assert json.loads(out.stdout.strip().splitlines()[-1])["exact_match"] >= 90.0


def test_killed_training_resumes_and_continues_the_step_count(tiny_dir, ptuned, data_file, tmp_path):
    out = tmp_path / "resumed"
    proc = subprocess.Popen([sys.executable, "-m", "secbot.bot.cli.commands", "train", "--data", str(data_file),
                             "--model", str(tiny_dir), "--out", str(out), *config_flags(PTUNING)],
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = out.with_name("resumed.partial")
    deadline = time.time() + 240
    while not list(partial.glob("checkpoint-*[0-9]")) or \
            int(sorted(partial.glob("checkpoint-*[0-9]"))[-1].name.split("-")[1]) < 40:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing half-written where the adapter will be

    result = train(tiny_dir, RECORDS, out, PTUNING, RECORDS[:2], system_prompt=SYSTEM, progress=False)
    assert result.metadata["resumed_from_step"] >= 40 and result.metadata["steps"] == 200
    steps = [json.loads(l)["step"] for l in (out / "loss.jsonl").read_text().splitlines()
             if "loss" in json.loads(l)]
    assert steps == list(range(10, 201, 10))
    # Same data order, optimizer and RNG state: the resumed run ends where an unbroken one does.
    resumed = load_file(out / "adapter_model.safetensors")
    unbroken = load_file(ptuned.adapter_dir / "adapter_model.safetensors")
    assert all((resumed[k] - unbroken[k]).abs().max() < 1e-4 for k in unbroken)


def test_an_interrupted_prefix_projection_run_resumes_where_an_unbroken_one_ends(tiny_dir, tmp_path):
    """The projection MLP is trainable state too: a resumed run must not restart it."""
    config = TrainConfig.of(**{**PTUNING.flat(), "prefix_projection": True, "prefix_hidden_size": 32,
                               "pre_seq_len": 8, "max_steps": 30, "save_steps": 10, "lr": 1e-2})
    unbroken = train(tiny_dir, RECORDS, tmp_path / "unbroken", config, system_prompt=SYSTEM, progress=False)

    class Crash(Exception):
        pass

    def crash_after_a_checkpoint(entry):
        if entry.get("step") == 20:
            raise Crash

    out = tmp_path / "resumed"
    with pytest.raises(Crash):
        train(tiny_dir, RECORDS, out, config, system_prompt=SYSTEM, progress=False,
              on_log=crash_after_a_checkpoint)
    resumed = train(tiny_dir, RECORDS, out, config, system_prompt=SYSTEM, progress=False)
    assert resumed.metadata["resumed_from_step"] == 10 and resumed.metadata["steps"] == 30
    a = load_file(unbroken.adapter_dir / "adapter_model.safetensors")
    b = load_file(out / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


def test_an_interrupted_run_with_other_data_is_not_resumed(tiny_dir, tmp_path):
    out = tmp_path / "a"
    config = TrainConfig.of(**{**PTUNING.flat(), "max_steps": 3, "save_steps": 1, "logging_steps": 1})

    def crash_at_step_two(entry):
        if entry.get("step") == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # interrupted after its step-1 checkpoint
        train(tiny_dir, RECORDS[:4], out, config, system_prompt=SYSTEM, progress=False, on_log=crash_at_step_two)
    with pytest.raises(TrainingError, match="data_hash.*--restart"):
        train(tiny_dir, RECORDS, out, config, system_prompt=SYSTEM, progress=False)
    assert train(tiny_dir, RECORDS, out, config, system_prompt=SYSTEM, progress=False,
                 restart=True).metadata["steps"] == 3


def test_existing_output_is_never_overwritten(tiny_dir, ptuned):
    with pytest.raises(TrainingError, match="already exists"):
        train(tiny_dir, RECORDS, ptuned.adapter_dir, PTUNING, system_prompt=SYSTEM)


def test_malformed_data_fails_with_line_or_is_skipped_and_counted(tiny_dir, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "q", "response": "a"}\n{"prompt": "q2"}\n{"prompt": "q3", "response": "a3"}\n')
    args = [sys.executable, "-m", "secbot.bot.cli.commands", "train", "--data", str(data), "--model", str(tiny_dir),
            "--out", str(tmp_path / "o"), "--max-steps", "2", "--batch-size", "2", "--grad-accum", "1",
            "--pre-seq-len", "4"]
    out = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert out.returncode == 2 and "bad.jsonl:2: 'response'" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "o").exists()
    out = subprocess.run(args + ["--skip-bad"], capture_output=True, text=True, env=cli_env(), timeout=300)
    assert out.returncode == 0, out.stderr
    assert "skipped 1 malformed record(s)" in out.stderr
    assert json.loads((tmp_path / "o" / METADATA_FILE).read_text())["data"]["records"] == 2


@pytest.mark.parametrize("config", [PTUNING, LORA], ids=["ptuning", "lora"])
def test_answer_only_logits_give_the_models_own_loss(tiny_dir, config):
    import torch
    from peft import get_peft_model

    from secbot.model.runtime.loading import load_base
    from secbot.model.runtime.prompting import PromptBuilder
    from secbot.model.training.trainer import answer_loss, collate, encode, peft_config_for

    loaded = load_base(tiny_dir)
    torch.manual_seed(0)
    model = get_peft_model(loaded.model, peft_config_for(config, loaded.model))
    builder = PromptBuilder(loaded.tokenizer, SYSTEM)
    batch = collate([encode(r, builder, config) for r in RECORDS], loaded.tokenizer.pad_token_id, loaded.device)
    assert len({int(m.sum()) for m in batch["attention_mask"]}) > 1  # rows of different lengths
    own = model(**batch).loss
    ours = answer_loss(model, batch)
    assert abs(ours.item() - own.item()) < 1e-5
    ours.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
