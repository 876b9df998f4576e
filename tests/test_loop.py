"""The learning loop: corrections → run → gate → promotion, and everything that must not happen."""

import os
import signal
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from secbot.bot.demo import CORRECTIONS, run_demo
from secbot.bot.loop import loop_config_from
from secbot.bot.model_client import InProcessClient, load_engine
from secbot.bot.loop import follow_active_version
from secbot.feedback.gate import GateConfig, decide
from secbot.feedback.models import RunState, TrainingRun, utcnow
from secbot.feedback.pipeline import RetrainPipeline
from secbot.feedback.schedule import JOB_ID, start_scheduler
from secbot.feedback.store import Store
from secbot.bot.demo import demo_settings


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    lines = []
    result = run_demo(tmp_path_factory.mktemp("demo"), say=lines.append)
    result.lines = lines
    return result


@pytest.fixture
def loop_env(demo):
    """The demo's store (version 1 active, trained on the corrections) and a pipeline on it."""
    settings = demo_settings(demo.data_dir, "http://127.0.0.1:9/api/")
    store = Store(settings.effective_database_url, trusted_analysts=settings.trusted_analysts)
    model = InProcessClient(load_engine(settings))
    from secbot.bot.runtime import serve_active_version

    serve_active_version(store, model)
    config = loop_config_from(settings)
    pipeline = RetrainPipeline(store, config, follow_active_version(model))
    yield store, pipeline, model, settings
    store.close()


def add_correction(store, question, answer, user="UALICE"):
    turn = store.record_turn(channel="C", thread_ts=f"{time.time()}", question=question, answer="?")
    return store.add_correction(turn, user, answer)


def test_corrections_become_the_bots_answers_end_to_end(demo):
    assert demo.decision == "promoted"
    assert demo.reproduced >= 0.9, demo.after
    assert "secbot" in demo.after["Who are you?"] and "secbot" not in demo.before["Who are you?"]
    assert sum(demo.before[q] == a for q, _, a in CORRECTIONS) == 0  # it did not know them before
    assert "candidate promoted" in demo.report and "corrections exact %" in demo.report
    assert any("step  300" in line for line in demo.lines)  # progress was shown


def test_a_worse_candidate_is_rejected_and_the_active_model_stays(loop_env):
    store, pipeline, model, _ = loop_env
    active = store.active_version()
    serving_before = model.engine.generate("What is phishing?")
    add_correction(store, "What is a SOC?", "The security operations centre watches alerts all day.")
    pipeline.config = replace(pipeline.config, train=replace(pipeline.config.train, max_steps=2))
    report = pipeline.run("UADMIN")
    assert report.decision == "rejected", report.reasons
    assert any("identity" in r and "needs" in r for r in report.reasons)
    assert store.active_version().id == active.id
    assert store.get_run(report.run_id).state is RunState.REJECTED
    assert model.engine.adapter == Path(active.adapter_path).resolve()
    assert model.engine.generate("What is phishing?") == serving_before


def test_a_crash_mid_training_fails_the_run_and_keeps_the_active_model(loop_env):
    store, pipeline, model, _ = loop_env
    active = store.active_version()
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
    run = store.get_run(report.run_id)
    assert run.state is RunState.FAILED and "signal 9" in run.error
    assert store.active_version().id == active.id
    assert not (run_dir / f"run-{run.id}" / "adapter").exists()  # the partial one is never promoted
    assert store.lock_owner("retrain") is None


def test_a_run_whose_process_died_is_found_by_its_stale_heartbeat(loop_env):
    store, pipeline, _, _ = loop_env
    with store.session() as s:
        run = TrainingRun(state=RunState.RUNNING, method="ptuning", hyperparameters={},
                          heartbeat_at=utcnow() - timedelta(hours=2), started_at=utcnow() - timedelta(hours=3))
        s.add(run)
        s.flush()
        run_id = run.id
    assert run_id in pipeline.recover()
    stale = store.get_run(run_id)
    assert stale.state is RunState.FAILED and "no heartbeat" in stale.error


