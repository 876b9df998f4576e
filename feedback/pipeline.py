"""The retraining pipeline: snapshot → train (subprocess) → evaluate → gate → promote.

One run at a time across every process on the database (a lease in the `locks` table, renewed
by the heartbeat). A run that dies is marked failed with its reason; a candidate is promoted
only from a complete adapter and a complete result, so the active model keeps serving otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

from secbot.feedback.evalsets import heldout_set, identity_records
from secbot.feedback.gate import GateConfig, decide
from secbot.feedback.models import ModelVersion, RunState, VersionStatus, utcnow
from secbot.feedback.store import Store
from secbot.model.adapters import check_adapter_dir
from secbot.model.records import Record, write_records
from secbot.model.training import LOSS_PNG, METADATA_FILE, TrainConfig

log = logging.getLogger(__name__)
LOCK = "retrain"


@dataclass
class LoopConfig:
    model_dir: Path
    runs_dir: Path
    train: TrainConfig = field(default_factory=TrainConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    assistant_name: str = "secbot"
    system_prompt: str | None = None
    prompt_format: str = "auto"
    trust_remote_code: bool = False
    min_new_records: int = 1
    max_author_share: float = 0.5
    heldout_file: Path | None = None
    timeout_s: float = 6 * 3600
    heartbeat_s: float = 10.0
    stale_after_s: float = 600.0
    eval_max_new_tokens: int = 128


@dataclass
class RunReport:
    decision: str  # promoted, rejected, failed, skipped, busy
    summary: str
    run_id: int | None = None
    version_id: int | None = None
    metrics: dict = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    loss_curve: Path | None = None


def metrics_table(metrics: dict) -> str:
    """Candidate vs active, as a fixed-width table for Slack and the terminal."""
    cand, act = metrics.get("candidate", {}), metrics.get("active", {})
    rows = [("held-out ROUGE-1", "heldout", "rouge-1"), ("held-out ROUGE-2", "heldout", "rouge-2"),
            ("held-out ROUGE-L", "heldout", "rouge-l"), ("held-out BLEU-4", "heldout", "bleu-4"),
            ("identity %", "identity", None), ("corrections exact %", "corrections", "exact_match")]
    lines = [f"{'metric':<22}{'candidate':>10}{'active':>10}"]
    for title, group, key in rows:
        def value(m):
            v = m.get(group)
            v = v.get(key) if isinstance(v, dict) else v
            return f"{v:>10.2f}" if isinstance(v, (int, float)) else f"{'-':>10}"
        lines.append(f"{title:<22}{value(cand)}{value(act)}")
    return "\n".join(lines)


class RetrainPipeline:
    def __init__(self, store: Store, config: LoopConfig,
                 on_active_changed: Callable[[ModelVersion | None], None] | None = None):
        self.store = store
        self.config = config
        self.on_active_changed = on_active_changed or (lambda version: None)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def recover(self) -> list[int]:
        """Mark runs whose process died (stale heartbeat) as failed; call at start-up."""
        failed = self.store.fail_stale_runs(timedelta(seconds=self.config.stale_after_s))
        for run_id in failed:
            log.warning("training run %s had no heartbeat and is marked failed", run_id)
        return failed

    def run(self, requested_by: str | None = None, queued_run: int | None = None) -> RunReport:
        """One retraining run, start to finish; returns what happened and why.

        `queued_run` is a run a bot process queued for this (training worker) process."""
        self.recover()
        ttl = timedelta(seconds=self.config.stale_after_s)
        if not self.store.acquire_lock(LOCK, self.owner, ttl):
            return RunReport("busy", "A retraining run is already in progress.")
        try:
            report = self._run_locked(requested_by, queued_run)
            if queued_run is not None and report.decision == "skipped":
                self.store.update_run(queued_run, state=RunState.FAILED, error=report.summary)
            return report
        finally:
            self.store.release_lock(LOCK, self.owner)

    # -- the run -------------------------------------------------------------------------------
    def _run_locked(self, requested_by: str | None, queued_run: int | None) -> RunReport:
        cfg = self.config
        heldout = heldout_set(cfg.heldout_file)
        identity = identity_records(cfg.assistant_name)
        snap = self.store.freeze_snapshot(heldout_prompts=[r.prompt for r in heldout],
                                          max_author_share=cfg.max_author_share)
        trained = self.store.last_snapshot_ids()
        new = [rec for rid, rec in zip(snap.snapshot.record_ids, snap.records) if rid not in trained]
        if len(new) < cfg.min_new_records:
            return RunReport("skipped", f"Skipped: {len(new)} new approved record(s) since the active "
                             f"model was trained; at least {cfg.min_new_records} needed.")
        active = self.store.active_version()
        if queued_run is None:
            run = self.store.create_run(snapshot_id=snap.snapshot.id, method=cfg.train.method,
                                        hyperparameters=asdict(cfg.train), requested_by=requested_by)
        else:
            run = self.store.update_run(queued_run, state=RunState.RUNNING, snapshot_id=snap.snapshot.id,
                                        method=cfg.train.method, hyperparameters=asdict(cfg.train),
                                        started_at=utcnow(), heartbeat_at=utcnow())
        run_dir = cfg.runs_dir / f"run-{run.id}"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.store.update_run(run.id, log_path=str(run_dir / "train.log"))
        try:
            self._write_inputs(run_dir, snap.records, new, heldout, identity, active)
            self._train(run.id, run_dir)
            adapter = check_adapter_dir(run_dir / "adapter")
            if not (adapter / METADATA_FILE).is_file() or not (run_dir / "result.json").is_file():
                raise RuntimeError("training finished without a complete adapter and result")
            metrics = json.loads((run_dir / "result.json").read_text())
        except Exception as exc:
            reason = str(exc) or exc.__class__.__name__
            self.store.update_run(run.id, state=RunState.FAILED, error=reason)
            log.error("training run %s failed: %s", run.id, reason)
            return RunReport("failed", f"Run {run.id} failed: {reason}", run_id=run.id)
        decision = decide(metrics["candidate"], metrics["active"], cfg.gate)
        curve = adapter / LOSS_PNG
        report = RunReport("rejected", "", run_id=run.id, metrics=metrics, reasons=decision.reasons,
                           loss_curve=curve if curve.exists() else None)
        if not decision.passed:
            self.store.update_run(run.id, state=RunState.REJECTED, metrics=metrics,
                                  adapter_path=str(adapter))
            report.summary = f"Run {run.id}: candidate rejected; the active model stays."
            return report
        version = self.store.add_version(base_model=str(cfg.model_dir), adapter_path=str(adapter),
                                         run_id=run.id, metrics=_headline(metrics["candidate"]))
        self.store.promote(version.id, requested_by or "scheduler")
        self.store.update_run(run.id, state=RunState.PROMOTED, metrics=metrics, adapter_path=str(adapter))
        self.on_active_changed(self.store.get_version(version.id))
        report.decision, report.version_id = "promoted", version.id
        report.summary = f"Run {run.id}: candidate promoted to version {version.id}."
        return report

    def _write_inputs(self, run_dir: Path, records: list[Record], new: list[Record],
                      heldout: list[Record], identity: list[Record], active) -> None:
        cfg = self.config
        train, val = split_train_val(records, protected=set(new))
        seen = set(train)
        write_records(run_dir / "train.jsonl", train + [r for r in identity if r not in seen])
        write_records(run_dir / "val.jsonl", val)
        write_records(run_dir / "heldout.jsonl", heldout)
        write_records(run_dir / "identity.jsonl", identity)
        write_records(run_dir / "corrections.jsonl", new)
        job = {"model_dir": str(cfg.model_dir), "run_dir": str(run_dir), "train": asdict(cfg.train),
               "active_adapter": active.adapter_path if active else None,
               "system_prompt": cfg.system_prompt, "prompt_format": cfg.prompt_format,
               "trust_remote_code": cfg.trust_remote_code, "assistant_name": cfg.assistant_name,
               "eval_max_new_tokens": cfg.eval_max_new_tokens}
        (run_dir / "job.json").write_text(json.dumps(job, indent=2, ensure_ascii=False))

    def _train(self, run_id: int, run_dir: Path) -> None:
        """Run the training subprocess with heartbeats and a timeout; raise on any failure."""
        cfg = self.config
        with open(run_dir / "train.log", "ab") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "secbot.feedback.train_job", str(run_dir / "job.json")],
                                    stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
            started = last_beat = time.monotonic()
            while proc.poll() is None:
                time.sleep(0.2)
                now = time.monotonic()
                if now - started > cfg.timeout_s:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    raise RuntimeError(f"training timed out after {cfg.timeout_s:.0f} s")
                if now - last_beat >= cfg.heartbeat_s:
                    self.store.update_run(run_id, heartbeat_at=utcnow())
                    self.store.acquire_lock(LOCK, self.owner, timedelta(seconds=cfg.stale_after_s))
                    last_beat = now
        if proc.returncode != 0:
            how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
                   else f"exited with code {proc.returncode}")
            tail = (run_dir / "train.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"the training process {how}; last log lines: {' | '.join(tail)[-400:]}")

    # -- rollback ------------------------------------------------------------------------------
    def rollback(self, version_id: int | None, by: str) -> ModelVersion | None:
        """Make `version_id` active again, or else the version that was active before this one
        (or the bare base model when there is none). Returns the now-active version."""
        versions = self.store.versions()
        current = next((v for v in versions if v.status is VersionStatus.ACTIVE), None)
        if version_id is not None:
            target = next((v for v in versions if v.id == version_id), None)
            if target is None:
                raise ValueError(f"there is no model version {version_id}")
        else:
            earlier = [v for v in versions if v.promoted_at and (current is None or v.id != current.id)
                       and (current is None or v.promoted_at < current.promoted_at)]
            target = max(earlier, key=lambda v: v.promoted_at) if earlier else None
        if target is None:
            if current is not None:
                self.store.retire_active()
        else:
            self.store.promote(target.id, by)
        active = self.store.active_version()
        self.on_active_changed(active)
        return active


def _headline(metrics: dict) -> dict:
    out = {f"heldout_{k}": v for k, v in metrics["heldout"].items() if k != "samples"}
    out["identity"] = metrics["identity"]
    out["corrections_exact"] = metrics["corrections"]["exact_match"]
    return out


def split_train_val(records: list[Record], protected: set[Record], share: int = 20,
                    minimum: int = 40) -> tuple[list[Record], list[Record]]:
    """Deterministic: every `share`-th older record (by content) validates, once there are
    `minimum` records; new corrections always train, since the gate checks them."""
    import hashlib

    if len(records) < minimum:
        return list(records), []
    train, val = [], []
    for record in records:
        digest = hashlib.sha256(json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True).encode())
        (val if record not in protected and int(digest.hexdigest(), 16) % share == 0 else train).append(record)
    return train, val
