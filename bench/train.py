"""Training throughput and peak memory: secbot's trainer vs a plain transformers Trainer + PEFT,
and its preference stage (KTO) vs trl's `KTOTrainer` + PEFT LoRA on the same labelled completions.

    python bench/train.py                                   # tiny model, CPU
    python bench/train.py --model DIR --device cuda --seq-len 512
    python bench/train.py --random glm-4-9b --device cuda --seq-len 512 --batch-size 4
    python bench/train.py --stage preference                # KTO: secbot vs trl (LoRA), secbot P-tuning
    python bench/train.py --stage preference --random glm-4-9b --device cuda --seq-len 512 --batch-size 4

In the preference stage both sides compute, per step, the policy and the reference (a frozen copy
of the adapter) on the matched and the mismatched (KL) completions; tokens/s counts the matched
sequences' tokens. trl documents KTO with LoRA only, so P-tuning runs on secbot's side alone.

Each (method, implementation) runs in its own process on the same encoded records (all of one
length, so both see the same tokens), so peak memory is per run: GPU peak allocation on CUDA,
peak resident set size on CPU (from a second run with large buffers mmap'd, so it counts live
tensors), read when the training loop ends, before adapters are written or the loss curve drawn.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import add_model_args, random_glm4_9b, sync  # noqa: E402

from secbot.model.runtime.loading import load_base  # noqa: E402
from secbot.model.runtime.tiny import build_tiny_model, corpus_lines  # noqa: E402
from secbot.model.training.record_formats import Labelled, Record  # noqa: E402
from secbot.model.training.trainer import TrainConfig, Trainer, encode, peft_config_for  # noqa: E402


def make_records(tokenizer, seq_len: int, n: int) -> list[Record]:
    """n records whose prompt and answer each fill about half of seq_len tokens."""
    words = " ".join(corpus_lines()).split()
    records = []
    for i in range(n):
        def text(offset, budget):
            out, k = [], offset
            while len(tokenizer.encode(" ".join(out), add_special_tokens=False)) < budget:
                out.append(words[k % len(words)])
                k += 7
            return " ".join(out)
        records.append(Record(text(i * 13, seq_len // 2 - 24), text(i * 29 + 5, seq_len // 2 - 2)))
    return records


def child(args) -> dict:
    loaded = random_glm4_9b(args.device, args.dtype) if args.random else \
        load_base(args.model, device=args.device, dtype=args.dtype)
    config = TrainConfig.of(method=args.method, pre_seq_len=args.pre_seq_len, lr=1e-3,
                            batch_size=args.batch_size, grad_accum=args.grad_accum,
                            max_steps=args.steps, logging_steps=args.steps, save_steps=10**9,
                            max_source_length=args.seq_len, max_target_length=args.seq_len)
    records = make_records(loaded.tokenizer, args.seq_len, args.batch_size * args.grad_accum * 2)
    if loaded.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out = Path(tempfile.mkdtemp()) / "adapter"
    loop_peak = {}  # CPU: peak RSS when the loop ends, before either side writes files or plots

    def note_peak(*_args, **_kwargs):
        loop_peak["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    if args.stage == "preference":
        return preference_child(args, loaded, records, out, note_peak, loop_peak)
    if args.impl == "secbot":
        trainer = Trainer(loaded, records, out, config, progress=False, on_log=note_peak)
        tokens = len(encode(records[0], trainer.builder, config)[0])
        elapsed = trainer.run().metadata["train_seconds"]  # the loop alone
    else:
        tokens, elapsed = hf_trainer(loaded, records, config, out, note_peak)
    peak = torch.cuda.max_memory_allocated() if loaded.device.type == "cuda" else loop_peak["rss"]
    total_tokens = tokens * args.batch_size * args.grad_accum * args.steps
    return {"method": args.method, "impl": args.impl, "tokens_per_s": total_tokens / elapsed,
            "peak_gib": peak / 2**30, "seq_len": tokens, "seconds": elapsed}


def preference_child(args, loaded, records, out, note_peak, loop_peak) -> dict:
    """One preference stage of `args.steps` steps on 2 x batch labelled completions (half 👍)."""
    examples = [Labelled(r, i % 2 == 0) for i, r in enumerate(records)]
    config = TrainConfig.of(method=args.method, pre_seq_len=args.pre_seq_len, lr=1e-4, preference="kto",
                            preference_batch_size=args.batch_size, preference_epochs=args.steps / 2,
                            logging_steps=args.steps, save_steps=10**9,
                            max_source_length=args.seq_len, max_target_length=args.seq_len)
    if loaded.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if args.impl == "secbot":
        trainer = Trainer(loaded, [], out, config, progress=False, on_log=note_peak, labelled=examples)
        tokens = sum(len(encode(x.record, trainer.builder, config)[0]) for x in examples) / len(examples)
        elapsed = trainer.run().metadata["train_seconds"]
    else:
        tokens, elapsed = trl_kto(loaded, examples, config, out, note_peak, args.steps)
    peak = torch.cuda.max_memory_allocated() if loaded.device.type == "cuda" else loop_peak["rss"]
    return {"method": args.method, "impl": args.impl, "tokens_per_s": tokens * args.batch_size * args.steps / elapsed,
            "peak_gib": peak / 2**30, "seq_len": round(tokens), "seconds": elapsed}


def trl_kto(loaded, examples, config, out, at_end, steps):
    """The baseline: trl's KTOTrainer on a PEFT LoRA model (its documented setup), same batches."""
    from datasets import Dataset
    from peft import get_peft_model
    from trl import KTOConfig, KTOTrainer

    rows = [{"prompt": [{"role": "user", "content": x.record.prompt}],
             "completion": [{"role": "assistant", "content": x.record.response}], "label": x.desirable}
            for x in examples]
    model = get_peft_model(loaded.model, peft_config_for(config, loaded.model))
    cuda = loaded.device.type == "cuda"
    clock = loop_clock_class()(loaded.device, at_end)
    targs = KTOConfig(output_dir=str(out), per_device_train_batch_size=config.stage.preference_batch_size,
                      max_steps=steps, learning_rate=config.learning_rate(), logging_steps=steps,
                      save_strategy="no", report_to=[], bf16=cuda, use_cpu=not cuda, disable_tqdm=True,
                      beta=config.stage.preference_beta, max_length=2 * config.max_source_length)
    trainer = KTOTrainer(model=model, args=targs, train_dataset=Dataset.from_list(rows),
                         processing_class=loaded.tokenizer, callbacks=[clock])
    tokens = sum(len(r["prompt_ids"]) + len(r["completion_ids"]) for r in trainer.train_dataset) / len(rows)
    trainer.train()
    return tokens, clock.end - clock.start


