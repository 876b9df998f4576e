"""Markdown's inline markup, blanked so that the position grammars read the words it wraps.

Analysts paste from wikis, runbooks and tickets: `**Token Security is Crucial:**` or
`[AWS Secrets Manager](https://…)` is a sentence about a credential, not one, but read raw its
last word (`Crucial:**`, `Manager](https://…`) looks like a value. `blank` replaces the markup
characters (emphasis pairs, a link's brackets and relative target, a heading's `#`s, HTML's
formatting tags) with spaces, so every offset stays where it was and a value found in the blanked
text is cut from the original. What the markup wraps stays: a password in `**hunter2**` is still in
a slot after its keyword. `unescaped` reads HTML's character references (`token=&quot;…&quot;`) as the
characters they stand for, with a map back to the original offsets.
"""

from __future__ import annotations

import html
import re

# A pair of emphasis delimiters around words on one line: `**bold**`, `__bold__`, `*e.g.*`; never inside a
# word (`pa**ss`, `snake_case_name`), and never a query's wildcards (`"*ptt /ticket*"`, `/password:*" OR "*`),
# which open or close on punctuation.
EMPHASIS = re.compile(r"(?<![\w*])(?P<d>\*\*\*|\*\*|\*|__)(?=[\w\[`(])(?P<body>[^\n]{1,300}?)(?<=[\w.:!?)\]`])(?P=d)"
                      r"(?![\w*])")
# `[text](target)` and `![alt](target "title")`: an inline link or image.
LINK = re.compile(r"!?\[(?P<text>[^\[\]\n]{1,300})\]\((?P<target>[^()\s]{0,2000})(?:\s+\"[^\"\n]{0,200}\")?\)")
HEADING = re.compile(r"^[ \t]{0,3}#{1,6}(?=[ \t])", re.MULTILINE)
# The inline HTML that Markdown allows (`<br>`, `<b>…</b>`): only HTML's own formatting tags, so that a
# placeholder (`<password>`) or an XML element (`<Password>…</Password>`) is read as before.
HTML_TAG = re.compile(r"(?i)</?(?:br|b|i|u|p|em|strong|code|pre|kbd|div|span|small|sup|sub|li|ul|ol|td|tr|th|table"
                      r"|h[1-6]|hr)(?:\s+[a-z-]+=\"[^\"<>\n]{0,200}\")*\s*/?>")


def blank(text: str) -> str:
    """`text` with its Markdown markup replaced by spaces: the same length, the same offsets."""
    if not any(mark in text for mark in "*_[#<"):
        return text
    chars = list(text)

    def spaces(start: int, end: int) -> None:
        chars[start:end] = " " * (end - start)

    for m in LINK.finditer(text):
        spaces(m.start(), m.start("text"))
        # a page's own anchor or a relative link names a page; a URL stays, for what its userinfo or query holds
        spaces(m.end("text"), m.end() if not re.match(r"\w+:", m.group("target")) else m.start("target"))
        spaces(m.end("target"), m.end())
    for m in EMPHASIS.finditer(text):
        spaces(m.start(), m.start("body"))
        spaces(m.end("body"), m.end())
    for rx in (HEADING, HTML_TAG):
        for m in rx.finditer(text):
            spaces(*m.span())
    return "".join(chars)


# HTML's character references (`&quot;`, `&#39;`, `&#x27;`), as pasted from a page's source or a ticket's HTML.
CHARACTER_REFERENCE = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z]{2,10});")
# JSON inside a JSON string (`"SecretString": "{\\"password\\":\\"…\\"}"`, a log line's escaped body): the
# string's escapes are read, so its members are judged as the document they are.
EMBEDDED_JSON = re.compile(r'"(?P<body>[\[{]\s*\\"(?:[^"\\\n]|\\.)*)"')
STRING_ESCAPE = re.compile(r"\\([\"\\/])|\\u([0-9a-fA-F]{4})")


def _decoded(m: re.Match) -> str:
    if m.group().startswith("&"):
        return html.unescape(m.group())
    return m.group(1) or chr(int(m.group(2), 16))


def unescaped(text: str) -> tuple[str, list[int], list[int]] | None:
    """`text` with its character references and the escapes of JSON embedded in a string decoded, and
    for each decoded character where it began and ended in `text`, so a value found in the decoded text is
    cut from the original; None when it has none."""
    found = list(CHARACTER_REFERENCE.finditer(text)) if "&" in text else []
    if '\\"' in text:
        found += [e for m in EMBEDDED_JSON.finditer(text)
                  for e in STRING_ESCAPE.finditer(text, m.start("body"), m.end("body"))]
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    last = 0
    for m in sorted(found, key=lambda m: m.start()):
        char = _decoded(m)
        if char == m.group() or m.start() < last:
            continue  # not a reference HTML knows, or inside one already read
        out += [text[last:m.start()], char]
        starts += [*range(last, m.start()), *[m.start()] * len(char)]
        ends += [*range(last + 1, m.start() + 1), *[m.end()] * len(char)]
        last = m.end()
    if not last:
        return None
    out.append(text[last:])
    starts += range(last, len(text))
    ends += range(last + 1, len(text) + 1)
    return "".join(out), starts, ends
