"""How callers reach a model: one interface, in-process or over an OpenAI-compatible API.

`use_version(version)` is the one way to change what is served: an in-process engine switches
its adapter; a `secbot serve-model` server is told to switch (`POST /admin/adapter`). What "no
version" serves is defined once, by the serving engine (`Engine.serve`): its base adapter, or
the bare model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from secbot.model.engine import Engine
from secbot.model.errors import ModelError
from secbot.model.generation import Sampling


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
        self.engine.serve(version.id if version else None, version.adapter_path if version else None)

    def stream(self, question, history, usage: Usage, system_prompt: str | None = None) -> Iterator[str]:
        usage.version_id = self.engine.version_id
        usage.prompt_tokens = len(self.engine.prompt_ids(question, history, self.engine.sampling, system_prompt))
        text = ""
        for delta in self.engine.stream(question, history, system_prompt=system_prompt):
            text += delta
            yield delta
        usage.completion_tokens = len(self.engine.tokenizer.encode(text, add_special_tokens=False))


def version_fingerprint(version_id: int | None) -> str:
    """How a secbot model server names the version it served (`system_fingerprint`)."""
    return f"secbot-v{version_id}" if version_id is not None else "secbot-base"


def version_from_fingerprint(fingerprint: str | None) -> int | None:
    if fingerprint and fingerprint.startswith("secbot-v") and fingerprint[8:].isdigit():
        return int(fingerprint[8:])
    return None


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

    def messages(self, question, history, system_prompt: str | None = None) -> list[dict]:
        system = system_prompt or self.system_prompt
        out = [{"role": "system", "content": system}] if system else []
        for q, a in history:
            out += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        return out + [{"role": "user", "content": question}]

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
        import httpx

        body = {"model": self.model, "messages": self.messages(question, history, system_prompt),
                "stream": True, "max_completion_tokens": self.sampling.max_new_tokens,
                "stream_options": {"include_usage": True}}
        if self.sampling.do_sample:
            body.update(temperature=self.sampling.temperature, top_p=self.sampling.top_p)
        else:
            body.update(temperature=0.0)
        usage.version_id = self.version_id
        try:
            with self.http.stream("POST", self.base + "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise ModelUnavailable(f"model server answered {response.status_code}: "
                                           f"{response.text[:300]}")
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if chunk.get("error"):
                        raise ModelUnavailable(f"model server failed mid-answer: {chunk['error']}")
                    served = version_from_fingerprint(chunk.get("system_fingerprint"))
                    if served is not None or chunk.get("system_fingerprint") == "secbot-base":
                        usage.version_id = served
                    if chunk.get("usage"):
                        usage.prompt_tokens = chunk["usage"].get("prompt_tokens")
                        usage.completion_tokens = chunk["usage"].get("completion_tokens")
                    for choice in chunk.get("choices") or []:
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            yield delta
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"model server at {self.base} unreachable: {exc}") from exc
