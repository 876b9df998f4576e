"""Prompt building, one code path for training and inference.

Formats (byte for byte as THUDM's models build them):
- `chatglm`  (ChatGLM-6B): no history -> the bare query; else
  ``[Round {i}]\\n问：{q}\\n答：{a}\\n`` from i=0, then ``[Round {n}]\\n问：{query}\\n答：``.
- `chatglm2` (ChatGLM2): ``[Round {i+1}]\\n\\n问：{q}\\n\\n答：{a}\\n\\n`` then the open round.
- `chat_template`: the tokenizer's own template (GLM-4 `-hf`, the tiny reference model), which
  is also the only format with a place for the system prompt that fixes the assistant's identity.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

History = Sequence[Sequence[str]]  # [[question, answer], ...], oldest first

DEFAULT_SYSTEM_PROMPT = (
    "You are {name}, the security team's own assistant. You are not ChatGPT and not any other "
    "assistant. Answer security questions precisely; say so when you do not know."
)


class PromptFormat(str, Enum):
    CHAT_TEMPLATE = "chat_template"
    CHATGLM = "chatglm"
    CHATGLM2 = "chatglm2"


def chatglm_prompt(query: str, history: History) -> str:
    if not history:
        return query
    prompt = "".join(f"[Round {i}]\n问：{q}\n答：{a}\n" for i, (q, a) in enumerate(history))
    return prompt + f"[Round {len(history)}]\n问：{query}\n答："


def chatglm2_prompt(query: str, history: History) -> str:
    prompt = "".join(f"[Round {i}]\n\n问：{q}\n\n答：{a}\n\n"
                     for i, (q, a) in enumerate(history, start=1))
    return prompt + f"[Round {len(history) + 1}]\n\n问：{query}\n\n答："


def detect_format(tokenizer, model_dir: str | Path | None = None) -> PromptFormat:
    """The tokenizer's chat template when it has one, else the ChatGLM generation of the config."""
    if getattr(tokenizer, "chat_template", None):
        return PromptFormat.CHAT_TEMPLATE
    config = {}
    if model_dir is not None and (Path(model_dir) / "config.json").is_file():
        config = json.loads((Path(model_dir) / "config.json").read_text())
    # ChatGLM-6B's config carries 2-D position encoding; ChatGLM2/3 replaced it with MQA/RoPE.
    if config.get("position_encoding_2d") or config.get("model_type") == "chatglm" and \
            "multi_query_attention" not in config:
        return PromptFormat.CHATGLM
    return PromptFormat.CHATGLM2


@dataclass
class PromptBuilder:
    """Turns (query, history) into model input ids; used by training and generation alike."""

    tokenizer: object
    format: PromptFormat
    system_prompt: str | None = None

    def text(self, query: str, history: History = ()) -> str:
        if self.format is PromptFormat.CHATGLM:
            return chatglm_prompt(query, history)
        if self.format is PromptFormat.CHATGLM2:
            return chatglm2_prompt(query, history)
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for q, a in history:
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        messages.append({"role": "user", "content": query})
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)

    def ids(self, query: str, history: History = ()) -> list[int]:
        # A chat template writes its own special tokens; the round formats rely on the
        # tokenizer adding them ([gMASK] <sop> for ChatGLM).
        add_special = self.format is not PromptFormat.CHAT_TEMPLATE
        return self.tokenizer.encode(self.text(query, history), add_special_tokens=add_special)

    def answer_ids(self, answer: str, max_tokens: int | None = None) -> list[int]:
        """The training target: the answer's tokens (cut to fit `max_tokens`) followed by EOS."""
        ids = self.tokenizer.encode(answer, add_special_tokens=False)
        if max_tokens is not None:
            ids = ids[: max(max_tokens - 1, 0)]
        return ids + [self.tokenizer.eos_token_id]

    def fit(self, query: str, history: History, max_tokens: int) -> tuple[list[int], int]:
        """Prompt ids within `max_tokens`, dropping the oldest turns first; returns (ids, dropped).

        When the query alone is still too long, its tail is cut so the template stays intact.
        """
        history = list(history)
        for dropped in range(len(history) + 1):
            ids = self.ids(query, history[dropped:])
            if len(ids) <= max_tokens:
                return ids, dropped
        query_ids = self.tokenizer.encode(query, add_special_tokens=False)
        overflow = len(ids) - max_tokens
        cut = self.tokenizer.decode(query_ids[: max(len(query_ids) - overflow - 1, 0)])
        ids = self.ids(cut, [])
        return ids[:max_tokens], len(history)
