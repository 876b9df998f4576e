"""The last signal: a value's look and its surroundings, weighed together by a small logistic model.

The grammars before it find a credential where a position says one sits; this catches what no
position names, the way a reader would: a value shaped like something a person or a machine chose
as a secret, a few words after a credential word, quoted, after a flag. Each piece of evidence is
weak alone; their weights are fitted together (`bench/redaction.py --fit`, on the tuning halves of
the redaction sets and a detection-rule checkout only) and kept in `classifier.json`. Its threshold
is above every value of the project's ordinary lines, so on them it changes nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from secbot.feedback.intake.redaction import evidence, prose
from secbot.feedback.intake.redaction.names import META, RESOURCE_VERBS, ZH_SECRET_NOUNS, Field, classify

WEIGHTS = Path(__file__).with_name("classifier.json")
# A value: a run of characters no config, shell or prose (English or Chinese) uses to delimit one.
VALUE = re.compile(r"[^\s\"'`,;()\[\]{}<>=|（）【】「」『』《》〈〉“”‘’、，。；：！？]+")
EDGE = ".,:;!?。，：；！？"
WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]*|[\u4e00-\u9fff]+")
ZH_CREDENTIAL = re.compile(rf"{ZH_SECRET_NOUNS}|凭据|凭证")  # and the words for credentials
FLAG_BEFORE = re.compile(r"(?:^|\s)-{1,2}[A-Za-z][\w-]*[\s:]*$")
SHORT_FLAG_P = re.compile(r"(?:^|\s)-[pP]\s*$")
SYMBOL = re.compile(r"[!@#$%^&*?~+]")
LOOK_BACK = 48
NAMED_BY = re.compile(r"(?P<word>[A-Za-z][\w-]*)[ \t]*[:=#]?[ \t]*[\"'`]?$")  # the word just before a value
# Parts of grammars that values of ordinary text are written in: a mention or a channel, an option's
# name, percent-encoding, an environment variable, a path separator, a version number, a file extension.
GRAMMAR_HINTS = [re.compile(rx) for rx in (r"^[@#][\w-]+$", r"^--?[A-Za-z][\w-]*$", r"%[0-9A-Fa-f]{2}",
                                           r"%\w+%|\$\w+|\$\{", r"[\\/]", r"\d\.\d", r"\.[a-z]{2,4}$")]

# What the model reads, in order: the value's look (`_shape`), then its surroundings (`_context`).
FEATURES = ["log_length", "lower", "upper", "digit", "symbol", "classes", "entropy", "hex", "letters_only",
            "base64_run", "chosen_symbol", "word_then_digits", "looks_secret", "password_shape", "not_secret",
            "mention", "option", "percent_encoded", "variable", "path", "version", "extension",
            "credential_word", "credential_near", "weak_word", "identifier_word", "after_assignment", "quoted",
            "after_flag", "after_p", "credential_word_after", "chinese_before"]


def candidates(text: str) -> Iterator[tuple[int, int]]:
    """The spans of values worth judging: 6 to 200 characters, edges' punctuation left out."""
    for m in VALUE.finditer(text):
        token = m.group().strip(EDGE)
        if 6 <= len(token) <= 200:
            start = m.start() + m.group().find(token)
            yield start, start + len(token)


