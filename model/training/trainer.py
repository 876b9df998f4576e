"""P-tuning v2 (prefix on every layer) and LoRA training on training records.

One loop for both methods: right-padded batches (prefix keys carry no position, so left padding
would move every answer to positions it is never asked at), loss on what the chat template puts
after the prompt (answer and end of turn) only, linear learning-rate decay as THUDM's runs,
checkpoints that hold every trainable tensor (so `--prefix-projection` runs resume too) and
resume with the same data order, and an output directory that appears only when complete.

Why not `transformers.Trainer` (or TRL's `SFTTrainer`) with a right-padding, answer-only
collator: `bench/train.py` measures it against this loop on the tiny model, and there it matches
(P-tuning 8,022 vs 8,073 tokens/s, LoRA 4,882 vs 5,193; peak RSS 0.99x). What the tiny model
cannot show decides it: `Trainer` computes the loss from logits over every position, and on
GLM-4's 151,552-token vocabulary the prompt half of a batch alone is 151,552 x 4 bytes = 0.6 MB
of fp32 logits per token (2.5 GB at batch 8 x 512 prompt tokens), which `answer_loss` never
builds (`logits_to_keep` from the first answer position). Its PEFT checkpoints also keep only
what `save_pretrained` writes, the same gap that lost the projection MLP on resume here.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar, Literal

import torch

from secbot.model.errors import TrainingError
from secbot.model.runtime.adapters import METADATA_FILE
from secbot.model.runtime.loading import LoadedModel, load_base
from secbot.model.runtime.prompting import PromptBuilder
from secbot.model.training import preference as kto
from secbot.model.training.methods import METHODS, LoraMethodConfig, PTuningConfig
from secbot.model.training.preference import PreferenceConfig
from secbot.model.training.record_formats import Labelled, Record, records_hash

log = logging.getLogger(__name__)

LOSS_LOG = "loss.jsonl"
LOSS_PNG = "loss_curve.png"


def work_dir(out_dir: Path) -> Path:
    """Where a training into `out_dir` keeps its checkpoints and log until the adapter is whole."""
    return out_dir.with_name(out_dir.name + ".partial")


def read_loss_log(out_dir: str | Path) -> list[dict]:
    """The loss log of a training into `out_dir`: the finished adapter's, else the one being written."""
    out = Path(out_dir)
    for path in (out / LOSS_LOG, work_dir(out) / LOSS_LOG):
        try:
            return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except FileNotFoundError:
            continue
        except ValueError:  # a line being written: what is whole so far comes next time
            return []
    return []
STATE_FILE = "trainer_state.pt"


