"""One nightly run: snapshot → training mix → train (subprocess: supervised stage, then the
preference stage on labelled completions when enough exist) → evaluate → gate → promote.

One run at a time across every process on the database (a lease in the `locks` table, renewed
by the heartbeat). A run that dies is marked failed with its reason; a candidate is promoted
only from a complete adapter and a complete result. Promotion and rollback check the adapter
and switch the served model before the store changes, and put it back if the store cannot
change, so the store and the served model never disagree.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from secbot.feedback.answering import MemoryPolicy
from secbot.feedback.errors import StoreError
from secbot.feedback.intake.identity import IdentityGuard, identity_records, identity_sets
from secbot.feedback.learning.curation import curate, training_mix
from secbot.feedback.learning.evalsets import general_set, heldout_set
from secbot.feedback.learning.gate import GateConfig, decide
from secbot.feedback.learning.job import PREFERENCE_HELDOUT, PREFERENCE_TRAIN, JobSpec, adapter_dir
from secbot.feedback.learning.preferences import LabelSelection, select_labels
from secbot.feedback.learning.report import RunReport, author_cap_note
from secbot.feedback.store.entities import RecordStatus, RunState, TrainingRecord, Version, VersionStatus
from secbot.feedback.store.memory_index import TeamMemory
from secbot.feedback.store.owners import this_process
from secbot.feedback.store.repositories import Store
from secbot.model.runtime.adapters import check_adapter_dir, verify_adapter
from secbot.model.runtime.prompting import DEFAULT_ASSISTANT_NAME
from secbot.model.serving.client import ModelClient
from secbot.model.training.record_formats import Record, write_labelled, write_records
from secbot.model.training.trainer import LOSS_PNG, METADATA_FILE, TrainConfig, read_loss_log

log = logging.getLogger(__name__)
LOCK = "retrain"


@dataclass
class LoopConfig:
    model_dir: Path
    runs_dir: Path
    train: TrainConfig = field(default_factory=TrainConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    memory: MemoryPolicy = field(default_factory=MemoryPolicy)
    assistant_name: str = DEFAULT_ASSISTANT_NAME
    system_prompt: str | None = None
    min_new_records: int = 1
    min_labels: int = 64  # labelled completions the preference stage needs (see README)
    max_author_share: float = 0.5
    replay_ratio: float = 4.0  # earlier approved records per new record
    general_ratio: float = 1.0  # built-in general security records per new record
    heldout_file: Path | None = None
    mcq_file: Path | None = None
    timeout_s: float = 6 * 3600
    heartbeat_s: float = 10.0
    stale_after_s: float = 120.0  # a run on another host with no heartbeat this long has died
    eval_max_new_tokens: int = 128


def memory_coverage(memory: TeamMemory, records: list[TrainingRecord], confident: float) -> float:
    """% of `records` that team memory answers confidently with their own answer."""
    if not records:
        return 0.0
    hits = 0
    for record in records:
        found = memory.search(record.prompt, [q for q, _ in record.history], k=1)
        hits += bool(found) and found[0].confidence >= confident and found[0].record_id == record.id
    return round(100.0 * hits / len(records), 2)


class RetrainPipeline:
    """`model`: the client of the served model, switched on promotion and rollback (None where
    this process serves nothing, e.g. a training worker with no model server configured)."""

    def __init__(self, store: Store, config: LoopConfig, model: ModelClient | None = None):
        self.store = store
        self.config = config
        self.model = model
        self.guard = IdentityGuard()
        self.owner = f"{this_process()}:{uuid.uuid4().hex[:6]}"

    def recover(self) -> list[int]:
        """Mark runs whose process died as failed: at once when its owner was on this host and is
        gone, after `stale_after_s` without a heartbeat otherwise. Cheap; called by whoever looks."""
        failed = self.store.runs.fail_stale_runs(timedelta(seconds=self.config.stale_after_s))
        for run_id in failed:
            log.warning("training run %s had no heartbeat and is marked failed", run_id)
        return failed

    def run_dir(self, run_id: int) -> Path:
        """Where run `run_id` keeps its data, job, log and adapter."""
        return self.config.runs_dir / f"run-{run_id}"

    def training_log(self, run_id: int) -> list[dict]:
        """The loss-log entries of run `run_id` (step, loss, tokens/s), while it trains and after."""
        return read_loss_log(adapter_dir(self.run_dir(run_id)))

    def run(self, requested_by: str | None = None, queued_run: int | None = None) -> RunReport:
        """One run, start to finish; returns what happened and why (also kept with the run).

        `queued_run` is a run a bot process queued for this (training worker) process."""
        self.recover()
        ttl = timedelta(seconds=self.config.stale_after_s)
        if not self.store.runs.acquire_lock(LOCK, self.owner, ttl):
            return RunReport("busy", "A retraining run is already in progress.")
        try:
            report = self._run_locked(requested_by, queued_run)
            if queued_run is not None and report.decision == "skipped":
                self.store.runs.update_run(queued_run, state=RunState.FAILED, error=report.summary,
                                           report=report.to_json())
            return report
        finally:
            self.store.runs.release_lock(LOCK, self.owner)

    def _run_locked(self, requested_by: str | None, queued_run: int | None) -> RunReport:
        cfg = self.config
        heldout = heldout_set(cfg.heldout_file)
        curated = curate(self.store.records.list(RecordStatus.APPROVED), [r.prompt for r in heldout],
                         self.guard, cfg.max_author_share)
        trained = self.store.runs.trained_record_ids()
        new = [r for r in curated.kept if r.id not in trained]
        data = {"excluded": curated.summary()}
        if curated.capped_authors:
            data["author_cap"] = {"share": cfg.max_author_share, "authors": curated.capped_authors}
        labels, new_labels = self._labels(heldout, data)
        if len(new) < cfg.min_new_records and len(new_labels) < cfg.min_labels:
            why = (f"Skipped: {len(new)} new approved record(s) since the active model was trained; "
                   f"at least {cfg.min_new_records} needed.")
            if labels is not None:
                why += f" {len(new_labels)} new 👍/👎 label(s); {cfg.min_labels} would run the preference stage."
            if curated.capped_authors:
                why += " " + author_cap_note(cfg.max_author_share, curated.capped_authors)
            return RunReport("skipped", why, data=data)
        stage = labels is not None and len(labels.train) >= cfg.min_labels
        train_config = cfg.train if stage else replace(cfg.train, stage=replace(cfg.train.stage, preference="off"))
        snapshot = self.store.records.create_snapshot(curated.kept, curated.summary(),
                                                      label_ids=[x.id for x in labels.train] if stage else ())
        run = self.store.runs.create_run(snapshot_id=snapshot.id, method=cfg.train.method, owner=self.owner,
                                         hyperparameters=train_config.flat(), requested_by=requested_by,
                                         queued_run=queued_run)
        job = JobSpec(model_dir=str(cfg.model_dir), run_dir=str(self.run_dir(run.id)), train=train_config,
                      system_prompt=cfg.system_prompt, assistant_name=cfg.assistant_name,
                      eval_max_new_tokens=cfg.eval_max_new_tokens,
                      mcq_file=str(cfg.mcq_file) if cfg.mcq_file else None)
        job.dir.mkdir(parents=True, exist_ok=True)
        self.store.runs.update_run(run.id, log_path=str(job.dir / "train.log"))
        report = RunReport("failed", "", run_id=run.id, data=data)
        try:
            active = self.store.runs.active_version()
            job.active_adapter = active.adapter_path if active else None
            mix = training_mix(curated.kept, {r.id for r in new}, general_set(),
                               identity_records(cfg.assistant_name), replay_ratio=cfg.replay_ratio,
                               general_ratio=cfg.general_ratio, seed=snapshot.id)
            data["mix"] = mix.summary()
            self._write_inputs(job, mix.train, mix.new, heldout, labels if stage else None)
            self._train(run.id, job)
            adapter = check_adapter_dir(job.adapter)
            if not (adapter / METADATA_FILE).is_file() or not job.result.is_file():
                raise RuntimeError("training finished without a complete adapter and result")
            report.metrics = json.loads(job.result.read_text())
            data["memory_coverage"] = memory_coverage(self.store.memory, new, cfg.memory.confident)
            curve = adapter / LOSS_PNG
            report.loss_curve = str(curve) if curve.exists() else None
            decision = decide(report.metrics["candidate"], report.metrics["active"], cfg.gate)
            report.reasons = decision.reasons
            version = self.store.runs.add_version(base_model=str(cfg.model_dir), adapter_path=str(adapter),
                                                  run_id=run.id)
            if decision.passed:
                self.activate(version, requested_by or "scheduler")
                report.decision, report.version_id = "promoted", version.id
                report.summary = f"Run {run.id}: candidate promoted to version {version.id}."
                state = RunState.PROMOTED
            else:
                report.decision = "rejected"
                report.summary = f"Run {run.id}: candidate rejected; the active model stays."
                state = RunState.REJECTED
            self.store.runs.update_run(run.id, state=state, metrics=report.metrics, report=report.to_json())
        except Exception as exc:
            reason = str(exc) or exc.__class__.__name__
            log.error("training run %s failed: %s", run.id, reason)
            report.decision, report.summary = "failed", f"Run {run.id} failed: {reason}"
            self.store.runs.update_run(run.id, state=RunState.FAILED, error=reason, metrics=report.metrics,
                                       report=report.to_json())
        return report

    def _labels(self, heldout: list[Record], data: dict) -> tuple[LabelSelection | None, list]:
        """The labelled completions for the preference stage (None when it is off), and those the
        active version has not learned from; what was chosen goes into the report's `data`."""
        cfg = self.config
        if cfg.train.stage.preference != "kto":
            return None, []
        labels = select_labels(self.store.labels.usable(), [r.prompt for r in heldout], cfg.max_author_share,
                               self.store.labels.excluded_counts())
        trained = self.store.runs.trained_label_ids()
        new = [x for x in labels.train if x.id not in trained]
        data["preference"] = labels.summary() | {"new": len(new)}
        if len(labels.train) < cfg.min_labels:
            data["preference"]["stage"] = (f"preference stage skipped: {len(labels.train)} usable label(s), "
                                           f"at least {cfg.min_labels} needed (SECBOT_PREFERENCE_MIN_LABELS)")
        else:
            data["preference"]["stage"] = "preference stage (KTO) ran after the supervised stage"
        return labels, new

    def _write_inputs(self, job: JobSpec, train: list[Record], new: list[Record], heldout: list[Record],
                      labels: LabelSelection | None = None) -> None:
        name = self.config.assistant_name
        if labels is not None:
            write_labelled(job.data(PREFERENCE_TRAIN), labels.examples("train"))
            write_labelled(job.data(PREFERENCE_HELDOUT), labels.examples("heldout"))
        train, val = split_train_val(train, protected=set(new) | set(identity_records(name)))
        write_records(job.data("train"), train)
        write_records(job.data("val"), val)
        write_records(job.data("heldout"), heldout)
        write_records(job.data("identity_train"), identity_records(name))
        write_records(job.data("identity_heldout"), identity_records(name, identity_sets().heldout))
        write_records(job.data("corrections"), new)
        job.write()

    def _train(self, run_id: int, job: JobSpec) -> None:
        """Run the training subprocess with heartbeats and a timeout; raise on any failure."""
        cfg = self.config
        log_path = job.dir / "train.log"
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "secbot.feedback.learning.train_job", str(job.file)],
                                    stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                started = last_beat = time.monotonic()
                while proc.poll() is None:
                    time.sleep(0.2)
                    now = time.monotonic()
                    if now - started > cfg.timeout_s:
                        raise RuntimeError(f"training timed out after {cfg.timeout_s:.0f} s")
                    if now - last_beat >= cfg.heartbeat_s:
                        self.store.runs.heartbeat(run_id)
                        self.store.runs.acquire_lock(LOCK, self.owner, timedelta(seconds=cfg.stale_after_s))
                        last_beat = now
            finally:
                if proc.poll() is None:  # timed out, or this thread is being torn down
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if proc.returncode != 0:
            how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
                   else f"exited with code {proc.returncode}")
            tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"the training process {how}; last log lines: {' | '.join(tail)[-400:]}")

    # -- promotion and rollback ------------------------------------------------------------------
    def activate(self, target: Version | None, by: str) -> Version | None:
        """Make `target` the active version (None: the base), the served model first."""
        if target is not None and target.adapter_path:
            # Raises with the path and what is wrong; a serving process then loads it for real.
            (check_adapter_dir if self.model is not None else verify_adapter)(target.adapter_path)
        current = self.store.runs.active_version()
        if self.model is not None:
            self.model.use_version(target)  # loads it: a corrupt adapter fails here, store untouched
        try:
            if target is None:
                self.store.runs.retire_active()
                return None
            return self.store.runs.promote(target.id, by)
        except Exception:
            if self.model is not None:
                self.model.use_version(current)
            raise

    def rollback(self, version_id: int | None, by: str) -> Version | None:
        """Make `version_id` active again, or else the version that was active before this one
        (or the base when there is none). Returns the now-active version."""
        versions = self.store.runs.versions()
        current = next((v for v in versions if v.status is VersionStatus.ACTIVE), None)
        if version_id is not None:
            target = next((v for v in versions if v.id == version_id), None)
            if target is None:
                raise StoreError(f"there is no model version {version_id}")
            if target.promoted_at is None:
                raise StoreError(f"version {version_id} was never promoted (the gate rejected its run); "
                                 "only versions that once served can be rolled back to")
        else:
            earlier = [v for v in versions if v.promoted_at and (current is None or (
                v.id != current.id and v.promoted_at < current.promoted_at))]
            target = max(earlier, key=lambda v: v.promoted_at) if earlier else None
        return self.activate(target, by)


def split_train_val(records: list[Record], protected: set[Record], share: int = 20,
                    minimum: int = 40) -> tuple[list[Record], list[Record]]:
    """Deterministic: every `share`-th other record (by content) validates, once there are
    `minimum` records; new corrections and identity records always train."""
    if len(records) < minimum:
        return list(records), []
    train, val = [], []
    for record in records:
        digest = hashlib.sha256(json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True).encode())
        (val if record not in protected and int(digest.hexdigest(), 16) % share == 0 else train).append(record)
    return train, val
