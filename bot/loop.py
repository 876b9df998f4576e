"""The learning loop as the bot runs it: retrain and rollback from Slack, nightly schedule,
reports to the admin channel, and the served model following the active version."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from slack_sdk import WebClient

from secbot.bot.model_client import InProcessClient, ModelClient, OpenAIClient, resolve_model_dir
from secbot.bot.settings import Settings
from secbot.feedback.gate import GateConfig
from secbot.feedback.models import ModelVersion
from secbot.feedback.pipeline import LoopConfig, RetrainPipeline, RunReport, metrics_table
from secbot.feedback.schedule import next_run, start_scheduler
from secbot.feedback.store import Store
from secbot.model.training import TrainConfig

log = logging.getLogger(__name__)

# The tiny reference model's embedded profile: P-tuning settings that reproduce corrections in
# a few hundred CPU steps, and a held-out margin that fits its noise (the random model's
# held-out BLEU-4 measured 2.7-4.9 between runs, all from chance character overlap).
TINY_TRAIN = dict(method="ptuning", pre_seq_len=64, lr=3e-2, batch_size=8, grad_accum=1,
                  max_steps=300, logging_steps=25, save_steps=100)
TINY_HELDOUT_MARGIN = 5.0


def loop_config_from(settings: Settings) -> LoopConfig:
    tiny = settings.model == "tiny"
    train = dict(TINY_TRAIN) if tiny else {}
    overrides = {"method": settings.retrain_method, "max_steps": settings.retrain_max_steps,
                 "lr": settings.retrain_lr, "pre_seq_len": settings.retrain_pre_seq_len,
                 "batch_size": settings.retrain_batch_size, "grad_accum": settings.retrain_grad_accum}
    train.update({k: v for k, v in overrides.items() if v is not None})
    train.update(device=settings.device, dtype=settings.dtype)
    gate = GateConfig(max_heldout_drop=settings.gate_max_heldout_drop if settings.gate_max_heldout_drop
                      is not None else (TINY_HELDOUT_MARGIN if tiny else 2.0),
                      min_correction_match=settings.gate_min_correction_match,
                      min_identity=settings.gate_min_identity)
    return LoopConfig(model_dir=resolve_model_dir(settings), runs_dir=settings.data_dir / "runs",
                      train=TrainConfig(**train), gate=gate, assistant_name=settings.assistant_name,
                      system_prompt=settings.effective_system_prompt,
                      prompt_format=settings.prompt_format, trust_remote_code=settings.trust_remote_code,
                      min_new_records=settings.retrain_min_new, max_author_share=settings.max_author_share,
                      heldout_file=settings.heldout_file, timeout_s=settings.retrain_timeout,
                      eval_max_new_tokens=min(settings.max_new_tokens, 256))


def follow_active_version(model: ModelClient) -> callable:
    """The callback that switches the served adapter when the active version changes."""
    def switch(version: ModelVersion | None) -> None:
        path = version.adapter_path if version else None
        if isinstance(model, InProcessClient):
            model.engine.use_adapter(path)
        elif isinstance(model, OpenAIClient) and model.follows_versions:
            model.activate_adapter(path)  # a secbot serve-model host sharing the runs volume
        model.version_id = version.id if version else None
        log.info("now serving version %s", version.id if version else "base")
    return switch


def report_text(report: RunReport) -> str:
    text = f"*{report.summary}*"
    if report.metrics:
        text += f"\n```\n{metrics_table(report.metrics)}\n```"
    if report.reasons:
        text += "\n" + "\n".join(f"• {reason}" for reason in report.reasons)
    return text


class SlackLoop:
    """LoopControl for the admin commands, posting run reports to the admin channel."""

    def __init__(self, settings: Settings, store: Store, model: ModelClient, client: WebClient):
        self.settings, self.store, self.client = settings, store, client
        self.pipeline = RetrainPipeline(store, loop_config_from(settings), follow_active_version(model))
        self.scheduler = None
        self._thread: threading.Thread | None = None

    def start_schedule(self) -> None:
        self.pipeline.recover()
        self.scheduler = start_scheduler(self.settings.effective_database_url, self.settings.retrain_cron,
                                         self.settings.timezone, self.scheduled_run, on_error=self.report_error)

    def scheduled_run(self) -> None:
        """The nightly job: train here, or queue the run for the worker (which may be this process)."""
        if self.settings.training == "worker":
            if self.store.enqueue_run(method=self.pipeline.config.train.method, requested_by="scheduler") is None:
                log.info("nightly run not queued: one is already queued or running")
        else:
            self.run_and_report("scheduler")

    def run_and_report(self, requested_by: str | None, queued_run: int | None = None) -> RunReport:
        report = self.pipeline.run(requested_by, queued_run)
        if report.decision != "busy":
            self.post(report)
        return report

    def post(self, report: RunReport) -> None:
        if not self.settings.admin_channel:
            log.info("run report (no SECBOT_ADMIN_CHANNEL set): %s", report.summary)
            return
        self.client.chat_postMessage(channel=self.settings.admin_channel, text=report_text(report))
        if report.loss_curve:
            self.client.files_upload_v2(channel=self.settings.admin_channel, file=str(report.loss_curve),
                                        filename=f"run-{report.run_id}-loss.png",
                                        title=f"Run {report.run_id} loss curve")

    def report_error(self, exc: BaseException) -> None:
        if self.settings.admin_channel:
            self.client.chat_postMessage(channel=self.settings.admin_channel,
                                         text=f":warning: The nightly retraining job failed: {exc}")

    # -- LoopControl -----------------------------------------------------------------------------
    def work(self, poll_s: float = 5.0, stop: threading.Event | None = None) -> None:
        """The training worker: run queued runs (and the schedule) until `stop` is set."""
        stop = stop or threading.Event()
        self.pipeline.recover()
        while not stop.is_set():
            queued = self.store.next_queued_run()
            if queued is not None:
                self.run_and_report(queued.requested_by, queued.id)
            else:
                stop.wait(poll_s)

    def retrain(self, requested_by: str) -> str:
        if self.settings.training == "worker":
            queued = self.store.enqueue_run(method=self.pipeline.config.train.method, requested_by=requested_by)
            if queued is None:
                return "A retraining run is already queued or in progress."
            return (f"Retraining queued as run {queued.id}; the training worker starts it within seconds "
                    "and reports to the admin channel.")
        if self.store.lock_owner("retrain") or (self._thread and self._thread.is_alive()):
            return "A retraining run is already in progress; its report will come to the admin channel."
        self._thread = threading.Thread(target=self.run_and_report, args=(requested_by,),
                                        name="secbot-retrain", daemon=True)
        self._thread.start()
        where = f"<#{self.settings.admin_channel}>" if self.settings.admin_channel else "the log"
        return f"Retraining started. The report (metrics, gate decision, loss curve) goes to {where}."

    def wait(self, timeout: float | None = None) -> None:
        if self._thread:
            self._thread.join(timeout)

    def rollback(self, version_id: int | None, requested_by: str) -> str:
        try:
            active = self.pipeline.rollback(version_id, requested_by)
        except ValueError as exc:
            return str(exc)
        return (f"Rolled back: version {active.id} ({Path(active.adapter_path).name if active.adapter_path else 'base'}) "
                "is active." if active else "Rolled back to the base model (no trained version active).")

    def schedule(self) -> dict:
        runs = self.store.runs(limit=1)
        last = (f"run {runs[0].id}, {runs[0].state.value}, "
                f"{runs[0].created_at:%Y-%m-%d %H:%M} UTC" if runs else None)
        upcoming = next_run(self.scheduler)
        return {"last_run": last, "next_run": f"{upcoming:%Y-%m-%d %H:%M %Z}" if upcoming else None}
