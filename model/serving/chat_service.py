"""What one chat-completions request becomes in the batcher, and what comes back out of it.

`ChatService.plan` checks a request against this server (model name, refused fields, context
window, token budget) and builds its prompt from the chat template; `start` puts its `n`
choices into the continuous batcher; `Choices` reads their text back, cuts each at its first
stop string, and cancels what is no longer wanted, so a stopped choice or a departed client
frees its place in the batch at once.
"""

from __future__ import annotations

import queue
import time
import uuid
from dataclasses import dataclass, field

from secbot.model.runtime.engine import Engine
from secbot.model.runtime.generation import END, Sampling
from secbot.model.runtime.step_decoder import reserved_tokens
from secbot.model.serving.batching import ContinuousBatcher, Job
from secbot.model.serving.protocol import APIError, ChatRequest, version_fingerprint


class _Tagged:
    """A choice's view of the shared queue: what it puts is tagged with its index."""

    def __init__(self, shared: queue.Queue, index: int):
        self.shared, self.index = shared, index

    def put(self, item) -> None:
        self.shared.put((self.index, item))


class StopScanner:
    """Cuts streamed text at the first of its stop strings, holding back only what could be one."""

    def __init__(self, stops: list[str]):
        self.stops, self.pending, self.stopped = stops, "", False

    def feed(self, delta: str) -> str:
        if self.stopped:
            return ""
        text = self.pending + delta
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped, self.pending = True, ""
            return text[: min(hits)]
        keep = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        self.pending = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        rest, self.pending = ("" if self.stopped else self.pending), ""
        return rest


@dataclass
class Plan:
    request: ChatRequest
    prompt_ids: list[int]
    sampling: Sampling
    n: int
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    created: int = field(default_factory=lambda: int(time.time()))


class Choices:
    """The running choices of one request, read as (index, delta) pieces and then their ends."""

    def __init__(self, plan: Plan, jobs: list[Job], shared: queue.Queue):
        self.plan, self.jobs, self._shared = plan, jobs, shared
        self.scanners = [StopScanner(plan.request.stops()) for _ in jobs]
        self.finish: list[str | None] = [None] * len(jobs)
        self.text = [""] * len(jobs)

    def cancel(self) -> None:
        for job in self.jobs:
            job.cancelled.set()

    def pieces(self):
        """(index, delta) as generated; raises a generation error; ends when every choice has."""
        open_ = len(self.jobs)
        while open_:
            index, item = self._shared.get()
            if isinstance(item, BaseException):
                self.cancel()
                raise item
            scanner, job = self.scanners[index], self.jobs[index]
            if item is END:
                open_ -= 1
                rest = scanner.flush()
                self.finish[index] = "stop" if scanner.stopped or job.tokens < job.max_new_tokens else "length"
            else:
                rest = scanner.feed(item)
                if scanner.stopped:
                    job.cancelled.set()  # frees its place; its end marker still follows
            if rest:
                self.text[index] += rest
                yield index, rest

    def completion_tokens(self) -> int:
        return sum(job.tokens for job in self.jobs)


class ChatService:
    def __init__(self, engine: Engine, batcher: ContinuousBatcher, model_name: str,
                 max_prompt_tokens: int):
        self.engine, self.batcher, self.model_name = engine, batcher, model_name
        self.max_prompt_tokens = max_prompt_tokens

    def fingerprint(self) -> str:
        return version_fingerprint(self.engine.version_id)

    def plan(self, req: ChatRequest) -> Plan:
        if req.model != self.model_name:
            raise APIError(404, f"The model '{req.model}' does not exist; this server serves "
                                f"'{self.model_name}'", kind="invalid_request_error", param="model",
                           code="model_not_found")
        req.refuse_unsupported()
        system, history, query = req.conversation()
        defaults = self.engine.sampling
        limit = req.answer_limit(defaults.max_new_tokens)
        do_sample = defaults.do_sample if req.temperature is None else req.temperature > 0
        sampling = Sampling(max_new_tokens=limit, do_sample=do_sample, top_p=req.top_p or defaults.top_p,
                            temperature=req.temperature or defaults.temperature, seed=req.seed)
        ids = self.engine.prompts.with_system(system).ids(query, history)
        context = self.engine.context_length()
        if len(ids) + limit > context:
            raise APIError(400, f"This model's maximum context length is {context} tokens. However, you "
                                f"requested {len(ids) + limit} tokens ({len(ids)} in the messages, {limit} "
                                "in the completion). Please reduce the length of the messages or completion.",
                           param="messages", code="context_length_exceeded")
        if len(ids) > self.max_prompt_tokens:
            raise APIError(400, f"The messages take {len(ids)} tokens; this server takes prompts of up to "
                                f"{self.max_prompt_tokens} (--max-prompt-tokens).",
                           param="messages", code="context_length_exceeded")
        n = req.n or 1
        if n * reserved_tokens(len(ids), limit) > self.batcher.max_batch_tokens:
            raise APIError(400, f"The request needs {n * reserved_tokens(len(ids), limit)} tokens of batch room (prompt and "
                                f"completion, times n={n}); this server holds {self.batcher.max_batch_tokens} "
                                "(--max-batch-tokens).", param="max_completion_tokens",
                           code="context_length_exceeded")
        return Plan(req, ids, sampling, n)

    def start(self, plan: Plan) -> Choices:
        shared: queue.Queue = queue.Queue()
        jobs = []
        for i in range(plan.n):
            s = plan.sampling
            sampling = s if s.seed is None else Sampling(s.max_new_tokens, s.do_sample, s.top_p,
                                                          s.temperature, s.seed + i)
            jobs.append(self.batcher.submit(Job(plan.prompt_ids, sampling.max_new_tokens, sampling,
                                                out=_Tagged(shared, i))))
        return Choices(plan, jobs, shared)


def read_all(choices: Choices) -> None:
    """Read every piece of every choice (a non-streaming request); `choices.text` holds them."""
    for _ in choices.pieces():
        pass
