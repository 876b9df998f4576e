"""Load a base model and tokenizer from a local directory, the same way for real and tiny weights."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from secbot.model.errors import ModelFilesError, RemoteCodeRequired, UnreadableModelFile

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


def read_json(path: Path, what: str) -> dict:
    """A JSON object from `path`, or an error that names the file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UnreadableModelFile(path.parent, what, exc) from None
    if not isinstance(value, dict):
        raise UnreadableModelFile(path.parent, what, ValueError("expected a JSON object"))
    return value


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


def load_base(path: str | Path, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load model and tokenizer from `path` with transformers' own code; a checkpoint that ships
    its own model code (ChatGLM-6B/2/3) is refused."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = check_model_dir(path)
    config_json = read_json(path / "config.json", "config.json")
    auto_map = config_json.get("auto_map") or {}
    if auto_map:
        chatglm = config_json.get("model_type") == "chatglm"
        raise RemoteCodeRequired(
            f"{path} ships its own model code ({config_json.get('model_type', 'unknown')}), which secbot "
            "does not run. " + (
                f"A ChatGLM2-6B or ChatGLM3-6B checkpoint converts once into a native one: `secbot convert "
                f"{path} DST`, then point SECBOT_MODEL at DST (ChatGLM-6B v1 does not convert; use "
                "glm-4-9b-chat-hf)." if chatglm else
                "Use a checkpoint transformers supports natively: glm-4-9b-chat-hf or the GLM-4-0414 family "
                "(GLM-4-9B-0414, GLM-4-32B-0414)."))
    dev = pick_device(device)
    torch_dtype = pick_dtype(dev, dtype)
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise UnreadableModelFile(path, "config.json", exc) from None
    if (path / "tokenizer.json").is_file():  # its library reports a corrupt one as a missing protobuf
        read_json(path / "tokenizer.json", "tokenizer.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # tokenizers fail in many ways (a corrupt tokenizer.json even as ImportError)
        names = ", ".join(n for n in TOKENIZER_FILES if (path / n).is_file())
        raise UnreadableModelFile(path, f"the tokenizer ({names})", exc) from None
    log.info("loading %s (%s) on %s as %s", path, config.model_type, dev, torch_dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch_dtype,
                                                     local_files_only=True)
    except Exception as exc:  # safetensors, torch and transformers each raise their own
        names = ", ".join(n for n in WEIGHT_FILES if (path / n).is_file())
        raise UnreadableModelFile(path, f"the weights ({names})", exc) from None
    model.to(dev).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, path=path, device=dev)
