"""Training records: THUDM's `ptuning` format `{prompt, response, history: [[q, a], ...]}`, and
the chat format of GLM-4's fine-tuning scripts and OpenAI's chat JSONL,
`{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}, ...]}`;
and labelled completions in trl's preference formats: unpaired `{"prompt", "completion", "label"}`
and paired `{"prompt", "chosen", "rejected"}` (a pair is one desirable and one undesirable
completion), each as text or as chat messages (`prompt` a list of messages, the completions lists
of assistant messages; a pair without `prompt` has whole conversations that share it).

Reads a JSON-lines file (THUDM's `.json` is one record per line; `.jsonl` the same) or a JSON
array; each line's format is told by its keys (`messages`, `completion` with `label`, `chosen`
with `rejected`, or the prompt column), so a file may mix them. Column names are flags, so ADGEN's `content`/`summary` reads too. A `system`
message is not part of a record: secbot's configured system prompt (its identity) is used.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, StrictStr, ValidationError

from secbot.model.conversation import from_messages, text_of, to_messages
from secbot.model.errors import ModelError


class RecordError(ModelError):
    """A malformed record; names the file and line."""

    def __init__(self, path: str | Path, line: int, reason: str):
        self.path, self.line, self.reason = Path(path), line, reason
        super().__init__(f"{path}:{line}: {reason}")


@dataclass(frozen=True)
class Columns:
    prompt: str = "prompt"
    response: str = "response"
    history: str | None = "history"


@dataclass(frozen=True)
class Record:
    prompt: str
    response: str
    history: tuple[tuple[str, str], ...] = ()

    def to_json(self, columns: Columns = Columns()) -> dict:
        out = {columns.prompt: self.prompt, columns.response: self.response}
        if columns.history:
            out[columns.history] = [list(turn) for turn in self.history]
        return out


@dataclass(frozen=True)
class Labelled:
    """A completion someone judged: trl's unpaired example. `record.response` is the completion."""

    record: Record
    desirable: bool

    def to_json(self) -> dict:
        """trl's unpaired format: text where there is no history, chat messages where there is."""
        r = self.record
        if not r.history:
            return {"prompt": r.prompt, "completion": r.response, "label": self.desirable}
        return {"prompt": to_messages(r.prompt, r.history), "completion": [{"role": "assistant", "content": r.response}],
                "label": self.desirable}


@dataclass
class ReadResult:
    records: list[Record]
    skipped: list[RecordError] = field(default_factory=list)
    labelled: list[Labelled] = field(default_factory=list)


def _no_surrogates(value: str) -> str:
    if _SURROGATE.search(value):
        raise ValueError("holds an unpaired UTF-16 surrogate (a broken \\ud800-style escape); "
                         "fix the escape or re-export the file as UTF-8")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a non-empty string")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")
Text = Annotated[StrictStr, AfterValidator(_no_surrogates)]
Filled = Annotated[Text, AfterValidator(_not_blank)]


class ThudmRecord(BaseModel):
    """THUDM's record, under secbot's column names (`Columns` maps a file's own)."""

    prompt: Filled
    response: Filled
    history: list[tuple[Text, Text]] | None = None


class ChatRecord(BaseModel):
    """A chat-format record: its `messages` (each message's rules: `model.conversation`)."""

    messages: list[dict[str, Any]]


def _reason(error: ValidationError, names: dict[str, str]) -> str:
    """A pydantic error as one line that says what a field must be, in the file's column names."""
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    name = names.get(field, field)
    if first["type"] == "value_error":
        return f"'{name}' {first['msg'].removeprefix('Value error, ')}"
    if field == "history":
        return f"'{name}' must be a list of [question, answer] string pairs"
    if field == "messages":
        return "'messages' must be a list of {role, content} objects"
    return f"'{name}' must be a non-empty string"


def parse_messages(messages) -> Record:
    """A chat `messages` list as a record: the last assistant message answers the user message
    before it; earlier user/assistant pairs are its history; system messages are left out (the
    configured identity prompt is used)."""
    try:
        chat = ChatRecord(messages=messages)
    except ValidationError as exc:
        raise ValueError(_reason(exc, {})) from None
    turns = []
    for i, message in enumerate(chat.messages):
        role = message.get("role")
        if not isinstance(role, str):
            raise ValueError(f"messages[{i}] must be an object with a 'role'")
        try:
            text = _no_surrogates(text_of(message.get("content"), f"messages[{i}]"))
        except ValueError as exc:
            raise ValueError(f"messages[{i}].content: {exc}") from None
        turns.append((role, text))
    talk = from_messages(turns, answered=True)
    for name, text in (("question", talk.query), ("answer", talk.answer)):
        if not text.strip():
            raise ValueError(f"the {name} of the last turn must not be empty")
    return Record(talk.query, talk.answer, talk.history)


def _text(value: str, name: str) -> str:
    try:
        return _not_blank(_no_surrogates(value))
    except ValueError as exc:
        raise ValueError(f"'{name}' {exc}") from None


def _completion(value, name: str) -> list[dict] | str:
    if isinstance(value, str):
        return _text(value, name)
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        return value
    raise ValueError(f"'{name}' must be a non-empty string or a list of assistant messages")


def _judged(prompt, completion, name: str) -> Record:
    """One prompt and completion of a preference example, either as text or as messages."""
    completion = _completion(completion, name)
    if prompt is None:  # an implicit prompt: the completion is the whole conversation
        if isinstance(completion, str):
            raise ValueError(f"'prompt' is missing: give it, or '{name}' as a whole conversation of messages")
        return parse_messages(completion)
    if isinstance(prompt, str) and isinstance(completion, str):
        return Record(_text(prompt, "prompt"), completion)
    prompt_msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    answer_msgs = [{"role": "assistant", "content": completion}] if isinstance(completion, str) else completion
    if not isinstance(prompt_msgs, list):
        raise ValueError("'prompt' must be a non-empty string or a list of messages")
    return parse_messages(prompt_msgs + answer_msgs)


