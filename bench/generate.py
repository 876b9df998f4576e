"""Generation throughput: single-stream vs batched greedy decoding.

    python bench/generate.py                                  # tiny model, CPU
    python bench/generate.py --model DIR --device cuda        # real weights
    python bench/generate.py --random glm-4-9b --device cuda --batch-sizes 1,8,32 --hbm-gbps 3350

`--random glm-4-9b` builds a randomly initialised model with glm-4-9b's configuration straight
on the device (speed and memory equal the real weights'); prompts then use the tiny tokenizer.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import add_model_args, random_glm4_9b, sync

from secbot.model.runtime.engine import Engine  # noqa: E402
from secbot.model.runtime.generation import Sampling  # noqa: E402
from secbot.model.runtime.prompting import PromptBuilder  # noqa: E402
from secbot.model.runtime.tiny import build_tiny_model  # noqa: E402

QUESTIONS = ["What is phishing?", "什么是勒索软件？", "How do I rotate a leaked AWS key?",
             "Explain lateral movement.", "什么是横向移动？", "What does an EDR agent record?",
             "How should we triage a suspicious login?", "什么是零日漏洞？"]


def random_engine(device: str, dtype: str) -> Engine:
    loaded = random_glm4_9b(device, dtype)
    return Engine(loaded, PromptBuilder(loaded.tokenizer))


def run(engine: Engine, batch: int, new_tokens: int) -> float:
    """tokens/s generating up to `new_tokens` for each of `batch` prompts (the engine's own
    path: `generate` for one row, the step decoder for several); tokens counted as generated."""
    sampling = Sampling(max_new_tokens=new_tokens)
    prompts = [engine.prompt_ids(QUESTIONS[i % len(QUESTIONS)], [], sampling) for i in range(batch)]
    sync(engine.device)
    start = time.perf_counter()
    streamer = engine.generate_streams(prompts, [new_tokens] * batch, sampling)
    sync(engine.device)
    return sum(streamer.tokens(i) for i in range(batch)) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--hbm-gbps", type=float, help="memory bandwidth, for the batch-1 bound")
    args = parser.parse_args()

    if args.random:
        engine = random_engine(args.device, args.dtype)
    else:
        model_dir = args.model or build_tiny_model(Path(tempfile.mkdtemp()) / "tiny")
        engine = Engine.load(model_dir, device=args.device, dtype=args.dtype)
    weights = sum(p.numel() * p.element_size() for p in engine.loaded.model.parameters())
    print(f"model {engine.loaded.path}  device {engine.device}  dtype "
          f"{next(engine.loaded.model.parameters()).dtype}  weights {weights / 2**30:.2f} GiB  "
          f"threads {torch.get_num_threads()}")
    run(engine, 1, 4)  # warm-up
    results = {}
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        results[batch] = run(engine, batch, args.new_tokens)
        print(f"batch {batch:>3}: {results[batch]:9.1f} tokens/s  "
              f"({results[batch] / batch:.1f} per stream)")
    if 1 in results:
        for batch, rate in results.items():
            if batch != 1:
                print(f"batch {batch} / single-stream throughput: {rate / results[1]:.2f}x")
    if args.hbm_gbps:
        bound = args.hbm_gbps * 1e9 / weights
        print(f"batch-1 bandwidth bound: {bound:.1f} tokens/s (weights {weights / 1e9:.1f} GB / "
              f"{args.hbm_gbps:.0f} GB/s); measured {results.get(1, 0) / bound:.0%} of it")
    if engine.device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
