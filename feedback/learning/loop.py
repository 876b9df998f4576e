"""The learning loop as a process runs it: retrain and rollback on request, the nightly
schedule, the training worker's queue, and telling someone what happened (`Reporter`).

Each run's report is kept with the run; `Reporter.run_finished` hears of the runs this process
made. A process that reports to people (the Slack bot) also delivers the reports of runs another
process made (`deliver_reports`), each exactly once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Literal, Protocol

from secbot.feedback.errors import StoreError
from secbot.feedback.learning.periodic import Periodic
from secbot.feedback.learning.pipeline import LOCK, LoopConfig, RetrainPipeline
from secbot.feedback.learning.report import RunReport
from secbot.feedback.learning.schedule import DEFAULT_CRON, next_run, start_scheduler
from secbot.feedback.store.entities import Version
from secbot.feedback.store.repositories import Store
from secbot.model.errors import ModelError
from secbot.model.serving.client import InProcessClient, ModelClient

log = logging.getLogger(__name__)
Training = Literal["local", "worker"]


class Reporter(Protocol):
    def run_finished(self, report: RunReport) -> None:
        """A run this process made ended (or was skipped)."""

    def job_failed(self, error: BaseException) -> None:
        """The scheduled job itself failed (not a run)."""


class LogReporter:
    """Reports to the log only (the training worker; the bot delivers to people)."""

    def run_finished(self, report: RunReport) -> None:
        log.warning("run report: %s", report.summary)

    def job_failed(self, error: BaseException) -> None:
        log.error("the scheduled retraining job failed: %s", error)


def deliver_reports(store: Store, deliver) -> int:
    """Hand each finished, undelivered run report to `deliver` once (across processes)."""
    sent = 0
    for run in store.runs.unreported_runs():
        if run.report and store.runs.claim_report(run.id):
            deliver(RunReport.from_json(run.report))
            sent += 1
    return sent


def describe(version: Version | None) -> str:
    if version is None:
        return "the base model"
    return f"version {version.id}" + (f" ({version.adapter_path})" if version.adapter_path else "")


def serve_active(store: Store, model: ModelClient) -> str:
    """At start-up: serve the active version; if it cannot be loaded, the newest version that
    can (or the base), and say so. Returns what is served, in words."""
    active = store.runs.active_version()
    fallbacks = sorted((v for v in store.runs.versions() if v.promoted_at and (active is None or v.id != active.id)),
                       key=lambda v: v.promoted_at, reverse=True)
    for version in ([active] if active else []) + fallbacks + [None]:
        try:
            model.use_version(version)
        except ModelError as exc:
            log.error("cannot serve %s: %s", describe(version), exc)
            continue
        if active is not None and (version is None or version.id != active.id):
            log.error("the active version %s could not be loaded; serving %s instead. Run "
                      "`secbot rollback` to make the store agree, or fix the adapter.", active.id, describe(version))
            return f"{describe(version)} (the active version {active.id} failed to load)"
        return describe(version)
    raise AssertionError("the base model always loads")


def follow_active_version(store: Store, model: InProcessClient, periodic: Periodic, seconds: float = 15.0) -> None:
    """Keep an in-process engine on the active version when another process changes it (a
    training worker promotes, an admin rolls back from the command line)."""
    def check() -> None:
        active = store.runs.active_version()
        if (active.id if active else None) != model.version_id:
            model.use_version(active)
            log.info("now serving %s", describe(active))
    periodic.every(seconds, check, "secbot-version-follower")


@dataclass(frozen=True)
class Schedule:
    db_url: str
    cron: str = DEFAULT_CRON
    timezone: str = "UTC"


class LearningLoop:
    """Retrain, rollback, schedule and worker queue, for one process."""

    def __init__(self, store: Store, config: LoopConfig, model: ModelClient | None, reporter: Reporter,
                 *, training: Training = "local", schedule: Schedule | None = None):
        self.store, self.reporter, self.training = store, reporter, training
        self.pipeline = RetrainPipeline(store, config, model)
        self.schedule_config = schedule
        self.scheduler = None
        self._thread: threading.Thread | None = None

    @property
    def config(self) -> LoopConfig:
        return self.pipeline.config

    # -- runs ------------------------------------------------------------------------------------
    def run_and_report(self, requested_by: str | None, queued_run: int | None = None) -> RunReport:
        report = self.pipeline.run(requested_by, queued_run)
        if report.decision != "busy":
            self.reporter.run_finished(report)
        return report

    def retrain(self, requested_by: str) -> str:
        """Start a run (here, in a thread) or queue it for the training worker; says which."""
        self.pipeline.recover()  # a run whose process died does not block this one
        if self.training == "worker":
            queued = self.store.runs.enqueue_run(method=self.config.train.method, requested_by=requested_by)
            if queued is None:
                return "A retraining run is already queued or in progress."
            return (f"Retraining queued as run {queued.id}; the training worker starts it within seconds, "
                    "and its report comes to the admin channel.")
        if self.store.runs.lock_owner(LOCK) or (self._thread and self._thread.is_alive()):
            return "A retraining run is already in progress; its report will come to the admin channel."
        self._thread = threading.Thread(target=self.run_and_report, args=(requested_by,),
                                        name="secbot-retrain", daemon=True)
        self._thread.start()
        return "Retraining started. The report (metrics, gate decision, loss curve) goes to the admin channel."

    def training_log(self) -> list[dict]:
        """The newest run's loss-log entries, while it trains and after (empty before it starts)."""
        runs = self.store.runs.runs(limit=1)
        return self.pipeline.training_log(runs[0].id) if runs else []

    def wait(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)

    def running(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def adopt(self, adapter: str, base_model: str, requested_by: str) -> str:
        """Make an adapter made outside a run (a converted THUDM prefix) a model version and the
        active one, so that `rollback` can later return to it like any promoted version."""
        version = self.store.runs.add_version(base_model=base_model, adapter_path=adapter, run_id=None)
        try:
            self.pipeline.activate(version, requested_by)
        except (StoreError, ModelError) as exc:
            return f"Activation refused: {exc}. The active model is unchanged (version {version.id} stays a candidate)."
        return f"Version {version.id} ({adapter}) is active and serving; `secbot rollback` returns to the one before."

    def rollback(self, version_id: int | None, requested_by: str) -> str:
        try:
            active = self.pipeline.rollback(version_id, requested_by)
        except (StoreError, ModelError) as exc:
            return f"Rollback refused: {exc}. The active model is unchanged."
        return f"Rolled back: {describe(active)} is active and serving."

    # -- schedule and worker -----------------------------------------------------------------------
    def start_schedule(self) -> None:
        if self.schedule_config is None:
            raise RuntimeError("no schedule configured")
        self.pipeline.recover()
        s = self.schedule_config
        self.scheduler = start_scheduler(s.db_url, s.cron, s.timezone, self.scheduled_run,
                                         on_error=self.reporter.job_failed)

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None

    def scheduled_run(self) -> None:
        """The nightly job: train here, or queue the run for the worker (which may be this process)."""
        self.pipeline.recover()
        if self.training == "worker":
            if self.store.runs.enqueue_run(method=self.config.train.method, requested_by="scheduler") is None:
                log.info("nightly run not queued: one is already queued or running")
        else:
            self.run_and_report("scheduler")

    def work(self, poll_s: float = 5.0, stop: threading.Event | None = None) -> None:
        """The training worker: run queued runs until `stop` is set."""
        stop = stop or threading.Event()
        self.pipeline.recover()
        while not stop.is_set():
            self.pipeline.recover()
            queued = self.store.runs.next_queued_run()
            if queued is not None:
                self.run_and_report(queued.requested_by, queued.id)
            else:
                stop.wait(poll_s)

    def status(self) -> dict:
        """The last run and the next scheduled one, in words."""
        self.pipeline.recover()
        runs = self.store.runs.runs(limit=1)
        last = (f"run {runs[0].id}, {runs[0].state.value}, {runs[0].created_at:%Y-%m-%d %H:%M} UTC"
                if runs else None)
        upcoming = next_run(self.scheduler)
        return {"last_run": last, "next_run": f"{upcoming:%Y-%m-%d %H:%M %Z}" if upcoming else None}