def parse_labelled(obj: dict) -> list[Labelled]:
    """An unpaired `{prompt, completion, label}` or paired `{prompt, chosen, rejected}` line."""
    if "chosen" in obj or "rejected" in obj:
        if "chosen" not in obj or "rejected" not in obj:
            raise ValueError("a paired preference needs both 'chosen' and 'rejected'")
        chosen, rejected = (_judged(obj.get("prompt"), obj[k], k) for k in ("chosen", "rejected"))
        if (chosen.prompt, chosen.history) != (rejected.prompt, rejected.history):
            raise ValueError("'chosen' and 'rejected' must answer the same conversation")
        return [Labelled(chosen, True), Labelled(rejected, False)]
    label = obj.get("label")
    if not isinstance(label, bool):
        raise ValueError("'label' must be true (desirable) or false (undesirable)")
    return [Labelled(_judged(obj.get("prompt"), obj.get("completion"), "completion"), label)]


def is_labelled(obj) -> bool:
    """The line is a preference example (trl's formats), not a training record."""
    return isinstance(obj, dict) and ("chosen" in obj or "rejected" in obj or "completion" in obj)


def parse_record(obj, columns: Columns = Columns()) -> Record:
    """Validate one decoded JSON value (either format); raises ValueError with the reason."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj and columns.prompt not in obj:
        return parse_messages(obj["messages"])
    names = {"prompt": columns.prompt, "response": columns.response, "history": columns.history or "history"}
    fields = {"prompt": obj.get(columns.prompt), "response": obj.get(columns.response),
              "history": obj.get(columns.history) if columns.history else None}
    try:
        record = ThudmRecord(**fields)
    except ValidationError as exc:
        raise ValueError(_reason(exc, names)) from None
    return Record(record.prompt, record.response, tuple(record.history or ()))


def _decode(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RecordError(path, line, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); "
                                      "save the file as UTF-8") from None


def _loads(text: str):
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested deeper than any record: a record is a flat object with "
                         "prompt, response and history") from None


def _values_with_lines(path: Path) -> Iterator[tuple[int, object]]:
    """(line number, decoded value or exception) for each record of a JSON-lines file or array."""
    text = _decode(path)
    stripped = text.lstrip()
    if not stripped.startswith("["):
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    yield number, _loads(line)
                except json.JSONDecodeError as exc:
                    yield number, ValueError(f"invalid JSON ({exc.msg}, column {exc.colno})")
                except ValueError as exc:
                    yield number, exc
        return
    decoder = json.JSONDecoder()
    pos = len(text) - len(stripped) + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        line = text.count("\n", 0, pos) + 1
        if pos >= len(text):
            yield line, ValueError("JSON array is not closed with ']'")
            return
        if text[pos] == "]":
            return
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            yield exc.lineno, ValueError(f"invalid JSON ({exc.msg}, column {exc.colno})")
            return
        except RecursionError:
            yield line, ValueError("JSON nested deeper than any record: a record is a flat object with "
                                   "prompt, response and history")
            return
        yield line, value


def read_records(path: str | Path, columns: Columns = Columns(), skip_bad: bool = False,
                 labelled: bool = False) -> ReadResult:
    """All records of `path` (and, with `labelled`, its preference examples); a bad line raises
    RecordError unless `skip_bad` collects it."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such file. Give a .json/.jsonl file of THUDM-format or chat "
                         "`messages` records.")
    try:
        path.stat()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read it ({exc.strerror}).") from None
    result = ReadResult(records=[])
    for line, value in _values_with_lines(path):
        try:
            if isinstance(value, Exception):
                raise value
            if not is_labelled(value):
                result.records.append(parse_record(value, columns))
            elif labelled:
                result.labelled.extend(parse_labelled(value))
            else:
                raise ValueError("a preference example (trl's prompt/completion/label or prompt/chosen/"
                                 "rejected) where training records are expected; `secbot import` takes both")
        except ValueError as exc:
            error = RecordError(path, line, str(exc))
            if not skip_bad:
                raise error from None
            result.skipped.append(error)
    if not result.records and not result.labelled:
        raise ModelError(f"{path}: no usable records (skipped {len(result.skipped)}).")
    return result


def as_messages(record: Record) -> dict:
    """The record as a chat `messages` object (GLM-4 fine-tuning / OpenAI chat JSONL)."""
    return {"messages": to_messages(record.prompt, record.history, answer=record.response)}


def write_records(path: str | Path, records: Iterable[Record], format: str = "thudm",
                  columns: Columns = Columns()) -> int:
    """JSON lines, UTF-8 unescaped, as THUDM records (`thudm`) or chat `messages`; returns the count."""
    if format not in ("thudm", "messages"):
        raise ValueError(f"format must be 'thudm' or 'messages', not {format!r}")
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            value = as_messages(record) if format == "messages" else record.to_json(columns)
            fh.write(json.dumps(value, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_labelled(path: str | Path, examples: Iterable[Labelled]) -> int:
    """JSON lines in trl's unpaired format (`KTOTrainer`'s dataset); returns the count."""
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for example in examples:
            fh.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
            count += 1
    return count


def read_labelled(path: str | Path) -> list[Labelled]:
    """The preference examples of a file `write_labelled` wrote (or any in trl's formats)."""
    path = Path(path)
    if not path.is_file() or not path.stat().st_size:
        return []
    return read_records(path, labelled=True).labelled


def records_hash(records: Iterable[Record]) -> str:
    """A content hash of the records in order; the same data gives the same hash."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()
