"""Multiple-choice exams scored by likelihood: which choice does the model find most probable?

Reads the JSON shapes public security MCQ benchmarks use: a list (or `{"questions": [...]}`) of
items with a question, the choices (a list, or a letter -> text object; keys `choices`,
`options` or `answers`) and the answer (a letter, a 0-based index, or the choice's text; keys
`answer`, `solution` or `label`). JSON lines work too. For CyberMetric's files, for instance:
`SECBOT_MCQ_FILE=/data/CyberMetric-500-v1.json`.

Each choice is scored by the mean log-probability of its line ("B. <text>") after the question
with all choices listed, so a long choice is not penalised for its length.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from secbot.model.errors import ModelError

LETTERS = string.ascii_uppercase


@dataclass(frozen=True)
class Question:
    question: str
    choices: tuple[str, ...]
    answer: int  # index into choices

    def prompt(self) -> str:
        listed = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(self.choices))
        return f"{self.question}\n{listed}\nAnswer with the correct choice."

    def line(self, i: int) -> str:
        return f"{LETTERS[i]}. {self.choices[i]}"


Scalar = StrictStr | StrictInt | StrictFloat


class McqItem(BaseModel):
    """One exam item as the public benchmarks write it (the keys each of them uses are accepted)."""

    model_config = ConfigDict(extra="ignore")
    _index: int = PrivateAttr(0)
    question: StrictStr = Field(validation_alias=AliasChoices("question", "Question", "prompt"))
    choices: list[Scalar] | dict[str, Scalar] = Field(
        validation_alias=AliasChoices("choices", "options", "answers", "Options"))
    answer: StrictStr | StrictInt = Field(validation_alias=AliasChoices("answer", "solution", "label", "Answer",
                                                                         "correct"))

    @field_validator("question")
    @classmethod
    def _filled(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a non-empty string")
        return value.strip()

    @model_validator(mode="after")
    def _answer_is_a_choice(self) -> "McqItem":
        if not 2 <= len(self.choices) <= len(LETTERS):
            raise ValueError(f"need 2 to {len(LETTERS)} choices, got {len(self.choices)}")
        self._index = self._choice_index()
        return self

    @property
    def index(self) -> int:
        return self._index

    def _choice_index(self) -> int:
        keys = sorted(self.choices) if isinstance(self.choices, dict) else LETTERS[:len(self.choices)]
        letters = {str(k).strip().upper(): i for i, k in enumerate(keys)}
        texts = self.texts()
        if isinstance(self.answer, int) and 0 <= self.answer < len(texts):
            return self.answer
        if isinstance(self.answer, str) and self.answer.strip().upper().rstrip(".") in letters:
            return letters[self.answer.strip().upper().rstrip(".")]
        if isinstance(self.answer, str) and self.answer.strip() in texts:
            return texts.index(self.answer.strip())
        raise ValueError(f"'answer' {self.answer!r} is neither a letter, an index nor one of the choices")

    def texts(self) -> list[str]:
        if isinstance(self.choices, dict):
            return [str(self.choices[k]) for k in sorted(self.choices)]
        return [str(c) for c in self.choices]


def parse_question(item) -> Question:
    """One item as a Question; raises ValueError saying what is wrong with it."""
    if not isinstance(item, dict):
        raise ValueError("each item must be a JSON object")
    try:
        parsed = McqItem.model_validate(item)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = f"'{first['loc'][0]}' " if first["loc"] else ""
        if first["type"] == "missing":
            raise ValueError(f"{where}is missing") from None
        message = first["msg"].removeprefix("Value error, ")
        if where and first["type"] != "value_error":
            message = {"question": "must be a non-empty string",
                       "choices": "must be a list of strings or a letter -> text object",
                       "answer": "must be a letter, a 0-based index or a choice's text"}[first["loc"][0]]
        raise ValueError(f"{where}{message}") from None
    return Question(parsed.question, tuple(parsed.texts()), parsed.index)


def read_questions(path: str | Path) -> list[Question]:
    """All items of a multiple-choice file; a bad item raises ModelError naming it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: no such file. SECBOT_MCQ_FILE must name a JSON file of "
                         "{question, choices, answer} items.")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if text.lstrip().startswith(("[", "{")) and not _is_jsonl(text) else \
            [json.loads(line) for line in text.splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelError(f"{path}: not valid UTF-8 JSON ({exc.__class__.__name__}: {str(exc)[:120]})") from None
    if isinstance(data, dict):
        data = next((data[k] for k in ("questions", "data", "items") if k in data), None)
    if not isinstance(data, list) or not data:
        raise ModelError(f"{path}: expected a list of questions (or {{\"questions\": [...]}})")
    out = []
    for number, item in enumerate(data, start=1):
        try:
            out.append(parse_question(item))
        except ValueError as exc:
            raise ModelError(f"{path}: question {number}: {exc}") from None
    return out


def _is_jsonl(text: str) -> bool:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or not lines[0].lstrip().startswith("{"):
        return False
    try:
        json.loads(lines[0])
        return True
    except json.JSONDecodeError:
        return False


def choice_scores(engine, question: Question) -> list[float]:
    """Mean log-probability of each choice's line as the answer to the question (the active
    adapter's model): after the generation prompt and the template's lead ("\n" on GLM-4)."""
    prompt = engine.prompt_ids(question.prompt(), [], engine.sampling)
    prompt = prompt + engine.tokenizer.encode(engine.prompts.lead, add_special_tokens=False)
    rows = [engine.tokenizer.encode(question.line(i), add_special_tokens=False) for i in range(len(question.choices))]
    width = len(prompt) + max(map(len, rows))
    pad = engine.tokenizer.pad_token_id
    # Right-padded, as in training: a P-tuning prefix's keys carry no position.
    ids = torch.tensor([prompt + r + [pad] * (width - len(prompt) - len(r)) for r in rows], device=engine.device)
    mask = torch.tensor([[1] * (len(prompt) + len(r)) + [0] * (width - len(prompt) - len(r)) for r in rows],
                        device=engine.device)
    with engine._lock, torch.inference_mode():
        logits = engine.adapters.model()(input_ids=ids, attention_mask=mask).logits.float()
    logprobs = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
    scores = []
    for i, r in enumerate(rows):
        start = len(prompt) - 1  # the position that predicts the first token of the choice line
        scores.append(float(logprobs[i, start:start + len(r)].mean()))
    return scores


def accuracy(engine, questions: list[Question]) -> dict:
    """{"accuracy": % right, "samples": n}."""
    right = 0
    for question in questions:
        scores = choice_scores(engine, question)
        right += scores.index(max(scores)) == question.answer
    return {"accuracy": round(100.0 * right / max(len(questions), 1), 2), "samples": len(questions)}
