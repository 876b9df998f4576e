"""The training methods, each its own config and the PEFT config it applies (peft's own pattern:
`PrefixTuningConfig`, `LoraConfig`). Adding a method adds a class here and touches no other.

Their knobs keep THUDM's `ptuning` names where it has one (`pre_seq_len`, `prefix_projection`).
`_argument_group_name` is how `transformers.HfArgumentParser` titles each method's flags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from secbot.model.errors import TrainingError

# LoRA targets by architecture where PEFT has no default (GLM's fused gate/up projection).
LORA_TARGETS = {
    "glm": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"],
    "glm4": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"],
    "chatglm": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


@dataclass
class PTuningConfig:
    """P-tuning v2: trained key/value prefixes in every layer; only the prefix is saved."""

    _argument_group_name: ClassVar[str] = "P-tuning v2 (--method ptuning)"
    name: ClassVar[str] = "ptuning"
    default_lr: ClassVar[float] = 2e-2  # THUDM's LR for P-tuning v2

    pre_seq_len: int = field(default=128, metadata={"help": "virtual tokens per layer (THUDM's PRE_SEQ_LEN)"})
    prefix_projection: bool = field(default=False, metadata={"help": "reparameterise the prefix through an MLP"})
    prefix_hidden_size: int = field(default=512, metadata={"help": "width of that MLP"})

    def validate(self) -> None:
        if self.pre_seq_len < 1 or self.prefix_hidden_size < 1:
            raise TrainingError("pre_seq_len and prefix_hidden_size must be at least 1")

    def peft_config(self, model):
        from peft import PrefixTuningConfig, TaskType

        return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=self.pre_seq_len,
                                  prefix_projection=self.prefix_projection, encoder_hidden_size=self.prefix_hidden_size)


@dataclass
class LoraMethodConfig:
    """LoRA: low-rank updates of the attention and MLP projections."""

    _argument_group_name: ClassVar[str] = "LoRA (--method lora)"
    name: ClassVar[str] = "lora"
    default_lr: ClassVar[float] = 2e-4

    lora_rank: int = field(default=8, metadata={"help": "rank of each update"})
    lora_alpha: int = field(default=16, metadata={"help": "scaling alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the update's input"})
    lora_target: str | None = field(default=None, metadata={
        "help": "comma-separated module names (default: per architecture)"})

    def validate(self) -> None:
        if self.lora_rank < 1:
            raise TrainingError("lora_rank must be at least 1")

    def peft_config(self, model):
        from peft import LoraConfig, TaskType
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS

        model_type = model.config.model_type
        targets = (self.lora_target.split(",") if self.lora_target
                   else LORA_TARGETS.get(model_type) or PEFT_TARGETS.get(model_type))
        if not targets:
            raise TrainingError(f"no known LoRA target modules for {model_type}; pass --lora-target")
        return LoraConfig(task_type=TaskType.CAUSAL_LM, r=self.lora_rank, lora_alpha=self.lora_alpha,
                          lora_dropout=self.lora_dropout, target_modules=targets)


METHODS: dict[str, type] = {cls.name: cls for cls in (PTuningConfig, LoraMethodConfig)}
