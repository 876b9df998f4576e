"""Reading a THUDM ChatGLM2/3 checkpoint without running it: its config checked flag by flag, its
weight files listed (every shard present), its tensors read one file at a time, and each THUDM
tensor name mapped onto transformers' `GlmForCausalLM` (the same network, as vLLM's and
llama.cpp's converters serve both with one class):

- `query_key_value` is all query heads, then the `multi_query_group_num` key heads, then the value
  heads: split into `q_proj`, `k_proj`, `v_proj` (bias on those three only); `dense` is `o_proj`;
- `dense_h_to_4h` is `[gate | up]`, GLM's `gate_up_proj`; `dense_4h_to_h` is `down_proj`;
- rotary on the first half of each head's dims, adjacent pairs: GLM's `partial_rotary_factor` 0.5;
  `rope_theta` = 10000 x `rope_ratio`, or positions divided by it (linear scaling), whichever the
  checkpoint's own `modeling_chatglm.py` says, read as text;
- untied `output_layer` is `lm_head`; RMSNorm everywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from secbot.model.errors import ConversionRefused

# The flags of THUDM's ChatGLMConfig that change the network, with the only value the native class
# computes. A checkpoint whose flag differs is refused by the flag's name.
FLAGS = {
    "rmsnorm": True,
    "apply_residual_connection_post_layernorm": False,
    "post_layer_norm": True,
    "add_bias_linear": False,
    "multi_query_attention": True,
    "original_rope": True,
    "fp32_residual_connection": False,
    "quantization_bit": 0,
    "pre_seq_len": None,
}
# What THUDM's ChatGLMConfig assumes for a flag its config.json leaves out.
THUDM_DEFAULTS = {"rmsnorm": True, "apply_residual_connection_post_layernorm": False, "post_layer_norm": True,
                  "add_bias_linear": False, "multi_query_attention": False, "original_rope": True,
                  "fp32_residual_connection": False, "quantization_bit": 0, "pre_seq_len": None}
SIZES = ("num_layers", "hidden_size", "ffn_hidden_size", "kv_channels", "num_attention_heads",
         "multi_query_group_num", "padded_vocab_size", "seq_length")
V1_HINT = ("ChatGLM-6B (v1) has 2-D positions and a bidirectional prefix, which no native transformers "
           "class computes, so secbot cannot serve it. Its THUDM prompt/response/history records import as "
           "they are (`secbot import FILE`): train them on a converted ChatGLM2/3-6B or on GLM-4 "
           "(glm-4-9b-chat-hf).")
WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json",
                "pytorch_model.bin")


@dataclass(frozen=True)
class Network:
    """The checked sizes of a ChatGLM2/3 checkpoint, and the native config they become."""

    layers: int
    heads: int
    groups: int
    head_dim: int
    vocab: int
    qkv_bias: bool
    glm_config: dict  # GlmConfig keyword arguments


def read_config(src: Path) -> dict:
    path = src / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConversionRefused(f"{src}: no config.json; point at the checkpoint directory itself.") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConversionRefused(f"{path} cannot be read ({type(exc).__name__}); copy it again.") from None
    if not isinstance(config, dict):
        raise ConversionRefused(f"{path} is not a JSON object; copy it again.")
    return config


def _rope(src: Path, config: dict) -> dict:
    """GLM's rope settings for the checkpoint's `rope_ratio`, read from its modeling file as text."""
    ratio = config.get("rope_ratio", 1)
    if not isinstance(ratio, (int, float)) or ratio <= 0:
        raise ConversionRefused(f"{src}/config.json: rope_ratio {ratio!r} is not a positive number.")
    if ratio == 1:
        return {"rope_theta": 10000.0}
    code = (src / "modeling_chatglm.py").read_text(encoding="utf-8", errors="replace") \
        if (src / "modeling_chatglm.py").is_file() else ""
    scales_base = re.search(r"base\s*=\s*base\s*\*\s*self\.rope_ratio", code) is not None
    scales_positions = re.search(r"/\s*self\.rope_ratio", code) is not None
    if scales_base and not scales_positions:
        return {"rope_theta": 10000.0 * ratio}
    if scales_positions and not scales_base:
        return {"rope_theta": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": float(ratio)}}
    raise ConversionRefused(
        f"{src}: rope_ratio is {ratio}, and its modeling_chatglm.py (read as text) does not say unambiguously "
        "whether the ratio scales the rotary base or the positions; secbot will not guess. Put the checkpoint's "
        "original modeling_chatglm.py beside it.")


def check_network(src: Path, config: dict) -> Network:
    """The native GLM config for a ChatGLM2/3 checkpoint, or `ConversionRefused` naming what differs."""
    if "position_encoding_2d" in config or "inner_hidden_size" in config or (src / "ice_text.model").is_file():
        raise ConversionRefused(f"{src} is a ChatGLM-6B (v1) checkpoint. {V1_HINT}")
    model_type = config.get("model_type")
    if model_type != "chatglm":
        hint = (" It loads as it is: point SECBOT_MODEL at it." if model_type in ("glm", "glm4") else "")
        raise ConversionRefused(
            f"{src}: model_type {model_type!r} is not a ChatGLM2/3 checkpoint; `secbot convert` reads THUDM's "
            f"ChatGLM2-6B and ChatGLM3-6B layouts only.{hint}")
    for flag, wanted in FLAGS.items():
        got = config.get(flag, THUDM_DEFAULTS[flag])
        if got != wanted and not (flag == "quantization_bit" and not got):
            raise ConversionRefused(
                f"{src}/config.json: {flag} is {got!r}, but ChatGLM2/3-6B have {wanted!r} and the native GLM "
                "class computes only that" + ("; convert the unquantized (fp16/bf16) weights instead."
                                              if flag == "quantization_bit" else
                                              "; a P-tuning checkpoint converts with `secbot convert-ptuning`."
                                              if flag == "pre_seq_len" else "."))
    missing = [name for name in SIZES if not isinstance(config.get(name), int) or config[name] < 1]
    if missing or not isinstance(config.get("layernorm_epsilon"), (int, float)):
        raise ConversionRefused(f"{src}/config.json lacks {', '.join(missing or ['layernorm_epsilon'])}; "
                                "not a complete ChatGLM2/3 config.")
    heads, groups = config["num_attention_heads"], config["multi_query_group_num"]
    if heads % groups:
        raise ConversionRefused(f"{src}/config.json: {heads} attention heads do not divide into "
                                f"{groups} multi_query groups.")
    qkv_bias = bool(config.get("add_qkv_bias", False))
    glm = dict(vocab_size=config["padded_vocab_size"], hidden_size=config["hidden_size"],
               intermediate_size=config["ffn_hidden_size"], num_hidden_layers=config["num_layers"],
               num_attention_heads=heads, num_key_value_heads=groups, head_dim=config["kv_channels"],
               partial_rotary_factor=0.5, rms_norm_eps=float(config["layernorm_epsilon"]),
               max_position_embeddings=config["seq_length"], attention_bias=qkv_bias,
               tie_word_embeddings=False, hidden_act="silu", **_rope(src, config))
    return Network(config["num_layers"], heads, groups, config["kv_channels"], config["padded_vocab_size"],
                   qkv_bias, glm)


def weight_files(src: Path) -> list[Path]:
    """The checkpoint's weight files, safetensors first; a format with a shard missing gives way to a
    complete one (THUDM ships both), and is named when no format is complete."""
    incomplete = None
    for name in WEIGHT_FILES:
        path = src / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return [path]
        try:
            shards = sorted(set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConversionRefused(f"{path} cannot be read ({type(exc).__name__}); copy it again.") from None
        missing = [s for s in shards if not (src / s).is_file()]
        if not missing:
            return [src / s for s in shards]
        incomplete = incomplete or ConversionRefused(
            f"{src}: missing weight shard {', '.join(missing)} (named by {name}); copy every shard of the checkpoint.")
    if incomplete:
        raise incomplete
    raise ConversionRefused(f"{src}: no weights (pytorch_model*.bin or model*.safetensors, with its index "
                            "when sharded).")


def read_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of one weight file: safetensors, or a torch file loaded with `weights_only`
    (no pickled code runs) and memory-mapped where the format allows."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    for name in list(state):
        yield name, state.pop(name)


def tensor_names(path: Path) -> list[str]:
    """The tensor names of one weight file, without reading torch files' data where avoidable."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    return [name for name, _ in read_tensors(path)]


