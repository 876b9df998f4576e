"""The inference engine: one base model, its adapters, prompt building and generation."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from secbot.model.errors import ModelError
from secbot.model.runtime.adapters import AdapterSet
from secbot.model.runtime.generation import BatchDeltaStreamer, Sampling, StopWhenCancelled, drain
from secbot.model.runtime.loading import LoadedModel, load_base
from secbot.model.runtime.prompting import History, PromptBuilder
from secbot.model.runtime.step_decoder import Decoder, Row

log = logging.getLogger(__name__)


class Engine:
    """Answers (query, history) pairs; generation and adapter switches are serialised.

    A switch waits for the generation in flight, which therefore finishes on the adapter it
    started with.
    """

    def __init__(self, loaded: LoadedModel, prompts: PromptBuilder, sampling: Sampling | None = None,
                 base_adapter: str | Path | None = None):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.prompts = prompts
        self.sampling = sampling or Sampling()
        self.adapters = AdapterSet(loaded.model)
        self._lock = threading.RLock()
        self._switches = 0  # adapter switches waiting for the lock
        self._switch_done = threading.Condition()
        self.base_adapter = Path(base_adapter).expanduser() if base_adapter else None
        self.version_id: int | None = None  # the model version served (None: the base)
        self.load_failure: str | None = None  # the last version that failed to load, and why

    @classmethod
    def load(cls, model_dir: str | Path, adapter: str | Path | None = None, *, device: str = "auto",
             dtype: str = "auto", system_prompt: str | None = None,
             sampling: Sampling | None = None) -> "Engine":
        loaded = load_base(model_dir, device=device, dtype=dtype)
        engine = cls(loaded, PromptBuilder(loaded.tokenizer, system_prompt), sampling, adapter)
        context = engine.context_length()
        if engine.sampling.max_new_tokens >= context:
            raise ModelError(f"SECBOT_MAX_NEW_TOKENS={engine.sampling.max_new_tokens} leaves no room for the "
                             f"question: {model_dir} has a context of {context} tokens. Set it below that "
                             f"(e.g. {max(16, context // 4)}).")
        engine.switch_to_version(None, None)
        return engine

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    @property
    def adapter(self) -> Path | None:
        return self.adapters.active

    def switch_to_version(self, version_id: int | None, adapter: str | Path | None) -> None:
        """Serve model version `version_id` with its adapter; a version without one, and no version
        at all, serve the base: the bare model, or `base_adapter` (SECBOT_ADAPTER) when set.
        A version that fails to load is remembered in `load_failure` (shown by `/ready`)."""
        try:
            self.use_adapter(adapter or self.base_adapter)
        except Exception as exc:
            self.load_failure = f"version {version_id} ({adapter}) failed to load: {exc}"
            raise
        if self.load_failure and self.load_failure.startswith(f"version {version_id} "):
            self.load_failure = None
        self.version_id = version_id

    def use_adapter(self, path: str | Path | None) -> None:
        """Serve with the adapter at `path` (loaded once, then cached), or the bare base model.

        Waits for the generation in flight; a continuous batcher stops admitting new requests
        meanwhile (`switch_pending`), so the wait ends once its running batch drains.
        """
        with self._switch_done:
            self._switches += 1
        try:
            with self._lock:
                self.adapters.activate(path)
        finally:
            with self._switch_done:
                self._switches -= 1
                self._switch_done.notify_all()

    def switch_pending(self) -> bool:
        return self._switches > 0

    def wait_for_switches(self) -> None:
        with self._switch_done:
            self._switch_done.wait_for(lambda: self._switches == 0)

    def context_length(self) -> int:
        config = self.loaded.model.config
        limits = [getattr(config, name, None) for name in ("max_position_embeddings", "seq_length")]
        limits.append(getattr(self.tokenizer, "model_max_length", None))
        return min(v for v in limits if isinstance(v, int) and 0 < v < 10**7)

    def prompt_ids(self, query: str, history: History, sampling: Sampling,
                   system_prompt: str | None = None) -> list[int]:
        """The prompt for (query, history), oldest turns dropped to leave room for the answer;
        `ContextOverflow` when the question alone does not fit."""
        budget = self.context_length() - sampling.max_new_tokens
        ids, dropped = self.prompts.with_system(system_prompt).fit(query, history, max(budget, 1))
        if dropped:
            log.info("dropped %d oldest turn(s) to fit the context window", dropped)
        return ids

    def _generate_ids(self, batch: list[list[int]], sampling: Sampling, **extra) -> list[list[int]]:
        pad = self.tokenizer.pad_token_id
        width = max(map(len, batch))
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch],
                                 device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch],
                            device=self.device)
        with self._lock, torch.inference_mode():
            out = self.adapters.model().generate(
                input_ids=input_ids, attention_mask=mask, pad_token_id=pad,
                **sampling.generate_kwargs(), **extra)
        return out[:, width:].tolist()

    def generate(self, query: str, history: History = (), sampling: Sampling | None = None) -> str:
        """The whole answer at once."""
        return self.generate_batch([(query, history)], sampling)[0]

    def generate_batch(self, requests: Sequence[tuple[str, History]],
                       sampling: Sampling | None = None) -> list[str]:
        """Answers for several (query, history) pairs in one batch."""
        sampling = sampling or self.sampling
        batch = [self.prompt_ids(q, h, sampling) for q, h in requests]
        streamer = self.generate_streams(batch, [sampling.max_new_tokens] * len(batch), sampling)
        return [row.text for row in streamer.rows]

    def eos_ids(self) -> set[int]:
        """Tokens that end an answer: the generation config's, EOS, and the template's end of turn."""
        eos = self.loaded.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        return ids | {self.tokenizer.eos_token_id, self.prompts.layout.end_of_turn}

    def generate_streams(self, prompts: Sequence[list[int]], limits: Sequence[int],
                         sampling: Sampling, queues=None, on_finish=None,
                         stop: threading.Event | None = None) -> BatchDeltaStreamer:
        """Generate for prompt ids as one batch, each row streaming into its own queue.

        Blocks until the batch is done (or `stop` is set); read the queues (`drain`) from other
        threads meanwhile. Several rows run under `Decoder`, which drops each row as it ends; one
        row runs transformers' `generate`. The template's lead ("\n" on GLM-4) is left out of the text.
        """
        streamer = BatchDeltaStreamer(self.tokenizer, self.eos_ids(), list(limits), queues, on_finish,
                                      self.prompts.lead)
        if len(prompts) > 1:
            pending = [[Row(list(p), sampling, text) for p, text in zip(prompts, streamer.rows)]]
            with self._lock:
                Decoder(self).run(lambda active: pending.pop() if pending else [], stop=stop)
            return streamer
        batch_sampling = Sampling(max_new_tokens=max(limits), do_sample=sampling.do_sample,
                                  top_p=sampling.top_p, temperature=sampling.temperature)
        extra = {"stopping_criteria": [StopWhenCancelled(stop)]} if stop is not None else {}
        try:
            self._generate_ids(list(prompts), batch_sampling, streamer=streamer, **extra)
        except BaseException as exc:
            streamer.fail(exc)
            raise
        streamer.end()
        return streamer

    def stream(self, query: str, history: History = (), sampling: Sampling | None = None,
               system_prompt: str | None = None) -> Iterator[str]:
        """Text deltas as they are generated; closing the iterator stops generation."""
        sampling = sampling or self.sampling
        ids = self.prompt_ids(query, history, sampling, system_prompt)
        out: queue.Queue = queue.Queue()
        stop = threading.Event()

        def run() -> None:
            try:
                self.generate_streams([ids], [sampling.max_new_tokens], sampling, queues=[out], stop=stop)
            except BaseException:  # already handed to the consumer through the queue
                pass

        worker = threading.Thread(target=run, name="secbot-generate", daemon=True)
        worker.start()
        try:
            yield from drain(out)
        finally:
            stop.set()
            # Never leave generation running behind the caller: a thread still inside torch
            # when the interpreter exits aborts the process.
            worker.join()
