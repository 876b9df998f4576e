"""Batching of concurrent requests on one engine.

`ContinuousBatcher` (native transformers models) runs `model.stepping.Decoder`: every running
request gets one token per step and queued requests join between steps, so a short answer
leaves the batch at once and a new request never waits for a whole batch to finish. Each
request keeps its own sampling settings, token limit and EOS. `BatchQueue` is the static
fallback for remote-code models: what is queued when the model frees up runs as one batch.

Both report work through `on_step(rows, tokens, seconds)` and both finish every request on the
adapter it started with: an adapter switch waits until the running batch has drained.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from secbot.model.engine import Engine
from secbot.model.generation import Sampling, TextDeltas
from secbot.model.stepping import Decoder, Row

log = logging.getLogger(__name__)


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

    def key(self) -> tuple:
        s = self.sampling
        return (s.do_sample, s.temperature, s.top_p) if s.do_sample else (False,)

    def start(self, adapter) -> None:
        self.adapter = adapter
        self.started.set()


def make_batcher(engine: Engine, max_batch: int = 8, on_step=None, mode: str = "continuous"):
    """A batcher for the engine: continuous where its model allows, else static."""
    if mode not in ("continuous", "static"):
        raise ValueError(f"batching must be 'continuous' or 'static', not {mode!r}")
    if mode == "continuous" and engine.steppable():
        return ContinuousBatcher(engine, max_batch=max_batch, on_step=on_step)
    if mode == "continuous":
        log.warning("remote-code model: static batching instead of continuous")
    return BatchQueue(engine, max_batch=max_batch, on_step=on_step)


class _Worker:
    def __init__(self, engine: Engine, max_batch: int, on_step, name: str):
        self.engine, self.max_batch = engine, max_batch
        self.on_step = on_step or (lambda rows, tokens, seconds: None)
        self._queue: deque[Job] = deque()
        self._ready = threading.Condition()
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def queued(self) -> int:
        """Requests waiting for a place in the batch."""
        return len(self._queue)

    def submit(self, job: Job) -> Job:
        with self._ready:
            self._queue.append(job)
            self._ready.notify()
        return job

    def _wait_for_work(self) -> None:
        with self._ready:
            self._ready.wait_for(lambda: self._queue)

    def _loop(self) -> None:
        raise NotImplementedError


class BatchQueue(_Worker):
    """Static batching: queued requests with the same sampling settings run as one batch."""

    def __init__(self, engine: Engine, max_batch: int = 8, wait_s: float = 0.005, on_step=None):
        self.wait_s = wait_s
        super().__init__(engine, max_batch, on_step, "secbot-batcher")

    def _collect(self) -> list[Job]:
        self._wait_for_work()
        time.sleep(self.wait_s)  # let requests arriving together share the batch
        with self._ready:
            first = self._queue.popleft()
            jobs = [first] + [j for j in self._queue if j.key() == first.key()][: self.max_batch - 1]
            for job in jobs[1:]:
                self._queue.remove(job)
        return jobs

    def _loop(self) -> None:
        while True:
            jobs = self._collect()
            started = time.monotonic()
            # The engine lock is held for the whole batch, so an adapter switch waits for it.
            with self.engine._lock:
                for job in jobs:
                    job.start(self.engine.adapter)
                try:
                    self.engine.generate_streams(
                        [j.prompt_ids for j in jobs], [j.max_new_tokens for j in jobs], jobs[0].sampling,
                        queues=[j.out for j in jobs],
                        on_finish=lambda row, tokens: setattr(jobs[row], "tokens", tokens))
                except Exception:
                    log.exception("batch of %d failed", len(jobs))
            self.on_step(len(jobs), sum(j.tokens for j in jobs), time.monotonic() - started)


class ContinuousBatcher(_Worker):
    """Iteration-level batching for native transformers models (see the module docstring)."""

    def __init__(self, engine: Engine, max_batch: int = 8, on_step=None):
        self._eos = engine.eos_ids()
        super().__init__(engine, max_batch, on_step, "secbot-continuous-batcher")

    def _loop(self) -> None:
        while True:
            self._wait_for_work()
            self.engine.wait_for_switches()
            with self.engine._lock:  # held while rows run: the adapter cannot change under them
                try:
                    Decoder(self.engine).run(self._take, self.on_step)
                except Exception:
                    log.exception("generation failed; its requests got the error")

    def _take(self, running: int) -> list[Row]:
        """Queued requests to join the batch, unless an adapter switch is waiting for it to drain."""
        if running >= self.max_batch or self.engine.switch_pending():
            return []
        rows = []
        with self._ready:
            while self._queue and running + len(rows) < self.max_batch:
                job = self._queue.popleft()
                if job.cancelled.is_set():
                    continue
                job.start(self.engine.adapter)
                text = TextDeltas(self.engine.tokenizer, self._eos, job.max_new_tokens, job.out,
                                  lambda n, job=job: setattr(job, "tokens", n))
                rows.append(Row(job.prompt_ids, job.sampling, text, job.cancelled))
        return rows