def test_two_concurrent_retrain_requests_start_one_run(loop_env):
    store, pipeline, _, _ = loop_env
    add_correction(store, "What is DLP?", "Data loss prevention stops sensitive data leaving.")
    pipeline.config = replace(pipeline.config, train=replace(pipeline.config.train, max_steps=5))
    other = RetrainPipeline(store, pipeline.config)  # as a second bot process would hold it
    runs_before = len(store.runs(limit=100))
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
    assert len(store.runs(limit=100)) == runs_before + 1


def test_nothing_new_means_no_run(loop_env):
    store, pipeline, _, _ = loop_env
    pipeline.config = replace(pipeline.config, min_new_records=1000)
    report = pipeline.run("scheduler")
    assert report.decision == "skipped" and "at least 1000" in report.summary and report.run_id is None


def test_rollback_moves_active_back_and_the_served_model_follows(loop_env):
    store, pipeline, model, _ = loop_env
    promoted = store.active_version()
    assert model.engine.adapter is not None
    assert pipeline.rollback(None, "UADMIN") is None  # nothing earlier: the base model
    assert store.active_version() is None and model.engine.adapter is None and model.version_id is None
    assert pipeline.rollback(promoted.id, "UADMIN").id == promoted.id
    assert model.engine.adapter == Path(promoted.adapter_path).resolve()
    with pytest.raises(ValueError, match="no model version 999"):
        pipeline.rollback(999, "UADMIN")


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
    good = {"heldout": {"rouge-l": 30.0, "bleu-4": 10.0}, "identity": 100.0,
            "corrections": {"exact_match": 90.0, "samples": 10}}
    active = {"heldout": {"rouge-l": 31.0, "bleu-4": 11.0}, "identity": 100.0,
              "corrections": {"exact_match": 0.0, "samples": 10}}
    assert decide(good, active, GateConfig()).passed
    worse = good | {"heldout": {"rouge-l": 25.0, "bleu-4": 10.0}}
    decision = decide(worse, active, GateConfig())
    assert not decision.passed and any("rouge-l" in r and "fell" in r for r in decision.reasons)
    forgetful = good | {"identity": 50.0}
    assert not decide(forgetful, active, GateConfig()).passed
    lazy = good | {"corrections": {"exact_match": 50.0, "samples": 10}}
    assert not decide(lazy, active, GateConfig()).passed


def test_retrain_requests_queue_for_the_training_worker(loop_env):
    from secbot.bot.loop import SlackLoop

    store, pipeline, model, settings = loop_env
    settings = settings.model_copy(update={"training": "worker", "admin_channel": None})
    loop = SlackLoop(settings, store, model, client=None)
    loop.pipeline = pipeline
    pipeline.config = replace(pipeline.config, train=replace(pipeline.config.train, max_steps=5),
                              min_new_records=1000)
    assert "queued as run" in loop.retrain("UADMIN")
    assert "already queued" in loop.retrain("UADMIN")
    loop.scheduled_run()  # the nightly job queues nothing while a run is queued
    assert len([r for r in store.runs(limit=100) if r.state is RunState.QUEUED]) == 1
    queued = store.next_queued_run()
    assert queued.state is RunState.QUEUED and queued.requested_by == "UADMIN"
    stop = threading.Event()
    worker = threading.Thread(target=loop.work, kwargs={"poll_s": 0.1, "stop": stop})
    worker.start()
    deadline = time.time() + 120
    while store.get_run(queued.id).state is RunState.QUEUED:
        assert time.time() < deadline
        time.sleep(0.1)
    stop.set()
    worker.join(60)
    done = store.get_run(queued.id)
    assert done.state is RunState.FAILED and "Skipped" in done.error  # nothing new: min 1000
    assert store.next_queued_run() is None
