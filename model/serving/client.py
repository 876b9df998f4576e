"""How callers reach a model: one interface, in-process or over an OpenAI-compatible API.

`use_version(version)` is the one way to change what is served: an in-process engine switches
its adapter; a `secbot serve-model` server is told to switch (`POST /admin/adapter`). What "no
version" serves is defined once, by the serving engine (`Engine.switch_to_version`): its base adapter, or
the bare model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from secbot.model.conversation import to_messages
from secbot.model.errors import ModelError, QuestionTooLong
from secbot.model.runtime.engine import Engine
from secbot.model.runtime.generation import Sampling
from secbot.model.serving.protocol import BASE_FINGERPRINT, ChatCompletionChunk, ChatRequest, version_from_fingerprint


class ModelUnavailable(ModelError):
    """The model could not answer (server down, bad response); details are in the log."""


class Servable(Protocol):
    """A model version as the store knows it."""

    id: int
    adapter_path: str | None


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    version_id: int | None = None  # the version that produced the answer, as the server said


class ModelClient(Protocol):
    version_id: int | None

    def stream(self, question: str, history: Sequence[Sequence[str]], usage: Usage,
               system_prompt: str | None = None) -> Iterator[str]:
        """Text deltas of the answer; `usage` is filled once the stream is exhausted."""

    def use_version(self, version: Servable | None) -> None:
        """Serve `version` (None: the base) from now on."""


class InProcessClient:
    """The engine in this process (the embedded default)."""

    def __init__(self, engine: Engine):
        self.engine = engine

    @property
    def version_id(self) -> int | None:
        return self.engine.version_id

    def use_version(self, version: Servable | None) -> None:
        self.engine.switch_to_version(version.id if version else None, version.adapter_path if version else None)

    def stream(self, question, history, usage: Usage, system_prompt: str | None = None) -> Iterator[str]:
        usage.version_id = self.engine.version_id
        usage.prompt_tokens = len(self.engine.prompt_ids(question, history, self.engine.sampling, system_prompt))
        text = ""
        for delta in self.engine.stream(question, history, system_prompt=system_prompt):
            text += delta
            yield delta
        usage.completion_tokens = len(self.engine.tokenizer.encode(text, add_special_tokens=False))


class OpenAIClient:
    """Any OpenAI-compatible `/v1/chat/completions` server: `secbot serve-model`, vLLM, ...

    `switches`: the server is `secbot serve-model` and `use_version` tells it to switch; for
    vLLM, adapters are registered there under the served name instead."""

    def __init__(self, base_url: str, api_key: str | None = None, model: str = "secbot",
                 sampling: Sampling | None = None, system_prompt: str | None = None,
                 timeout: float = 120.0, switches: bool = False):
        import httpx

        root = base_url.rstrip("/")
        self.base = root[: -len("/v1")] if root.endswith("/v1") else root
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=10.0))
        self.model = model
        self.sampling = sampling or Sampling()
        self.system_prompt = system_prompt
        self.switches = switches
        self.version_id: int | None = None

    def _post(self, path: str, body: dict):
        import httpx

        try:
            return self.http.post(self.base + path, json=body)
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"model server at {self.base} unreachable: {exc}") from exc

    def use_version(self, version: Servable | None) -> None:
        if self.switches:
            body = {"version": version.id if version else None,
                    "path": str(Path(version.adapter_path)) if version and version.adapter_path else None}
            response = self._post("/admin/adapter", body)
            if response.status_code != 200:
                raise ModelUnavailable(f"model server refused the switch ({response.status_code}): "
                                       f"{response.text[:300]}")
        self.version_id = version.id if version else None

    def stream(self, question, history, usage: Usage, system_prompt: str | None = None) -> Iterator[str]:
        """The answer's text deltas. When the server says the conversation exceeds its context
        (400 `context_length_exceeded`), the oldest turns are dropped one at a time and the
        question asked again; the question itself is never cut."""
        history = list(history)
        while True:
            try:
                yield from self._stream(question, history, usage, system_prompt)
                return
            except ContextTooLong as exc:
                if not history:
                    raise question_too_long(str(exc), self.sampling.max_new_tokens) from None
                history = history[1:]

    def _stream(self, question, history, usage: Usage, system_prompt: str | None) -> Iterator[str]:
        import httpx
        from httpx_sse import SSEError, connect_sse
        from pydantic import ValidationError

        request = ChatRequest(model=self.model, messages=to_messages(question, history, system_prompt or self.system_prompt),
                              stream=True, max_completion_tokens=self.sampling.max_new_tokens,
                              stream_options={"include_usage": True})
        if self.sampling.do_sample:
            request.temperature, request.top_p = self.sampling.temperature, self.sampling.top_p
        else:
            request.temperature = 0.0
        body = request.model_dump(exclude_none=True)
        usage.version_id = self.version_id
        try:
            with connect_sse(self.http, "POST", self.base + "/v1/chat/completions", json=body) as events:
                response = events.response
                if response.status_code != 200:
                    response.read()
                    if response.status_code == 400 and (
                            _error_code(response) == "context_length_exceeded"
                            or "maximum context length" in _error_message(response)):  # vLLM says it so
                        raise ContextTooLong(_error_message(response))
                    raise ModelUnavailable(f"model server answered {response.status_code}: "
                                           f"{response.text[:300]}")
                for event in events.iter_sse():
                    if event.data == "[DONE]":
                        break
                    raw = json.loads(event.data)
                    if raw.get("error"):
                        raise ModelUnavailable(f"model server failed mid-answer: {raw['error']}")
                    chunk = ChatCompletionChunk.model_validate(raw)
                    served = version_from_fingerprint(chunk.system_fingerprint)
                    if served is not None or chunk.system_fingerprint == BASE_FINGERPRINT:
                        usage.version_id = served
                    if chunk.usage:
                        usage.prompt_tokens = chunk.usage.prompt_tokens
                        usage.completion_tokens = chunk.usage.completion_tokens
                    for choice in chunk.choices:
                        if choice.delta.content:
                            yield choice.delta.content
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"model server at {self.base} unreachable: {exc}") from exc
        except (ValueError, ValidationError, SSEError) as exc:
            raise ModelUnavailable(f"model server at {self.base} sent a malformed chunk: {exc}") from exc


class ContextTooLong(ModelError):
    """The server's 400 `context_length_exceeded`: the conversation must shrink."""


