"""The fixed sets every candidate is judged on: a held-out exam and identity regression prompts.

The held-out set is never trained on (snapshots exclude its prompts). The identity prompts are
both taught (identity records go into every training set) and checked, because the seed
project's tuned model forgot who it was ("I am ChatGPT").
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from secbot.model.records import Record, read_records

IDENTITY_PROMPTS = ["Who are you?", "What is your name?", "你是谁？", "你叫什么名字？"]


def builtin_heldout() -> list[Record]:
    return read_records(Path(str(files("secbot.feedback").joinpath("heldout.jsonl")))).records


def heldout_set(extra_file: str | Path | None = None) -> list[Record]:
    """The built-in held-out set, plus the team's own file when configured."""
    records = builtin_heldout()
    if extra_file:
        records += read_records(extra_file).records
    return records


def identity_records(name: str) -> list[Record]:
    """What the assistant says when asked who it is, in English and Chinese."""
    english = f"I am {name}, the security team's own assistant."
    chinese = f"我是{name}，安全团队自己的助手。"
    return [Record(p, chinese if any("\u4e00" <= c <= "\u9fff" for c in p) else english)
            for p in IDENTITY_PROMPTS]


def says_identity(answer: str, name: str) -> bool:
    """The answer names the assistant and no other one."""
    lowered = answer.casefold()
    impostors = ("chatgpt", "openai", "chatglm", "清华", "tsinghua", "gpt-4", "claude")
    return name.casefold() in lowered and not any(word in lowered for word in impostors)
