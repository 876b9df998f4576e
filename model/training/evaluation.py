"""THUDM-compatible metrics and prediction files.

`compute_metrics` follows THUDM's `ptuning/main.py`: per sample, ROUGE-1/2/L F-scores x 100 from
`rouge_chinese.Rouge` on space-joined `jieba.cut` tokens and BLEU-4 x 100 from nltk's
`sentence_bleu` on characters with smoothing method 3, each rounded to 4 decimals, then the
mean. Where THUDM crashes on an empty prediction ("Hypothesis is empty"), an empty prediction or
label scores 0. `exact_match` (x 100) is ours: the share of answers reproduced verbatim.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

from secbot.model.errors import ModelError

PREDICTIONS_FILE = "generated_predictions.txt"
METRIC_NAMES = ("rouge-1", "rouge-2", "rouge-l", "bleu-4", "exact_match")


def sample_scores(pred: str, label: str) -> dict[str, float]:
    """One sample's scores, THUDM's recipe; zeros when either side is empty."""
    import jieba
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from rouge_chinese import Rouge

    jieba.setLogLevel(logging.WARNING)
    scores = dict.fromkeys(METRIC_NAMES, 0.0)
    scores["exact_match"] = 100.0 if pred.strip() == label.strip() and label.strip() else 0.0
    hypothesis, reference = " ".join(jieba.cut(pred)), " ".join(jieba.cut(label))
    if not hypothesis.strip() or not reference.strip():
        return scores
    try:
        result = Rouge().get_scores(hypothesis, reference)[0]
    except ValueError:  # rouge_chinese rejects token lists that strip to nothing
        return scores
    for key in ("rouge-1", "rouge-2", "rouge-l"):
        scores[key] = round(result[key]["f"] * 100, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns on zero n-gram overlaps, then scores 0
        bleu = sentence_bleu([list(label)], list(pred),
                             smoothing_function=SmoothingFunction().method3)
    scores["bleu-4"] = round(bleu * 100, 4)
    return scores


def compute_metrics(preds: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Mean of per-sample scores; keys rouge-1, rouge-2, rouge-l, bleu-4, exact_match, samples."""
    if len(preds) != len(labels):
        raise ModelError(f"{len(preds)} predictions for {len(labels)} labels")
    totals = dict.fromkeys(METRIC_NAMES, 0.0)
    for pred, label in zip(preds, labels):
        for key, value in sample_scores(pred, label).items():
            totals[key] += value
    n = max(len(preds), 1)
    return {key: round(value / n, 4) for key, value in totals.items()} | {"samples": len(preds)}


def write_predictions(path: str | Path, preds: Sequence[str], labels: Sequence[str]) -> None:
    """THUDM's `generated_predictions.txt`: one `{"labels": ..., "predict": ...}` per line."""
    with open(path, "w", encoding="utf-8") as fh:
        for pred, label in zip(preds, labels):
            fh.write(json.dumps({"labels": label, "predict": pred}, ensure_ascii=False) + "\n")


def read_predictions(path: str | Path) -> tuple[list[str], list[str]]:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file. Give a generated_predictions.txt from `secbot eval`.")
    preds, labels = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            labels.append(str(row["labels"]))
            preds.append(str(row["predict"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelError(f"{path}:{number}: expected {{\"labels\": ..., \"predict\": ...}} "
                             f"({exc.__class__.__name__})") from None
    return preds, labels


def evaluate(engine, records, out_dir: str | Path | None = None, batch_size: int = 8,
             sampling=None, progress: bool = False) -> tuple[dict, list[str]]:
    """(metrics, predictions): greedy answers scored against each record's response.

    With `out_dir`, also writes THUDM's `generated_predictions.txt` and `metrics.json`.
    """
    from tqdm.auto import tqdm

    from secbot.model.runtime.generation import Sampling

    sampling = sampling or Sampling(max_new_tokens=256)
    preds: list[str] = []
    for i in tqdm(range(0, len(records), batch_size), desc="eval", disable=not progress):
        chunk = records[i:i + batch_size]
        preds += engine.generate_batch([(r.prompt, r.history) for r in chunk], sampling)
    labels = [r.response for r in records]
    metrics = compute_metrics(preds, labels)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_predictions(out / PREDICTIONS_FILE, preds, labels)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics, preds


def preference_margin(engine, examples: Sequence, max_length: int = 256):
    """The margin (`model.training.preference.margin`) of the engine's active version on
    labelled completions, encoded as training encodes them."""
    from secbot.model.training.preference import margin
    from secbot.model.training.trainer import TrainConfig, collate, encode

    config = TrainConfig(max_source_length=max_length, max_target_length=max_length)
    encoded = [encode(x.record, engine.prompts, config) for x in examples]
    pad = engine.tokenizer.pad_token_id
    with engine._lock:
        return margin(engine.adapters.model(), encoded, [x.desirable for x in examples],
                      lambda batch: collate(batch, pad, engine.device))
