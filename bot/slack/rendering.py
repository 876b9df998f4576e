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
_DELIMITER = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")


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


def _closes(line: str, marker: str) -> bool:
    """Whether `line` closes a fence opened with `marker`."""
    match = _FENCE.match(line)
    return bool(match and match.group(1)[0] == marker[0] and len(match.group(1)) >= len(marker)
                and not match.group(2).strip())


class Pager:
    """Markdown, as it arrives, laid out on pages (messages) of at most `limit` characters.

    `feed` returns what to add to which page: `[(page, text), ...]`; a page's text is everything
    added to it. A page breaks before a line that would overflow it, or at a paragraph break near
    its end; a line longer than a page is cut at a space. An open code fence is closed at the end
    of a page (room for the closer is kept) and reopened with its opener line, language tag
    included, on the next; a table's header row and delimiter row are repeated. A line still
    arriving is shown while its page has `window` characters to spare, else held until it ends.
    """

    def __init__(self, limit: int = MESSAGE_LIMIT, window: int | None = None):
        self.limit = limit
        self.window = min(2000, limit // 5) if window is None else window
        self.pages = [""]
        self._events: list[tuple[int, str]] = []
        self._line = ""  # the line being laid out (not yet ended), from where this page took it
        self._shown = 0  # how much of it this page already holds
        self._fresh = 0  # how much of this page is the reopened fence or repeated table header
        self._fence: tuple[str, str] | None = None  # (opener line, marker) of the open fence
        self._header: list[str] | None = None  # the open table's header and delimiter rows
        self._previous = ""

    def feed(self, text: str) -> list[tuple[int, str]]:
        *ended, tail = text.split("\n")
        for part in ended:
            self._line += part
            self._place(ended=True)
        self._line += tail
        self._place(ended=False)
        events, self._events = self._events, []
        return events

    def flush(self) -> list[tuple[int, str]]:
        """The rest, once the text is complete."""
        if self._line or self._shown:
            self._place(ended=True)
        events, self._events = self._events, []
        return events

    def next_page(self) -> None:
        """Begin the next page now (unless this one holds nothing of its own)."""
        if len(self.pages[-1]) > self._fresh:
            self._turn()

    def room(self) -> int:
        """Characters a new line (separator included) can take on this page."""
        return self.limit - len(self.pages[-1]) - self._reserve(self._fence)

    # -- layout ------------------------------------------------------------------------------------
    def _emit(self, text: str) -> None:
        if text:
            self.pages[-1] += text
            self._events.append((len(self.pages) - 1, text))

    @staticmethod
    def _reserve(fence) -> int:
        return len(fence[1]) + 1 if fence else 0

    def _after(self, line: str):
        """The fence that is open after `line`."""
        if self._fence:
            return None if _closes(line, self._fence[1]) else self._fence
        match = _FENCE.match(line)
        return (line, match.group(1)) if match else None

    def _turn(self) -> None:
        """Close this page (and its open fence) and begin the next, reopening what was open."""
        if self._fence:
            self._emit("\n" + self._fence[1])
        self.pages.append("")
        if self._fence:
            opener = self._fence[0] if len(self._fence[0]) < self.limit // 4 else self._fence[1]
            self._emit(opener)
        elif self._header and sum(map(len, self._header)) < self.limit // 4:
            self._emit("\n".join(self._header))
        self._fresh = len(self.pages[-1])

    def _place(self, *, ended: bool) -> None:
        while True:
            page = self.pages[-1]
            rest = self._line[self._shown:]
            if not ended and not rest:
                return
            if ended and not self._shown and not rest.strip() and (
                    not page or (not self._fence and len(page) >= self.limit - self.window)):
                if page and len(page) > self._fresh:
                    self._turn()  # a paragraph break near the end of a page begins the next
                break
            sep = "\n" if page and not self._shown else ""
            after = self._after(self._line) if ended else self._fence
            spare = 0 if ended or self._shown else self.window
            if len(page) + len(sep) + len(rest) + self._reserve(after) + spare <= self.limit:
                self._emit(sep + rest)
                self._shown = len(self._line)
                break
            if not ended and not self._shown:
                return  # held until the line ends (or grows past a page)
            if ended and self._fence and after is None:
                self._emit("\n" + self._fence[1])  # a closer that does not fit: the reserved one
                break
            if not self._shown and len(page) > self._fresh:
                self._turn()  # the line begins the next page
                continue
            room = self.limit - len(page) - len(sep) - self._reserve(self._fence)
            cut = rest.rfind(" ", 0, room) + 1  # the line is longer than the room: cut at a space
            cut = cut if cut > room // 2 else max(room, 0)
            self._emit(sep + rest[:cut])
            self._line, self._shown = rest[cut:], 0
            self._turn()
        if ended:
            self._state(self._line)
            self._line, self._shown = "", 0

    def _state(self, line: str) -> None:
        fence = self._after(line)
        if fence is not None or self._fence is not None:
            self._header = None
        elif "|" not in line:
            self._header = None
        elif self._header is None and "|" in self._previous and _DELIMITER.match(line):
            self._header = [self._previous, line]
        self._fence, self._previous = fence, line


def split_markdown(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Pieces of at most `limit` characters, laid out as `Pager` does; a code block that fits in
    a message but not in what is left of this one begins the next."""
    if len(text) <= limit:
        return [text]
    pager = Pager(limit)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if pager._fence is None and (match := _FENCE.match(line)):
            marker = match.group(1)
            end = next((j for j in range(i + 1, len(lines)) if _closes(lines[j], marker)), len(lines) - 1)
            size = len("\n".join(lines[i:end + 1])) + 1
            if pager.room() < size <= limit:
                pager.next_page()
        pager.feed(line + "\n" if i < len(lines) - 1 else line)
    pager.flush()
    return [page for page in pager.pages if page.strip()]
