"""The OpenAI chat-completions wire format, as `secbot serve-model` speaks it and its client sends it.

Every request field OpenAI documents is either honoured or refused with a 400 that names it
(`APIError.param`); a field nobody documents is refused the same way. Responses are shaped as
vLLM's (`logprobs: null` on choices, `created` on models, string error codes).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from secbot.model.conversation import ConversationError, from_messages, text_of

MAX_NEW_TOKENS = 4096
BASE_FINGERPRINT = "secbot-base"  # `system_fingerprint` of an answer from the base model, no version


class APIError(Exception):
    """An OpenAI-style error: HTTP status, message, type, the parameter at fault and a string code."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param
        self.code = code or kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def unsupported(param: str, why: str = "") -> APIError:
    return APIError(400, f"'{param}' is not supported by this server{': ' + why if why else ''}",
                    param=param, code="unsupported_parameter")


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self, where: str) -> str:
        """The content as plain text; text parts are joined, other parts refused."""
        if self.role in ("tool", "function"):
            raise unsupported(f"{where}.role", f"'{self.role}' messages need tool calling, which is not served")
        for key in ("tool_calls", "function_call", "audio"):
            if (self.model_extra or {}).get(key):
                raise unsupported(f"{where}.{key}")
        if self.content is None:
            raise APIError(400, f"{where}.content is missing", param=f"{where}.content", code="invalid_value")
        content = self.content if isinstance(self.content, str) else [p.model_dump() for p in self.content]
        try:
            return text_of(content, where)
        except ConversationError as exc:
            raise api_error(exc) from None


def api_error(exc: ConversationError) -> APIError:
    """A conversation the messages do not make, as the 400 that names the field."""
    return APIError(400, str(exc), param=exc.param, code="unsupported_parameter" if exc.unsupported else "invalid_value")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False
    include_obfuscation: bool | None = None  # OpenAI's padding of stream chunks; nothing to pad here


class ChatRequest(BaseModel):
    """POST /v1/chat/completions. Unknown fields are refused (400 naming them)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    messages: list[Message] = Field(min_length=1, max_length=400)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=8)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None
    # Honoured only at their no-op values; anything else is refused by `refuse_unsupported`.
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: dict | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    store: bool | None = None
    metadata: dict | None = None
    modalities: list[str] | None = None
    audio: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    service_tier: Any = None
    web_search_options: Any = None
    verbosity: Any = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else value
        if stops is not None and (len(stops) > 4 or any(not s for s in stops)):
            raise ValueError("stop takes up to 4 non-empty strings")
        return value

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def answer_limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default

    def refuse_unsupported(self) -> None:
        if self.tools:
            raise unsupported("tools", "this model is served without tool calling")
        if self.tool_choice not in (None, "none"):
            raise unsupported("tool_choice", "this model is served without tool calling")
        if self.functions or self.function_call not in (None, "none"):
            raise unsupported("functions" if self.functions else "function_call")
        if self.response_format and self.response_format.get("type") != "text":
            raise unsupported("response_format", "only {'type': 'text'}; structured output is not enforced")
        if self.logprobs or self.top_logprobs:
            raise unsupported("logprobs" if self.logprobs else "top_logprobs")
        if self.logit_bias:
            raise unsupported("logit_bias")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise unsupported(name)
        if self.modalities not in (None, ["text"]) or self.audio is not None:
            raise unsupported("modalities" if self.audio is None else "audio", "text only")
        for name in ("prediction", "reasoning_effort", "web_search_options", "verbosity"):
            if getattr(self, name) is not None:
                raise unsupported(name)
        if self.store:
            raise unsupported("store", "completions are not stored for distillation or evals")
        if self.service_tier not in (None, "auto", "default"):
            raise unsupported("service_tier", "one tier is served")

    def conversation(self) -> tuple[str | None, list[tuple[str, str]], str]:
        """(system, history pairs, query): system/developer messages join into the system prompt;
        user and assistant turns alternate and end on the user."""
        try:
            talk = from_messages([(m.role, m.text(f"messages[{i}]")) for i, m in enumerate(self.messages)])
        except ConversationError as exc:
            raise api_error(exc) from None
        return talk.system, list(talk.history), talk.query


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None
    tool_calls: list = Field(default_factory=list)


class Choice(BaseModel):
    index: int
    message: ChoiceMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "secbot"
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class EmbeddingRequest(BaseModel):
    """POST /v1/embeddings, as OpenAI defines it; token-id inputs are refused (send text)."""

    model_config = ConfigDict(extra="forbid")
    input: str | list[str] = Field(...)
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, value):
        if isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            raise ValueError("input must be a string or a list of strings (token ids are not accepted)")
        return value

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value):
        texts = [value] if isinstance(value, str) else value
        if not texts or len(texts) > 2048 or any(not t for t in texts):
            raise ValueError("input must hold 1 to 2048 non-empty strings")
        return value

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class AdapterSwitch(BaseModel):
    """POST /admin/adapter: serve model version `version` with the adapter at `path` (nulls: the base)."""

    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(None, ge=1)
    path: str | None = None


def version_fingerprint(version_id: int | None) -> str:
    """How a secbot model server names the version it served (`system_fingerprint`)."""
    return f"secbot-v{version_id}" if version_id is not None else BASE_FINGERPRINT


def version_from_fingerprint(fingerprint: str | None) -> int | None:
    if fingerprint and fingerprint.startswith("secbot-v") and fingerprint[8:].isdigit():
        return int(fingerprint[8:])
    return None