_LAYER = re.compile(r"transformer\.encoder\.layers\.(\d+)\.(.+)")
_PER_LAYER = {
    "input_layernorm.weight": "input_layernorm.weight",
    "post_attention_layernorm.weight": "post_attention_layernorm.weight",
    "self_attention.dense.weight": "self_attn.o_proj.weight",
    "mlp.dense_h_to_4h.weight": "mlp.gate_up_proj.weight",
    "mlp.dense_4h_to_h.weight": "mlp.down_proj.weight",
}
_TOP = {
    "transformer.embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "transformer.encoder.final_layernorm.weight": "model.norm.weight",
    "transformer.output_layer.weight": "lm_head.weight",
}
IGNORED = re.compile(r"transformer\.rotary_pos_emb\.inv_freq")  # recomputed from the config


def expected_names(net: Network) -> set[str]:
    names = set(_TOP)
    for i in range(net.layers):
        layer = f"transformer.encoder.layers.{i}."
        names |= {layer + k for k in _PER_LAYER} | {layer + "self_attention.query_key_value.weight"}
        if net.qkv_bias:
            names.add(layer + "self_attention.query_key_value.bias")
    return names


def native(name: str, tensor: torch.Tensor, net: Network) -> list[tuple[str, torch.Tensor]]:
    """The native GLM tensors for one THUDM tensor (the fused qkv becomes three)."""
    if name in _TOP:
        return [(_TOP[name], tensor)]
    layer, rest = _LAYER.fullmatch(name).groups()
    prefix = f"model.layers.{layer}."
    if rest in _PER_LAYER:
        return [(prefix + _PER_LAYER[rest], tensor)]
    kind = rest.rsplit(".", 1)[1]  # weight or bias
    q, kv = net.heads * net.head_dim, net.groups * net.head_dim
    if tensor.shape[0] != q + 2 * kv:
        raise ConversionRefused(f"{name} has {tensor.shape[0]} rows, not {q + 2 * kv} ({net.heads} query heads and "
                                f"{net.groups} key/value groups of {net.head_dim}): config and weights disagree.")
    parts = torch.split(tensor, [q, kv, kv], dim=0)
    return [(f"{prefix}self_attn.{p}_proj.{kind}", t.contiguous()) for p, t in zip("qkv", parts)]
