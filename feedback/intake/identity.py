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
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

from secbot.feedback.memory.matching import LocalIndex, normalise_question
from secbot.feedback.store.entities import RecordFlag
from secbot.model.training.record_formats import Record

IDENTITY_MATCH = 0.6  # confidence against the identity phrasings above which a question is one

# Other assistants, models and their makers, as entities: matched on normalised text (NFKC, case
# folded) with the separators between their parts ignored, so "Chat-GPT", "Open AI", "ＣｈａｔＧＰＴ"
# and "GPT‑4o" are the names they spell.
ENTITY = re.compile(r"(?:chatgpt|gpt\d[a-z0-9]*|openai|claude(?:\d[a-z0-9]*)?|anthropic|gemini(?:pro|ultra|flash|nano"
                    r"|\d[a-z0-9]*)?|bard|llama\d*|metaai|chatglm\d*|glm\d+[a-z0-9]*|zhipu(?:ai)?|ernie(?:bot)?"
                    r"|qwen\d*|tongyi|deepseek(?:v\d+|r\d+|coder|chat)?|kimi"
                    r"|moonshot(?:ai)?|copilot|mistral|doubao|grok|google|microsoft|meta|baidu|alibaba(?:cloud)?"
                    r"|tsinghua|iflytek|sparkdesk|bytedance|bing|xai|hunyuan|tencent|yuanbao)")
ENTITY_ZH = re.compile(r"文心一言|文心|通义千问|通义|智谱清言|智谱|讯飞星火|星火|豆包|月之暗面|深度求索|百度|阿里云|阿里|谷歌|微软"
                       r"|清华|字节跳动|元宝|混元|腾讯|讯飞|小冰")
# Words that may stand between "I am" and the name in a self-identification.
FILLER = {"a", "an", "the", "actually", "really", "technically", "just", "simply", "basically", "officially",
          "ai", "artificial", "intelligence", "assistant", "chatbot", "bot", "model", "language", "large", "llm",
          "conversational", "helpful", "virtual", "called", "named", "from", "by", "made", "built", "developed",
          "trained", "created", "designed", "powered", "based", "on", "of", "version", "latest", "s", "me",
          "actually", "here", "is", "am", "today", "your", "with", "to"}
NEGATION = {"not", "no", "never", "nt", "isnt", "arent", "neither", "nor"}
_CLAUSE_END = re.compile(r"[.,;:!?()\[\]\n—–\"“”]|\s-\s")
_FRAME_EN = re.compile(
    r"\b(?:i am|i'm|im|my name is|call me|this is|(?:you are|you're)(?: now| currently)? (?:talking|chatting"
    r"|speaking) (?:to|with)|my (?:creators?|developers?|makers?) (?:at|is|are|was|were)|speaking as"
    r"|(?:your|this) assistant(?: today)? is"
    r"|identity:|answer from|response from|(?:written|generated|produced) by me,?|i was (?:made|created|developed"
    r"|built|trained|designed|programmed) by|as an? (?:ai|language model|large language model|assistant|chatbot"
    r"|model)(?: (?:made|built|developed|trained|created|designed))?(?: by| from| of)?|(?:^|(?<=[.!?\n] ))as)\b"
    r"|identity:")
_POSTFIX_EN = re.compile(r"^\s*(?:here\b|speaking\b|at your service\b)")
# The frames that say what the speaker is (a copula), then those that say whom they talk with or who made them.
_COPULAR_ZH_FRAMES = (r"我是|我叫|我的名字(?:是|叫)|本(?:助手|模型|机器人|ai)(?:是|为)?|这里是|你现在使用的是|你正在使用的是"
                      r"|作为(?:一个)?")