def _number(pattern: str, text: str) -> int | None:
    found = re.search(pattern, text)
    return int(found.group(1).replace(",", "")) if found else None


def question_too_long(message: str, max_new_tokens: int) -> QuestionTooLong:
    """The question alone exceeds what the server takes, with the figures its message gives: the
    OpenAI-style "maximum context length is C tokens ... (P in the messages, A in the completion)"
    (OpenAI, vLLM, `secbot serve-model`), vLLM's "your request has P input tokens", or
    `serve-model`'s "The messages take P tokens; this server takes prompts of up to L"."""
    number = r"(\d[\d,]*)"
    context = _number(rf"maximum context length is {number} tokens", message)
    prompt = (_number(rf"\({number} in the messages", message) or _number(rf"has {number} input tokens", message)
              or _number(rf"messages take {number} tokens", message))
    completion = _number(rf"{number} in the completion", message)
    limit = _number(rf"prompts of up to {number}", message)
    if limit is None and context is not None:
        limit = context - (completion if completion is not None else max_new_tokens)
    return QuestionTooLong(prompt, limit, "the question alone is longer than the model server takes"
                           + (f" ({prompt} tokens; at most {limit})" if prompt and limit else "")
                           + "; ask a shorter one")


def _error_code(response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _error_message(response) -> str:
    """The error's message: OpenAI's `{"error": {"message"}}`, or a top-level `message`."""
    try:
        body = response.json()
        return str((body.get("error") if isinstance(body.get("error"), dict) else body)["message"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return response.text
