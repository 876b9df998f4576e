"""Credentials out of text before anything is stored: each secret becomes `[REDACTED:<kind>]`.

By structure, then by evidence, all found on the same text and replaced once:
1. Where credentials sit (`positions`): the value slot of an assignment, header, URL userinfo, call
   argument, placeholder default or table column, an option on a command line (`commands`), or a
   sentence in English, Chinese or another language (`prose`), judged by the field's name, all read
   with Markdown's markup blanked and HTML's character references decoded (`markup`).
2. Their own formats (`formats`): key blocks, vendor tokens, maintained detectors.
3. Decoding: base64 that decodes to a private key, to `user:pass` or to a known token.
4. Entropy (`evidence.looks_secret`), judged per value and never inside a grammar of things
   that are not secrets (ARNs, resource ids, bucket URIs, hashes, UUIDs, image references, paths,
   host names, IPs, finding types) or inside a field that names an identifier.
5. Last, every value still open is weighed by its look and its surroundings together
   (`classifier`), under the same exclusions.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from secbot.feedback.intake.redaction import classifier, evidence, formats, markup, positions
from secbot.feedback.intake.redaction.names import IDENTIFIER_HEADS, Field

_SURROGATE = re.compile("[\ud800-\udfff]")
SPREAD_LIMIT = 64
CONTEXT_LIMIT = 400  # characters of the conversation before a text that are read with it
_TOKEN_CHAR = re.compile(r"\w")
_GLUED_OPTION = re.compile(r"(?:^|\s)-[A-Za-z]$")
CANDIDATE = re.compile(r"[A-Za-z0-9+/_~.\-]{20,}(?:={1,2}(?![\w=]))?")
# A random-looking token right after one of these nouns is what the noun names (`app client 5k8q…`, `zone Z04…`).
NAMING_NOUNS = IDENTIFIER_HEADS | {"client", "zone", "distribution", "pool", "tenant", "layer", "workspace", "project",
                                   "org", "organization", "device", "commit", "build", "job", "run", "pipeline", "app",
                                   "application", "deployment", "replicaset", "service", "stack", "table", "topic"}
PREVIOUS_WORD = re.compile(r"([A-Za-z]+)[\s:=#]*$")
# A value is what follows `=`; what precedes it names a field (`client.ipAddress=198.51.100.7`). Base64's
# padding (`…Q=`, `…==`) is followed by nothing of a value.
FIELD_NAME_AFTER = re.compile(r"[ \t]*=(?=[^=\s\"'])")
BASE64 = re.compile(r"(?<![\w+/=-])[A-Za-z0-9+/_-]{16,}={0,2}(?![\w+/=-])")


@dataclass(frozen=True)
class Redacted:
    text: str
    count: int
    kinds: tuple[str, ...] = field(default=())


class _Spans:
    """Sorted, merged spans with a containment test."""

    def __init__(self, spans):
        merged: list[list[int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.starts = [s for s, _ in merged]
        self.spans = merged

    def covers(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self.starts, start) - 1
        return i >= 0 and self.spans[i][1] >= end

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self.starts, end) - 1
        return i >= 0 and self.spans[i][1] > start

    def inside(self, start: int, end: int) -> list[tuple[int, int]]:
        """The spans that lie within [start, end)."""
        return [(s, e) for s, e in self.spans[bisect.bisect_left(self.starts, start):
                                              bisect.bisect_left(self.starts, end)] if e <= end]


class Redactor:
    """Replaces credentials in text; `redact` returns the clean text and what was found."""

    def __init__(self, use_detectors: bool = True):
        self.use_detectors = use_detectors

    def warm(self) -> None:
        """Load the maintained detectors and the last signal now (up to a few seconds the first time
        on a machine), so the first question does not wait for them."""
        self.redact("warm up: password=Xq7-warm-up-9z AKIAIOSFODNN7EXAMPLE")

    def redact(self, text: str, context: str = "") -> Redacted:
        """`text` with its secrets replaced. `context` is what was said just before it in the same
        conversation (the question an answer replies to): read with the text, never changed or returned,
        so `reset it, new one is X` is judged knowing that the question was about a password."""
        if not text:
            return Redacted(text or "", 0)
        # No store keeps NUL characters or unpaired surrogates (PostgreSQL refuses both).
        text = _SURROGATE.sub("\ufffd", text.replace("\x00", ""))
        found = self.find(text, context)
        if not found:
            return Redacted(text, 0)
        out, kinds, last = [], [], 0
        for start, end, kind in found:
            out.append(text[last:start])
            out.append(f"[REDACTED:{kind}]")
            kinds.append(kind)
            last = end
        out.append(text[last:])
        return Redacted("".join(out), len(kinds), tuple(kinds))

    def find(self, text: str, context: str = "") -> list[tuple[int, int, str]]:
        """The secrets in `text`, as non-overlapping (start, end, kind), in order."""
        if context:  # its last characters, then a blank line, so a sentence in it ends before the text begins
            before = _SURROGATE.sub("\ufffd", context.replace("\x00", ""))[-CONTEXT_LIMIT:] + "\n\n"
            return [(max(start - len(before), 0), end - len(before), kind)
                    for start, end, kind in self.find(before + text) if end > len(before)]
        view = markup.unescaped(text)
        if view:  # `token=&quot;…&quot;`: judged as the characters its references stand for, cut from `text`
            decoded, starts, ends = view
            return _everywhere(text, _merge([(starts[s], ends[e - 1], kind) for s, e, kind in self._find(decoded)]))
        return _everywhere(text, self._find(text))

    def _find(self, text: str) -> list[tuple[int, int, str]]:
        text = markup.blank(text)  # the same offsets, read without Markdown's markup
        found, kept = self.by_rules(text)
        weighed = classifier.model()
        found.extend((start, end, "likely_secret") for start, end in self.open_values(text, kept, found)
                     if weighed.secret(text, start, end))
        return _merge(found)

    def unjudged(self, text: str) -> list[tuple[int, int]]:
        """The values of `text` left to the last signal (what `bench/redaction.py --fit` calibrates on)."""
        text = markup.blank(text)
        found, kept = self.by_rules(text)
        return self.open_values(text, kept, found)

    @staticmethod
    def open_values(text: str, kept: "_Spans", found: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
        """The values no rule has judged: not touching a secret found, not inside a span kept, not a
        placeholder or template (`$objectRef.name$`, `%PASSWORD%`: it names a value, it holds none), not
        a field's name before its `=`."""
        claimed = _Spans((s, e) for s, e, _ in found)
        return [(start, end) for start, end in classifier.candidates(text)
                if not kept.covers(start, end) and not claimed.overlaps(start, end)
                and not evidence.is_reference(text[start:end], True) and not FIELD_NAME_AFTER.match(text, end)]

    def by_rules(self, text: str) -> tuple[list[tuple[int, int, str]], "_Spans"]:
        """What the grammars, formats, decoding and entropy find, and the spans they keep."""
        found: list[tuple[int, int, str]] = []
        keep: list[tuple[int, int]] = evidence.protected_spans(text)
        identifiers: list[tuple[int, int]] = []
        system_headers: list[tuple[int, int]] = []  # a mail system's headers: ids, signatures, a gateway's data
        templates = _Spans(m.span() for m in evidence.TEMPLATE.finditer(text))
        for slot in positions.slots(text):
            if slot.field is Field.IDENTIFIER:
                keep.append(slot.value)
                identifiers.append(slot.value)
                if slot.kind == "header":
                    system_headers.append(slot.value)
            elif slot.end > slot.start and not templates.covers(slot.start, slot.end):
                found.append((slot.start, slot.end, slot.kind))  # inside `{{ … }}` a name is an expression
        formatted = formats.format_spans(text)
        formatted += [(start, end, "private_jwk") for start, end, private in evidence.jwk_members(text) if private]
        if self.use_detectors:
            for kind, value in formats.detector_values(text):
                formatted.extend((m.start(), m.end(), kind) for m in re.finditer(re.escape(value), text))
        # An access key id is a name (AWS says so; CloudTrail logs it): kept where its field says id.
        named = _Spans(identifiers)
        found.extend(f for f in formatted if f[2] not in formats.IDENTIFIER_FORMATS or not named.covers(f[0], f[1]))
        for m in BASE64.finditer(text):
            kind = evidence.decoded_secret(m.group(), formats.known_format)
            if kind:
                found.append((m.start(), m.end(), kind))
        verbatim = evidence.verbatim_spans(text)
        written_by_system = _Spans(system_headers)
        for m in evidence.ENCODED_WORD.finditer(text):  # `=?UTF-8?B?…?=`: judged as the text it encodes
            if written_by_system.covers(*m.span()):
                continue  # a gateway's opaque data, encoded
            decoded = evidence.decoded_word(m.group())
            if decoded is not None:
                inner = self.find(decoded)
                if inner:
                    found.append((m.start(), m.end(), inner[0][2]))
                else:
                    verbatim.append(m.span())
        if verbatim:
            quoted = _Spans(verbatim)
            found = [f for f in found if not quoted.covers(f[0], f[1])]
            keep += verbatim
        kept = _Spans(keep)
        claimed = _Spans((s, e) for s, e, _ in found)
        for m in CANDIDATE.finditer(text):
            found.extend(self._by_entropy(m, kept, claimed))
        return found, _Spans(keep + [tuple(span) for span in templates.spans])

    @staticmethod
    def _by_entropy(match: re.Match, kept: _Spans, claimed: _Spans):
        token, start = match.group(), match.start()
        parts = [(start, token)]
        if token.startswith("//") or token.count("/") >= 3:  # a path: judge each part
            parts = [(start + m.start(), m.group()) for m in re.finditer(r"[^/]{20,}", token)]
        elif token.count("~") >= 2:  # fields of one identity (`Package_for_KB3138962~31bf3856ad364e35~amd64~~6.1`)
            parts = [(start + m.start(), m.group()) for m in re.finditer(r"[^~]{20,}", token)]
        text = match.string
        for at, part in parts:
            bare = part.strip(".-_")  # `sg-0a1b2c3d4e5f67890.` ends a sentence: judge the id, not its full stop
            at, end = at + part.find(bare), at + part.find(bare) + len(bare)
            if kept.covers(at, end) or claimed.covers(at, end) or not evidence.looks_secret(part) \
                    or evidence.sample_value(bare):
                continue
            # What a grammar keeps inside the value (`req-<uuid>`) is not judged: only the rest is.
            inner = [(s, e) for s, e in kept.inside(at, end)
                     if (s == at or not text[s - 1].isalnum()) and (e == end or not text[e].isalnum())]
            rest = [text[a:b] for a, b in zip([at] + [e for _, e in inner], [s for s, _ in inner] + [end])]
            if inner and not any(evidence.looks_secret(piece) for piece in rest):
                continue
            before = PREVIOUS_WORD.search(text, max(0, at - 40), at)
            if before and before.group(1).lower() in NAMING_NOUNS:
                continue
            yield at, end, "high_entropy_secret"


def _everywhere(text: str, found: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """A secret found once is a secret wherever else it stands whole in the same text: as the login
    beside its own password (`account:X password:X`), typed again in a command (`-pX` too), quoted
    in a sentence. The first SPREAD_LIMIT distinct secrets are looked for, so a line of many stays linear."""
    values: dict[str, str] = {}
    for start, end, kind in found:
        if end - start >= 6 and len(values) < SPREAD_LIMIT:
            values.setdefault(text[start:end], kind)
    more = []
    for value, kind in values.items():
        at = text.find(value)
        while at != -1:
            end = at + len(value)
            glued = _GLUED_OPTION.search(text, max(0, at - 3), at)  # `-pX`: an option's value, glued to it
            if (not at or glued or not _TOKEN_CHAR.match(text, at - 1)) and not _TOKEN_CHAR.match(text, end):
                more.append((at, end, kind))
            at = text.find(value, end)
    return _merge(found + more) if more else found


def _merge(found: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    merged: list[tuple[int, int, str]] = []
    for start, end, kind in sorted(found, key=lambda f: (f[0], -f[1])):
        if merged and start < merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end, merged[-1][2])
            continue
        merged.append((start, end, kind))
    return merged