_COPULAR_ZH = re.compile(_COPULAR_ZH_FRAMES)
_FRAME_ZH = re.compile(r"我是由|作为(?:一个)?由|" + _COPULAR_ZH_FRAMES + r"|你(?:现在|目前)?正在(?:和|跟|与|使用)|我由|我来自")
# What ends a Chinese self-description (`……的智能助手～`), and the words for what the speaker is.
_ZH_TAIL = " ~～!！吧呀啊哦呢😊"
_SELF_ZH = r"助手|助理|模型|机器人|人工智能|智能体|ai|版"
# Verbs that report or cite what someone else said or wrote.
_REPORTING = re.compile(r"(?:recommend|suggest|say|note|report|describ|document|explain|advis|warn|stat|put|show"
                        r"|mention|point|find|announc|writ|confirm|disclos|publish|observ|advertis|claim|ask|tell"
                        r"|typ|pretend|impersonat|quot|read)(?:e|es|ed|s|d|ing)?|said|wrote|written|told|found"
                        r"|repl(?:y|ies|ied)")
_REPORTING_ZH = re.compile(r"说|称|写|问|回答|回复|声称|冒充|假装|自称|提示")
_QUOTE = re.compile(r"\"[^\"]*\"|“[^”]*”|「[^」]*」|(?<![a-z])'[^']*'(?![a-z])")
_ASKED_EN = re.compile(r"\b(?:are|r) (?:you|u)\b")
_ASKED_ZH = re.compile(r"你(?:是|是不是|属于)")
_WORD = re.compile(r"[a-z0-9]+")


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().replace("’", "'")


def _entity_at(words: list[str], i: int) -> int:
    """How many words from `i` spell an entity's name (0 when none)."""
    for size in (3, 2, 1):
        if i + size <= len(words) and ENTITY.fullmatch("".join(words[i:i + size])):
            return size
    return 0


def mentions_entity(text: str) -> bool:
    """Names another assistant, model or maker anywhere."""
    text = normalise(text)
    words = _WORD.findall(text)
    return bool(ENTITY_ZH.search(text)) or any(_entity_at(words, i) for i in range(len(words)))


def _claimed_after(window: str, allow_any_words: bool = False, citing: bool = False) -> bool:
    """An entity in the words after a self-identification frame, with only filler before it. With
    `citing` (a sentence that opens with "As"), not when a reporting verb follows the name: "As
    Claude, I …" is a role, "As Microsoft recommends, …" cites a source."""
    cut = _CLAUSE_END.search(window.lstrip(" ,"))
    window = window.lstrip(" ,")[:cut.start()] if cut else window.lstrip(" ,")
    words = _WORD.findall(window.replace("n't", " not"))
    for i, word in enumerate(words[:8]):
        if word in NEGATION:
            return False
        if size := _entity_at(words, i):
            return not (citing and i + size < len(words) and _REPORTING.fullmatch(words[i + size]))
        if word not in FILLER and not allow_any_words:
            return False
    return False


def _quoted(text: str) -> list[tuple[int, int]]:
    """Spans of speech quoted after a reporting verb (`the page claimed "I am Claude …"`, `说“我是豆包”`):
    what someone else said."""
    return [m.span() for m in _QUOTE.finditer(text)
            if any(_REPORTING.fullmatch(w) for w in _WORD.findall(text[max(0, m.start() - 40):m.start()]))
            or _REPORTING_ZH.search(text[max(0, m.start() - 6):m.start()])]


def _names_entity(clause: str) -> bool:
    """A Chinese clause that names another assistant or maker anywhere in it."""
    return bool(ENTITY_ZH.search(clause)) or _claimed_after(clause, allow_any_words=True)


