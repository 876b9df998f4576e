"""How the bot reaches the model: one interface, in-process or over an OpenAI-compatible API."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from secbot.bot.settings import Settings
from secbot.model.engine import Engine
from secbot.model.errors import ModelError
from secbot.model.generation import Sampling
from secbot.model.tiny import ensure_tiny_model


class ModelUnavailable(ModelError):
    """The model could not answer (server down, bad response); details are in the log."""


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ModelClient(Protocol):
    """Streams an answer's text deltas; fills `usage` once the stream is exhausted."""

    version_id: int | None

    def stream(self, question: str, history: Sequence[Sequence[str]], usage: Usage) -> Iterator[str]: ...


class InProcessClient:
    """The engine in this process (the embedded default)."""

    def __init__(self, engine: Engine, version_id: int | None = None):
        self.engine = engine
        self.version_id = version_id

    def stream(self, question, history, usage: Usage) -> Iterator[str]:
        usage.prompt_tokens = len(self.engine.prompt_ids(question, history, self.engine.sampling))
        text = ""
        for delta in self.engine.stream(question, history):
            text += delta
            yield delta
        usage.completion_tokens = len(self.engine.tokenizer.encode(text, add_special_tokens=False))


class OpenAIClient:
    """Any OpenAI-compatible `/v1/chat/completions` server: `secbot serve-model`, vLLM, ..."""

    def __init__(self, base_url: str, api_key: str | None = None, model: str = "secbot",
                 sampling: Sampling | None = None, system_prompt: str | None = None,
                 timeout: float = 120.0, version_id: int | None = None, follows_versions: bool = False):
        import httpx

        self.follows_versions = follows_versions  # switch the server's adapter on promotion
        self.url = base_url.rstrip("/") + ("/chat/completions" if base_url.rstrip("/").endswith("/v1")
                                           else "/v1/chat/completions")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=10.0))
        self.model = model
        self.sampling = sampling or Sampling()
        self.system_prompt = system_prompt
        self.version_id = version_id

    def messages(self, question, history) -> list[dict]:
        out = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for q, a in history:
            out += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        return out + [{"role": "user", "content": question}]

    def activate_adapter(self, path: str | None) -> None:
        """Ask a `secbot serve-model` server to serve another adapter (same path on its host)."""
        import httpx

        admin = self.url.rsplit("/v1/", 1)[0] + "/admin/adapter"
        try:
            response = self.http.post(admin, json={"path": path})
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"model server at {admin} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise ModelUnavailable(f"model server refused the adapter switch ({response.status_code}): "
                                   f"{response.text[:300]}")

    def stream(self, question, history, usage: Usage) -> Iterator[str]:
        import httpx

        body = {"model": self.model, "messages": self.messages(question, history), "stream": True,
                "max_tokens": self.sampling.max_new_tokens,
                "stream_options": {"include_usage": True}}
        if self.sampling.do_sample:
            body.update(temperature=self.sampling.temperature, top_p=self.sampling.top_p)
        else:
            body.update(temperature=0.0)
        try:
            with self.http.stream("POST", self.url, json=body) as response:
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
                    if chunk.get("usage"):
                        usage.prompt_tokens = chunk["usage"].get("prompt_tokens")
                        usage.completion_tokens = chunk["usage"].get("completion_tokens")
                    for choice in chunk.get("choices") or []:
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            yield delta
        except httpx.HTTPError as exc:
            raise ModelUnavailable(f"model server at {self.url} unreachable: {exc}") from exc


def resolve_model_dir(settings: Settings, model: str | None = None) -> Path:
    """A model directory from `--model`/SECBOT_MODEL; `tiny` is built under the data dir once."""
    name = model or settings.model
    if name == "tiny":
        return ensure_tiny_model(settings.data_dir / "tiny-model")
    return Path(name).expanduser()


def sampling_from(settings: Settings) -> Sampling:
    return Sampling(max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample,
                    top_p=settings.top_p, temperature=settings.temperature)


def load_engine(settings: Settings, model: str | None = None,
                adapter: str | Path | None = None) -> Engine:
    """The in-process engine, configured from settings; arguments override them."""
    return Engine.load(resolve_model_dir(settings, model), adapter or settings.adapter,
                       device=settings.device, dtype=settings.dtype,
                       trust_remote_code=settings.trust_remote_code,
                       prompt_format=settings.prompt_format,
                       system_prompt=settings.effective_system_prompt,
                       sampling=sampling_from(settings))


def client_from(settings: Settings) -> ModelClient:
    """The HTTP client when SECBOT_MODEL_URL is set, else the in-process engine."""
    if settings.model_url:
        key = settings.model_api_key.get_secret_value() if settings.model_api_key else None
        return OpenAIClient(settings.model_url, key, model=settings.model_name,
                            sampling=sampling_from(settings),
                            system_prompt=settings.effective_system_prompt,
                            timeout=settings.answer_timeout,
                            follows_versions=settings.model_server == "secbot")
    return InProcessClient(load_engine(settings))
