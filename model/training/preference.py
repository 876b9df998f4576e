"""The preference stage: KTO (Ethayarajh et al. 2024) on labelled completions, for every method.

Analysts' 👍 and 👎 are unpaired judgements: a completion is desirable or it is not. KTO learns
from exactly that. For each completion y of prompt x, with the policy π (the adapter being trained)
and the reference π_ref (the same adapter frozen as the stage begins):

    r(x, y)  = log π(y|x) − log π_ref(y|x)              (summed over the completion's tokens)
    z₀       = max(0, mean over the batch of r(x_i, y_{i−1}))   (mismatched pairs; no gradient)
    loss(y)  = λ_D · (1 − σ(β · (r − z₀)))   desirable
               λ_U · (1 − σ(β · (z₀ − r)))   undesirable

averaged over the batch. The mismatched pairs rotate each batch's completions by one, as trl's
`KTOTrainer` builds its KL dataset; `tests/test_preference.py` proves the loss and its gradients
equal trl's on a fixed batch. The class weights keep λ_D·n_D : λ_U·n_U at 1:1, inside the
1:1–4:3 the paper (eq. 8) and trl recommend.

The reference log-probabilities are computed once, before the first preference step, with the
adapter as the supervised stage left it (a frozen copy of the prefix or of the LoRA weights, at
no memory cost); they travel in the checkpoint, so a resumed stage keeps its reference.

`margin` is what the promotion gate compares: the mean per-token log-likelihood of desirable
completions minus that of undesirable ones, on labels that never trained.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from secbot.model.errors import TrainingError

MAX_CLASS_RATIO = 4 / 3


@dataclass
class PreferenceConfig:
    """The preference stage's knobs (`--preference kto` turns it on)."""

    _argument_group_name: ClassVar[str] = "preference stage (KTO on labelled completions)"

    preference: Literal["kto", "off"] = field(default="off", metadata={
        "help": "kto: after the supervised steps, learn from labelled completions (👍/👎); off: skip"})
    preference_beta: float = field(default=0.1, metadata={
        "help": "KTO's beta: how far the policy may move from the reference (the paper's and trl's 0.1)"})
    preference_lr_scale: float = field(default=1.0, metadata={
        "help": "the stage's learning rate as a share of the supervised one (1: measured on the tiny model, "
                "0.1 barely moved it)"})
    preference_epochs: float = field(default=2.0, metadata={"help": "passes over the labelled completions"})
    preference_batch_size: int = field(default=8, metadata={
        "help": "completions per step (at least 2: the KL estimate pairs each prompt with another's completion)"})

    def validate(self) -> None:
        if self.preference not in ("kto", "off"):
            raise TrainingError(f"unknown preference method {self.preference!r}: use kto or off")
        if self.preference_batch_size < 2:
            raise TrainingError("preference_batch_size must be at least 2 (KTO's KL estimate needs another "
                                "completion in the batch)")
        if self.preference_beta <= 0 or self.preference_lr_scale <= 0 or self.preference_epochs <= 0:
            raise TrainingError("preference_beta, preference_lr_scale and preference_epochs must be positive")

    def steps(self, n_examples: int) -> int:
        return max(1, math.ceil(self.preference_epochs * n_examples / self.preference_batch_size))


def class_weights(n_desirable: int, n_undesirable: int) -> tuple[float, float]:
    """(λ_D, λ_U) with λ_D·n_D = λ_U·n_U, the larger class weighted 1 (no class left: 1, 1)."""
    if not n_desirable or not n_undesirable:
        return 1.0, 1.0
    if n_desirable >= n_undesirable:
        return n_undesirable / n_desirable, 1.0
    return 1.0, n_desirable / n_undesirable


def kto_loss(policy: torch.Tensor, reference: torch.Tensor, policy_kl: torch.Tensor, reference_kl: torch.Tensor,
             desirable: torch.Tensor, *, beta: float, weights: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, z₀) of one batch from summed completion log-probabilities (see the module)."""
    z0 = (policy_kl - reference_kl).mean().detach().clamp(min=0)
    ratio = policy - reference
    chosen = 1 - torch.sigmoid(beta * (ratio[desirable] - z0))
    rejected = 1 - torch.sigmoid(beta * (z0 - ratio[~desirable]))
    losses = torch.cat((weights[0] * chosen, weights[1] * rejected))
    return losses.nanmean(), z0


def completion_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum, count) of the log-probabilities of each row's completion tokens (`labels` != -100),
    the vocabulary projection applied only from the first completion position."""
    targets = labels[:, 1:]
    answered = (targets != -100).any(0).nonzero()
    first = int(answered[0]) if len(answered) else 0
    keep = torch.arange(first, targets.shape[1], device=targets.device)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep,
                   use_cache=False).logits.float()
    targets = targets[:, first:]
    mask = targets != -100
    picked = torch.gather(F.log_softmax(logits, -1), 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1), mask.sum(-1)


Encoded = tuple[list[int], list[int]]  # (input ids, labels) as `trainer.encode` makes them


def mismatched(batch: Sequence[Encoded]) -> list[Encoded]:
    """Each prompt with the previous example's completion (the first with the last)."""
    prompts = [(ids[:_prompt_len(labels)]) for ids, labels in batch]
    answers = [(ids[_prompt_len(labels):]) for ids, labels in batch]
    rotated = answers[-1:] + answers[:-1]
    return [(p + a, [-100] * len(p) + a) for p, a in zip(prompts, rotated)]


def _prompt_len(labels: list[int]) -> int:
    return next((i for i, y in enumerate(labels) if y != -100), len(labels))


@dataclass(frozen=True)
class Margin:
    desirable: float | None  # mean per-token log-likelihood of desirable completions
    undesirable: float | None
    samples: int

    @property
    def value(self) -> float | None:
        if self.desirable is None or self.undesirable is None:
            return None
        return self.desirable - self.undesirable

    def to_json(self) -> dict:
        rounded = {k: (round(v, 4) if v is not None else None) for k, v in
                   (("desirable", self.desirable), ("undesirable", self.undesirable), ("margin", self.value))}
        return rounded | {"samples": self.samples}


def margin(model, encoded: Sequence[Encoded], desirable: Sequence[bool], collate, batch_size: int = 8) -> Margin:
    """Mean per-token log-likelihood of desirable minus undesirable completions (no gradient)."""
    sums = {True: [], False: []}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            batch = collate(encoded[i:i + batch_size])
            total, count = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
            for label, t, n in zip(desirable[i:i + batch_size], total.tolist(), count.tolist()):
                sums[bool(label)].append(t / max(n, 1))
    model.train(was_training)

    def mean(values):
        return sum(values) / len(values) if values else None

    return Margin(mean(sums[True]), mean(sums[False]), len(encoded))
