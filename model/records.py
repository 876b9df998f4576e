"""Training records: THUDM's `ptuning` format `{prompt, response, history: [[q, a], ...]}`, and
the chat format of GLM-4's fine-tuning scripts and OpenAI's chat JSONL,
`{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}, ...]}`.

Reads a JSON-lines file (THUDM's `.json` is one record per line; `.jsonl` the same) or a JSON
array; each record's format is told by its keys (`messages`, or the prompt column), so a file
may mix them. Column names are flags, so ADGEN's `content`/`summary` reads too. A `system`
message is not part of a record: secbot's configured system prompt (its identity) is used.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class ReadResult:
    records: list[Record]
    skipped: list[RecordError] = field(default_factory=list)


def _check_text(name: str, value: str) -> None:
    if _SURROGATE.search(value):
        raise ValueError(f"'{name}' holds an unpaired UTF-16 surrogate (a broken \\ud800-style escape); "
                         "fix the escape or re-export the file as UTF-8")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _message_text(i: int, message) -> tuple[str, str]:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise ValueError(f"messages[{i}] must be an object with a 'role'")
    role, content = message["role"], message.get("content")
    if isinstance(content, list):  # OpenAI text parts
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            raise ValueError(f"messages[{i}].content: only text parts can be training data")
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise ValueError(f"messages[{i}].content must be a string")
    _check_text(f"messages[{i}].content", content)
    return role, content


def parse_messages(messages) -> Record:
    """A chat `messages` list as a record: the last assistant message answers the user message
    before it; earlier user/assistant pairs are its history; system messages are left out."""
    if not isinstance(messages, list):
        raise ValueError("'messages' must be a list of {role, content} objects")
    turns = []
    for i, message in enumerate(messages):
        role, content = _message_text(i, message)
        if role == "system":
            continue
        if role not in ("user", "assistant"):
            raise ValueError(f"messages[{i}]: role '{role}' (tool calling) cannot be a training record; "
                             "only user and assistant turns")
        turns.append((i, role, content))
    if len(turns) < 2 or turns[-1][1] != "assistant":
        raise ValueError("'messages' must end with an assistant answer to a user message")
    for k, (i, role, _) in enumerate(turns):
        if role != ("user" if k % 2 == 0 else "assistant"):
            raise ValueError(f"messages[{i}]: user and assistant messages must alternate, starting with the user")
    texts = [t for _, _, t in turns]
    for (i, _, text) in turns[-2:]:
        if not text.strip():
            raise ValueError(f"messages[{i}].content must not be empty")
    pairs = tuple(zip(texts[0:-2:2], texts[1:-2:2]))
    return Record(texts[-2], texts[-1], pairs)


def parse_record(obj, columns: Columns = Columns()) -> Record:
    """Validate one decoded JSON value (either format); raises ValueError with the reason."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj and columns.prompt not in obj:
        return parse_messages(obj["messages"])
    prompt, response = obj.get(columns.prompt), obj.get(columns.response)
    for name, value in ((columns.prompt, prompt), (columns.response, response)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"'{name}' must be a non-empty string")
        _check_text(name, value)
    raw_history = obj.get(columns.history) if columns.history else None
    if raw_history is None:
        raw_history = []
    if not isinstance(raw_history, list) or not all(
            isinstance(t, list) and len(t) == 2 and all(isinstance(s, str) for s in t)
            for t in raw_history):
        raise ValueError(f"'{columns.history}' must be a list of [question, answer] string pairs")
    for turn in raw_history:
        for text in turn:
            _check_text(columns.history or "history", text)
    return Record(prompt, response, tuple((q, a) for q, a in raw_history))


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


def read_records(path: str | Path, columns: Columns = Columns(), skip_bad: bool = False) -> ReadResult:
    """All records of `path`; a bad one raises RecordError unless `skip_bad` collects it."""
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
            result.records.append(parse_record(value, columns))
        except ValueError as exc:
            error = RecordError(path, line, str(exc))
            if not skip_bad:
                raise error from None
            result.skipped.append(error)
    if not result.records:
        raise ModelError(f"{path}: no usable records (skipped {len(result.skipped)}).")
    return result


def to_messages(record: Record) -> dict:
    """The record as a chat `messages` object (GLM-4 fine-tuning / OpenAI chat JSONL)."""
    messages = []
    for q, a in record.history:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"messages": messages + [{"role": "user", "content": record.prompt},
                                    {"role": "assistant", "content": record.response}]}


def write_records(path: str | Path, records: Iterable[Record], format: str = "thudm",
                  columns: Columns = Columns()) -> int:
    """JSON lines, UTF-8 unescaped, as THUDM records (`thudm`) or chat `messages`; returns the count."""
    if format not in ("thudm", "messages"):
        raise ValueError(f"format must be 'thudm' or 'messages', not {format!r}")
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            value = to_messages(record) if format == "messages" else record.to_json(columns)
            fh.write(json.dumps(value, ensure_ascii=False) + "\n")
            count += 1
    return count


def records_hash(records: Iterable[Record]) -> str:
    """A content hash of the records in order; the same data gives the same hash."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record.to_json(), ensure_ascii=False, sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()