def _names_self(clause: str) -> bool:
    """A Chinese clause after 我是/这里是/作为 that names another assistant or maker as what the
    speaker is: after the last name, no Chinese words but a word for an assistant (`……的智能助手`,
    `ChatGPT 的中文版`); a version after it is still the name (`Claude 3.5 Sonnet`). Other things of
    theirs are not the speaker (`百度网盘的分享链接`, `微软的合作伙伴`)."""
    clause = clause.strip(_ZH_TAIL)
    if clause.startswith("由"):  # made by: `本助手由OpenAI的GPT-4驱动`
        return _names_entity(clause)
    ends = [m.end() for m in ENTITY_ZH.finditer(clause)]
    words = list(_WORD.finditer(clause))
    tokens = [w.group() for w in words]
    ends += [words[i + size - 1].end() for i in range(len(tokens)) if (size := _entity_at(tokens, i))]
    if not ends:
        return False
    tail = clause[max(ends):]
    return not re.search(r"[\u4e00-\u9fff]", tail) or bool(re.search(f"(?:{_SELF_ZH})$", tail))


def claims_other_identity(text: str) -> bool:
    """The speaker says they are (or were made by) another assistant or vendor; words they quote
    from someone else ("the page claimed \"I am Claude\"") are not theirs."""
    text = normalise(text)
    quoted = _quoted(text)

    def reported(at: int) -> bool:
        return any(a <= at < b for a, b in quoted)

    for frame in _FRAME_EN.finditer(text):
        before = text[max(0, frame.start() - 12):frame.start()]
        if reported(frame.start()) or re.search(r"\b(?:not|never)\s*$", before):
            continue
        if _claimed_after(text[frame.end():frame.end() + 120], citing=frame.group() == "as"):
            return True
    words = list(_WORD.finditer(text))
    tokens = [w.group() for w in words]
    for i in range(len(tokens)):
        size = _entity_at(tokens, i)
        if size and not reported(words[i].start()) and _POSTFIX_EN.match(text[words[i + size - 1].end():]):
            return True  # "Claude here", "Mistral speaking", "ChatGPT at your service"
    for frame in _FRAME_ZH.finditer(text):
        clause = re.split(r"[，。！？；\n,.!?;]", text[frame.end():frame.end() + 30])[0]
        negated = re.search(r"(?:不是|并非|不)$", text[max(0, frame.start() - 2):frame.start()]) or re.match(
            r"\s*(?:不是|并非|并不是|不)", clause)
        if not negated and not reported(frame.start()) and (
                _names_self(clause) if _COPULAR_ZH.fullmatch(frame.group()) else _names_entity(clause)):
            return True
    return False


def asks_about_entity(prompt: str) -> bool:
    """"Are you ChatGPT?", "r u chat-gpt", "你是不是文心一言"."""
    text = normalise(prompt)
    for asked in _ASKED_EN.finditer(text):
        if _claimed_after(text[asked.end():asked.end() + 60]):
            return True
    for asked in _ASKED_ZH.finditer(text):
        clause = re.split(r"[，。！？；\n,.!?;？]", text[asked.end():asked.end() + 20])[0]
        if _names_entity(clause):
            return True
    return False


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
    return normalise(name) in normalise(answer) and not mentions_entity(answer)


class IdentityGuard:
    """Flags records a human must review whoever sends them: "identity" when the question is an
    identity question, "impostor" when the answer claims another identity."""

    def __init__(self):
        sets = identity_sets()
        self.prompts = sets.train + sets.heldout
        self._exact = {normalise_question(p) for p in self.prompts}
        self._index = LocalIndex(self.prompts, keep_stop_words=True)

    def is_identity_question(self, prompt: str) -> bool:
        if normalise_question(prompt) in self._exact or asks_about_entity(prompt):
            return True
        return self._index.best(prompt)[1] >= IDENTITY_MATCH

    def flags(self, record: Record) -> tuple[str, ...]:
        """The answer and every earlier turn of its history get the same checks."""
        found = []
        if self.is_identity_question(record.prompt):
            found.append(RecordFlag.IDENTITY.value)
        if claims_other_identity(record.response):
            found.append(RecordFlag.IMPOSTOR.value)
        if any(claims_other_identity(q) or claims_other_identity(a) or self.is_identity_question(q)
               for q, a in record.history):
            found.append(RecordFlag.HISTORY.value)
        return tuple(found)