def _shape(token: str) -> list[float]:
    n = len(token)
    lower, upper = sum(c.islower() for c in token), sum(c.isupper() for c in token)
    digit = sum(c.isdigit() for c in token)
    symbol = n - lower - upper - digit
    classes = (lower > 0) + (upper > 0) + (digit > 0) + (symbol > 0)
    return [math.log(n), lower / n, upper / n, digit / n, symbol / n, classes / 4,
            evidence.shannon_entropy(token) / math.log2(n),
            float(bool(re.fullmatch(r"[0-9a-f]+", token))), float(token.isalpha()),
            float(n >= 16 and bool(re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", token))),
            float(bool(SYMBOL.search(token))), float(bool(re.fullmatch(r"[a-z]+[0-9]{1,4}", token))),
            float(evidence.looks_secret(token)), float(evidence.has_password_shape(token)),
            float(evidence.is_not_secret(token))] + [float(bool(rx.search(token))) for rx in GRAMMAR_HINTS]


def _words(before: str, value: str = "") -> list[tuple[int, Field]]:
    """(end, what the word names) for the words before a value. A credential word followed by one
    that names something about it is about the credential (`password policy`, `密码策略`); after a
    verb it is a kind of resource (`vault delete token NAME`), as the positions read it."""
    out: list[tuple[int, Field]] = []
    found = list(WORD.finditer(before + value))  # the value's own first word may say what the last one names
    for i, m in enumerate(found):
        if m.end() > len(before):
            break
        word = m.group()
        if "\u4e00" <= word[0] <= "\u9fff":
            out += [(m.start() + k.end(), Field.OTHER if prose.ZH_ABOUT.match(word, k.end()) else Field.CREDENTIAL)
                    for k in ZH_CREDENTIAL.finditer(word)]
            continue
        kind = classify(word)
        following = found[i + 1] if i + 1 < len(found) else None
        if kind is Field.CREDENTIAL and following and following.group().lower() in META \
                and re.fullmatch(r"[\s_-]+", (before + value)[m.end():following.start()]):
            kind = Field.IDENTIFIER  # `password policy`, `Credential Access:…`
        if kind is Field.CREDENTIAL and i and found[i - 1].group().lower() in RESOURCE_VERBS:
            kind = Field.OTHER  # `kubectl get secret NAME`: a kind of resource, and the value its name
        out.append((m.end(), kind))
    return out


def _context(text: str, start: int, end: int) -> list[float]:
    before = text[max(0, start - LOOK_BACK):start]
    kinds = _words(before, text[start:end])
    credential = [at for at, kind in kinds if kind is Field.CREDENTIAL]
    distance = len(before) - max(credential) if credential else None
    after = text[end:end + 24]
    prefix = text[:start].rstrip()
    return [float(bool(credential)), math.exp(-distance / 12) if credential else 0.0,
            float(any(kind is Field.WEAK for _, kind in kinds)),
            float(bool(kinds) and kinds[-1][1] is Field.IDENTIFIER),
            float(prefix.endswith(("=", ":"))), float(text[start - 1:start] in ("'", '"', "`") if start else False),
            float(bool(FLAG_BEFORE.search(before))), float(bool(SHORT_FLAG_P.search(before))),
            float(any(classify(m.group()) is Field.CREDENTIAL for m in WORD.finditer(after))),
            float(bool(re.search(r"[\u4e00-\u9fff]", before)))]


def features(text: str, start: int, end: int) -> list[float]:
    """What the model reads about the value `text[start:end]`: its look, then its surroundings."""
    return _shape(text[start:end]) + _context(text, start, end)


class Model:
    """Logistic weights over FEATURES and the threshold at or below which a value is kept."""

    def __init__(self, weights: dict[str, float], intercept: float, threshold: float):
        self.vector = [weights.get(name, 0.0) for name in FEATURES]
        self.intercept = intercept
        self.threshold = threshold

    def score(self, values: list[float]) -> float:
        x = self.intercept + sum(w * v for w, v in zip(self.vector, values))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))

    def secret(self, text: str, start: int, end: int) -> bool:
        named = NAMED_BY.search(text, max(0, start - 40), start)
        if named and classify(named.group("word")) is Field.IDENTIFIER:
            return False  # the word right before names it an identifier: `version 3f9c…`, `commit 4f1a…`
        return self.score(features(text, start, end)) > self.threshold


@lru_cache(maxsize=1)
def model() -> Model:
    """The fitted model, as `bench/redaction.py --fit` wrote it."""
    data = json.loads(WEIGHTS.read_text(encoding="utf-8"))
    return Model(data["weights"], data["intercept"], data["threshold"])
