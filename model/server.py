"""`secbot serve-model`: an OpenAI-compatible server for the engine, with batching.

Endpoints: POST /v1/chat/completions (streaming and not), GET /v1/models, GET /health,
GET /ready, GET /metrics (Prometheus), POST /admin/adapter (switch adapter, authenticated).
With an API key set, /v1 and /admin need `Authorization: Bearer <key>`.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from typing import Literal

from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from secbot.model.batching import Job, make_batcher
from secbot.model.client import version_fingerprint
from secbot.model.engine import Engine
from secbot.model.errors import ModelError
from secbot.model.generation import Sampling, drain
from secbot.model.prompting import PromptBuilder

MAX_BODY_BYTES = 1_000_000
MAX_NEW_TOKENS = 4096


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=100_000)


class ChatRequest(BaseModel):
    model: str = "secbot"
    messages: list[Message] = Field(min_length=1, max_length=400)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stream_options: dict | None = None


def error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


def split_messages(messages: list[Message]) -> tuple[str | None, list[tuple[str, str]], str]:
    """(system, history pairs, query) from OpenAI messages: user/assistant turns ending on user."""
    system = next((m.content for m in messages if m.role == "system"), None)
    turns = [m for m in messages if m.role != "system"]
    if not turns or turns[-1].role != "user":
        raise ValueError("the last message must be from the user")
    history, pending = [], None
    for m in turns[:-1]:
        if m.role == "user":
            if pending is not None:
                raise ValueError("user and assistant messages must alternate")
            pending = m.content
        else:
            if pending is None:
                raise ValueError("an assistant message must follow a user message")
            history.append((pending, m.content))
            pending = None
    if pending is not None:
        raise ValueError("user and assistant messages must alternate")
    return system, history, turns[-1].content


class Metrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("secbot_requests", "Chat completion requests", ["status"], registry=self.registry)
        self.tokens = Counter("secbot_generated_tokens", "Tokens generated", registry=self.registry)
        self.latency = Histogram("secbot_request_seconds", "Request latency", registry=self.registry,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120))
        self.batch = Histogram("secbot_batch_size", "Requests per generation step", registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64))
        self.rate = Gauge("secbot_tokens_per_second", "Tokens per second over the last busy second",
                          registry=self.registry)
        self.queued = Gauge("secbot_queued_requests", "Requests waiting for a place in the batch",
                            registry=self.registry)
        self._window = [0, 0.0]  # tokens, seconds

    def on_step(self, rows: int, tokens: int, seconds: float) -> None:
        self.batch.observe(rows)
        self.tokens.inc(tokens)
        self._window[0] += tokens
        self._window[1] += seconds
        if self._window[1] >= 1.0:
            self.rate.set(self._window[0] / self._window[1])
            self._window = [0, 0.0]


def create_server(engine: Engine, *, api_key: str | None = None, model_name: str = "secbot",
                  max_batch: int = 8, batching: str = "continuous") -> Starlette:
    metrics = Metrics()
    batcher = make_batcher(engine, max_batch=max_batch, on_step=metrics.on_step, mode=batching)
    metrics.queued.set_function(batcher.queued)

    def authorised(request: Request) -> bool:
        if not api_key:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode())

    async def read_json(request: Request):
        length = request.headers.get("content-length")
        if length and int(length) > MAX_BODY_BYTES:
            return None, error(413, f"request body over {MAX_BODY_BYTES} bytes")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return None, error(413, f"request body over {MAX_BODY_BYTES} bytes")
        try:
            return json.loads(body), None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return None, error(400, f"malformed JSON: {exc}")
        except RecursionError:
            return None, error(400, "JSON nested too deeply")

    async def chat(request: Request):
        started = time.monotonic()
        if not authorised(request):
            metrics.requests.labels("401").inc()
            return error(401, "missing or wrong bearer token", "authentication_error")
        data, failure = await read_json(request)
        if failure:
            metrics.requests.labels(str(failure.status_code)).inc()
            return failure
        try:
            req = ChatRequest.model_validate(data)
            system, history, query = split_messages(req.messages)
        except (ValidationError, ValueError) as exc:
            metrics.requests.labels("400").inc()
            return error(400, str(exc).split("\n For further")[0][:2000])
        sampling = Sampling(max_new_tokens=req.max_completion_tokens or req.max_tokens or engine.sampling.max_new_tokens,
                            do_sample=engine.sampling.do_sample if req.temperature is None
                            else req.temperature > 0, top_p=req.top_p or engine.sampling.top_p,
                            temperature=req.temperature or engine.sampling.temperature)
        builder = engine.prompts if system in (None, engine.prompts.system_prompt) else \
            PromptBuilder(engine.tokenizer, engine.prompts.format, system)
        budget = max(engine.context_length() - sampling.max_new_tokens, 1)
        prompt_ids, _ = builder.fit(query, history, budget)
        job = batcher.submit(Job(prompt_ids, sampling.max_new_tokens, sampling))
        fingerprint = version_fingerprint(engine.version_id)
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def finish_reason() -> str:
            return "length" if job.tokens >= job.max_new_tokens else "stop"

        def usage() -> dict:
            return {"prompt_tokens": len(prompt_ids), "completion_tokens": job.tokens,
                    "total_tokens": len(prompt_ids) + job.tokens}

        if not req.stream:
            try:
                text = "".join(await run_in_threadpool(lambda: list(drain(job.out))))
            except Exception:
                metrics.requests.labels("500").inc()
                return error(500, "generation failed; see the server log", "server_error")
            metrics.requests.labels("200").inc()
            metrics.latency.observe(time.monotonic() - started)
            return JSONResponse({"id": ident, "object": "chat.completion", "created": created,
                                 "model": req.model, "usage": usage(), "system_fingerprint": fingerprint,
                                 "choices": [{"index": 0, "finish_reason": finish_reason(),
                                              "message": {"role": "assistant", "content": text}}]})

        include_usage = bool((req.stream_options or {}).get("include_usage"))

        def chunk(delta: dict, reason=None, **extra) -> str:
            body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": req.model,
                    "system_fingerprint": fingerprint,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": reason}], **extra}
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        async def events():
            yield chunk({"role": "assistant"})
            try:
                async for delta in iterate_in_threadpool(drain(job.out)):
                    yield chunk({"content": delta})
            except Exception:
                metrics.requests.labels("500").inc()
                yield f"data: {json.dumps({'error': {'message': 'generation failed', 'type': 'server_error'}})}\n\n"
                return
            finally:  # a client that went away frees its place in the batch
                job.cancelled.set()
            yield chunk({}, finish_reason())
            if include_usage:
                body = {"id": ident, "object": "chat.completion.chunk", "created": created,
                        "model": req.model, "choices": [], "usage": usage()}
                yield f"data: {json.dumps(body)}\n\n"
            yield "data: [DONE]\n\n"
            metrics.requests.labels("200").inc()
            metrics.latency.observe(time.monotonic() - started)

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(request: Request):
        if not authorised(request):
            return error(401, "missing or wrong bearer token", "authentication_error")
        return JSONResponse({"object": "list", "data": [{"id": model_name, "object": "model",
                                                         "owned_by": "secbot"}]})

    async def activate_adapter(request: Request):
        if not api_key:
            return error(403, "adapter switches need SECBOT_MODEL_API_KEY set on the server and the caller",
                         "permission_error")
        if not authorised(request):
            return error(401, "missing or wrong bearer token", "authentication_error")
        data, failure = await read_json(request)
        if failure:
            return failure
        path = data.get("path") if isinstance(data, dict) else None
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not (path is None or isinstance(path, str)) or \
                not (version is None or (isinstance(version, int) and not isinstance(version, bool))):
            return error(400, 'expected {"version": N, "path": "<adapter dir>"}, or nulls for the base')
        try:
            # Waits for the batch in flight, which finishes on the adapter it started with.
            await run_in_threadpool(engine.serve, version, path)
        except ModelError as exc:
            return error(400, str(exc))
        return JSONResponse({"version": engine.version_id,
                             "adapter": str(engine.adapter) if engine.adapter else None})

    async def health(request: Request):
        return JSONResponse({"status": "ok"})

    async def ready(request: Request):
        return JSONResponse({"ready": True, "version": engine.version_id,
                             "adapter": str(engine.adapter) if engine.adapter else None,
                             "device": str(engine.device)})

    async def prometheus(request: Request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/admin/adapter", activate_adapter, methods=["POST"]),
        Route("/health", health), Route("/ready", ready), Route("/metrics", prometheus),
    ])
    app.state.batcher = batcher
    return app


def serve_model(engine: Engine, host: str, port: int, **kwargs) -> None:
    import uvicorn

    uvicorn.run(create_server(engine, **kwargs), host=host, port=port, log_level="warning")

