"""The training subprocess of a retraining run.

    python -m secbot.feedback.train_job RUN_DIR/job.json

Trains the candidate adapter on the run's frozen data, then evaluates the candidate and the
active version on the same held-out, identity and new-correction sets. Writes `adapter/` and
`result.json` into the run directory; the parent process decides on promotion.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

from secbot.feedback.evalsets import says_identity
from secbot.model.engine import Engine
from secbot.model.evaluation import compute_metrics, write_predictions
from secbot.model.generation import Sampling
from secbot.model.records import read_records
from secbot.model.training import TrainConfig, train

SETS = ("heldout", "identity", "corrections")


def evaluate_version(engine: Engine, run_dir: Path, label: str, name: str, max_new_tokens: int) -> dict:
    sampling = Sampling(max_new_tokens=max_new_tokens)
    out: dict = {}
    for set_name in SETS:
        path = run_dir / f"{set_name}.jsonl"
        records = read_records(path).records if path.stat().st_size else []
        preds = []
        for i in range(0, len(records), 8):
            chunk = records[i:i + 8]
            preds += engine.generate_batch([(r.prompt, r.history) for r in chunk], sampling)
        labels = [r.response for r in records]
        write_predictions(run_dir / f"{label}_{set_name}_predictions.txt", preds, labels)
        if set_name == "identity":
            out["identity"] = round(100.0 * sum(says_identity(p, name) for p in preds) / max(len(preds), 1), 2)
        else:
            out[set_name] = compute_metrics(preds, labels)
    return out


def run_job(job_file: str | Path) -> None:
    job = json.loads(Path(job_file).read_text())
    run_dir = Path(job["run_dir"])
    (run_dir / "worker.pid").write_text(str(os.getpid()))
    records = read_records(run_dir / "train.jsonl").records
    val_path = run_dir / "val.jsonl"
    val = read_records(val_path).records if val_path.exists() and val_path.stat().st_size else []
    result = train(job["model_dir"], records, run_dir / "adapter", TrainConfig(**job["train"]), val,
                   trust_remote_code=job["trust_remote_code"], prompt_format=job["prompt_format"],
                   system_prompt=job["system_prompt"], progress=True)
    gc.collect()  # the trainer's copy of the base goes before the evaluator loads its own
    engine = Engine.load(job["model_dir"], device=job["train"]["device"], dtype=job["train"]["dtype"],
                         trust_remote_code=job["trust_remote_code"], prompt_format=job["prompt_format"],
                         system_prompt=job["system_prompt"])
    metrics = {}
    for label, adapter in (("candidate", result.adapter_dir), ("active", job["active_adapter"])):
        engine.use_adapter(adapter)
        metrics[label] = evaluate_version(engine, run_dir, label, job["assistant_name"],
                                          job["eval_max_new_tokens"])
        print(f"evaluated {label}: {json.dumps(metrics[label])}", flush=True)
    metrics["training"] = result.metadata["metrics"] | {"steps": result.metadata["steps"],
                                                        "train_seconds": result.metadata["train_seconds"]}
    tmp = run_dir / "result.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    os.replace(tmp, run_dir / "result.json")


if __name__ == "__main__":
    run_job(sys.argv[1])