def loop_clock_class():
    from transformers import TrainerCallback

    class LoopClock(TrainerCallback):
        """Times the baseline's training loop alone, as secbot's metadata times its own."""

        def __init__(self, device, at_end):
            self.device, self.at_end = device, at_end

        def on_train_begin(self, *args, **kwargs):
            sync(self.device)
            self.start = time.perf_counter()

        def on_train_end(self, *args, **kwargs):
            sync(self.device)
            self.end = time.perf_counter()
            self.at_end()

    return LoopClock


def hf_trainer(loaded, records, config, out, at_end):
    """The baseline: transformers.Trainer on a PEFT model, default settings otherwise."""
    from peft import get_peft_model
    from transformers import DataCollatorForSeq2Seq, TrainingArguments
    from transformers import Trainer as HFTrainer

    from secbot.model.runtime.prompting import PromptBuilder

    builder = PromptBuilder(loaded.tokenizer)
    rows = []
    for record in records:
        ids, labels = encode(record, builder, config)
        rows.append({"input_ids": ids, "labels": labels, "attention_mask": [1] * len(ids)})
    model = get_peft_model(loaded.model, peft_config_for(config, loaded.model))
    LoopClock = loop_clock_class()
    cuda = loaded.device.type == "cuda"
    targs = TrainingArguments(output_dir=str(out), per_device_train_batch_size=config.batch_size,
                              gradient_accumulation_steps=config.grad_accum, max_steps=config.max_steps,
                              learning_rate=config.learning_rate(), logging_steps=config.max_steps,
                              save_strategy="no", report_to=[], bf16=cuda, use_cpu=not cuda,
                              remove_unused_columns=False, disable_tqdm=True)
    collator = DataCollatorForSeq2Seq(loaded.tokenizer, padding=True, label_pad_token_id=-100)
    clock = LoopClock(loaded.device, at_end)
    trainer = HFTrainer(model=model, args=targs, train_dataset=rows, data_collator=collator,
                        callbacks=[clock])
    trainer.train()
    return len(rows[0]["input_ids"]), clock.end - clock.start


def run_child(base: list[str], method: str, impl: str, **env) -> dict | None:
    proc = subprocess.run([sys.executable, __file__, *base, "--child", method, impl],
                          capture_output=True, text=True, env={**os.environ, **env})
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        print(f"{method}/{impl} failed:\n{proc.stderr[-2000:]}")
        return None
    return json.loads(line[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pre-seq-len", type=int, default=128)
    parser.add_argument("--methods", default="ptuning,lora")
    parser.add_argument("--stage", choices=["supervised", "preference"], default="supervised",
                        help="which stage to measure: the supervised steps, or the KTO preference stage")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        args.method, args.impl = args.child
        print("RESULT " + json.dumps(child(args)))
        return
    if not args.model and not args.random:
        args.model = str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny"))
    base = [a for a in sys.argv[1:]]
    if args.model and "--model" not in base:
        base += ["--model", args.model]
    print(f"model {args.model or args.random}  device {args.device}  seq {args.seq_len}  "
          f"batch {args.batch_size}x{args.grad_accum}  steps {args.steps}")
    on_gpu = args.device.startswith("cuda")
    baseline = "trl" if args.stage == "preference" else "hf"
    print(f"stage {args.stage}: secbot vs {'trl KTOTrainer + PEFT' if baseline == 'trl' else 'transformers Trainer + PEFT'}")
    for method in args.methods.split(","):
        results = {}
        impls = ("secbot",) if baseline == "trl" and method != "lora" else (baseline, "secbot")
        for impl in impls:
            r = run_child(base, method, impl)
            if r and not on_gpu:
                # Peak RSS from a second run whose large buffers are mmap'd and returned when
                # freed, so it counts live tensors: glibc's adaptive threshold otherwise keeps
                # freed activations in the heap, and the peak then depends on allocation order
                # (1.02-1.06x seen between two loops of equal live memory). Speed comes from the
                # first run, as mmap'd buffers cost page faults.
                again = run_child(base, method, impl, MALLOC_MMAP_THRESHOLD_="65536")
                r = again and {**r, "peak_gib": again["peak_gib"]}
            if not r:
                continue
            results[impl] = r
            print(f"{method:8} {impl:7} {r['tokens_per_s']:10.1f} tokens/s  peak {r['peak_gib']:.2f} GiB"
                  f"  ({r['seconds']:.1f} s, {r['seq_len']} tokens/record)")
        if len(results) == 2:
            print(f"{method:8} secbot/baseline: "
                  f"{results['secbot']['tokens_per_s'] / results[baseline]['tokens_per_s']:.2f}x "
                  f"tokens/s, {results['secbot']['peak_gib'] / results[baseline]['peak_gib']:.2f}x peak memory")


if __name__ == "__main__":
    main()
