"""The tiny reference model: GLM architecture, a locally trained tokenizer, written to disk.

Tests and the demo load it through exactly the code that loads real weights (`model.runtime.loading`).
Nothing is downloaded: the tokenizer is trained on `tiny_corpus.txt`, the weights are random
(seeded), so the same seed gives the same files.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import torch

# glm-4-9b-chat-hf's template without its tool block: [gMASK]<sop>, each turn a role tag, a
# newline and the content; the generation prompt ends at <|assistant|> (the model writes the "\n").
CHAT_TEMPLATE = (
    "[gMASK]<sop>{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>",
                  "<|observation|>"]
# Sizes at which P-tuning v2 on a CPU reproduces its training answers in seconds. The wide
# initialisation (0.1, not 0.02) gives the random model sharp logits: prefix tuning then reaches
# a loss of 0.01 in 100 steps instead of plateauing near 3.
TINY_SIZES = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                  max_position_embeddings=2048, initializer_range=0.1)


def corpus_lines() -> list[str]:
    return files("secbot.model.runtime").joinpath("tiny_corpus.txt").read_text(encoding="utf-8").splitlines()


def build_tokenizer(vocab_size: int = 3000):
    """A byte-level BPE tokenizer (any text encodes) trained on the embedded corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2,
                                  special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:], chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False, padding_side="left", model_max_length=2048)


def build_tiny_model(out_dir: str | Path, seed: int = 0, architecture: str = "glm") -> Path:
    """Write the tiny GLM model and its tokenizer to `out_dir` with `save_pretrained`.

    `architecture`: "glm" (glm-4-9b-chat-hf's `GlmForCausalLM`, the default) or "glm4"
    (`Glm4ForCausalLM`, the GLM-4-0414 family's, with its extra norms).
    """
    import transformers
    from transformers import GenerationConfig

    names = {"glm": ("GlmConfig", "GlmForCausalLM"), "glm4": ("Glm4Config", "Glm4ForCausalLM")}
    if architecture not in names:
        raise ValueError(f"architecture must be one of {sorted(names)}, not {architecture!r}")
    config_class, model_class = (getattr(transformers, name) for name in names[architecture])
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    eos = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|user|>", "<|observation|>"])
    config = config_class(vocab_size=len(tokenizer), pad_token_id=eos[0], eos_token_id=eos,
                          tie_word_embeddings=False, **TINY_SIZES)
    torch.manual_seed(seed)
    model = model_class(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=eos[0],
                                               do_sample=False, max_new_tokens=64)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def ensure_tiny_model(out_dir: str | Path, seed: int = 0) -> Path:
    """The tiny model at `out_dir`, built first if the directory holds no model yet."""
    out = Path(out_dir).expanduser()
    if not (out / "config.json").is_file():
        build_tiny_model(out, seed=seed)
    return out
