"""Our metrics against THUDM's compute_metrics recipe, written out here as they wrote it."""

import json
import subprocess
import sys

import jieba
import numpy as np
import pytest
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rouge_chinese import Rouge

from secbot.model.training.evaluation import compute_metrics, read_predictions, write_predictions

PAIRS = [
    ("勒索软件会加密文件并索要赎金。", "勒索软件会加密文件，并要求支付赎金。"),
    ("钓鱼攻击诱骗用户泄露密码", "钓鱼攻击是一种社会工程攻击"),
    ("Use parameterised queries to stop SQL injection.", "Parameterised queries stop SQL injection."),
    ("MFA needs a second factor.", "MFA needs a second factor."),
    ("完全无关的回答", "SSH listens on TCP port 22."),
]


def thudm_reference(preds, labels):
    score_dict = {"rouge-1": [], "rouge-2": [], "rouge-l": [], "bleu-4": []}
    for pred, label in zip(preds, labels):
        hypothesis = list(jieba.cut(pred))
        reference = list(jieba.cut(label))
        rouge = Rouge()
        scores = rouge.get_scores(" ".join(hypothesis), " ".join(reference))
        result = scores[0]
        for k, v in result.items():
            score_dict[k].append(round(v["f"] * 100, 4))
        bleu_score = sentence_bleu([list(label)], list(pred),
                                   smoothing_function=SmoothingFunction().method3)
        score_dict["bleu-4"].append(round(bleu_score * 100, 4))
    return {k: float(np.mean(v)) for k, v in score_dict.items()}


def test_metrics_equal_thudm_reference_to_4_decimals():
    preds, labels = zip(*PAIRS)
    ours = compute_metrics(preds, labels)
    reference = thudm_reference(preds, labels)
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value, abs=5e-5), key
    assert ours["exact_match"] == pytest.approx(20.0)
    assert 0 < ours["rouge-2"] < ours["rouge-1"] < 100


def test_empty_prediction_or_label_scores_zero_without_crashing():
    with pytest.raises(ValueError):  # THUDM's recipe dies here
        thudm_reference([""], ["label"])
    preds, labels = zip(*PAIRS)
    ours = compute_metrics(list(preds) + ["", "answer", "   "], list(labels) + ["label", "", "x"])
    reference = thudm_reference(preds, labels)
    for key, value in reference.items():  # the three empty samples add zeros to the mean
        assert ours[key] == pytest.approx(value * len(PAIRS) / (len(PAIRS) + 3), abs=1e-4), key
    assert compute_metrics(["", ""], ["", ""])["rouge-1"] == 0.0


def test_predictions_file_round_trips_and_scores_from_the_cli(tmp_path):
    preds, labels = zip(*PAIRS)
    path = tmp_path / "generated_predictions.txt"
    write_predictions(path, preds, labels)
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first == {"labels": PAIRS[0][1], "predict": PAIRS[0][0]}
    assert read_predictions(path) == (list(preds), list(labels))
    out = subprocess.run([sys.executable, "-m", "secbot.bot.cli.commands", "eval", "--predictions", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == compute_metrics(preds, labels)


def test_bad_predictions_file_names_the_line(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text('{"labels": "a", "predict": "a"}\nnot json\n')
    out = subprocess.run([sys.executable, "-m", "secbot.bot.cli.commands", "eval", "--predictions", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "p.txt:2" in out.stderr
