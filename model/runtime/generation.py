"""Generation settings and the streamer that turns new token ids into text deltas."""

from __future__ import annotations

import logging
import os
import queue
import threading
import weakref
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
    seed: int | None = None  # sampled answers repeat for the same seed

    def generate_kwargs(self) -> dict:
        kwargs = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(top_p=self.top_p, temperature=self.temperature)
        else:  # silence the model's own sampling defaults under greedy decoding
            kwargs.update(top_p=None, temperature=None, top_k=None)
        return kwargs


END = object()  # the marker that closes an answer's queue
log = logging.getLogger(__name__)


class StopWhenCancelled(StoppingCriteria):
    """Ends generation early once the consumer of a stream has gone away."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool,
                          device=input_ids.device)


_BYTE_TOKENS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # per tokenizer, read once


def byte_tokens(tokenizer) -> frozenset[int]:
    """The ids of SentencePiece's byte-fallback pieces (`<0x00>` … `<0xFF>`); none for byte-level BPE."""
    found = _BYTE_TOKENS.get(tokenizer)
    if found is None:
        ids = tokenizer.convert_tokens_to_ids([f"<0x{b:02X}>" for b in range(256)])
        found = _BYTE_TOKENS[tokenizer] = frozenset(i for i in ids if i is not None and i != tokenizer.unk_token_id)
    return found


class TextDeltas:
    """One answer's token ids turned into text deltas on a queue.

    Each new token is decoded within a short window of the tokens before it (the last emitted
    piece and any held back), so the cost per token stays flat however long the answer grows.
    A delta is held back while it ends in an incomplete character (U+FFFD), so multi-byte
    characters split across tokens arrive whole; the deltas add up to the whole answer's decode,
    which `finish` checks. A SentencePiece byte-fallback token (`<0xE4>`) is held back until the
    run of byte tokens it belongs to ends: the decoder reads a run as one UTF-8 sequence, and a
    later byte can turn earlier ones into U+FFFD. The answer ends at its first EOS token or at `limit` tokens,
    whichever comes first. `lead`: text the chat template has the model write before the answer
    proper ("\n" on GLM-4); it is held back and left out when the answer starts with it.
    """

    def __init__(self, tokenizer, eos_ids: set[int], limit: int, out: queue.Queue | None = None,
                 on_finish=None, lead: str = ""):
        self.tokenizer, self.eos_ids, self.limit = tokenizer, eos_ids, limit
        self.out = out if out is not None else queue.Queue()
        self.on_finish = on_finish or (lambda tokens: None)
        self.ids: list[int] = []
        self.done = False
        self.text = ""  # the whole answer, once finished
        self._sent = ""  # text handed out
        self._raw = ""  # decoded text seen so far, lead included
        self._lead: str | None = lead or None
        self._window = 0  # first token of the decode window
        self._read = 0  # tokens already turned into text
        self._bytes = byte_tokens(tokenizer)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, token: int) -> bool:
        """Take the next token; True once the answer is complete."""
        if self.done:
            return True
        if token in self.eos_ids:
            self.finish()
            return True
        self.ids.append(token)
        if token in self._bytes:  # a byte run is decoded whole once it ends
            if len(self.ids) >= self.limit:
                self.finish()
            return self.done
        before = self._decode(self.ids[self._window:self._read])
        text = self._decode(self.ids[self._window:])
        if len(text) > len(before) and not text.endswith("\ufffd") and text.startswith(before):
            self._put(text[len(before):])
            self._window, self._read = self._read, len(self.ids)
        if len(self.ids) >= self.limit:
            self.finish()
        return self.done

    def _put(self, delta: str) -> None:
        self._raw += delta
        if self._lead is not None:
            if self._lead.startswith(self._raw):
                return  # may still be the lead
            delta = self._raw[len(self._lead):] if self._raw.startswith(self._lead) else self._raw
            self._lead = None
        if delta:
            self.out.put(delta)
            self._sent += delta

    def finish(self) -> None:
        if self.done:
            return
        raw = self._decode(self.ids)
        if raw.startswith(self._raw):
            if raw != self._raw:
                self._put(raw[len(self._raw):])
            self.text = self._sent
        else:  # cannot happen with byte-level or SentencePiece decoding; say so if it does
            log.warning("streamed text diverged from the answer's decode after %d characters",
                        len(os.path.commonprefix([raw, self._raw])))
            lead = self._lead if self._lead is not None else self._raw[:len(self._raw) - len(self._sent)]
            self.text = raw[len(lead):] if lead and raw.startswith(lead) else raw
        self.done = True
        self.on_finish(len(self.ids))  # before the end marker: readers see the count
        self.out.put(END)

    def fail(self, exc: BaseException) -> None:
        if not self.done:
            self.done = True
            self.out.put(exc)


class BatchDeltaStreamer(BaseStreamer):
    """Routes each row of a batched `generate` (one row for a single stream) to its own queue
    as text deltas (`TextDeltas`); what `generate` produces for a row after it ends (padding)
    is dropped.
    """

    def __init__(self, tokenizer, eos_ids: set[int], limits: list[int],
                 queues: list[queue.Queue] | None = None, on_finish=None, lead: str = ""):
        on_finish = on_finish or (lambda row, tokens: None)
        queues = queues or [None] * len(limits)
        self.rows = [TextDeltas(tokenizer, eos_ids, limit, q, lambda n, row=row: on_finish(row, n), lead)
                     for row, (limit, q) in enumerate(zip(limits, queues))]
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for row, token in zip(self.rows, value.reshape(len(self.rows), -1)[:, -1].tolist()):
            row.add(token)

    def end(self) -> None:
        for row in self.rows:
            row.finish()

    def fail(self, exc: BaseException) -> None:
        for row in self.rows:
            row.fail(exc)

    def tokens(self, row: int) -> int:
        return len(self.rows[row].ids)


def drain(q: queue.Queue):
    """Deltas from one row's queue until its end marker; re-raises a generation error."""
    while True:
        item = q.get()
        if item is END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