def read_loss_log_file(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class swapped:
    """Within the block, `params` hold `values` (the reference weights); outside, their own."""

    def __init__(self, params: dict, values: dict):
        self.params, self.values = params, values

    def __enter__(self):
        self.saved = {name: p.detach().clone() for name, p in self.params.items()}
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(self.values[name])

    def __exit__(self, *exc):
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(self.saved[name])
        return False
# Attention and MLP projections per architecture; PEFT's own table covers the rest.
@dataclass
class SharedKnobs:
    """What every method shares; the names follow THUDM's `ptuning` scripts where they have one."""

    _argument_group_name: ClassVar[str] = "training (every method)"

    method: Literal["ptuning", "lora"] = field(default="ptuning", metadata={
        "help": "ptuning (P-tuning v2 prefix) or lora; each has its own options below"})
    lr: float | None = field(default=None, metadata={
        "help": f"learning rate (default {PTuningConfig.default_lr:g} for ptuning as THUDM, "
                f"{LoraMethodConfig.default_lr:g} for lora)"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    max_source_length: int = field(default=256, metadata={
        "help": "prompt tokens kept (history dropped oldest first, then the query cut)"})
    max_target_length: int = field(default=256, metadata={"help": "answer tokens kept, EOS included"})
    batch_size: int = field(default=1, metadata={"help": "records per micro-batch"})
    grad_accum: int = field(default=16, metadata={"help": "micro-batches per optimizer step"})
    max_steps: int = field(default=3000, metadata={"help": "optimizer steps"})
    epochs: float | None = field(default=None, metadata={"help": "passes over the data; overrides --max-steps"})
    seed: int = field(default=42, metadata={"help": "data order and initialisation"})
    save_steps: int = field(default=500, metadata={"help": "checkpoint every N steps (for resuming)"})
    logging_steps: int = field(default=10, metadata={"help": "loss log and progress every N steps"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda"})
    dtype: str = field(default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU), bf16, fp32"})


@dataclass
class TrainConfig(SharedKnobs):
    """A training run's hyper-parameters: the shared knobs and each method's own config."""

    ptuning: PTuningConfig = field(default_factory=PTuningConfig)
    lora: LoraMethodConfig = field(default_factory=LoraMethodConfig)
    stage: PreferenceConfig = field(default_factory=PreferenceConfig)  # the preference stage

    @classmethod
    def of(cls, **knobs) -> "TrainConfig":
        """From flat knobs as flags, settings and job files name them (`pre_seq_len`, `lora_rank`,
        `batch_size`); names that are no knob are ignored."""
        def pick(kind):
            return {f.name: knobs[f.name] for f in fields(kind) if f.name in knobs}
        return cls(**pick(SharedKnobs), ptuning=PTuningConfig(**pick(PTuningConfig)),
                   lora=LoraMethodConfig(**pick(LoraMethodConfig)), stage=PreferenceConfig(**pick(PreferenceConfig)))

    @property
    def method_config(self) -> PTuningConfig | LoraMethodConfig:
        return getattr(self, self.method)

    def flat(self) -> dict:
        """The shared knobs, the chosen method's and the preference stage's, as one record of the run."""
        shared = {f.name: getattr(self, f.name) for f in fields(SharedKnobs)}
        return shared | asdict(self.method_config) | asdict(self.stage)

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else self.method_config.default_lr

    def total_steps(self, n_records: int) -> int:
        if self.epochs is None:
            return self.max_steps
        per_step = self.batch_size * self.grad_accum
        return max(1, math.ceil(self.epochs * n_records / per_step))

    def validate(self) -> None:
        if self.method not in METHODS:
            raise TrainingError(f"unknown method {self.method!r}: use {' or '.join(METHODS)}")
        for name in ("batch_size", "grad_accum", "max_steps", "save_steps",
                     "logging_steps", "max_source_length", "max_target_length"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1")
        if self.max_target_length < 2:
            raise TrainingError("max_target_length must leave room for one token and EOS")
        self.method_config.validate()
        self.stage.validate()


@dataclass
class TrainResult:
    adapter_dir: Path
    metadata: dict


def peft_config_for(config: TrainConfig, model) -> object:
    return config.method_config.peft_config(model)


def encode(record: Record, builder: PromptBuilder, config: TrainConfig) -> tuple[list[int], list[int]]:
    """(input ids, labels): the prompt exactly as inference builds it, loss on what the chat
    template puts after it (the answer and the end of its turn)."""
    prompt, dropped = builder.fit(record.prompt, record.history, config.max_source_length, truncate=True)
    answer = builder.answer_ids(record.prompt, list(record.history)[dropped:], record.response,
                                config.max_target_length)
    return prompt + answer, [-100] * len(prompt) + answer


def collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int, device) -> dict:
    """Right-padded batch; padding is masked out of attention and loss."""
    width = max(len(ids) for ids, _ in examples)
    ids = [x + [pad_id] * (width - len(x)) for x, _ in examples]
    labels = [y + [-100] * (width - len(y)) for _, y in examples]
    mask = [[1] * len(x) + [0] * (width - len(x)) for x, _ in examples]
    return {"input_ids": torch.tensor(ids, device=device),
            "labels": torch.tensor(labels, device=device),
            "attention_mask": torch.tensor(mask, device=device)}


def answer_loss(model, batch: dict) -> torch.Tensor:
    """Mean cross-entropy over answer tokens and the turn's end, as the model's own loss computes it.

    The vocabulary projection is applied only from the first position any row predicts an answer
    token: the prompt half of a batch never becomes logits (on GLM-4's 151k vocabulary those are
    the largest activations of the step), and no KV cache is built.
    """
    targets = batch["labels"][:, 1:]
    answered = (targets != -100).any(0).nonzero()
    first = int(answered[0]) if len(answered) else 0
    keep = torch.arange(first, targets.shape[1], device=targets.device)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   logits_to_keep=keep, use_cache=False).logits
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets[:, first:].flatten(),
                                             ignore_index=-100)


class DataOrder:
    """Micro-batch k of the run, reproducibly: epoch e is a seeded permutation of the records."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.per_epoch = math.ceil(n / batch_size)
        self._perm: tuple[int, list[int]] | None = None

    def batch(self, k: int) -> list[int]:
        epoch, b = divmod(k, self.per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=gen).tolist())
        return self._perm[1][b * self.batch_size:(b + 1) * self.batch_size]


def base_model_info(model_dir: Path, model) -> dict:
    cfg = model.config
    return {"path": str(model_dir), "model_type": cfg.model_type,
            "hidden_size": getattr(cfg, "hidden_size", None),
            "num_hidden_layers": getattr(cfg, "num_hidden_layers", None),
            "vocab_size": getattr(cfg, "vocab_size", None)}


def plot_loss(loss_log: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [json.loads(line) for line in loss_log.read_text().splitlines() if line.strip()]
    train = [(e["step"], e["loss"]) for e in entries if "loss" in e]
    val = [(e["step"], e["val_loss"]) for e in entries if "val_loss" in e]
    preference = [(e["step"], e["kto_loss"]) for e in entries if "kto_loss" in e]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss")
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    if preference:
        ax.plot(*zip(*preference), label="KTO loss (preference stage)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png)
    plt.close(fig)


class Trainer:
    """Trains one adapter from records; `run()` resumes from the work directory's checkpoint."""

    def __init__(self, model_dir: str | Path | LoadedModel, records: Sequence[Record], out_dir: str | Path,
                 config: TrainConfig, val_records: Sequence[Record] = (), *,
                 system_prompt: str | None = None, restart: bool = False, progress: bool = True,
                 on_log: Callable[[dict], None] | None = None, labelled: Sequence[Labelled] = ()):
        """`labelled`: completions for the preference stage (used with `config.stage.preference`)."""
        config.validate()
        self.config = config
        self.records = list(records)
        self.labelled = list(labelled) if config.stage.preference == "kto" else []
        self.val_records = list(val_records)
        self.out = Path(out_dir).expanduser()
        self.work = work_dir(self.out)
        self.progress = progress
        self.on_log = on_log
        if not self.records and not self.labelled:
            raise TrainingError("no training records" + (" and no labelled completions for the preference stage"
                                                          if config.stage.preference == "kto" else ""))
        if self.out.exists():
            raise TrainingError(f"{self.out} already exists; choose a new --out or remove it")
        if restart and self.work.exists():
            shutil.rmtree(self.work)
        torch.manual_seed(config.seed)
        self.loaded = model_dir if isinstance(model_dir, LoadedModel) else load_base(
            model_dir, device=config.device, dtype=config.dtype)
        self.builder = PromptBuilder(self.loaded.tokenizer, system_prompt)
        self.data_hash = records_hash(self.records)
        self.labels_hash = records_hash(Record(x.record.prompt, x.record.response + f"\x00{x.desirable:d}",
                                               x.record.history) for x in self.labelled)
        self.identity = {"method": config.method, "data_hash": self.data_hash, "labels_hash": self.labels_hash,
                         "base_model": str(self.loaded.path), "seed": config.seed,
                         "batch_size": config.batch_size, "grad_accum": config.grad_accum}

    # -- checkpoints -------------------------------------------------------------------------
    def _latest_checkpoint(self) -> Path | None:
        found = sorted(self.work.glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
        return found[-1] if found else None

    def _save_checkpoint(self, model, optimizer, scheduler, step: int, reference: dict | None = None) -> None:
        final = self.work / f"checkpoint-{step}"
        tmp = self.work / f"checkpoint-{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        # Every trainable tensor, not just what save_pretrained keeps: with --prefix-projection
        # that is the projected prefix only, and the MLP that produces it would be lost.
        trainable = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
        torch.save({"step": step, "identity": self.identity, "trainable": trainable,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
                    "reference": reference},
                   tmp / STATE_FILE)
        os.replace(tmp, final)
        for old in self.work.glob("checkpoint-*[0-9]"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)

    def _prepare(self):
        from peft import get_peft_model

        base = self.loaded.model
        checkpoint = self._latest_checkpoint() if self.work.exists() else None
        state = None
        if checkpoint is not None:
            state = torch.load(checkpoint / STATE_FILE, weights_only=False)
            if state["identity"] != self.identity:
                changed = [k for k in self.identity if state["identity"].get(k) != self.identity[k]]
                raise TrainingError(
                    f"{self.work} holds an interrupted run with a different {', '.join(changed)}; "
                    "pass --restart to discard it, or train into another --out")
        model = get_peft_model(base, peft_config_for(self.config, base))
        if state is not None:
            params = dict(model.named_parameters())
            missing = [n for n, p in params.items() if p.requires_grad and n not in state.get("trainable", {})]
            if missing:
                raise TrainingError(f"{checkpoint} lacks trainable tensors ({', '.join(missing[:3])}); "
                                    "pass --restart to discard it")
            with torch.no_grad():
                for name, value in state["trainable"].items():
                    params[name].copy_(value)
            log.info("resuming from %s", checkpoint)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.config.learning_rate(),
                                      weight_decay=self.config.weight_decay)
        total = self.config.total_steps(len(self.records)) if self.records else 0
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / max(total, 1)))
        step = 0
        if state is not None:
            if state.get("reference") is None:  # within the supervised stage
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            step = state["step"]
        return model, optimizer, scheduler, step, total, state

    # -- the loop ----------------------------------------------------------------------------
    def _autocast(self):
        device = self.loaded.device
        dtype = next(self.loaded.model.parameters()).dtype
        if device.type == "cuda" and dtype in (torch.bfloat16, torch.float16):
            return torch.autocast("cuda", dtype=dtype)
        return torch.autocast(device.type, enabled=False)

    def evaluate_loss(self, model, records: Sequence[Record]) -> float:
        """Mean answer-token loss, teacher-forced."""
        was_training = model.training
        model.eval()
        total, tokens = 0.0, 0
        encoded = [encode(r, self.builder, self.config) for r in records]
        with torch.no_grad(), self._autocast():
            for i in range(0, len(encoded), 8):
                batch = collate(encoded[i:i + 8], self.loaded.tokenizer.pad_token_id, self.loaded.device)
                n = int((batch["labels"][:, 1:] != -100).sum())
                total += float(answer_loss(model, batch)) * n
                tokens += n
        model.train(was_training)
        return total / max(tokens, 1)

    def _log(self, entry: dict) -> None:
        with open(self.work / LOSS_LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
        if self.on_log:
            self.on_log(entry)

    def run(self) -> TrainResult:
        from tqdm.auto import tqdm

        cfg = self.config
        self.work.mkdir(parents=True, exist_ok=True)
        encoded = [encode(r, self.builder, cfg) for r in self.records]
        model, optimizer, scheduler, step, total, state = self._prepare()
        preference_total = self.config.stage.steps(len(self.labelled)) if self.labelled else 0
        start_step = step
        loss_log = self.work / LOSS_LOG
        if loss_log.exists():  # drop entries written after the checkpoint we resume from
            kept = [line for line in loss_log.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= step]
            loss_log.write_text("".join(line + "\n" for line in kept))
        order = DataOrder(len(encoded), cfg.batch_size, cfg.seed)
        pad = self.loaded.tokenizer.pad_token_id
        started = time.perf_counter()
        window_loss, window_tokens, run_tokens = 0.0, 0, 0
        window_start = started
        bar = tqdm(total=total + preference_total, initial=step, desc=f"train {cfg.method}", unit="step",
                   disable=not self.progress, dynamic_ncols=True,
                   mininterval=0.5 if sys.stderr.isatty() else 30)
        try:
            while step < total:
                for micro in range(cfg.grad_accum):
                    idx = order.batch(step * cfg.grad_accum + micro)
                    batch = collate([encoded[i] for i in idx], pad, self.loaded.device)
                    with self._autocast():
                        loss = answer_loss(model, batch) / cfg.grad_accum
                    loss.backward()
                    window_loss += loss.detach()  # read back only when logging: no GPU sync
                    n_tokens = sum(len(encoded[i][0]) for i in idx)
                    window_tokens += n_tokens
                    run_tokens += n_tokens
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                bar.update(1)
                if step % cfg.logging_steps == 0 or step == total:
                    steps_in_window = (step - 1) % cfg.logging_steps + 1
                    now = time.perf_counter()
                    entry = {"step": step, "loss": round(float(window_loss) / steps_in_window, 6),
                             "lr": scheduler.get_last_lr()[0],
                             "tokens_per_s": round(window_tokens / max(now - window_start, 1e-9), 1),
                             "elapsed_s": round(now - started, 2)}
                    self._log(entry)
                    bar.set_postfix(loss=f"{entry['loss']:.4f}", tok_s=f"{entry['tokens_per_s']:.0f}")
                    window_loss, window_tokens, window_start = 0.0, 0, now
                if step % cfg.save_steps == 0 and step < total:
                    self._save_checkpoint(model, optimizer, scheduler, step)
            if self.labelled:
                stage_tokens, preference = self._preference_stage(model, step, total, preference_total, state, bar)
                run_tokens += stage_tokens
                step = total + preference_total
        finally:
            bar.close()
        elapsed = time.perf_counter() - started
        metrics = {"train_loss": self._last_loss()}
        if self.labelled:
            metrics["preference"] = preference
        if self.val_records:
            metrics["val_loss"] = round(self.evaluate_loss(model, self.val_records), 6)
            self._log({"step": step, "val_loss": metrics["val_loss"]})
        return self._finish(model, step, start_step, elapsed, run_tokens, metrics)

    # -- the preference stage (`model.training.preference`) ----------------------------------
    def _preference_stage(self, model, step: int, sft_total: int, total: int, state, bar) -> tuple[int, dict]:
        """KTO steps sft_total+1 .. sft_total+total on the labelled completions; returns (tokens
        seen, what the stage did). The reference is the trainable weights as the stage begins."""
        cfg, stage = self.config, self.config.stage
        encoded = [encode(x.record, self.builder, cfg) for x in self.labelled]
        desirable = torch.tensor([x.desirable for x in self.labelled], device=self.loaded.device)
        n_desirable = int(desirable.sum())
        weights = kto.class_weights(n_desirable, len(self.labelled) - n_desirable)
        params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        resumed = state is not None and state.get("reference") is not None
        reference = ({name: t.to(self.loaded.device) for name, t in state["reference"].items()} if resumed
                     else {name: p.detach().clone() for name, p in params.items()})
        optimizer = torch.optim.AdamW(list(params.values()), lr=cfg.learning_rate() * stage.preference_lr_scale,
                                      weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / total))
        if resumed:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        order = DataOrder(len(encoded), stage.preference_batch_size, cfg.seed + 1)
        pad = self.loaded.tokenizer.pad_token_id

        def batch_of(examples):
            return collate(examples, pad, self.loaded.device)

        done, tokens, window, window_start = max(0, step - sft_total), 0, [], time.perf_counter()
        # Dropout off (gradients still flow): the policy-to-reference ratios must not differ by a
        # dropout mask (trl's `disable_dropout`), and it costs a third of a LoRA step on CPU.
        model.eval()
        while done < total:
            idx = order.batch(done)
            matched, shifted = batch_of([encoded[i] for i in idx]), batch_of(kto.mismatched([encoded[i] for i in idx]))
            with torch.no_grad(), self._autocast():
                with swapped(params, reference):
                    ref, _ = kto.completion_logps(model, **matched)
                    ref_kl, _ = kto.completion_logps(model, **shifted)
                policy_kl, _ = kto.completion_logps(model, **shifted)
            with self._autocast():
                policy, _ = kto.completion_logps(model, **matched)
                loss, z0 = kto.kto_loss(policy, ref, policy_kl, ref_kl, desirable[idx], beta=stage.preference_beta,
                                        weights=weights)
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done += 1
            bar.update(1)
            n_tokens = sum(len(encoded[i][0]) for i in idx)
            tokens += n_tokens
            window.append((loss.detach(), z0, n_tokens))
            if done % cfg.logging_steps == 0 or done == total:
                now = time.perf_counter()
                entry = {"step": sft_total + done, "stage": "preference",
                         "kto_loss": round(float(sum(w[0] for w in window)) / len(window), 6),
                         "kl": round(float(sum(w[1] for w in window)) / len(window), 6),
                         "lr": scheduler.get_last_lr()[0],
                         "tokens_per_s": round(sum(w[2] for w in window) / max(now - window_start, 1e-9), 1)}
                self._log(entry)
                bar.set_postfix(kto_loss=f"{entry['kto_loss']:.4f}")
                window, window_start = [], now
            if (sft_total + done) % cfg.save_steps == 0 and done < total:
                self._save_checkpoint(model, optimizer, scheduler, sft_total + done,
                                      reference={k: v.cpu() for k, v in reference.items()})
        model.train()
        entries = [e for e in read_loss_log_file(self.work / LOSS_LOG) if "kto_loss" in e]
        return tokens, {"labels": len(encoded), "desirable": n_desirable, "undesirable": len(encoded) - n_desirable,
                        "weights": [round(w, 4) for w in weights], "steps": total,
                        "beta": stage.preference_beta, "final_kto_loss": entries[-1]["kto_loss"] if entries else None}

    def _last_loss(self) -> float | None:
        losses = [e["loss"] for e in read_loss_log_file(self.work / LOSS_LOG) if "loss" in e]
        return losses[-1] if losses else None

    def _finish(self, model, step, start_step, elapsed, tokens, metrics) -> TrainResult:
        final = self.work / "final"
        shutil.rmtree(final, ignore_errors=True)
        model.save_pretrained(final)
        shutil.copy(self.work / LOSS_LOG, final / LOSS_LOG)
        plot_loss(final / LOSS_LOG, final / LOSS_PNG)
        metadata = {
            "format": "secbot-adapter/1",
            "method": self.config.method,
            "base_model": base_model_info(self.loaded.path, self.loaded.model),
            "system_prompt": self.builder.system_prompt,
            "hyperparameters": self.config.flat() | {"lr": self.config.learning_rate()},
            "data": {"records": len(self.records), "sha256": self.data_hash,
                     "val_records": len(self.val_records), "labelled": len(self.labelled),
                     "labelled_sha256": self.labels_hash},
            "steps": step, "resumed_from_step": start_step or None,
            "train_seconds": round(elapsed, 2),
            "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1),
            "metrics": metrics,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (final / METADATA_FILE).write_text(json.dumps(metadata, indent=2, ensure_ascii=False))
        os.replace(final, self.out)  # the adapter appears whole or not at all
        shutil.rmtree(self.work, ignore_errors=True)
        return TrainResult(self.out, metadata)


def train(model_dir: str | Path, records: Sequence[Record], out_dir: str | Path,
          config: TrainConfig | None = None, val_records: Sequence[Record] = (), **kwargs) -> TrainResult:
    """Train an adapter and write it (weights, metadata, loss log and curve) to `out_dir`."""
    return Trainer(model_dir, records, out_dir, config or TrainConfig(), val_records, **kwargs).run()
