"""Tiny ChatGLM2/3 checkpoints in THUDM's layout, made from a reference of the original network that
is not secbot's: diffusers' ChatGLM text encoder and tokenizer for Kolors (a dev dependency), with a
SentencePiece `tokenizer.model` trained here. The checkpoint also carries Python files that would
leave a mark (and fail) if anything imported or ran them.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import torch

from secbot.model.runtime.tiny import corpus_lines

SIZES = dict(num_layers=2, hidden_size=64, ffn_hidden_size=128, kv_channels=16, num_attention_heads=4,
             multi_query_group_num=2, seq_length=2048)
TRAP = """import pathlib
pathlib.Path(__file__).with_name("EXECUTED").write_text("{name} was run")
raise RuntimeError("{name} must never be imported or run by secbot")
# {hints}
"""


def corpus(seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    en = ("the attacker used a phishing email to steal credentials then moved laterally across the network "
          "check firewall logs for failed logins rotate keys after an incident").split()
    zh = "攻击者使用钓鱼邮件窃取凭据然后在网络中横向移动防火墙日志显示异常登录请检查轮换密钥事件响应"
    lines = []
    for _ in range(3000):
        kind = rng.random()
        if kind < 0.4:
            lines.append(" ".join(rng.choices(en, k=rng.randint(3, 15))))
        elif kind < 0.7:
            lines.append("".join(rng.choices(zh, k=rng.randint(4, 30))))
        else:
            lines.append(f"    def f(x):\n        return x  # {' '.join(rng.choices(en, k=3))}\t\t{rng.randint(0, 99999)}")
    return lines


def train_sentencepiece(path: Path, vocab_size: int = 1500, **flags) -> Path:
    """A BPE SentencePiece model with ChatGLM's settings (byte fallback, whitespace kept, digits split)."""
    import sentencepiece as spm

    model = io.BytesIO()
    options = dict(model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
                   remove_extra_whitespaces=False, split_digits=True, add_dummy_prefix=True,
                   allow_whitespace_only_pieces=True, character_coverage=0.9995, minloglevel=2)
    # Security chat besides the mixed lines, as a real ChatGLM vocabulary covers common Chinese.
    text = corpus() + corpus_lines() * 20
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=model, vocab_size=vocab_size,
                                   **(options | flags))
    path.write_bytes(model.getvalue())
    return path


def reference_config(family: str, vocab: int, pre_seq_len: int | None = None, prefix_projection: bool = False,
                     **sizes):
    from diffusers.pipelines.kolors.text_encoder import ChatGLMConfig

    padded = (vocab + 9 + 63) // 64 * 64
    return ChatGLMConfig(**(SIZES | sizes), padded_vocab_size=padded, add_qkv_bias=True, multi_query_attention=True,
                         rmsnorm=True, original_rope=True, post_layer_norm=True, pre_seq_len=pre_seq_len,
                         prefix_projection=prefix_projection, torch_dtype="float32",
                         _name_or_path=f"THUDM/{family}-6b")


def randomise(module: torch.nn.Module, seed: int, std: float = 0.1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * std
            p.copy_(1 + noise if "layernorm" in name else noise)


def reference_model(config, seed: int = 0):
    from diffusers.pipelines.kolors.text_encoder import ChatGLMModel

    model = ChatGLMModel(config, empty_init=False)
    randomise(model, seed)
    return model.eval()


def reference_logits(model, ids: list[int], position_ids: list[int] | None = None) -> torch.Tensor:
    """Next-token logits of THUDM's network: the transformer's last hidden states through `output_layer`
    (positions from 0, as THUDM counts them, also behind a P-tuning prefix)."""
    with torch.no_grad():
        kwargs = {"position_ids": torch.tensor([position_ids])} if position_ids else {}
        hidden = model(torch.tensor([ids]), use_cache=False, return_dict=True, **kwargs).last_hidden_state
        return model.output_layer(hidden).transpose(0, 1)[0]


def thudm_config(config, family: str) -> dict:
    out = {k: v for k, v in config.to_dict().items() if not k.startswith("_") and k != "transformers_version"}
    out |= {"model_type": "chatglm", "architectures": ["ChatGLMModel"],
            "auto_map": {"AutoConfig": "configuration_chatglm.ChatGLMConfig",
                         "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration"},
            "_name_or_path": f"THUDM/{family}-6b"}
    out.pop("vocab_size", None)
    return out


def write_checkpoint(out: Path, family: str, model, sp_model: Path, *, shards: int = 2,
                     safetensors: bool = False) -> Path:
    """The model in THUDM's key layout (`transformer.` + ChatGLMModel's names), its config with
    `auto_map`, tokenizer files, and trap Python files."""
    out.mkdir(parents=True)
    state = {f"transformer.{k}": v.clone() for k, v in model.state_dict().items()
             if not k.startswith("prefix_encoder")}
    names = sorted(state)
    parts = [names[i::shards] for i in range(shards)]
    ext = "safetensors" if safetensors else "bin"
    stem = "model" if safetensors else "pytorch_model"
    weight_map = {}
    for i, part in enumerate(parts, 1):
        file = f"{stem}-{i:05d}-of-{shards:05d}.{ext}" if shards > 1 else f"{stem}.{ext}"
        tensors = {k: state[k].contiguous() for k in part}
        if safetensors:
            from safetensors.torch import save_file

            save_file(tensors, str(out / file), metadata={"format": "pt"})
        else:
            torch.save(tensors, out / file)
        weight_map |= dict.fromkeys(part, file)
    if shards > 1:
        (out / f"{stem}.{ext}.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (out / "config.json").write_text(json.dumps(thudm_config(model.config, family), indent=2))
    (out / "tokenizer.model").write_bytes(sp_model.read_bytes())
    (out / "tokenizer_config.json").write_text(json.dumps({
        "auto_map": {"AutoTokenizer": ["tokenization_chatglm.ChatGLMTokenizer", None]},
        "tokenizer_class": "ChatGLMTokenizer", "name_or_path": f"THUDM/{family}-6b"}))
    hints = "def build_chat_input  <|user|>" if family == "chatglm3" else "def build_prompt  [Round"
    for name in ("modeling_chatglm.py", "tokenization_chatglm.py", "configuration_chatglm.py"):
        (out / name).write_text(TRAP.format(name=name, hints=hints if name == "tokenization_chatglm.py" else ""))
    return out


def write_ptuning_checkpoint(out: Path, model) -> Path:
    """What THUDM's ptuning/main.py saves: the prefix encoder only, and `pre_seq_len` in config.json."""
    out.mkdir(parents=True)
    torch.save({f"transformer.{k}": v.clone() for k, v in model.state_dict().items() if k.startswith("prefix_encoder")},
               out / "pytorch_model.bin")
    (out / "config.json").write_text(json.dumps(thudm_config(model.config, "chatglm3")))
    return out


def chatglm2_prompt(query: str, history: list[tuple[str, str]]) -> str:
    """ChatGLM2's round format, as its model card describes it: rounds from 1, 问/答, blank lines."""
    prompt = "".join(f"[Round {i}]\n\n问：{q}\n\n答：{a}\n\n" for i, (q, a) in enumerate(history, 1))
    return prompt + f"[Round {len(history) + 1}]\n\n问：{query}\n\n答："
