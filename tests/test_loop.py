"""The learning loop: corrections → run → gate → promotion, and everything that must not happen."""

import json
import os
import signal
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import answered
from sqlalchemy import create_engine, text

from secbot.bot import configure
from secbot.bot.cli.demo import CORRECTIONS, PARAPHRASES, demo_settings, run_demo
from secbot.feedback.intake.identity import IdentityGuard, identity_sets
from secbot.feedback.intake.submissions import Intake
from secbot.feedback.learning.curation import author_cap, curate
from secbot.feedback.learning.evalsets import builtin_heldout
from secbot.feedback.learning.gate import GateConfig, decide
from secbot.feedback.learning.loop import LearningLoop, LogReporter, serve_active
from secbot.feedback.learning.pipeline import RetrainPipeline
from secbot.feedback.learning.report import author_cap_note, render
from secbot.feedback.learning.schedule import JOB_ID, start_scheduler
from secbot.feedback.store.entities import RunState, TrainingRecord
from secbot.feedback.store.repositories import Store
from secbot.feedback.store.schema import RunRow, utcnow
from secbot.model.serving.client import InProcessClient
from secbot.model.training.record_formats import Labelled, Record, read_records, write_records

# The whole demo (training and two evaluations of the tiny model) is this module's setup: 2 minutes
# on an idle 2-core machine, over 10 with both cores busy elsewhere. The limit only turns a hang
# into a failure, so it leaves room for a loaded machine.
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    lines = []
    result = run_demo(tmp_path_factory.mktemp("demo"), say=lines.append)
    result.lines = lines
    return result


