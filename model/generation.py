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


class TextDeltaStreamer(BaseStreamer):
    """Receives token ids from `generate` (in its thread) and yields text deltas (in the caller's).

    The whole answer is decoded each time so multi-byte characters split across tokens are
    held back until complete; the concatenated deltas equal the non-streaming decode.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.queue: queue.Queue = queue.Queue()
        self.cancelled = threading.Event()
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() first hands over the prompt
            self._prompt_seen = True
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.queue.put(_END)

    def fail(self, exc: BaseException) -> None:
        self.queue.put(exc)

    def deltas(self):
        ids: list[int] = []
        sent = ""
        while True:
            item = self.queue.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            ids += item
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                continue
            if len(text) > len(sent):
                yield text[len(sent):]
                sent = text
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if text != sent:
            yield text[len(sent):]


class StopWhenCancelled(StoppingCriteria):
    """Ends generation early once the consumer of a stream has gone away."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)
