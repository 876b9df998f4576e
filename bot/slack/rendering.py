"""Model output as a Slack message: untrusted text that must render and must not notify anyone.

- The answer body goes into Slack's `markdown` block (and native streams, which take the same
  Markdown), so **bold**, [links](url), headings, lists, tables and fenced code with a language
  tag render as written.
- Nothing the model writes can notify: `<!here>`, `<!channel>`, `<!everyone>`, `<@U…>`,
  `<#C…>`, `<!subteam^…>` and bare `@here`/`@channel`/`@everyone` are broken with an invisible
  zero-width space, which Slack does not parse as a mention.
- Fields Slack reads as mrkdwn (the notification `text`, context lines) get `& < >` escaped.
- Long answers are split at paragraph, line or word breaks, preferring breaks outside code
  fences; a fence longer than a message is closed and reopened with its language tag, so no
  message holds half a code block.
"""

from __future__ import annotations

import re

MESSAGE_LIMIT = 11_000  # Slack allows 12,000 characters of markdown per message
ZWSP = "\u200b"
_MENTION = re.compile(r"<(?=[!@#])")
_BROADCAST = re.compile(r"@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
_FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})(.*)$")


def neutralise(text: str) -> str:
    """`text` with every mention and broadcast made inert (still readable)."""
    return _BROADCAST.sub("@" + ZWSP, _MENTION.sub("<" + ZWSP, text))


class InertStream:
    """Neutralises text that arrives in pieces (a streamed answer): a mention can straddle two
    pieces, so the last few characters wait for the next piece when they could start one."""

    HOLD = len("@everyone") + 1  # and the character after it (a word boundary)

    def __init__(self):
        self._pending = ""

    def feed(self, delta: str) -> str:
        """The inert text that is safe to send now."""
        self._pending += delta
        cut = len(self._pending) - self.HOLD
        while cut > 0:  # a "<" needs the next character, an "@" the next eight, before the cut
            waiting = [i for i in range(max(0, cut - self.HOLD), cut)
                       if (self._pending[i] == "<" and i + 1 >= cut) or (self._pending[i] == "@" and i + self.HOLD > cut)]
            if not waiting:
                break
            cut = waiting[0]
        if cut <= 0:
            return ""
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return neutralise(ready)

    def flush(self) -> str:
        ready, self._pending = self._pending, ""
        return neutralise(ready)


def escape_mrkdwn(text: str) -> str:
    """For fields Slack reads as mrkdwn: `& < >` escaped, broadcasts inert."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@" + ZWSP, escaped)


def notification_text(markdown: str, limit: int = 300) -> str:
    """The plain `text` of a message (notifications, screen readers): no Markdown syntax."""
    plain = re.sub(r"```[^\n]*\n?|`", "", markdown)
    plain = re.sub(r"!?\[([^\]]*)\]\(([^)]*)\)", r"\1 (\2)", plain)
    plain = re.sub(r"^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+|\d+[.)]\s+)", "", plain, flags=re.M)
    plain = re.sub(r"(\*\*|__|~~|\*|_)(?=\S)(.+?)(?<=\S)\1", r"\2", plain)
    plain = " ".join(plain.split())
    if len(plain) > limit:
        plain = plain[: limit - 1].rsplit(" ", 1)[0] + "…"
    return escape_mrkdwn(plain) or " "


def _units(text: str) -> list[tuple[str, str | None]]:
    """The text as (chunk, fence opener) units: each fenced code block whole (with its opener
    line), each run of prose lines up to a blank line. Joining the chunks with "\n" gives back
    the text."""
    units: list[tuple[str, str | None]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match:
            marker = match.group(1)
            end = next((j for j in range(i + 1, len(lines))
                        if (m := _FENCE.match(lines[j])) and m.group(1)[0] == marker[0]
                        and len(m.group(1)) >= len(marker) and not m.group(2).strip()), len(lines) - 1)
            units.append(("\n".join(lines[i:end + 1]), lines[i]))
            i = end + 1
            continue
        j = i
        while j < len(lines) and not _FENCE.match(lines[j]) and (j == i or lines[j - 1].strip()):
            j += 1
        units.append(("\n".join(lines[i:j]), None))
        i = j
    return units


def _cut(chunk: str, limit: int, separators: tuple[str, ...]) -> list[str]:
    """Cut `chunk` into parts of at most `limit`, at the last separator in each part's second
    half (hard cuts only where there is none)."""
    parts = []
    while len(chunk) > limit:
        window = chunk[:limit]
        cut = next((i for i in (window.rfind(sep) for sep in separators) if i > limit // 2), limit)
        parts.append(chunk[:cut].rstrip())
        chunk = chunk[cut:].lstrip("\n ")
    return parts + [chunk]


def _split_unit(chunk: str, fence: str | None, limit: int) -> list[str]:
    if len(chunk) <= limit:
        return [chunk]
    if fence is None:
        return _cut(chunk, limit, ("\n", " "))
    closer = _FENCE.match(fence).group(1)
    inner = chunk.split("\n", 1)[1] if "\n" in chunk else ""
    if inner.rstrip().endswith(closer):
        inner = inner.rstrip()[: -len(closer)].rstrip("\n")
    room = limit - len(fence) - len(closer) - 2
    return [f"{fence}\n{part}\n{closer}" for part in _cut(inner, room, ("\n", " "))]


def split_markdown(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Pieces of at most `limit` characters (see the module docstring)."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    for chunk, fence in _units(text):
        for part in _split_unit(chunk, fence, limit):
            joined = f"{current}\n{part}" if current else part
            if len(joined) <= limit:
                current = joined
            else:
                pieces.append(current)
                current = part
    pieces.append(current)
    return [p.strip("\n") for p in pieces if p.strip()]
