"""The multiple-choice exam: every documented file shape, likelihood scoring that prefers the
answer a model was trained to give, and the gate refusing a candidate that scores worse."""

import json

import pytest

from secbot.feedback.learning.gate import GateConfig, decide
from secbot.model.errors import ModelError
from secbot.model.runtime.engine import Engine
from secbot.model.training.multiple_choice import Question, accuracy, choice_scores, parse_question, read_questions
from secbot.model.training.record_formats import Record
from secbot.model.training.trainer import TrainConfig, train

SYSTEM = "You are secbot."


@pytest.mark.parametrize("item, expected", [
    ({"question": "Which port does SSH use?", "choices": ["21", "22", "80"], "answer": "B"},
     Question("Which port does SSH use?", ("21", "22", "80"), 1)),
    ({"question": "q", "choices": ["a", "b"], "answer": "b."}, Question("q", ("a", "b"), 1)),  # letter, any case
    ({"question": "q", "choices": ["a", "b", "c"], "answer": 2}, Question("q", ("a", "b", "c"), 2)),  # 0-based index
    ({"question": "q", "choices": ["a", "b"], "answer": "a"}, Question("q", ("a", "b"), 0)),  # the choice's text
    ({"Question": "q", "options": {"B": "y", "A": "x"}, "Answer": "B"}, Question("q", ("x", "y"), 1)),  # CyberMetric
    ({"prompt": "q", "answers": [1, 2.5], "solution": "2.5"}, Question("q", ("1", "2.5"), 1)),
    ({"question": " q ", "choices": ["a", "b"], "label": 0, "extra": "ignored"}, Question("q", ("a", "b"), 0)),
    ({"question": "q", "Options": ["a", "b"], "correct": "A"}, Question("q", ("a", "b"), 0)),
])
def test_every_documented_shape_parses(item, expected):
    assert parse_question(item) == expected


@pytest.mark.parametrize("item, reason", [
    ({"question": "", "choices": ["a", "b"], "answer": 0}, "'question' must be a non-empty string"),
    ({"question": "q", "choices": ["a"], "answer": 0}, "need 2 to 26 choices, got 1"),
    ({"question": "q", "choices": ["a", "b"], "answer": "Z"}, "neither a letter, an index nor one of the choices"),
    ({"question": "q", "choices": ["a", "b"], "answer": 5}, "neither a letter"),
    ({"question": "q", "choices": ["a", "b"]}, "'answer' is missing"),
    ({"question": "q", "choices": [{"text": "a"}], "answer": 0}, "'choices' must be a list"),
    ({"question": "q", "choices": ["a", "b"], "answer": True}, "'answer' must be a letter"),
    (["not", "an", "object"], "must be a JSON object"),
])
def test_a_bad_item_says_why(item, reason):
    with pytest.raises(ValueError, match=reason):
        parse_question(item)


ITEMS = [{"question": "q1", "choices": ["a", "b"], "answer": "A"},
         {"question": "q2", "choices": {"A": "c", "B": "d"}, "answer": "d"}]


@pytest.mark.parametrize("text", [json.dumps(ITEMS), json.dumps({"questions": ITEMS}), json.dumps({"data": ITEMS}),
                                  "\n".join(json.dumps(i) for i in ITEMS) + "\n"])
def test_files_as_a_list_a_wrapper_or_json_lines(tmp_path, text):
    path = tmp_path / "exam.json"
    path.write_text(text, encoding="utf-8")
    assert read_questions(path) == [Question("q1", ("a", "b"), 0), Question("q2", ("c", "d"), 1)]


def test_a_bad_file_is_named_with_the_question_at_fault(tmp_path):
    path = tmp_path / "exam.json"
    path.write_text(json.dumps(ITEMS + [{"question": "q3", "choices": ["a", "b"], "answer": "C"}]))
    with pytest.raises(ModelError, match=r"exam.json: question 3: 'answer' 'C'"):
        read_questions(path)
    with pytest.raises(ModelError, match="no such file"):
        read_questions(tmp_path / "missing.json")
    (tmp_path / "latin1.json").write_bytes(b'[{"question": "caf\xe9"}]')
    with pytest.raises(ModelError, match="not valid UTF-8 JSON"):
        read_questions(tmp_path / "latin1.json")


EXAM = [Question("Which port does SSH listen on?", ("TCP 80", "TCP 22", "UDP 53", "TCP 443"), 1),
        Question("What does MFA add to a password?", ("A longer password", "A shared account",
                                                      "A second factor", "A VPN"), 2),
        Question("什么是勒索软件？", ("加密文件并索要赎金的恶意软件", "一种防火墙", "一种密码管理器", "一种日志格式"), 0),
        Question("What is phishing?", ("A port scan", "A patch process", "A backup policy",
                                       "Tricking people into giving away secrets"), 3)]


def test_likelihood_scoring_prefers_the_answer_the_model_was_trained_to_give(tiny_dir, tmp_path):
    # Teach the right line ("B. TCP 22") as the answer to each question with its choices listed.
    records = [Record(q.prompt(), q.line(q.answer)) for q in EXAM]
    config = TrainConfig.of(method="lora", lora_rank=16, lora_dropout=0.0, lr=3e-3, batch_size=4, grad_accum=1,
                            max_steps=120, logging_steps=20)
    adapter = train(tiny_dir, records, tmp_path / "exam-lora", config, system_prompt=SYSTEM, progress=False).adapter_dir
    base = Engine.load(tiny_dir, system_prompt=SYSTEM)
    tuned = Engine.load(tiny_dir, adapter, system_prompt=SYSTEM)
    assert accuracy(tuned, EXAM) == {"accuracy": 100.0, "samples": 4}
    for question in EXAM:
        scores = choice_scores(tuned, question)
        assert scores.index(max(scores)) == question.answer
        # Trained or not, scores are mean log-probabilities: negative, one per choice.
        assert len(choice_scores(base, question)) == len(question.choices) and max(scores) < 0
    assert accuracy(base, EXAM)["accuracy"] < 100.0  # the untrained model does not know them all


def test_the_gate_refuses_a_candidate_whose_exam_score_fell():
    active = {"heldout": {"rouge-l": 30.0, "bleu-4": 10.0}, "identity_heldout": 100.0,
              "corrections": {"exact_match": 0.0, "samples": 0}, "mcq": {"accuracy": 75.0, "samples": 4}}
    same = dict(active, corrections={"exact_match": 100.0, "samples": 1})
    assert decide(same, active, GateConfig(max_mcq_drop=2.0)).passed
    fell = dict(same, mcq={"accuracy": 50.0, "samples": 4})
    decision = decide(fell, active, GateConfig(max_mcq_drop=2.0))
    assert not decision.passed and any("multiple-choice accuracy" in r and "fell more than 2" in r
                                       for r in decision.reasons)
    assert decide(fell, active, GateConfig(max_mcq_drop=30.0)).passed  # within the configured margin