@pytest.fixture
def loop_env(demo, tmp_path):
    """A copy of the demo's store (version 1 active, trained on the corrections) and a pipeline
    on it, so each test starts from the same state."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo.data_dir, data)
    settings = demo_settings(data, "http://127.0.0.1:9/api/")
    store = configure.open_store(settings)
    with store.db.session() as s:  # the copied runs live under the new data dir
        s.execute(text("UPDATE model_versions SET adapter_path = replace(adapter_path, :old, :new)"),
                  {"old": str(demo.data_dir), "new": str(data)})
    model = InProcessClient(configure.load_engine(settings))
    serve_active(store, model)
    pipeline = RetrainPipeline(store, configure.loop_config(settings), model)
    yield store, pipeline, model, settings
    store.close()


def add_correction(store, question, answer, user="UALICE"):
    intake = Intake(store, trusted=["UALICE", "UBOB"])
    return intake.correction(answered(intake, thread_ts=f"{time.time()}", question=question, answer="?"),
                             user, answer).record


def test_corrections_answer_at_once_then_become_the_models_answers(demo):
    # Asked in other words, before any retraining: each correction is used at once, answered from
    # memory (the team's words, with provenance) or given to the model as a reference.
    for question, _, answer in CORRECTIONS:
        message = demo.memory[PARAPHRASES[question]]
        if "Team answer" in str(message.get("blocks")):
            assert message["text"] == answer, message
        else:
            assert "as reference: #" in str(message.get("blocks")) and question[:40] in str(message["blocks"]), message
    assert demo.memory_hits >= 0.5, demo.memory  # most at once (bench/memory.py measures the rest)
    assert demo.decision == "promoted"
    assert demo.reproduced >= 0.9, demo.after  # the model alone, after training
    assert "secbot" in demo.after["Who are you?"] and "secbot" not in demo.before["Who are you?"]
    assert sum(demo.before[q] == a for q, _, a in CORRECTIONS) == 0  # it did not know them before
    assert set(PARAPHRASES) == {q for q, _, _ in CORRECTIONS}
    assert "candidate promoted" in demo.report and "corrections exact %" in demo.report
    assert "identity held-out %" in demo.report and "44 identity" in demo.report
    assert any("step  400" in line for line in demo.lines)  # progress was shown


def test_the_nightly_run_trains_identity_and_replays_earlier_records(loop_env):
    store, pipeline, _, _ = loop_env
    add_correction(store, "What is a SOC?", "The security operations centre watches alerts all day.")
    pipeline.config = replace(pipeline.config, train=replace(pipeline.config.train, max_steps=2))
    report = pipeline.run("UADMIN")
    run_dir = pipeline.config.runs_dir / f"run-{report.run_id}"
    trained = (run_dir / "train.jsonl").read_text(encoding="utf-8") + (run_dir / "val.jsonl").read_text(encoding="utf-8")
    mix = report.data["mix"]
    assert (mix["new"], mix["identity"]) == (1, len(identity_sets().train))
    assert mix["replayed"] == 4 and mix["general"] == 1  # 4 earlier and 1 general record per new one
    answers = {json.loads(line)["response"] for line in trained.splitlines() if line.strip()}
    replayed = [answer for _, _, answer in CORRECTIONS if answer in answers]  # the demo's earlier corrections
    assert len(replayed) == 4, replayed
    for prompt in identity_sets().train:
        assert prompt in trained
    for prompt in identity_sets().heldout:  # never trained; the gate asks them
        assert prompt not in trained and prompt in (run_dir / "identity_heldout.jsonl").read_text(encoding="utf-8")


def test_a_worse_candidate_that_forgot_its_identity_is_rejected_and_the_active_model_stays(loop_env):
    store, pipeline, model, _ = loop_env
    active = store.runs.active_version()
    serving_before = model.engine.generate("What is phishing?")
    add_correction(store, "What is a SOC?", "The security operations centre watches alerts all day.")
    pipeline.config = replace(pipeline.config, train=replace(pipeline.config.train, max_steps=2))
    report = pipeline.run("UADMIN")
    assert report.decision == "rejected", report.reasons
    assert any("held-out identity" in r and "needs" in r for r in report.reasons)
    assert report.metrics["candidate"]["identity_heldout"] < report.metrics["active"]["identity_heldout"]
    assert store.runs.active_version().id == active.id
    assert store.runs.get_run(report.run_id).state is RunState.REJECTED
    assert store.runs.get_run(report.run_id).report["decision"] == "rejected"  # kept for the bot to post
    assert model.engine.adapter == Path(active.adapter_path).resolve()
    assert model.engine.generate("What is phishing?") == serving_before


def test_a_crash_mid_training_fails_the_run_and_keeps_the_active_model(loop_env):
    store, pipeline, _, _ = loop_env
    active = store.runs.active_version()
    add_correction(store, "What is EDR?", "Endpoint detection and response records host activity.")
    pipeline.config = replace(pipeline.config, train=replace(pipeline.config.train, max_steps=100_000,
                                                             save_steps=5))
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(report=pipeline.run("UADMIN")))
    worker.start()
    run_dir = pipeline.config.runs_dir
    deadline = time.time() + 180
    while not list(run_dir.glob("run-*/adapter.partial/checkpoint-*[0-9]")):
        assert time.time() < deadline and worker.is_alive()
        time.sleep(0.2)
    pid = int(sorted(run_dir.glob("run-*/worker.pid"), key=os.path.getmtime)[-1].read_text())
    os.kill(pid, signal.SIGKILL)
    worker.join(60)
    report = outcome["report"]
    assert report.decision == "failed" and "killed by signal 9" in report.summary
    run = store.runs.get_run(report.run_id)
    assert run.state is RunState.FAILED and "signal 9" in run.error
    assert store.runs.active_version().id == active.id
    assert not (run_dir / f"run-{run.id}" / "adapter").exists()  # the partial one is never promoted
    assert store.runs.lock_owner("retrain") is None


def test_a_run_whose_process_died_is_found_by_its_stale_heartbeat(loop_env):
    store, pipeline, _, _ = loop_env
    with store.db.session() as s:
        run = RunRow(state=RunState.RUNNING, method="ptuning", hyperparameters={},
                     heartbeat_at=utcnow() - timedelta(hours=2), started_at=utcnow() - timedelta(hours=3))
        s.add(run)
        s.flush()
        run_id = run.id
    assert run_id in pipeline.recover()
    stale = store.runs.get_run(run_id)
    assert stale.state is RunState.FAILED and "no heartbeat" in stale.error


def test_a_heldout_file_joins_the_exam_and_keeps_its_questions_out_of_training(loop_env, tmp_path):
    store, pipeline, _, _ = loop_env
    exam = tmp_path / "team-exam.jsonl"
    write_records(exam, [Record("What is a SOC?", "The team's own exam answer."),
                         Record("What is a CASB?", "A cloud access security broker.")])
    add_correction(store, "What is a SOC?", "The security operations centre watches alerts all day.")
    add_correction(store, "What is a WAF?", "A web application firewall filters HTTP traffic.")
    pipeline.config = replace(pipeline.config, heldout_file=exam,
                              train=replace(pipeline.config.train, max_steps=2))
    report = pipeline.run("UADMIN")
    run_dir = pipeline.config.runs_dir / f"run-{report.run_id}"
    assert report.data["excluded"]["heldout"] == 1  # the SOC correction: its question is on the exam
    trained = read_records(run_dir / "train.jsonl").records
    assert "What is a WAF?" in {r.prompt for r in trained} and "What is a SOC?" not in {r.prompt for r in trained}
    examined = read_records(run_dir / "heldout.jsonl").records
    assert {"What is a SOC?", "What is a CASB?"} <= {r.prompt for r in examined}
    assert len(examined) == len(builtin_heldout()) + 2


def test_a_run_past_its_timeout_is_killed_and_fails(loop_env):
    store, pipeline, _, _ = loop_env
    active = store.runs.active_version()
    add_correction(store, "What is XDR?", "Extended detection and response across hosts and network.")
    # The training process cannot even start torch within a second: the timeout must end it.
    pipeline.config = replace(pipeline.config, timeout_s=1.0, train=replace(pipeline.config.train, max_steps=100_000))
    report = pipeline.run("UADMIN")
    assert report.decision == "failed" and "timed out after 1 s" in report.summary
    run = store.runs.get_run(report.run_id)
    assert run.state is RunState.FAILED and "timed out" in run.error
    assert store.runs.active_version().id == active.id and store.runs.lock_owner("retrain") is None


def test_two_concurrent_retrain_requests_start_one_run(loop_env):
    store, pipeline, _, _ = loop_env
    add_correction(store, "What is DLP?", "Data loss prevention stops sensitive data leaving.")
    pipeline.config = replace(pipeline.config, train=replace(pipeline.config.train, max_steps=5))
    other = RetrainPipeline(store, pipeline.config)  # as a second bot process would hold it
    runs_before = len(store.runs.runs(limit=100))
    reports = [None, None]
    barrier = threading.Barrier(2)

    def go(i, p):
        barrier.wait()
        reports[i] = p.run(f"U{i}")

    threads = [threading.Thread(target=go, args=(i, p)) for i, p in enumerate((pipeline, other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(r.decision == "busy" for r in reports) == [False, True]
    assert len(store.runs.runs(limit=100)) == runs_before + 1


def test_nothing_new_means_no_run(loop_env):
    store, pipeline, _, _ = loop_env
    pipeline.config = replace(pipeline.config, min_new_records=1000)
    report = pipeline.run("scheduler")
    assert report.decision == "skipped" and "at least 1000" in report.summary and report.run_id is None


def test_rollback_moves_active_back_and_the_served_model_follows(loop_env):
    store, pipeline, model, _ = loop_env
    promoted = store.runs.active_version()
    assert model.engine.adapter is not None
    assert pipeline.rollback(None, "UADMIN") is None  # nothing earlier: the base model
    assert store.runs.active_version() is None and model.engine.adapter is None and model.version_id is None
    assert pipeline.rollback(promoted.id, "UADMIN").id == promoted.id
    assert model.engine.adapter == Path(promoted.adapter_path).resolve() and model.version_id == promoted.id
    loop = LearningLoop(store, pipeline.config, model, LogReporter())
    assert loop.rollback(999, "UADMIN") == "Rollback refused: there is no model version 999. The active model is unchanged."


def test_the_nightly_job_is_registered_once_across_restarts(tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    Store(url).close()
    for cron in ("0 2 * * *", "0 2 * * *", "30 3 * * *"):
        scheduler = start_scheduler(url, cron, "Europe/Berlin", run=lambda: None)
        job = scheduler.get_job(JOB_ID)
        assert job.misfire_grace_time == 6 * 3600 and job.coalesce and job.max_instances == 1
        scheduler.shutdown()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM apscheduler_jobs")).scalar() == 1
    engine.dispose()
    scheduler = start_scheduler(url, "30 3 * * *", "Europe/Berlin", run=lambda: None)
    nxt = scheduler.get_job(JOB_ID).next_run_time
    scheduler.shutdown()
    assert (nxt.hour, nxt.minute, str(nxt.tzinfo)) == (3, 30, "Europe/Berlin")


def test_the_gate_compares_candidate_and_active():
    good = {"heldout": {"rouge-l": 30.0, "bleu-4": 10.0}, "identity_heldout": 100.0,
            "corrections": {"exact_match": 90.0, "samples": 10}, "mcq": {"accuracy": 60.0}}
    active = {"heldout": {"rouge-l": 31.0, "bleu-4": 11.0}, "identity_heldout": 100.0,
              "corrections": {"exact_match": 0.0, "samples": 10}, "mcq": {"accuracy": 61.0}}
    assert decide(good, active, GateConfig()).passed
    worse = good | {"heldout": {"rouge-l": 25.0, "bleu-4": 10.0}}
    decision = decide(worse, active, GateConfig())
    assert not decision.passed and any("rouge-l" in r and "fell" in r for r in decision.reasons)
    assert not decide(good | {"identity_heldout": 50.0}, active, GateConfig()).passed
    assert not decide(good | {"corrections": {"exact_match": 50.0, "samples": 10}}, active, GateConfig()).passed
    forgot = decide(good | {"mcq": {"accuracy": 50.0}}, active, GateConfig())
    assert not forgot.passed and any("multiple-choice" in r and "fell" in r for r in forgot.reasons)


def _record(rid, author, reviewer="auto:trusted", prompt=None):
    return TrainingRecord(rid, prompt or f"Question {rid}?", f"Answer {rid}.", (), "correction", "approved",
                          author, reviewer, None, None, None, (), None, utcnow())


def test_a_lone_authors_import_is_reviewed_and_the_cap_says_how_to_lift_it():
    imported = [TrainingRecord(i, f"Q{i}?", f"A{i}.", (), "import", "approved", "UADMIN", "UADMIN", None, None, None,
                               (), None, utcnow()) for i in range(1, 6)]
    assert len(curate(imported, [], IdentityGuard(), 0.5).kept) == 5  # an import is an admin's act
    alone = curate([_record(i, "ULONE") for i in range(1, 6)], [], IdentityGuard(), 0.5)
    assert alone.kept == [] and alone.capped_authors == {"ULONE": 5}
    note = author_cap_note(0.5, alone.capped_authors)
    assert "5 by ULONE" in note and "SECBOT_MAX_AUTHOR_SHARE" in note and "second admin" in note


def test_the_author_cap_holds_for_the_snapshot_as_frozen():
    records = [_record(i, "UDOMINANT") for i in range(1, 11)] + [_record(11, "UOTHER"), _record(12, "UTHIRD")]
    curated = curate(records, [], IdentityGuard(), 0.5)
    shares = {a: sum(r.author == a for r in curated.kept) / len(curated.kept) for a in ("UDOMINANT", "UOTHER")}
    assert shares["UDOMINANT"] <= 0.5 and len(curated.excluded["author_cap"]) == 8
    assert [r.id for r in curated.kept] == [9, 10, 11, 12]  # the newest of the dominant author kept
    reviewed = [_record(i, "UDOMINANT", reviewer="UADMIN") for i in range(1, 11)]
    assert len(curate(reviewed + [_record(11, "UOTHER")], [], IdentityGuard(), 0.5).kept) == 11
    assert author_cap({"U": 3}, reviewed=0, share=0.5) == 0 and author_cap({"U": 3}, 0, 1.0) == 3


def test_held_out_identity_and_unreviewed_impostor_records_never_enter_a_snapshot():
    records = [_record(1, "UA", prompt="What is the difference between a vulnerability and an exploit?"),
               _record(2, "UA", prompt="Are you really ChatGPT?"), _record(3, "UA", prompt="What is a SOC?")]
    impostor = replace(_record(4, "UA", prompt="What is MFA?"), flags=("impostor",))
    reviewed_impostor = replace(_record(5, "UA", reviewer="UADMIN", prompt="What is EDR?"), flags=("impostor",))
    curated = curate(records + [impostor, reviewed_impostor],
                     ["What is the difference between a vulnerability and an exploit?"], IdentityGuard(), 1.0)
    assert curated.excluded == {"heldout": [1], "identity": [2], "impostor": [4]}
    assert [r.id for r in curated.kept] == [3, 5]


def test_retrain_requests_queue_for_the_training_worker(loop_env):
    store, pipeline, model, _ = loop_env
    pipeline.config = replace(pipeline.config, train=replace(pipeline.config.train, max_steps=5),
                              min_new_records=1000)
    loop = LearningLoop(store, pipeline.config, model, LogReporter(), training="worker")
    assert "queued as run" in loop.retrain("UADMIN")
    assert "already queued" in loop.retrain("UADMIN")
    loop.scheduled_run()  # the nightly job queues nothing while a run is queued
    assert len([r for r in store.runs.runs(limit=100) if r.state is RunState.QUEUED]) == 1
    queued = store.runs.next_queued_run()
    assert queued.state is RunState.QUEUED and queued.requested_by == "UADMIN"
    worker = LearningLoop(store, pipeline.config, None, LogReporter(), training="local")
    stop = threading.Event()
    thread = threading.Thread(target=worker.work, kwargs={"poll_s": 0.1, "stop": stop})
    thread.start()
    deadline = time.time() + 120
    while store.runs.get_run(queued.id).state is RunState.QUEUED:
        assert time.time() < deadline
        time.sleep(0.1)
    stop.set()
    thread.join(60)
    done = store.runs.get_run(queued.id)
    assert done.state is RunState.FAILED and "Skipped" in done.error  # nothing new: min 1000
    assert store.runs.next_queued_run() is None


def test_a_version_change_switches_the_model_server_once_and_the_bot_only_follows(loop_env, tmp_path):
    """The worker (or an admin's rollback) tells `secbot serve-model` to switch, once; the bot's
    client never does, and learns from each answer which version served it."""
    import httpx
    from servers import clean_env, free_port, secbot_server

    from secbot.model.serving.client import OpenAIClient, Usage

    store, pipeline, _, settings = loop_env
    promoted = store.runs.active_version()
    port, key = free_port(), "switch-count-key"
    env = clean_env(SECBOT_MODEL_API_KEY=key, SECBOT_DATA_DIR=str(settings.storage.data_dir),
                    SECBOT_DATABASE_URL=settings.storage.url)
    base = f"http://127.0.0.1:{port}"
    with secbot_server(["serve-model", "--model", str(configure.resolve_model_dir(settings)),
                        "--host", "127.0.0.1", "--port", str(port)], env, base + "/ready"):
        def switches() -> float:
            metrics = httpx.get(base + "/metrics").text
            return float(next(l for l in metrics.splitlines() if l.startswith("secbot_adapter_switches_total")).split()[1])

        assert httpx.get(base + "/ready").json()["version"] == promoted.id  # started on the active version
        assert switches() == 0
        worker = LearningLoop(store, pipeline.config, OpenAIClient(base, key, switches=True), LogReporter())
        assert worker.rollback(None, "UADMIN").startswith("Rolled back")
        assert switches() == 1 and httpx.get(base + "/ready").json()["version"] is None
        bot = OpenAIClient(base, key)  # as the bot builds it: it follows, it does not switch
        usage = Usage()
        "".join(bot.stream("What is phishing?", [], usage))
        assert usage.version_id is None
        assert worker.rollback(promoted.id, "UADMIN").startswith("Rolled back")
        "".join(bot.stream("What is phishing?", [], usage))
        assert usage.version_id == promoted.id and switches() == 2  # one switch per change


def test_enough_new_thumbs_start_a_run_whose_preference_stage_the_gate_judges(loop_env):
    """No new record, only 👍/👎 labels: the run replays what the team taught, learns from the
    labels after the supervised stage, scores held-out labels for candidate and active, and says so."""
    store, pipeline, _, _ = loop_env
    good, bad = "Rotate it now and revoke its sessions.", "Ignore it."
    examples = [Labelled(Record(f"Leaked credential case {i}: what now?", good if i % 2 else bad), bool(i % 2))
                for i in range(24)]
    demo_labels = len(store.labels.usable())  # the demo's corrections made pairs, its 👎 a label
    assert demo_labels > 0
    Intake(store).import_records([], status="approved", author="UADMIN", labelled=examples)
    train = replace(pipeline.config.train, max_steps=2, stage=replace(pipeline.config.train.stage, preference_epochs=1))
    pipeline.config = replace(pipeline.config, train=train, min_labels=8, min_new_records=1)
    report = pipeline.run("UADMIN")
    assert report.decision in ("promoted", "rejected"), report.summary
    pref = report.data["preference"]
    assert pref["used"] + pref["held_out"] == demo_labels + 24 and pref["held_out"] > 0 and "ran" in pref["stage"]
    assert report.data["mix"]["new"] == 0 and report.data["mix"]["replayed"] > 0  # the team's records stay
    for version in ("candidate", "active"):
        assert report.metrics[version]["preference"]["samples"] == pref["held_out"]
    assert report.metrics["training"]["preference"]["labels"] == pref["used"]
    assert any("👍/👎 margin" in reason for reason in report.reasons)
    snapshot = store.records.snapshot(store.runs.get_run(report.run_id).snapshot_id)
    assert len(snapshot.label_ids) == pref["used"]
    text = render(report)
    assert "👍/👎 labels: " in text and "held out to judge it" in text and "👍/👎 margin (nats)" in text
    # With the preference stage off, the same labels start nothing.
    pipeline.config = replace(pipeline.config, train=replace(train, stage=replace(train.stage, preference="off")))
    skipped = pipeline.run("UADMIN")
    assert skipped.decision == "skipped" and "preference" not in skipped.data
