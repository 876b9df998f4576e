"""`secbot serve-model`: the routes of an OpenAI-compatible server for the engine.

POST /v1/chat/completions (streamed as server-sent events, or whole), GET /v1/models,
GET /health (the process answers), GET /ready (the model is loaded and the batcher runs; 503
otherwise), GET /metrics (Prometheus), POST /admin/adapter (switch the served version).
With an API key set, /v1 and /admin need `Authorization: Bearer <key>`; without one, /admin
is closed. The wire format is `model.serving.protocol`; what a request becomes is `model.serving.chat_service`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from secbot.model.errors import ModelError
from secbot.model.runtime.embeddings import encode_embedding
from secbot.model.runtime.engine import Engine
from secbot.model.serving.batching import BatcherStopped, ContinuousBatcher
from secbot.model.serving.chat_service import ChatService, Choices, Plan, read_all
from secbot.model.serving.protocol import (
    AdapterSwitch,
    APIError,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChoiceMessage,
    ChunkChoice,
    Delta,
    EmbeddingRequest,
    ModelCard,
    ModelList,
    Usage,
)
from secbot.model.serving.telemetry import Metrics

MAX_BODY_BYTES = 1_000_000


def _param(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", ""}


async def parse_body(request: Request, model: type[BaseModel]):
    """The request body as `model`, or an APIError that names what is wrong."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise APIError(413, f"request body over {MAX_BODY_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise APIError(413, f"request body over {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"malformed JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise APIError(400, "JSON nested too deeply", code="invalid_json") from None
    try:
        return model.model_validate(data, strict=True)  # `"max_tokens": "10"`, `"stream": "yes"` are refused
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(first["loc"])
        if first["type"] == "extra_forbidden":
            raise APIError(400, f"Unrecognized request argument supplied: {param}", param=param,
                           code="unsupported_parameter") from None
        raise APIError(400, f"{param}: {first['msg']}" if param else first["msg"], param=param or None,
                       code="invalid_value") from None
    except RecursionError:
        raise APIError(400, "JSON nested too deeply", code="invalid_json") from None


async def chat_request(request: Request) -> ChatRequest:
    return await parse_body(request, ChatRequest)


def create_server(engine: Engine, *, api_key: str | None = None, model_name: str = "secbot",
                  max_batch: int = 8, max_batch_tokens: int = 65536, max_prompt_tokens: int = 16384,
                  prefill_chunk: int = 512, version_adapter=None, embedder=None) -> FastAPI:
    """`version_adapter(version_id)`: the adapter path the store gives that version (None when it has
    none), or raises KeyError for a version the store does not know; without it, any version is taken.
    `embedder` (`secbot.model.runtime.embeddings`): also serve `POST /v1/embeddings`."""
    metrics = Metrics()
    batcher = ContinuousBatcher(engine, max_batch=max_batch, max_batch_tokens=max_batch_tokens,
                                prefill_chunk=prefill_chunk, on_step=metrics.on_step)
    metrics.queued.set_function(batcher.queued)
    metrics.decoding.set_function(batcher.decoding)
    service = ChatService(engine, batcher, model_name, max_prompt_tokens)

    def loopback_only(request: Request) -> None:
        """Without a key the server trusts its host: a request naming another host (DNS rebinding)
        or sent from a web page (`Origin`) is refused, and bodies must be JSON. (A dependency, not
        an HTTP middleware, which would hide a client's hang-up from the handlers.)"""
        if not api_key:
            host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]").lower()
            origin = request.headers.get("origin")
            origin_host = (urlsplit(origin).hostname or "") if origin else None
            if host not in LOOPBACK_NAMES or (origin is not None and origin_host not in LOOPBACK_NAMES):
                raise APIError(403, "this keyless server answers loopback clients only (Host and Origin must be "
                               "localhost); set SECBOT_MODEL_API_KEY to serve others", kind="permission_error",
                               code="not_loopback")
        if request.method == "POST" and "json" not in request.headers.get("content-type", "application/json"):
            raise APIError(415, "the body must be JSON (Content-Type: application/json)",
                           code="unsupported_media_type")

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, dependencies=[Depends(loopback_only)])

    def bearer(request: Request) -> None:
        """The one authentication check: the API key as a bearer token, when one is set."""
        if not api_key:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise APIError(401, "missing or wrong bearer token", kind="authentication_error", code="invalid_api_key")

    def admin(request: Request) -> None:
        if not api_key:
            raise APIError(403, "adapter switches need SECBOT_MODEL_API_KEY set on the server and the caller",
                           kind="permission_error", code="admin_disabled")
        bearer(request)

    def counted(request: Request, status: int) -> None:
        if request.url.path == "/v1/chat/completions":
            metrics.requests.labels(str(status)).inc()

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        counted(request, exc.status)
        return JSONResponse(exc.body(), status_code=exc.status)

    def completion(plan: Plan, choices: Choices) -> dict:
        prompt, generated = len(plan.prompt_ids), choices.completion_tokens()
        return ChatCompletion(
            id=plan.id, created=plan.created, model=plan.request.model, system_fingerprint=service.fingerprint(),
            usage=Usage(prompt_tokens=prompt, completion_tokens=generated, total_tokens=prompt + generated),
            choices=[Choice(index=i, message=ChoiceMessage(content=text), finish_reason=choices.finish[i])
                     for i, text in enumerate(choices.text)]).model_dump()

    def chunk(plan: Plan, choices: list[ChunkChoice], usage: Usage | None = None) -> str:
        body = ChatCompletionChunk(id=plan.id, created=plan.created, model=plan.request.model,
                                   system_fingerprint=service.fingerprint(), choices=choices, usage=usage).model_dump()
        for choice in body["choices"]:  # deltas carry only what changed
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
        if usage is None:
            del body["usage"]
        return json.dumps(body, ensure_ascii=False)

    @app.post("/v1/chat/completions", dependencies=[Depends(bearer)])
    async def chat(request: Request, req: ChatRequest = Depends(chat_request)):
        started = time.monotonic()
        plan = await run_in_threadpool(service.plan, req)  # tokenising a long prompt stays off the event loop
        try:
            choices = service.start(plan)
        except BatcherStopped as exc:
            raise APIError(503, str(exc), kind="server_error", code="not_ready") from None
        if not req.stream:
            # A thread of its own reads the answer; this loop notices a client that hangs up.
            reading = asyncio.get_running_loop().run_in_executor(None, read_all, choices)
            try:
                while not reading.done():
                    await asyncio.wait({reading}, timeout=0.2)
                    if not reading.done() and await request.is_disconnected():
                        choices.cancel()  # the client is gone: free its places in the batch now
                        counted(request, 499)
                        return Response(status_code=499)
            except asyncio.CancelledError:
                choices.cancel()
                raise
            try:
                reading.result()
            except Exception:
                raise APIError(500, "generation failed; see the server log", kind="server_error",
                               code="server_error") from None
            metrics.latency.observe(time.monotonic() - started)
            counted(request, 200)
            return JSONResponse(completion(plan, choices))

        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        async def events():
            try:
                yield chunk(plan, [ChunkChoice(index=i, delta=Delta(role="assistant", content=""))
                                   for i in range(plan.n)])
                async for index, delta in iterate_in_threadpool(choices.pieces()):
                    yield chunk(plan, [ChunkChoice(index=index, delta=Delta(content=delta))])
                yield chunk(plan, [ChunkChoice(index=i, finish_reason=choices.finish[i]) for i in range(plan.n)])
                if include_usage:
                    prompt, generated = len(plan.prompt_ids), choices.completion_tokens()
                    yield chunk(plan, [], Usage(prompt_tokens=prompt, completion_tokens=generated,
                                                total_tokens=prompt + generated))
                yield "[DONE]"
                metrics.latency.observe(time.monotonic() - started)
            except Exception:
                yield json.dumps({"error": {"message": "generation failed; see the server log",
                                            "type": "server_error", "param": None, "code": "server_error"}})
            finally:  # a client that went away frees its places in the batch
                choices.cancel()

        counted(request, 200)
        return EventSourceResponse(events(), sep="\n")

    @app.post("/v1/embeddings", dependencies=[Depends(bearer)])
    async def embeddings(request: Request):
        if embedder is None:
            raise APIError(404, "this server has no embedding model: start it with --embedding-model DIR "
                           "(a local sentence-transformers directory)", code="model_not_found")
        req = await parse_body(request, EmbeddingRequest)
        if req.dimensions is not None and req.dimensions != embedder.dim:
            raise APIError(400, f"this embedding model gives {embedder.dim} dimensions, not {req.dimensions}",
                           param="dimensions", code="unsupported_dimensions")
        texts = req.texts
        vectors = await run_in_threadpool(embedder.embed, texts)
        tokens = getattr(embedder, "count_tokens", lambda t: sum(len(x.split()) for x in t))(texts)
        return {"object": "list", "model": embedder.name,
                "data": [{"object": "embedding", "index": i, "embedding": encode_embedding(v, req.encoding_format)}
                         for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.get("/v1/models", dependencies=[Depends(bearer)])
    async def models():
        card = ModelCard(id=model_name, created=int(started_at), max_model_len=engine.context_length())
        return ModelList(data=[card]).model_dump()

    @app.post("/admin/adapter", dependencies=[Depends(admin)])
    async def activate_adapter(request: Request):
        switch = await parse_body(request, AdapterSwitch)
        if version_adapter is not None and switch.version is not None:
            try:
                expected = await run_in_threadpool(version_adapter, switch.version)
            except KeyError:
                raise APIError(400, f"there is no model version {switch.version}", param="version",
                               code="unknown_version") from None
            if (expected and Path(expected).resolve()) != (switch.path and Path(switch.path).resolve()):
                raise APIError(400, f"version {switch.version}'s adapter is {expected}, not {switch.path}",
                               param="path", code="version_mismatch")
        try:
            # Waits for the batch in flight, which finishes on the adapter it started with.
            await run_in_threadpool(engine.switch_to_version, switch.version, switch.path)
        except ModelError as exc:
            raise APIError(400, str(exc), param="path", code="invalid_adapter") from None
        metrics.switches.inc()
        return {"version": engine.version_id, "adapter": str(engine.adapter) if engine.adapter else None}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        body = {"ready": batcher.running.is_set(), "version": engine.version_id,
                "adapter": str(engine.adapter) if engine.adapter else None, "device": str(engine.device)}
        if engine.load_failure:
            body["not_loaded"] = engine.load_failure  # serving another version instead
        if not body["ready"]:
            body["why"] = "the batching thread is not running; see the server log"
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics")
    async def prometheus():
        content, media_type = metrics.exposition()
        return Response(content, media_type=media_type)

    started_at = time.time()
    return app


def serve_model(engine: Engine, host: str, port: int, **kwargs) -> None:
    import uvicorn

    uvicorn.run(create_server(engine, **kwargs), host=host, port=port, log_level="warning")
