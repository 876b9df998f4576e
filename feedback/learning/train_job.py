"""The training subprocess of a nightly run.

    python -m secbot.feedback.learning.train_job RUN_DIR/job.json

Trains the candidate adapter on the run's training mix (then, when the run has labelled
completions, its preference stage), then answers every evaluation set with
the candidate and with the active version (`model.training.evaluation`, THUDM's metrics), scores the
optional multiple-choice exam and the held-out labelled completions' margin, and writes
`adapter/` and `result.json` into the run directory.
The parent process decides on promotion. The process dies with its parent (Linux).
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

from secbot.feedback.intake.identity import says_identity
from secbot.feedback.learning.job import EVAL_SETS, PREFERENCE_HELDOUT, PREFERENCE_TRAIN, JobSpec
from secbot.model.runtime.engine import Engine
from secbot.model.runtime.generation import Sampling
from secbot.model.training.evaluation import evaluate, preference_margin
from secbot.model.training.multiple_choice import accuracy, read_questions
from secbot.model.training.record_formats import read_labelled, read_records
from secbot.model.training.trainer import train


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (kill -9 of the worker too)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before the request took effect
            os._exit(1)


def _records(path: Path):
    return read_records(path).records if path.exists() and path.stat().st_size else []


def evaluate_version(engine: Engine, job: JobSpec, label: str, questions) -> dict:
    sampling = Sampling(max_new_tokens=job.eval_max_new_tokens)
    out: dict = {}
    for name in EVAL_SETS:
        records = _records(job.data(name))
        metrics, preds = evaluate(engine, records, job.dir / f"{label}_{name}", batch_size=16, sampling=sampling)
        if name.startswith("identity"):
            out[name] = round(100.0 * sum(says_identity(p, job.assistant_name) for p in preds)
                              / max(len(preds), 1), 2)
        else:
            out[name] = metrics
    if questions:
        out["mcq"] = accuracy(engine, questions)
    judged = read_labelled(job.data(PREFERENCE_HELDOUT))
    if judged:
        out["preference"] = preference_margin(engine, judged, job.train.max_source_length).to_json()
    return out


def run_job(job_file: str | Path) -> None:
    die_with_parent()
    job = JobSpec.read(job_file)
    (job.dir / "worker.pid").write_text(str(os.getpid()))
    questions = read_questions(job.mcq_file) if job.mcq_file else []
    result = train(job.model_dir, _records(job.data("train")), job.adapter, job.train, _records(job.data("val")),
                   system_prompt=job.system_prompt, progress=True, labelled=read_labelled(job.data(PREFERENCE_TRAIN)))
    gc.collect()  # the trainer's copy of the base goes before the evaluator loads its own
    engine = Engine.load(job.model_dir, device=job.train.device, dtype=job.train.dtype,
                         system_prompt=job.system_prompt)
    metrics = {}
    for label, adapter in (("candidate", result.adapter_dir), ("active", job.active_adapter)):
        engine.use_adapter(adapter)
        metrics[label] = evaluate_version(engine, job, label, questions)
        print(f"evaluated {label}: {json.dumps(metrics[label], ensure_ascii=False)}", flush=True)
    metrics["training"] = result.metadata["metrics"] | {"steps": result.metadata["steps"],
                                                        "train_seconds": result.metadata["train_seconds"]}
    tmp = job.result.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    os.replace(tmp, job.result)


if __name__ == "__main__":
    run_job(sys.argv[1])
