"""Continuous batching of concurrent requests on one engine.

`ContinuousBatcher` runs `model.runtime.step_decoder.Decoder`: every running request gets one token per
step, and queued requests join between steps (their prompts prefilled a chunk per step), so a
short answer leaves the batch at once and a new request never waits for a whole batch to
finish. Each request keeps its own sampling settings, token limit and EOS.

Admission is by tokens as well as rows: a request reserves its prompt plus its token limit, and
joins only while the running requests' reservations leave room within `max_batch_tokens`, in
arrival order. That bounds the KV cache (and the attention mask) whatever the prompts' lengths.
Work is reported through `on_step(rows, tokens, seconds)`. Every request finishes on the
adapter it started with: an adapter switch waits until the running batch has drained.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from dataclasses import dataclass, field

import torch

from secbot.model.runtime.engine import Engine
from secbot.model.runtime.generation import Sampling, TextDeltas
from secbot.model.runtime.step_decoder import Decoder, Row, reserved_tokens

log = logging.getLogger(__name__)


class BatcherStopped(RuntimeError):
    pass


@dataclass
class Job:
    prompt_ids: list[int]
    max_new_tokens: int
    sampling: Sampling
    out: queue.Queue = field(default_factory=queue.Queue)
    started: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)  # the client went away
    adapter: object = None  # the adapter the job ran on (set when it starts)
    tokens: int = 0

    @property
    def cost(self) -> int:
        return reserved_tokens(len(self.prompt_ids), self.max_new_tokens)

    def start(self, adapter) -> None:
        self.adapter = adapter
        self.started.set()


class ContinuousBatcher:
    """Iteration-level batching with token-budget admission (see the module docstring)."""

    def __init__(self, engine: Engine, max_batch: int = 8, max_batch_tokens: int = 65536,
                 prefill_chunk: int = 512, on_step=None):
        self.engine, self.max_batch, self.max_batch_tokens = engine, max_batch, max_batch_tokens
        self.prefill_chunk = prefill_chunk
        self.on_step = on_step or (lambda rows, tokens, seconds: None)
        self._queue: deque[Job] = deque()
        self._ready = threading.Condition()
        self._eos = engine.eos_ids()
        self.running = threading.Event()  # set while the batching thread is alive
        self.running.set()
        self._decoding: list[TextDeltas] = []  # answers of the rows in the batch, until each is done
        self._decoding_lock = threading.Lock()
        threading.Thread(target=self._loop, name="secbot-continuous-batcher", daemon=True).start()

    def queued(self) -> int:
        """Requests waiting for a place in the batch."""
        return len(self._queue)

    def decoding(self) -> int:
        """Requests in the batch now: started and not yet ended (finished, failed or cancelled)."""
        with self._decoding_lock:
            self._decoding = [text for text in self._decoding if not text.done]
            return len(self._decoding)

    def submit(self, job: Job) -> Job:
        if job.cost > self.max_batch_tokens:
            raise ValueError(f"the request needs {job.cost} tokens (prompt and answer) but the batch "
                             f"holds {self.max_batch_tokens} (--max-batch-tokens)")
        with self._ready:
            if not self.running.is_set():
                raise BatcherStopped("the batching thread has stopped; see the server log")
            self._queue.append(job)
            self._ready.notify()
        return job

    def _loop(self) -> None:
        try:
            self._serve()
        except BaseException as exc:
            log.exception("the batching thread stopped")
            with self._ready:  # what waits would never be answered: fail it now
                self.running.clear()
                while self._queue:
                    self._queue.popleft().out.put(RuntimeError(f"the batching thread stopped: {exc}"))
        finally:
            self.running.clear()

    def _serve(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._queue)
            self.engine.wait_for_switches()
            with self.engine._lock:  # held while rows run: the adapter cannot change under them
                try:
                    Decoder(self.engine, self.prefill_chunk).run(self._take, self.on_step)
                except Exception:
                    log.exception("generation failed; its requests got the error")

    def _take(self, active: list[Row]) -> list[Row]:
        """Queued requests that fit beside the active ones, in arrival order; none while an
        adapter switch waits for the batch to drain."""
        if len(active) >= self.max_batch or self.engine.switch_pending():
            return []
        used = sum(row.cost for row in active)
        rows = []
        with self._ready:
            while self._queue and len(active) + len(rows) < self.max_batch:
                job = self._queue[0]
                if job.cancelled.is_set():
                    self._queue.popleft()
                    continue
                if used + job.cost > self.max_batch_tokens:
                    break
                self._queue.popleft()
                used += job.cost
                job.start(self.engine.adapter)
                text = TextDeltas(self.engine.tokenizer, self._eos, job.max_new_tokens, job.out,
                                  lambda n, job=job: setattr(job, "tokens", n), self.engine.prompts.lead)
                generator = None
                if job.sampling.seed is not None:
                    generator = torch.Generator(self.engine.device).manual_seed(job.sampling.seed)
                rows.append(Row(job.prompt_ids, job.sampling, text, job.cancelled, generator))
        with self._decoding_lock:
            self._decoding += [row.text for row in rows]
        return rows
