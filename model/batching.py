"""Static batching of concurrent requests: whatever is queued when the GPU frees up runs as one
batch (up to `max_batch`, same sampling settings), each request streaming its own tokens."""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from model.engine import Engine
from model.generation import Sampling

log = logging.getLogger(__name__)


@dataclass
class Job:
    prompt_ids: list[int]
    max_new_tokens: int
    sampling: Sampling
    out: queue.Queue = field(default_factory=queue.Queue)
    started: threading.Event = field(default_factory=threading.Event)
    adapter: object = None  # the adapter the job ran on (set when its batch starts)
    batch_size: int = 0
    tokens: int = 0

    def key(self) -> tuple:
        s = self.sampling
        return (s.do_sample, s.temperature, s.top_p) if s.do_sample else (False,)


class BatchQueue:
    def __init__(self, engine: Engine, max_batch: int = 8, wait_s: float = 0.005, on_batch=None):
        self.engine, self.max_batch, self.wait_s = engine, max_batch, wait_s
        self.on_batch = on_batch or (lambda jobs, seconds: None)
        self._pending: queue.Queue[Job] = queue.Queue()
        self._worker = threading.Thread(target=self._loop, name="secbot-batcher", daemon=True)
        self._worker.start()

    def submit(self, job: Job) -> Job:
        self._pending.put(job)
        return job

    def _collect(self) -> list[Job]:
        first = self._pending.get()
        jobs, later = [first], []
        deadline = time.monotonic() + self.wait_s
        while len(jobs) < self.max_batch:
            try:
                job = self._pending.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            (jobs if job.key() == first.key() else later).append(job)
        for job in later:  # other sampling settings wait for the next batch
            self._pending.put(job)
        return jobs

    def _loop(self) -> None:
        while True:
            jobs = self._collect()
            started = time.monotonic()
            # The engine lock is held for the whole batch, so an adapter switch waits for it.
            with self.engine._lock:
                adapter = self.engine.adapter
                for job in jobs:
                    job.adapter, job.batch_size = adapter, len(jobs)
                    job.started.set()
                try:
                    self.engine.generate_streams(
                        [j.prompt_ids for j in jobs], [j.max_new_tokens for j in jobs], jobs[0].sampling,
                        queues=[j.out for j in jobs],
                        on_finish=lambda row, tokens: setattr(jobs[row], "tokens", tokens))
                except Exception:
                    log.exception("batch of %d failed", len(jobs))
            self.on_batch(jobs, time.monotonic() - started)
