import io
import os
import subprocess
import sys

import pytest
from servers import clean_env

from secbot.bot.cli.terminal_chat import run_chat
from secbot.bot.settings import Settings
from secbot.feedback.answering import Responder
from secbot.feedback.store.repositories import Store
from secbot.model.runtime.generation import Sampling
from secbot.model.serving.client import InProcessClient


def secbot(*args, env=None, cwd=None, stdin=""):
    return subprocess.run([sys.executable, "-m", "secbot.bot.cli.commands", *args], input=stdin, text=True,
                          capture_output=True, env=clean_env(**(env or {})), cwd=cwd, timeout=300)


def test_chat_answers_piped_questions_and_exits(tiny_dir, tmp_path):
    out = secbot("chat", "--model", str(tiny_dir), stdin="What is phishing?\nstop\nnever asked\n",
                 env={"SECBOT_DATA_DIR": str(tmp_path), "SECBOT_MAX_NEW_TOKENS": "12"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("secbot> ") == 1
    assert len(out.stdout.split("secbot> ", 1)[1].strip()) > 0


def test_chat_keeps_history_and_clear_resets_it(fresh_engine, tmp_path):
    engine = fresh_engine
    engine.sampling = Sampling(max_new_tokens=12)
    store = Store(f"sqlite:///{tmp_path / 'chat.db'}")
    stdout = io.StringIO()
    run_chat(Responder(store.memory, store.records, InProcessClient(engine)),
             io.StringIO("What is XSS?\nHow do I stop it?\nclear\nHow do I stop it?\n"), stdout)
    answers = [line.removeprefix("secbot> ") for line in stdout.getvalue().splitlines()
               if line.startswith("secbot> ")]
    first = engine.generate("What is XSS?")
    assert answers[0] == first
    assert answers[1] == engine.generate("How do I stop it?", [("What is XSS?", first)])
    assert answers[2] == engine.generate("How do I stop it?")
    assert answers[1] != answers[2]


def test_chat_reports_missing_model_clearly(tmp_path):
    out = secbot("chat", "--model", str(tmp_path / "absent"), stdin="hi\n")
    assert out.returncode == 2
    assert str(tmp_path / "absent") in out.stderr and "Traceback" not in out.stderr


def test_tiny_model_command_writes_a_loadable_model(tmp_path):
    out = secbot("tiny-model", str(tmp_path / "t"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "t" / "model.safetensors").is_file()
    assert (tmp_path / "t" / "tokenizer.json").is_file()


def test_config_masks_secrets_and_reads_dotenv(tmp_path):
    (tmp_path / ".env").write_text("SECBOT_MODEL=/models/glm-4-9b-chat-hf\nSECBOT_ADMINS=U1, U2\n")
    token = "xoxb-1111111111-2222222222-abcdefghijklmnop"
    out = secbot("config", cwd=tmp_path, env={
        "SLACK_BOT_TOKEN": token, "SECBOT_DATA_DIR": str(tmp_path),
        "SECBOT_DATABASE_URL": "postgresql://secbot:hunter2@db/secbot"})
    assert out.returncode == 0, out.stderr
    assert token not in out.stdout and "hunter2" not in out.stdout
    assert "SLACK_BOT_TOKEN=****mnop" in out.stdout
    assert "SECBOT_MODEL=/models/glm-4-9b-chat-hf" in out.stdout
    assert "SECBOT_ADMINS=U1,U2" in out.stdout


def test_bad_config_names_the_variable(tmp_path):
    out = secbot("config", cwd=tmp_path, env={"SECBOT_MAX_NEW_TOKENS": "lots"})
    assert out.returncode == 2
    assert "SECBOT_MAX_NEW_TOKENS='lots'" in out.stderr and "Traceback" not in out.stderr


def test_settings_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("SECBOT_", "SLACK_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SECBOT_DATA_DIR", str(tmp_path))
    settings = Settings.read()
    assert settings.model.path == "tiny" and settings.storage.url == f"sqlite:///{tmp_path}/secbot.db"
    assert "secbot" in settings.model.identity_prompt
    assert (settings.model.top_p, settings.model.temperature, settings.model.do_sample) == (0.7, 0.95, False)


def test_chat_answers_from_the_bots_store_at_once_and_no_memory_turns_it_off(tiny_dir, tmp_path):
    env = {"SECBOT_DATA_DIR": str(tmp_path), "SECBOT_MAX_NEW_TOKENS": "12", "SECBOT_TRUSTED_ANALYSTS": "UTRUSTED"}
    question = "What port does SSH use?"
    from secbot.feedback.intake.submissions import Intake

    store = Store(f"sqlite:///{tmp_path / 'secbot.db'}")  # the bot's store: SECBOT_DATA_DIR's default
    intake = Intake(store, trusted=["UTRUSTED"])
    turn = intake.question(channel="C1", thread_ts="1.0", question=question, asker="U1", question_ts="1.0")
    intake.answer(turn, "(wrong)")
    record = intake.correction(turn, "UTRUSTED", "SSH listens on TCP port 22.").record
    store.close()
    on = secbot("chat", "--model", str(tiny_dir), stdin="Which port is SSH on?\n", env=env)
    assert on.returncode == 0, on.stderr
    assert "secbot> SSH listens on TCP port 22." in on.stdout
    assert "Team answer · approved by @UTRUSTED" in on.stdout and f"record #{record.id}" in on.stdout
    off = secbot("chat", "--model", str(tiny_dir), "--no-memory", stdin="Which port is SSH on?\n", env=env)
    assert off.returncode == 0 and "TCP port 22" not in off.stdout and "team memory: off" in off.stderr


@pytest.mark.parametrize("flag", ["--max-batch", "--max-batch-tokens", "--max-prompt-tokens", "--prefill-chunk"])
def test_serve_model_sizes_must_be_positive(flag):
    from secbot.bot.cli.commands import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve-model", flag, "0"])
    assert getattr(build_parser().parse_args(["serve-model", flag, "3"]), flag[2:].replace("-", "_")) == 3


def test_memory_stats_lists_the_most_used_and_most_disputed_team_answers(tmp_path):
    from conftest import answered

    from secbot.feedback.intake.submissions import Intake
    from secbot.feedback.store.entities import FeedbackKind, FeedbackSource

    store = Store(f"sqlite:///{tmp_path / 'secbot.db'}")
    intake = Intake(store, trusted={"UT"})
    record = intake.correction(answered(intake, question="SSH port?", answer="?"), "UT", "TCP 22.").record
    turn = answered(intake, thread_ts="2.0", question="ssh port", answer="TCP 22.", memory_record_id=record.id)
    store.conversations.record_feedback(turn, "U1", FeedbackKind.THUMBS_DOWN, FeedbackSource.REACTION)
    store.close()
    out = secbot("memory", "stats", env={"SECBOT_DATA_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    used, disputed = out.stdout.split("most disputed")
    assert f"#{record.id} · 1 answer(s)" in used and "👍 0 👎 1" in disputed and "SSH port?" in disputed


def test_memory_stats_says_how_it_matches_and_reindex_re_embeds_with_progress(tmp_path):
    from conftest import answered

    from secbot.feedback.intake.submissions import Intake

    words_only = Store(f"sqlite:///{tmp_path / 'secbot.db'}")  # records from before semantic matching
    intake = Intake(words_only, trusted={"UT"})
    for i, (q, a) in enumerate([("SSH port?", "TCP 22."), ("RDP port?", "TCP 3389."), ("DNS port?", "53.")]):
        intake.correction(answered(intake, question=q, answer="?", thread_ts=f"{i}.0"), "UT", a)
    words_only.close()
    env = {"SECBOT_DATA_DIR": str(tmp_path)}
    stats = secbot("memory", "stats", env=env)  # the embedded static model, by default
    assert stats.returncode == 0, stats.stderr
    assert "matching: by words and meaning (wordllama-l2_supercat-256)" in stats.stdout
    assert "embedded 3 record(s) indexed before semantic matching" in stats.stderr
    reindex = secbot("memory", "reindex", env=env)
    assert reindex.returncode == 0, reindex.stderr
    assert "3/3 (100%)" in reindex.stderr and "3 record(s) embedded with wordllama" in reindex.stdout
    off = secbot("memory", "stats", env={**env, "SECBOT_EMBEDDING_MODEL": "off"})
    assert "matching: by words only" in off.stdout
    bad = secbot("memory", "stats", env={**env, "SECBOT_EMBEDDING_MODEL": str(tmp_path / "no-such-model")})
    assert bad.returncode == 2 and "SECBOT_EMBEDDING_MODEL" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_retrain_from_the_terminal_says_what_the_run_decided_in_its_exit_status(tmp_path):
    from datetime import timedelta

    from secbot.feedback.learning.pipeline import LOCK
    from secbot.feedback.learning.report import RunReport
    from secbot.feedback.store.entities import RunState

    env = {"SECBOT_DATA_DIR": str(tmp_path), "SECBOT_MODEL": "tiny"}
    # Here, with nothing approved: the run is skipped, and says why.
    out = secbot("retrain", env=env)
    assert out.returncode == 0, out.stderr
    assert "retraining here" in out.stdout and "new approved record" in out.stdout
    # Another process holds the retraining lock: busy, exit 4.
    store = Store(f"sqlite:///{tmp_path / 'secbot.db'}")
    assert store.runs.acquire_lock(LOCK, "another-host:1:0", timedelta(minutes=5))
    busy = secbot("retrain", env=env)
    assert busy.returncode == 4 and "already in progress" in busy.stdout
    store.runs.release_lock(LOCK, "another-host:1:0")
    # For the training worker: queued; a second request while it waits is refused; --wait follows
    # the run to its end and exits with its decision (here: rejected by the gate, 3).
    worker = env | {"SECBOT_TRAINING": "worker"}
    waiting = subprocess.Popen([sys.executable, "-m", "secbot.bot.cli.commands", "retrain", "--wait", "--by", "ci"],
                               env=clean_env(**worker), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    queued = waiting.stdout.readline()
    assert queued.startswith("run ") and "queued" in queued
    run_id = int(queued.split()[1])
    again = secbot("retrain", env=worker)
    assert again.returncode == 4 and "already queued" in again.stderr
    assert store.runs.get_run(run_id).requested_by == "ci"
    report = RunReport("rejected", "Candidate rejected: held-out ROUGE-L fell.", run_id=run_id)
    store.runs.update_run(run_id, state=RunState.REJECTED, report=report.to_json())
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 3, err
    assert "Candidate rejected" in out and f"run {run_id}: rejected" in err
    store.close()
