"""Load a base model and tokenizer from a local directory, the same way for real and tiny weights."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from secbot.model.errors import ModelFilesError, RemoteCodeRequired

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "ice_text.model", "tokenizer_config.json")
MODEL_HINT = ("Point SECBOT_MODEL (or --model) at a directory written by save_pretrained, "
              "or build the reference model with `secbot tiny-model DIR`.")


def check_model_dir(path: str | Path) -> Path:
    """Return the directory if it holds config, weights (every shard) and tokenizer; else raise."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelFilesError(path, [], MODEL_HINT)
    missing: list[str] = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    weights = [name for name in WEIGHT_FILES if (path / name).is_file()]
    if not weights:
        missing.append("weights (" + " or ".join(WEIGHT_FILES[::2]) + ")")
    for index in (w for w in weights if w.endswith(".index.json")):
        shards = sorted(set(json.loads((path / index).read_text())["weight_map"].values()))
        missing += [f"weight shard {s}" for s in shards if not (path / s).is_file()]
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer (tokenizer.json or tokenizer.model)")
    if missing:
        raise ModelFilesError(path, missing, MODEL_HINT)
    return path


def pick_device(device: str = "auto") -> torch.device:
    """`auto` means the first GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    """bf16 on a GPU that supports it (fp16 otherwise), fp32 on CPU; or the named dtype."""
    if dtype != "auto":
        return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    path: Path
    device: torch.device


def is_native(model) -> bool:
    """Whether `model` is transformers' own implementation (GLM, GLM-4), not remote code
    (ChatGLM-6B/2/3), and so takes its newer arguments (`logits_to_keep`, cache objects)."""
    return type(model).__module__.startswith("transformers.models.")


def load_base(path: str | Path, device: str = "auto", dtype: str = "auto",
              trust_remote_code: bool = False) -> LoadedModel:
    """Load model and tokenizer from `path`; remote code (ChatGLM-6B/2/3) only when allowed."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    path = check_model_dir(path)
    config_json = json.loads((path / "config.json").read_text())
    auto_map = config_json.get("auto_map") or {}
    if auto_map and not trust_remote_code:
        raise RemoteCodeRequired(
            f"{path} ships its own model code ({config_json.get('model_type', 'unknown')}, e.g. "
            "ChatGLM-6B/2/3). Review that code, then allow it with SECBOT_TRUST_REMOTE_CODE=1 "
            "or --trust-remote-code; or use a -hf checkpoint that transformers supports natively.")
    dev = pick_device(device)
    torch_dtype = pick_dtype(dev, dtype)
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code,
                                        local_files_only=True)
    loader = AutoModelForCausalLM
    if auto_map and "AutoModelForCausalLM" not in auto_map:
        loader = AutoModel  # ChatGLM-6B registers its LM head under AutoModel only
    log.info("loading %s (%s) on %s as %s", path, config.model_type, dev, torch_dtype)
    model = loader.from_pretrained(path, config=config, dtype=torch_dtype, local_files_only=True,
                                   trust_remote_code=trust_remote_code)
    model.to(dev).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code,
                                              local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, path=path, device=dev)
