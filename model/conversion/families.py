"""The two ChatGLM families secbot converts: their special tokens, prompt layout and stop tokens.

Both put their special tokens right after the SentencePiece vocabulary. ChatGLM3 has nine and
prompts with role tokens (`build_chat_input`: `[gMASK]sop`, then per message `<|role|>`, the
SentencePiece encoding of "\\n" and, separately, of the content; the prompt ends at
`<|assistant|>`). ChatGLM2 has the first five and prompts with rounds counted from 1
(`[Round i]\\n\\n问：{q}\\n\\n答：{a}\\n\\n`, ending with `答：`); its answers end with EOS.

The converted tokenizer names `sop`/`eop` `<sop>`/`<eop>` (as GLM-4 does), so the word "sop" in an
analyst's text stays a word. Because the tokenizer prepends SentencePiece's "▁" to every stretch
of text between special tokens, the templates below write ChatGLM3's "\\n" + content as
"\\n {content}": the same ids as encoding the two separately.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from secbot.model.errors import ConversionRefused

SPECIALS = ["[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>", "<|assistant|>",
            "<|observation|>"]

CHATGLM3_TEMPLATE = (
    "[gMASK]<sop>{% for m in messages %}{{ '<|' + m['role'] + '|>\\n' }}{% if m['content'] %}{{ ' ' + m['content'] }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# ChatGLM2 has no system role: a system prompt, when secbot is given one, goes first as plain text.
# Newlines next to block tags are written as expressions: transformers renders templates with
# `trim_blocks`, which would eat one.
CHATGLM2_TEMPLATE = (
    "[gMASK]<sop>{% set ns = namespace(round=0) %}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] + '\\n\\n' }}"
    "{% elif m['role'] == 'user' %}{% set ns.round = ns.round + 1 %}"
    "{{ '[Round ' ~ ns.round ~ ']\\n\\n问：' + m['content'] + '\\n\\n答：' }}"
    "{% elif m['role'] == 'assistant' %}{{ m['content'] }}{% if not loop.last %}{{ '\\n\\n' }}{% endif %}{% endif %}"
    "{% endfor %}"
)


@dataclass(frozen=True)
class Family:
    name: str
    specials: tuple[str, ...]  # special tokens after the SentencePiece vocabulary, in id order
    chat_template: str
    stop_tokens: tuple[str, ...]  # besides EOS: the tokens that end an answer

    def special_ids(self, vocabulary: int) -> dict[str, int]:
        return {token: vocabulary + i for i, token in enumerate(self.specials)}


FAMILIES = {
    "chatglm2": Family("chatglm2", tuple(SPECIALS[:5]), CHATGLM2_TEMPLATE, ()),
    "chatglm3": Family("chatglm3", tuple(SPECIALS), CHATGLM3_TEMPLATE, ("<|user|>", "<|observation|>")),
}


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    except OSError:
        return ""


def detect_family(src: Path, config: dict, tokenizer_config: dict) -> Family:
    """ChatGLM2 or ChatGLM3, from the checkpoint's own files read as text (never run): the
    tokenizer code of ChatGLM3 knows the role tokens, ChatGLM2's builds `[Round i]` prompts; else
    the name it was saved under."""
    code = _text(src / "tokenization_chatglm.py")
    if "<|user|>" in code or "build_chat_input" in code:
        return FAMILIES["chatglm3"]
    if "build_prompt" in code or "[Round" in code + _text(src / "modeling_chatglm.py"):
        return FAMILIES["chatglm2"]
    names = " ".join(str(d.get(k, "")) for d in (config, tokenizer_config) for k in ("_name_or_path", "name_or_path"))
    found = set(re.findall(r"chatglm([23])", names.lower()))
    if len(found) == 1:
        return FAMILIES[f"chatglm{found.pop()}"]
    raise ConversionRefused(
        f"{src}: cannot tell whether this is ChatGLM2 or ChatGLM3 (no tokenization_chatglm.py and no name "
        "in its configs). Pass --family chatglm2 or --family chatglm3.")
