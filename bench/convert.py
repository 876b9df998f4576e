"""`secbot convert` at ChatGLM3-6B's size: conversion time and peak resident memory.

    python bench/convert.py                      # 28 layers, hidden 4096: 6.2B parameters, fp16, 7 shards
    python bench/convert.py --layers 2           # a quick run of the same code
    python bench/convert.py --format safetensors --dir /big/disk

Writes a random checkpoint with ChatGLM3-6B's shapes in THUDM's layout (`transformer.*` names,
`pytorch_model-0000i-of-00007.bin` + index, config.json with `auto_map`, a small SentencePiece
tokenizer.model trained here: the vocabulary's size does not change the weights' work), then runs
`secbot convert` on it in a child process and reports the child's wall time and peak RSS
(`ru_maxrss`, which counts the memory-mapped shard pages it touches). Both directories are removed
afterwards unless --keep. Needs about 2 x 12.5 GB of free disk at full size.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# ChatGLM3-6B's config.json (THUDM), the sizes that shape the weights.
CHATGLM3_6B = dict(num_layers=28, hidden_size=4096, ffn_hidden_size=13696, kv_channels=128, num_attention_heads=32,
                   multi_query_group_num=2, padded_vocab_size=65024, seq_length=8192, layernorm_epsilon=1e-5,
                   add_qkv_bias=True, add_bias_linear=False, multi_query_attention=True, rmsnorm=True,
                   apply_residual_connection_post_layernorm=False, post_layer_norm=True, original_rope=True,
                   fp32_residual_connection=False, quantization_bit=0, pre_seq_len=None, prefix_projection=False,
                   apply_query_key_layer_scaling=True, attention_softmax_in_fp32=True, torch_dtype="float16",
                   model_type="chatglm", architectures=["ChatGLMModel"], _name_or_path="THUDM/chatglm3-6b",
                   auto_map={"AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration"})


def shapes(c: dict) -> dict[str, tuple[int, ...]]:
    h, q, kv = c["hidden_size"], c["num_attention_heads"] * c["kv_channels"], c["multi_query_group_num"] * c["kv_channels"]
    out = {"transformer.embedding.word_embeddings.weight": (c["padded_vocab_size"], h),
           "transformer.rotary_pos_emb.inv_freq": (c["kv_channels"] // 4,)}
    for i in range(c["num_layers"]):
        p = f"transformer.encoder.layers.{i}."
        out |= {p + "input_layernorm.weight": (h,), p + "self_attention.query_key_value.weight": (q + 2 * kv, h),
                p + "self_attention.query_key_value.bias": (q + 2 * kv,), p + "self_attention.dense.weight": (h, q),
                p + "post_attention_layernorm.weight": (h,), p + "mlp.dense_h_to_4h.weight": (2 * c["ffn_hidden_size"], h),
                p + "mlp.dense_4h_to_h.weight": (h, c["ffn_hidden_size"])}
    return out | {"transformer.encoder.final_layernorm.weight": (h,), "transformer.output_layer.weight": (c["padded_vocab_size"], h)}


def write_checkpoint(src: Path, config: dict, shards: int, fmt: str) -> int:
    """Random fp16 weights in `shards` files of about equal size; returns the bytes written."""
    src.mkdir(parents=True)
    tensors = shapes(config)
    total = sum(2 * torch.Size(s).numel() for s in tensors.values())
    stem, ext = ("model", "safetensors") if fmt == "safetensors" else ("pytorch_model", "bin")
    groups, size = [[]], 0
    for name, shape in tensors.items():
        groups[-1].append(name)
        size += 2 * torch.Size(shape).numel()
        if size >= total * len(groups) / shards and len(groups) < shards:
            groups.append([])
    groups = [g for g in groups if g]
    gen = torch.Generator().manual_seed(0)
    weight_map = {}
    for index, group in enumerate(groups, 1):
        name = f"{stem}-{index:05d}-of-{len(groups):05d}.{ext}"
        part = {t: torch.empty(tensors[t], dtype=torch.float16).normal_(0, 0.02, generator=gen) for t in group}
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(part, str(src / name), metadata={"format": "pt"})
        else:
            torch.save(part, src / name)
        weight_map.update(dict.fromkeys(part, name))
        print(f"  wrote {name} ({sum(t.numel() * 2 for t in part.values()) / 2**30:.2f} GiB)", file=sys.stderr)
        del part
    (src / f"{stem}.{ext}.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                              "weight_map": weight_map}))
    (src / "config.json").write_text(json.dumps(config, indent=2))
    (src / "tokenization_chatglm.py").write_text("raise RuntimeError('never run')  # build_chat_input <|user|>\n")
    (src / "tokenizer.model").write_bytes(sentencepiece_model())
    return total


def sentencepiece_model() -> bytes:
    import sentencepiece as spm

    from secbot.model.runtime.tiny import corpus_lines

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus_lines() * 20), model_writer=model, vocab_size=1000,
                                   model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
                                   remove_extra_whitespaces=False, minloglevel=2)
    return model.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=CHATGLM3_6B["num_layers"])
    parser.add_argument("--shards", type=int, default=7, help="ChatGLM3-6B ships 7")
    parser.add_argument("--format", choices=["bin", "safetensors"], default="bin")
    parser.add_argument("--dir", help="where to write both checkpoints (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    config = CHATGLM3_6B | {"num_layers": args.layers}
    work = Path(tempfile.mkdtemp(prefix="secbot-convert-", dir=args.dir))
    try:
        src, dst = work / "chatglm3-6b", work / "chatglm3-6b-hf"
        params = sum(torch.Size(s).numel() for s in shapes(config).values())
        print(f"writing a random ChatGLM3-6B-shaped checkpoint: {args.layers} layers, {params / 1e9:.2f}B parameters",
              file=sys.stderr)
        started = time.perf_counter()
        size = write_checkpoint(src, config, args.shards, args.format)
        print(f"  {size / 2**30:.2f} GiB in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sys; from secbot.model.conversion.convert import convert; "
                        "convert(sys.argv[1], sys.argv[2])", str(src), str(dst)], check=True)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
        out = sum(p.stat().st_size for p in dst.glob("*.safetensors"))
        print(json.dumps({"layers": args.layers, "shards": len(list(src.glob(f"*.{args.format}"))), "parameters_billion": round(params / 1e9, 2),
                          "format": args.format, "source_gib": round(size / 2**30, 2),
                          "output_gib": round(out / 2**30, 2), "convert_seconds": round(seconds, 1),
                          "peak_rss_gib": round(peak / 2**30, 2),
                          "gib_per_s": round(size / 2**30 / seconds, 2)}, indent=2))
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
