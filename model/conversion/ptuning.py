"""`secbot convert-ptuning CHECKPOINT OUT --model DST`: THUDM's P-tuning v2 checkpoint → a PEFT
prefix adapter for the converted model.

THUDM's `ptuning/main.py` saves only `transformer.prefix_encoder.*` and `pre_seq_len` in
config.json. Its prefix is laid out `(P, 2·layers, groups, head_dim)`, keys and values of a layer
side by side: PEFT's prefix layout with `num_key_value_heads` groups. A `--prefix_projection` MLP is
applied once here, in fp32, and its output kept.

Positions differ: THUDM's real tokens start at position 0 behind the prefix, PEFT's (and the step
decoder's) at P. Prefix keys carry no rotation, so a query at position m scores a prefix key k as
R(m)q·k under THUDM and R(m+P)q·k under PEFT. Rotations compose and are orthogonal, so
R(m+P)q · R(P)k = R(m)q·k: the keys are stored rotated as if they sat at position P (with the
model's own rotary function), and every path that runs PEFT's convention (generate, the step decoder, the model
server, evaluation, training) then computes exactly THUDM's scores; between real tokens only
relative positions count, which the offset does not change.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch

from secbot.model.conversion.checkpoint import read_config, read_tensors, weight_files
from secbot.model.conversion.output import refuse_existing, written_whole
from secbot.model.errors import ConversionRefused
from secbot.model.runtime.adapters import METADATA_FILE

PREFIX = "prefix_encoder."


def _prefix_tensors(checkpoint: Path) -> dict[str, torch.Tensor]:
    found = {}
    for path in weight_files(checkpoint):
        for name, tensor in read_tensors(path):
            if PREFIX in name:
                found[name.split(PREFIX, 1)[1]] = tensor.float()
    if "embedding.weight" not in found:
        raise ConversionRefused(f"{checkpoint}: no transformer.prefix_encoder.embedding.weight; not a THUDM "
                                "P-tuning checkpoint (a whole model converts with `secbot convert`).")
    return found


def thudm_prefix(tensors: dict[str, torch.Tensor], projection: bool, checkpoint: Path) -> torch.Tensor:
    """The prefix THUDM's model computes, `(P, 2·layers·groups·head_dim)`, in fp32."""
    embedding = tensors["embedding.weight"]
    if not projection:
        return embedding
    names = ("trans.0.weight", "trans.0.bias", "trans.2.weight", "trans.2.bias")
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ConversionRefused(f"{checkpoint}: prefix_projection is true but the projection's "
                                f"{', '.join('prefix_encoder.' + n for n in missing)} is missing; copy the checkpoint again.")
    w0, b0, w2, b2 = (tensors[n] for n in names)
    with torch.no_grad():
        return torch.tanh(embedding @ w0.T + b0) @ w2.T + b2


def to_peft_positions(prefix: torch.Tensor, glm_config) -> torch.Tensor:
    """The prefix with every layer's keys rotated to position P (see the module's docstring)."""
    from transformers.models.glm.modeling_glm import GlmRotaryEmbedding, apply_rotary_pos_emb

    layers, groups, head_dim = glm_config.num_hidden_layers, glm_config.num_key_value_heads, glm_config.head_dim
    n = prefix.shape[0]
    kv = prefix.reshape(n, 2 * layers, groups, head_dim).clone()
    keys = kv[:, 0::2].permute(1, 2, 0, 3).reshape(1, layers * groups, n, head_dim)  # (1, "heads", P, D)
    rotary = GlmRotaryEmbedding(glm_config)
    cos, sin = rotary(keys, torch.full((1, n), n, dtype=torch.long))
    rotated, _ = apply_rotary_pos_emb(keys, keys, cos.float(), sin.float())
    kv[:, 0::2] = rotated.reshape(layers, groups, n, head_dim).permute(2, 0, 1, 3)
    return kv.reshape(n, -1)


def convert_ptuning(checkpoint: str | Path, out: str | Path, model_dir: str | Path) -> Path:
    """Write the PEFT prefix adapter for THUDM P-tuning `checkpoint`, to run on converted `model_dir`."""
    from peft import PrefixTuningConfig, TaskType
    from safetensors.torch import save_file
    from transformers import AutoConfig

    checkpoint, out, model_dir = (Path(p).expanduser() for p in (checkpoint, out, model_dir))
    refuse_existing(out)
    if not checkpoint.is_dir():
        raise ConversionRefused(f"{checkpoint}: no such directory; point at a THUDM P-tuning checkpoint "
                                "(output/…/checkpoint-N).")
    config = read_config(checkpoint)
    n = config.get("pre_seq_len")
    if not isinstance(n, int) or n < 1:
        raise ConversionRefused(f"{checkpoint}/config.json has no pre_seq_len; not a P-tuning checkpoint.")
    if not (model_dir / "config.json").is_file():
        raise ConversionRefused(f"--model {model_dir}: no config.json; point at the directory `secbot convert` wrote.")
    glm = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    if glm.model_type != "glm":
        raise ConversionRefused(f"--model {model_dir} is a {glm.model_type!r} model; THUDM P-tuning prefixes run on "
                                "the ChatGLM2/3 model `secbot convert` wrote from the same checkpoint.")
    prefix = thudm_prefix(_prefix_tensors(checkpoint), bool(config.get("prefix_projection")), checkpoint)
    width = 2 * glm.num_hidden_layers * glm.num_key_value_heads * glm.head_dim
    if tuple(prefix.shape) != (n, width):
        raise ConversionRefused(
            f"{checkpoint}: its prefix is {tuple(prefix.shape)}, but {model_dir} needs ({n}, {width}) "
            f"({glm.num_hidden_layers} layers × 2 × {glm.num_key_value_heads} groups × {glm.head_dim}); it was "
            "trained on another model.")
    prefix = to_peft_positions(prefix, glm)
    token_dim = glm.num_key_value_heads * glm.head_dim
    peft_config = PrefixTuningConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=n, token_dim=token_dim, num_layers=glm.num_hidden_layers,
        num_attention_heads=glm.num_key_value_heads, encoder_hidden_size=token_dim, num_transformer_submodules=1,
        prefix_projection=False, inference_mode=True, base_model_name_or_path=str(model_dir.resolve()))
    with written_whole(out) as partial:
        peft_config.save_pretrained(str(partial))
        save_file({"prompt_embeddings": prefix.contiguous()}, str(partial / "adapter_model.safetensors"),
                  metadata={"format": "pt"})
        (partial / METADATA_FILE).write_text(json.dumps({
            "format": "secbot-adapter/1", "method": "ptuning",
            "base_model": {"path": str(model_dir.resolve()), "model_type": glm.model_type,
                           "hidden_size": glm.hidden_size, "num_hidden_layers": glm.num_hidden_layers,
                           "vocab_size": glm.vocab_size},
            "hyperparameters": {"pre_seq_len": n, "prefix_projection": bool(config.get("prefix_projection"))},
            "converted_from": {"source": str(checkpoint.resolve()), "format": "THUDM ptuning",
                               "positions": f"THUDM's (real tokens from 0), kept by keys rotated to position {n}"},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}, indent=2))
    return out
