"""Text from Slack as the model and the store should see it: plain text, not Slack markup.

Slack sends `&amp; &lt; &gt;` escaped, links as `<url|label>`, channels as `<#C…|name>`, users
as `<@U…>` and broadcasts as `<!here>`. Here links become readable ("label (url)"), channels
"#name", other users "@their name", broadcasts "@here"; the bot's own mention is removed;
entities are unescaped last, so an escaped "&lt;@U1&gt;" stays text.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_TOKEN = re.compile(r"<([^<>]*)>")
SPECIAL = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}


def normalise(text: str, bot_user: str | None, name_of: Callable[[str], str]) -> str:
    """Slack markup in `text` → plain text (see the module docstring)."""

    def token(match: re.Match) -> str:
        body = match.group(1)
        target, _, label = body.partition("|")
        if target.startswith("@"):  # a user: <@U123> or <@U123|name>
            user = target[1:]
            if user == bot_user:
                return ""
            return "@" + (label or name_of(user))
        if target.startswith("#"):  # a channel: <#C123|general>
            return "#" + (label or target[1:])
        if target.startswith("!"):  # <!here>, <!subteam^S1|@team>, <!date^…|fallback>
            command = target[1:].split("^", 1)[0]
            return SPECIAL.get(command) or label or "@" + command
        if label and label != target and label != target.removeprefix("mailto:"):
            return f"{label} ({target})"
        return target.removeprefix("mailto:")

    plain = _TOKEN.sub(token, text)
    plain = plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]{2,}", " ", plain).strip()


def mentions(text: str, user: str | None) -> bool:
    """Whether `text` (as Slack sent it) mentions `user`."""
    return bool(user) and re.search(rf"<@{re.escape(user)}(?:\|[^>]*)?>", text) is not None
