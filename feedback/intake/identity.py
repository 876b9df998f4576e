"""Who the assistant is, and keeping it that way.

The seed project's tuned model forgot who it was ("I am ChatGPT", "I am Tsinghua's assistant").
Here the configured name answers every identity question: a built-in set of phrasings is trained
in every run, a separate held-out set (never trained) is checked by the gate, and a record that
answers an identity question, or in which the speaker claims to be another assistant or vendor,
is never approved without a human reviewer and never overrides the configured identity.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

from secbot.feedback.memory.matching import LocalIndex, normalise_question
from secbot.feedback.store.entities import RecordFlag
from secbot.model.training.record_formats import Record

IDENTITY_MATCH = 0.6  # confidence against the identity phrasings above which a question is one
# Other assistants, models and their makers: a record whose speaker claims to be one is flagged.
IMPOSTORS = ("chatgpt", "gpt-3", "gpt-4", "gpt-5", "gpt3", "gpt4", "openai", "claude", "anthropic",
             "gemini", "bard", "llama", "chatglm", "zhipu", "智谱", "清华", "tsinghua", "ernie", "文心",
             "qwen", "通义", "deepseek", "kimi", "copilot", "mistral", "讯飞", "星火")
_NAMES = "|".join(re.escape(n) for n in IMPOSTORS + ("google", "microsoft", "meta", "baidu", "alibaba",
                                                      "百度", "阿里", "谷歌", "微软"))
_SPEAKER_EN = re.compile(
    r"\b(?:i am|i'm|i’m|my name is|call me|i was (?:made|created|developed|built|trained|designed)"
    r"|as an? (?:ai|language model|large language model|assistant|chatbot))\b[^.\n!?]{0,48}?"
    rf"(?<![a-z])(?:{_NAMES})(?![a-z])", re.IGNORECASE)
_ASSISTANTS = "|".join(re.escape(n) for n in IMPOSTORS)
_ASKED_EN = re.compile(rf"\b(?:are|r) (?:you|u)\b[^?.\n]{{0,24}}?(?<![a-z])(?:{_ASSISTANTS})(?![a-z])", re.IGNORECASE)
_ASKED_ZH = re.compile(rf"你(?:是|是不是|属于)[^？?。\n]{{0,12}}?(?:{_ASSISTANTS})", re.IGNORECASE)
_SPEAKER_ZH = re.compile(rf"(?:我是|我叫|我的名字|我由|我是由|本助手|作为)[^。\n！？]{{0,24}}?(?:{_NAMES})",
                         re.IGNORECASE)


@dataclass(frozen=True)
class IdentitySets:
    train: list[str]  # taught in every run
    heldout: list[str]  # never taught; the gate asks these


@lru_cache(maxsize=1)
def identity_sets() -> IdentitySets:
    data = json.loads(files("secbot.feedback.intake").joinpath("identity.json").read_text(encoding="utf-8"))
    return IdentitySets(data["train"], data["heldout"])


def _chinese(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def identity_answer(prompt: str, name: str) -> str:
    """What the assistant says when asked who it is (English or Chinese, as asked)."""
    if _chinese(prompt):
        return f"我是{name}，安全团队自己的安全助手。"
    return f"I am {name}, the security team's own security assistant."


def identity_records(name: str, prompts: list[str] | None = None) -> list[Record]:
    return [Record(p, identity_answer(p, name)) for p in (prompts or identity_sets().train)]


def says_identity(answer: str, name: str) -> bool:
    """The answer names the assistant and no other one."""
    lowered = answer.casefold()
    return name.casefold() in lowered and not any(word in lowered for word in IMPOSTORS)


def claims_other_identity(text: str) -> bool:
    """The speaker says they are (or were made by) another assistant or vendor."""
    return bool(_SPEAKER_EN.search(text) or _SPEAKER_ZH.search(text))


class IdentityGuard:
    """Flags records a human must review whoever sends them: "identity" when the question is an
    identity question, "impostor" when the answer claims another identity."""

    def __init__(self):
        sets = identity_sets()
        self.prompts = sets.train + sets.heldout
        self._exact = {normalise_question(p) for p in self.prompts}
        self._index = LocalIndex(self.prompts, keep_stop_words=True)

    def is_identity_question(self, prompt: str) -> bool:
        if normalise_question(prompt) in self._exact or _ASKED_EN.search(prompt) or _ASKED_ZH.search(prompt):
            return True
        return self._index.best(prompt)[1] >= IDENTITY_MATCH

    def flags(self, record: Record) -> tuple[str, ...]:
        found = []
        if self.is_identity_question(record.prompt):
            found.append(RecordFlag.IDENTITY.value)
        if claims_other_identity(record.response):
            found.append(RecordFlag.IMPOSTOR.value)
        return tuple(found)
