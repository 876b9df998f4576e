"""Step-by-step decoding of a changing set of rows on a native transformers model.

`Decoder.run` gives every running row one token per step and asks for new rows between steps:
the continuous batcher of `secbot serve-model` feeds it from its queue, batched `generate` gives
it all its prompts at once. A row leaves as soon as it ends (EOS, its own token limit, or its
consumer gone), and its padding leaves with it.

Rows of different lengths share one KV cache, left-padded; columns count only where the
attention mask is 1. A P-tuning prefix is the first columns of each row (keys without rotation),
and a row's tokens take positions after it, padding skipped, exactly as in training and in
transformers' `generate`, whose greedy output this matches token for token (tests compare them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from secbot.model.runtime.generation import Sampling, TextDeltas

log = logging.getLogger(__name__)


def reserved_tokens(prompt_tokens: int, limit: int) -> int:
    """Tokens a row may hold in the KV cache: its prompt and its whole answer (what admission
    to a batch counts)."""
    return prompt_tokens + limit


@dataclass
class Row:
    prompt_ids: list[int]
    sampling: Sampling
    text: TextDeltas  # where the tokens go; its limit and EOS end the row
    cancelled: threading.Event | None = None
    generator: torch.Generator | None = None  # the row's own random stream (a request's seed)

    @property
    def cost(self) -> int:
        return reserved_tokens(len(self.prompt_ids), self.text.limit)


class _Batch:
    """The running rows' KV cache, attention mask, next positions and last tokens."""

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


class _Joining:
    """Rows being prefilled, `chunk` prompt columns per step, into a cache of their own."""

    def __init__(self, decoder: "Decoder", rows: list[Row]):
        self.rows = rows
        prompts = [row.prompt_ids for row in rows]
        n, width = len(prompts), max(map(len, prompts))
        device = decoder.device
        self.input_ids = torch.tensor([[decoder.pad] * (width - len(p)) + p for p in prompts], device=device)
        real = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        cache = decoder._cache_class()
        for i, (k, v) in enumerate(decoder.prefix or ()):
            cache.update(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1), i)
        virtual = cache.get_seq_length()
        self.mask = torch.cat([real.new_ones(n, virtual), real], dim=1)
        self.positions = (real.cumsum(-1) - 1).clamp(min=0) + virtual
        self.batch = _Batch(cache, self.mask[:, :virtual], real.sum(-1) + virtual)
        self.virtual, self.width, self.done = virtual, width, 0

    def step(self, decoder: "Decoder", chunk: int) -> bool:
        """Prefill the next `chunk` columns; True once the whole prompt is in (and `batch.last` set)."""
        end = min(self.done + chunk, self.width)
        mask = self.mask[:, : self.virtual + end]
        logits = decoder._forward(self.input_ids[:, self.done:end], mask, self.positions[:, self.done:end],
                                  self.batch.cache)
        self.done, self.batch.mask = end, mask
        if end < self.width:
            return False
        self.batch.last = decoder._pick(logits, self.rows)
        return True


