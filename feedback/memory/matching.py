"""How team memory matches questions: every approved record answers at once, also when asked in
other words.

Lexical, no model download: questions become terms (jieba words for Chinese, Snowball-stemmed
word tokens for English, stop words dropped). The answering decision uses a confidence in [0, 1]:
the Dice overlap of query and record terms, each weighted by its IDF in the memory and by its
rarity in general language (wordfreq), times 0.6 when the two questions ask for different kinds
of answer (when / where / who / how many / why / yes-no / what-how). Unlike a raw BM25 score it
means the same at 100 records and at 100k, so one threshold serves every team; `bench/memory.py`
measured the defaults. The index itself lives in the store (`feedback.store.memory_index`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

log = logging.getLogger(__name__)

CONTEXT_WEIGHT = 0.5  # a thread's earlier questions count half as much as the question itself
MAX_TERM = 64

# Words that frame a question rather than say what it is about.
STOP_EN = set("""
a an the and or but if then than so of to in on at by for with from into onto about as is are was
were be been being am do does did doing done have has had having can could should would will shall
may might must i me my we our us you your he she it its they them their this that these those there
here what which who whom whose when where why how whether not no yes please pls thanks thank hi
hello hey tell explain describe define definition mean means meaning give show list briefly
exactly just really also any some all each every other another such way ways thing things kind
get got let know want need like one ones more most much many very quick short simple simply
question answer help someone somebody anyone something anything again still okay ok versus vs
""".split())
STOP_ZH = set("""
什么 是 的 了 吗 呢 吧 啊 呀 和 与 及 或 或者 在 对 把 被 给 让 从 向 到 为 为什么 怎么 怎样 怎么样 如何
哪 哪些 哪个 哪里 谁 多少 几 有 没有 不 也 都 就 还 又 很 更 最 该 应该 应当 要 需要 能 能否 可以 可能 会
一下 一个 一些 这个 那个 这 那 这些 那些 我 我们 你 你们 他 她 它 他们 请 请问 介绍 解释 说明 告诉 讲讲
讲 说说 简述 简单 区别 意思 含义 定义 是否 呢 么 之 其 以 及其 时 中 上 下 里 后 前 用 做 进行
""".split())
_WORD = re.compile(r"[a-z0-9][a-z0-9_.+#-]*", re.I)


@lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem.snowball import SnowballStemmer

    return SnowballStemmer("english")


@lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


@lru_cache(maxsize=65536)
def _zh_stop(token: str) -> bool:
    """A Chinese stop word, or one jieba glued together from stop words ("解释一下", "是什么")."""
    if token in STOP_ZH:
        return True
    return any(token[:i] in STOP_ZH and _zh_stop(token[i:]) for i in range(1, min(len(token), 4) + 1)
               if i < len(token))


def _is_cjk(token: str) -> bool:
    return any("\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in token)


@lru_cache(maxsize=65536)
def specificity(word: str, lang: str) -> float:
    """How much a word says about what a question is about, from how common it is in general
    language (wordfreq's Zipf scale: 7 for "the", 3 for "firewall"): 1 for rare words and
    identifiers, down to 0.15 for everyday words ("long", "keep", "next"). A small team memory
    cannot tell those apart by its own document frequencies."""
    if any(c.isdigit() for c in word) or (lang == "en" and not word.isalpha()):
        return 1.0
    from wordfreq import zipf_frequency

    return min(1.0, max(0.15, (7.0 - zipf_frequency(word, lang)) / 4.0))


@lru_cache(maxsize=65536)
def _english(word: str, keep_stop_words: bool = False) -> tuple[str, float] | None:
    word = word.strip(".-_+").lower()
    if not word or (word in STOP_EN and not keep_stop_words) or (len(word) < 2 and not word.isdigit()):
        return None
    if not word.isascii() or any(c.isdigit() for c in word) or not word.isalpha():
        return word[:MAX_TERM], 1.0  # identifiers, ports, CVE numbers, versions: kept as written
    return _stemmer().stem(word)[:MAX_TERM], specificity(word, "en")


def analyse(text: str, keep_stop_words: bool = False) -> list[tuple[str, float]]:
    """(term, specificity) for each searchable term of `text`, in order: Chinese words by jieba's
    search mode (a compound and its parts: 笔记本电脑, 笔记本, 电脑), English words stemmed.
    `keep_stop_words` keeps the framing words too (identity questions are made of nothing else)."""
    return list(_analyse(unicodedata.normalize("NFKC", text), keep_stop_words))


@lru_cache(maxsize=8192)
def _analyse(text: str, keep_stop_words: bool) -> tuple[tuple[str, float], ...]:
    out: list[tuple[str, float]] = []
    # jieba only where there is Chinese: it would split English text the same way, 10x slower.
    tokens = _jieba().cut_for_search(text) if _is_cjk(text) else _WORD.findall(text)
    for token in tokens:
        token = token.strip()
        if not token:
            continue
        if _is_cjk(token):
            if (keep_stop_words or not _zh_stop(token)) and not all(unicodedata.category(c)[0] in "PZS" for c in token):
                out.append((token[:MAX_TERM], specificity(token, "zh")))
            continue
        for word in _WORD.findall(token):
            found = _english(word, keep_stop_words)
            if found:
                out.append(found)
    return tuple(out)


def terms(text: str, keep_stop_words: bool = False) -> list[str]:
    """The searchable terms of `text`, in order."""
    return [t for t, _ in analyse(text, keep_stop_words)]


def weighted_terms(question: str, context: Iterable[str] = (), keep_stop_words: bool = False) -> dict[str, float]:
    """Each term's weight: its specificity, times CONTEXT_WEIGHT when it comes only from the
    context (a thread's earlier questions)."""
    weights = {t: w * CONTEXT_WEIGHT for c in context for t, w in analyse(c, keep_stop_words)}
    weights.update(dict(analyse(question, keep_stop_words)))
    return weights


# What kind of answer a question asks for. Two questions of different kinds ("When is the next
# awareness training?", "What is awareness training?") are not the same question however many
# words they share; "what", "which" and "how" are one open kind, paraphrases swap them freely.
INTENTS_EN = [("quantity", r"\bhow (?:long|many|much|often|old|far)\b"), ("time", r"\bwhen\b"),
              ("place", r"\bwhere\b"), ("person", r"\bwho(?:m|se)?\b"), ("reason", r"\bwhy\b"),
              ("open", r"\b(?:what|which|how)\b"),
              ("open", r"^\W*(?:can|could|would|will)\s+(?:you|u)\s+(?:please\s+)?(?:explain|tell|describe|give|"
                       r"show|list|help|define|summari[sz]e|walk|clarify|outline|share)\b"),
              ("yesno", r"^\W*(?:is|are|can|could|do|does|did|should|may|will|was|were|have|has|am)\b")]
INTENTS_ZH = [("quantity", r"多久|多长时间|多少|几[个天次年月]"), ("time", r"什么时候|何时"),
              ("place", r"哪里|在哪|何处|哪儿"), ("person", r"谁"), ("reason", r"为什么|为何"),
              ("open", r"什么|哪|如何|怎么|怎样"), ("yesno", r"吗[？?]?$|是否|能否|可否")]
_INTENTS = [(name, re.compile(rx, re.IGNORECASE)) for name, rx in INTENTS_EN + INTENTS_ZH]
INTENT_MISMATCH = 0.6  # confidence factor when two questions ask for different kinds of answer
# The answering thresholds, measured by bench/memory.py: at or above CONFIDENT the team's answer is
# given without a model call; at or above REFERENCE a record goes to the model as reference.
CONFIDENT, REFERENCE = 0.75, 0.35


def intent(question: str) -> str | None:
    """The kind of answer `question` asks for, or None when it does not say (a bare phrase)."""
    text = unicodedata.normalize("NFKC", question).strip()
    return next((name for name, rx in _INTENTS if rx.search(text)), None)


def normalise_question(text: str) -> str:
    """How questions are compared for identity: case, width and spacing do not matter."""
    return " ".join(unicodedata.normalize("NFKC", text).split()).casefold().rstrip("?？!！.。 ")


def question_key(prompt: str, history: Sequence[Sequence[str]] = ()) -> str:
    """Records with the same key answer the same question (a newer approved one supersedes)."""
    parts = [normalise_question(q) for q, _ in history] + [normalise_question(prompt)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def idf(df: int, n: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def confidence(query: dict[str, float], doc: dict[str, float], idfs: dict[str, float]) -> float:
    """IDF-weighted Dice overlap of two weighted term sets, in [0, 1]."""
    q = {t: w * idfs.get(t, 0.0) for t, w in query.items()}
    d = {t: w * idfs.get(t, 0.0) for t, w in doc.items()}
    total = sum(q.values()) + sum(d.values())
    if total <= 0:
        return 0.0
    return 2 * sum(min(q[t], d[t]) for t in q.keys() & d.keys()) / total


@dataclass(frozen=True)
class Match:
    record_id: int
    confidence: float  # 0..1, what the answering thresholds compare
    bm25: float  # the lexical ranking score (0 for a record found by meaning only)
    lexical: float | None = None  # the lexical confidence alone, where semantic matching took part
    semantic: float | None = None  # the cosine of the two questions' vectors
    features: dict[str, float] | None = None  # what the combined confidence read (`memory.semantic`)
    fused: float | None = None  # reciprocal rank fusion of the lexical and the semantic ranking


@dataclass(frozen=True)
class Document:
    """A record as the memory indexes it."""

    record_id: int
    question_key: str
    weights: dict[str, float]
    intent: str | None
    counts: Counter
    question: str = ""
    context: tuple[str, ...] = ()

    @classmethod
    def of(cls, record_id: int, prompt: str, history: Sequence[Sequence[str]]) -> "Document":
        context = tuple(q for q, _ in history)
        counts = Counter(t for text in [prompt, *context] for t, _ in analyse(text))
        return cls(record_id, question_key(prompt, history), weighted_terms(prompt, context), intent(prompt), counts,
                   prompt, context)


class LocalIndex:
    """The same terms and confidence over a short list held in memory (the identity prompts),
    so "is this an identity question?" is answered the way team memory would answer it."""

    def __init__(self, questions: Sequence[str], keep_stop_words: bool = False):
        self.keep_stop_words = keep_stop_words
        docs = [weighted_terms(q, keep_stop_words=keep_stop_words) for q in questions]
        self.n = len(docs)
        df = Counter(t for d in docs for t in d)
        self.idfs = {t: idf(n, self.n) for t, n in df.items()}
        self.docs = [{t: w * self.idfs[t] for t, w in d.items()} for d in docs]
        self.totals = [sum(d.values()) for d in self.docs]
        self.holding: dict[str, list[int]] = {}
        for i, d in enumerate(self.docs):
            for t in d:
                self.holding.setdefault(t, []).append(i)

    def best(self, question: str, context: Sequence[str] = ()) -> tuple[int, float]:
        """(index of the closest question, confidence); (-1, 0.0) when nothing overlaps.
        Question kinds are not compared: this index holds one kind of question."""
        query = weighted_terms(question, context, self.keep_stop_words)
        # Terms the list never uses still weigh against a match, as in a large memory.
        q = {t: w * self.idfs.get(t, idf(0, self.n)) for t, w in query.items()}
        total = sum(q.values())
        best, score = -1, 0.0
        for i in {i for t in q for i in self.holding.get(t, ())}:
            d = self.docs[i]
            shared = 2 * sum(min(w, d[t]) for t, w in q.items() if t in d) / (total + self.totals[i])
            if shared > score:
                best, score = i, shared
        return best, round(score, 4)
