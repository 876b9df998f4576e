"""Generation settings and the streamer that turns new token ids into text deltas."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer


@dataclass
class Sampling:
    """Decoding settings; sampling values default to THUDM's (top_p 0.7, temperature 0.95)."""

    max_new_tokens: int = 512
    do_sample: bool = False
    top_p: float = 0.7
    temperature: float = 0.95

    def generate_kwargs(self) -> dict:
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(top_p=self.top_p, temperature=self.temperature)
        else:  # silence the model's own sampling defaults under greedy decoding
            kwargs.update(top_p=None, temperature=None, top_k=None)
        return kwargs


_END = object()


class StopWhenCancelled(StoppingCriteria):
    """Ends generation early once the consumer of a stream has gone away."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)


class BatchDeltaStreamer(BaseStreamer):
    """Routes each row of a batched `generate` (one row for a single stream) to its own queue
    as text deltas. Each row's answer is decoded whole each time, so multi-byte characters split
    across tokens are held back until complete; the deltas add up to the non-streaming decode.

    A row ends at its first EOS token or at its own `max_new_tokens`, whichever comes first;
    what `generate` produces for it after that (padding) is dropped.
    """

    def __init__(self, tokenizer, eos_ids: set[int], limits: list[int],
                 queues: list[queue.Queue] | None = None, on_finish=None):
        self.on_finish = on_finish or (lambda row, tokens: None)
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.limits = limits
        self.queues = queues or [queue.Queue() for _ in limits]
        self._ids: list[list[int]] = [[] for _ in limits]
        self._sent = [""] * len(limits)
        self._done = [False] * len(limits)
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for row, token in enumerate(value.reshape(len(self.limits), -1)[:, -1].tolist()):
            if self._done[row]:
                continue
            if token in self.eos_ids:
                self._finish(row)
                continue
            self._ids[row].append(token)
            text = self.tokenizer.decode(self._ids[row], skip_special_tokens=True)
            if not text.endswith("\ufffd") and len(text) > len(self._sent[row]):
                self.queues[row].put(text[len(self._sent[row]):])
                self._sent[row] = text
            if len(self._ids[row]) >= self.limits[row]:
                self._finish(row)

    def _finish(self, row: int) -> None:
        text = self.tokenizer.decode(self._ids[row], skip_special_tokens=True)
        if text != self._sent[row] and text.startswith(self._sent[row]):
            self.queues[row].put(text[len(self._sent[row]):])
        self._done[row] = True
        self.on_finish(row, len(self._ids[row]))  # before the end marker: readers see the count
        self.queues[row].put(_END)

    def end(self) -> None:
        for row in range(len(self.limits)):
            if not self._done[row]:
                self._finish(row)

    def fail(self, exc: BaseException) -> None:
        for row in range(len(self.limits)):
            if not self._done[row]:
                self._done[row] = True
                self.queues[row].put(exc)

    def tokens(self, row: int) -> int:
        return len(self._ids[row])


def drain(q: queue.Queue):
    """Deltas from one row's queue until its end marker; re-raises a generation error."""
    while True:
        item = q.get()
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