class Decoder:
    """Decodes on the engine's active adapter; build and run it under the engine's lock.

    New rows are prefilled `prefill_chunk` prompt tokens per step while the running rows keep
    getting a token every step, so a long prompt joining never stalls running streams for more
    than one chunk. A failed prefill (e.g. out of memory on a long prompt) fails only the rows
    it was for: a group is retried one row at a time, and a row that fails alone gets the error.
    """

    def __init__(self, engine, prefill_chunk: int = 512):
        from transformers import DynamicCache

        self._cache_class = DynamicCache
        self.device, self.pad = engine.device, engine.tokenizer.pad_token_id
        self.network = engine.adapters.network()
        self.prefix = engine.adapters.prefix()
        self.prefill_chunk = prefill_chunk
        top_k = getattr(engine.loaded.model.generation_config, "top_k", None)
        self.top_k = top_k if isinstance(top_k, int) and top_k > 0 else None

    def run(self, take: Callable[[list[Row]], list[Row]], on_step=None,
            stop: threading.Event | None = None) -> None:
        """Decode until no row runs and `take(active rows)` gives no new ones (or `stop` is set).

        `on_step(rows, tokens, seconds)` follows every step. An error in a decoding step is given
        to every running row and raised; an error in a prefill only to the rows being prefilled.
        """
        rows: list[Row] = []
        batch: _Batch | None = None
        joining: _Joining | None = None
        retry: list[Row] = []  # rows of a failed group prefill, to prefill one at a time
        with torch.inference_mode():
            while True:
                started = time.monotonic()
                stopped = stop is not None and stop.is_set()
                if joining is None and not stopped:
                    new = [retry.pop(0)] if retry else take(list(rows))
                    joining = _Joining(self, new) if new else None
                if stopped or (joining is None and not rows):
                    for row in rows + (joining.rows if joining else []) + retry:
                        row.text.finish()
                    return
                joined: list[Row] = []
                if joining is not None:
                    try:
                        if joining.step(self, self.prefill_chunk):
                            joined, added = joining.rows, joining.batch
                            joining = None
                    except Exception as exc:
                        failed, joining = joining.rows, None
                        self._release_memory()
                        if len(failed) > 1:
                            retry += failed  # find the row that fails alone
                        else:
                            log.warning("prefill of a %d-token prompt failed: %s", len(failed[0].prompt_ids), exc)
                            failed[0].text.fail(exc)
                decoded = bool(rows)
                if decoded:
                    try:
                        logits = self._decode(batch)
                        batch.last = self._pick(logits, rows)
                    except BaseException as exc:
                        for row in rows + joined + (joining.rows if joining else []) + retry:
                            row.text.fail(exc)
                        raise
                if joined:
                    if batch is None:
                        batch = added
                    else:
                        batch.extend(added)
                first_new = len(rows)
                rows += joined
                if on_step and (decoded or joined):
                    on_step(len(rows), first_new * decoded + len(joined), time.monotonic() - started)
                if not (decoded or joined):
                    continue
                tokens = batch.last.tolist()
                done = {i for i in range(0 if decoded else first_new, len(rows))
                        if rows[i].text.add(tokens[i]) or (rows[i].cancelled and rows[i].cancelled.is_set())}
                if done:
                    for i in done:
                        rows[i].text.finish()
                    kept = [i for i in range(len(rows)) if i not in done]
                    rows = [rows[i] for i in kept]
                    if kept:
                        batch.keep(kept)
                    else:
                        batch = None

    def _release_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _forward(self, input_ids, mask, positions, cache) -> torch.Tensor:
        out = self.network(input_ids=input_ids, attention_mask=self._attention_mask(mask, input_ids.shape[1]),
                           position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].float()

    def _attention_mask(self, mask: torch.Tensor, queries: int):
        """The 4-D mask for SDPA or eager attention, built here: transformers' own builder costs
        as much as the whole step on a small model whenever a batch holds padding."""
        kind = self.network.config._attn_implementation
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
        dtype = self.network.get_input_embeddings().weight.dtype
        return torch.zeros(keep.shape, dtype=dtype, device=mask.device).masked_fill(~keep, torch.finfo(dtype).min)

    def _decode(self, batch: _Batch) -> torch.Tensor:
        batch.mask = F.pad(batch.mask, (0, 1), value=1)
        logits = self._forward(batch.last[:, None], batch.mask, batch.positions[:, None], batch.cache)
        batch.positions = batch.positions + 1
        return logits

    def _pick(self, logits: torch.Tensor, rows: list[Row]) -> torch.Tensor:
        """Next token per row: greedy, or temperature / top-k / top-p sampling as `generate` does
        (from the row's own generator when its request gave a seed)."""
        samplings = [row.sampling for row in rows]
        tokens = logits.argmax(-1)
        sampled = [i for i, s in enumerate(samplings) if s.do_sample]
        if not sampled:
            return tokens
        device = logits.device
        scores = logits[sampled] / torch.tensor([samplings[i].temperature for i in sampled], device=device)[:, None]
        if self.top_k:
            kth = scores.topk(min(self.top_k, scores.shape[-1])).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        ordered, order = scores.sort(-1, descending=True)
        probs = ordered.softmax(-1)
        top_p = torch.tensor([samplings[i].top_p for i in sampled], device=device)[:, None]
        ordered = ordered.masked_fill(probs.cumsum(-1) - probs > top_p, float("-inf"))
        probs = ordered.softmax(-1)
        choice = torch.multinomial(probs, 1)
        for k, i in enumerate(sampled):
            if rows[i].generator is not None:
                choice[k] = torch.multinomial(probs[k], 1, generator=rows[i].generator)
        tokens[sampled] = order.gather(-1, choice)[:, 0]
        return tokens
