"""Batching of concurrent requests on one engine.

`ContinuousBatcher` (native transformers models) decodes every running request one token per
step and admits queued requests between steps, so a short answer leaves the batch at once and a
new request never waits for a whole batch to finish. Each request keeps its own sampling
settings, token limit and EOS. `BatchQueue` is the static fallback for remote-code models: what
is queued when the model frees up runs as one `generate` call.

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

import torch
import torch.nn.functional as F

from model.engine import Engine
from model.generation import Sampling, TextDeltas

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


@dataclass
class _Row:
    job: Job
    text: TextDeltas


class _Batch:
    """The running rows' KV cache, attention mask, next positions and last tokens.

    Columns are attended only where `mask` is 1, so rows of different lengths share one cache,
    left-padded; a P-tuning prefix is simply the first columns of each row (keys without
    rotation). A row's tokens take positions after the prefix, padding skipped, as in training
    and `generate`.
    """

    def __init__(self, cache, mask: torch.Tensor, positions: torch.Tensor):
        self.cache, self.mask, self.positions = cache, mask, positions
        self.last: torch.Tensor | None = None

    def _layers(self, change) -> None:
        for layer in self.cache.layers:
            layer.keys, layer.values = change(layer.keys), change(layer.values)

    def extend(self, other: "_Batch") -> None:
        width = max(self.mask.shape[1], other.mask.shape[1])

        def left_pad(t: torch.Tensor, dim: int) -> torch.Tensor:
            missing = width - t.shape[dim]
            return F.pad(t, [0, 0] * (t.dim() - 1 - dim) + [missing, 0]) if missing else t

        for layer, added in zip(self.cache.layers, other.cache.layers):
            layer.keys = torch.cat([left_pad(layer.keys, 2), left_pad(added.keys, 2)])
            layer.values = torch.cat([left_pad(layer.values, 2), left_pad(added.values, 2)])
        self.mask = torch.cat([left_pad(self.mask, 1), left_pad(other.mask, 1)])
        self.positions = torch.cat([self.positions, other.positions])
        self.last = torch.cat([self.last, other.last])

    def keep(self, rows: list[int]) -> None:
        index = torch.tensor(rows, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        columns = mask.any(0)  # drop the padding columns that only finished rows needed
        if bool(columns.all()):
            self._layers(lambda t: t.index_select(0, index))
        else:
            self._layers(lambda t: t.index_select(0, index)[:, :, columns])
            mask = mask[:, columns]
        self.mask = mask
        self.positions = self.positions.index_select(0, index)
        self.last = self.last.index_select(0, index)


class ContinuousBatcher(_Worker):
    """Iteration-level batching for native transformers models (see the module docstring)."""

    def __init__(self, engine: Engine, max_batch: int = 8, on_step=None):
        from transformers import DynamicCache

        self._cache_class = DynamicCache
        self._eos = engine.eos_ids()
        top_k = getattr(engine.loaded.model.generation_config, "top_k", None)
        self._top_k = top_k if isinstance(top_k, int) and top_k > 0 else None
        super().__init__(engine, max_batch, on_step, "secbot-continuous-batcher")

    def _loop(self) -> None:
        while True:
            self._wait_for_work()
            self.engine.wait_for_switches()
            with self.engine._lock:  # held while rows run: the adapter cannot change under them
                self._run_until_drained()

    def _take(self, room: int) -> list[Job]:
        if room <= 0 or self.engine.switch_pending():
            return []
        with self._ready:
            jobs = []
            while self._queue and len(jobs) < room:
                job = self._queue.popleft()
                if not job.cancelled.is_set():
                    jobs.append(job)
            return jobs

    def _run_until_drained(self) -> None:
        engine = self.engine
        network = engine.adapters.network()
        prefix = engine.adapters.prefix()
        rows: list[_Row] = []
        batch: _Batch | None = None
        with torch.inference_mode():
            while True:
                started = time.monotonic()
                jobs = self._take(self.max_batch - len(rows))
                try:
                    if jobs:
                        for job in jobs:
                            job.start(engine.adapter)
                        new = [_Row(job, TextDeltas(engine.tokenizer, self._eos, job.max_new_tokens, job.out,
                                                    lambda n, job=job: setattr(job, "tokens", n)))
                               for job in jobs]
                        added, logits = self._prefill(network, prefix, [j.prompt_ids for j in jobs])
                        added.last = self._pick(logits, [row.job.sampling for row in new])
                        if batch is None:
                            batch = added
                        else:
                            batch.extend(added)
                        rows += new
                        fresh = len(new)
                    elif rows:
                        logits = self._decode(network, batch)
                        batch.last = self._pick(logits, [row.job.sampling for row in rows])
                        fresh = len(rows)
                    else:
                        return
                except Exception as exc:
                    log.exception("generation failed for %d request(s)", len(rows) + len(jobs))
                    for row in rows:
                        row.text.fail(exc)
                    for job in jobs:
                        job.out.put(exc)
                    return
                tokens = batch.last.tolist()
                done = []
                for i, row in enumerate(rows[len(rows) - fresh:], start=len(rows) - fresh):
                    if row.text.add(tokens[i]) or row.job.cancelled.is_set():
                        row.text.finish()
                        done.append(i)
                self.on_step(fresh, fresh, time.monotonic() - started)
                if done:
                    kept = [i for i in range(len(rows)) if i not in set(done)]
                    rows = [rows[i] for i in kept]
                    if kept:
                        batch.keep(kept)
                    else:
                        batch = None

    def _forward(self, network, input_ids, mask, positions, cache) -> torch.Tensor:
        out = network(input_ids=input_ids, attention_mask=self._attention_mask(network, mask, input_ids.shape[1]),
                      position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].float()

    @staticmethod
    def _attention_mask(network, mask: torch.Tensor, queries: int):
        """The 4-D mask for SDPA or eager attention, built here: transformers' own builder costs
        as much as the whole step on a small model whenever a batch holds padding."""
        kind = network.config._attn_implementation
        if kind not in ("sdpa", "eager"):
            return mask  # flash attention and others take the 2-D mask
        keep = mask.bool()[:, None, None, :]
        if queries > 1:
            columns = mask.shape[1]
            causal = torch.ones(queries, columns, dtype=torch.bool, device=mask.device).tril(columns - queries)
            keep = keep & causal
            keep = keep | ~keep.any(-1, keepdim=True)  # padding queries attend everywhere: finite, never read
        if kind == "sdpa":
            return keep
        dtype = network.get_input_embeddings().weight.dtype
        return torch.zeros(keep.shape, dtype=dtype, device=mask.device).masked_fill(~keep, torch.finfo(dtype).min)

    def _prefill(self, network, prefix, prompts: list[list[int]]) -> tuple[_Batch, torch.Tensor]:
        device, pad, n = self.engine.device, self.engine.tokenizer.pad_token_id, len(prompts)
        width = max(map(len, prompts))
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
        real = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        cache = self._cache_class()
        for i, (k, v) in enumerate(prefix or ()):
            cache.update(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1), i)
        virtual = cache.get_seq_length()
        mask = torch.cat([real.new_ones(n, virtual), real], dim=1)
        positions = (real.cumsum(-1) - 1).clamp(min=0) + virtual
        logits = self._forward(network, input_ids, mask, positions, cache)
        return _Batch(cache, mask, real.sum(-1) + virtual), logits

    def _decode(self, network, batch: _Batch) -> torch.Tensor:
        batch.mask = F.pad(batch.mask, (0, 1), value=1)
        logits = self._forward(network, batch.last[:, None], batch.mask, batch.positions[:, None], batch.cache)
        batch.positions = batch.positions + 1
        return logits

    def _pick(self, logits: torch.Tensor, samplings: list[Sampling]) -> torch.Tensor:
        """Next token per row: greedy, or temperature / top-k / top-p sampling as `generate` does."""
        tokens = logits.argmax(-1)
        sampled = [i for i, s in enumerate(samplings) if s.do_sample]
        if not sampled:
            return tokens
        device = logits.device
        scores = logits[sampled] / torch.tensor([samplings[i].temperature for i in sampled], device=device)[:, None]
        if self._top_k:
            kth = scores.topk(min(self._top_k, scores.shape[-1])).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        ordered, order = scores.sort(-1, descending=True)
        probs = ordered.softmax(-1)
        top_p = torch.tensor([samplings[i].top_p for i in sampled], device=device)[:, None]
        ordered = ordered.masked_fill(probs.cumsum(-1) - probs > top_p, float("-inf"))
        choice = torch.multinomial(ordered.softmax(-1), 1)
        tokens[sampled] = order.gather(-1, choice)[:, 0]
        return tokens
