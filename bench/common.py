"""Helpers shared by the benchmarks (not part of the product)."""

from __future__ import annotations

from pathlib import Path

import torch

from secbot.model.runtime.loading import LoadedModel, pick_device, pick_dtype  # noqa: E402
from secbot.model.runtime.tiny import build_tokenizer  # noqa: E402


def random_glm4_9b(device: str = "cuda", dtype: str = "auto", config=None) -> LoadedModel:
    """glm-4-9b-chat-hf's shape with random weights, built on the device; tiny tokenizer."""
    from transformers import GlmConfig, GlmForCausalLM

    dev = pick_device(device)
    torch_dtype = pick_dtype(dev, dtype)
    # Built on the device in the target dtype, so every buffer (the rotary frequencies too) is
    # initialised by the model's own code; the weights are random and the shapes real.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype)
    try:
        with torch.device(dev):
            model = GlmForCausalLM(config or GlmConfig())  # GlmConfig's defaults are glm-4-9b's
    finally:
        torch.set_default_dtype(previous)
    tokenizer = build_tokenizer()
    return LoadedModel(model=model.eval(), tokenizer=tokenizer, path=Path("random:glm-4-9b"), device=dev)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def add_model_args(parser) -> None:
    """--model / --random / --device / --dtype, the same for every benchmark."""
    parser.add_argument("--model", help="model directory (default: a fresh tiny model)")
    parser.add_argument("--random", choices=["glm-4-9b"], help="random weights of a real size")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
