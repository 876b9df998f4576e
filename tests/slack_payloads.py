"""Slack's published example payloads (tests/fixtures/slack), adapted and signed for a test."""

from __future__ import annotations

import copy
import itertools
import json
from functools import lru_cache
from pathlib import Path

from secbot.bot.slack.offline import form_body, interactive_body

FIXTURES = Path(__file__).parent / "fixtures" / "slack"
DROP = object()
_ids = itertools.count(1)


@lru_cache(maxsize=None)
def _load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def payload(name: str, **changes) -> dict:
    """Fixture `name` with changes by path: `event__channel="C1"` sets body["event"]["channel"],
    `actions__0__value="3"` the first action's value; DROP removes a key."""
    body = copy.deepcopy(_load(name))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = body
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is DROP:
            target.pop(leaf, None)
        else:
            target[int(leaf) if leaf.isdigit() else leaf] = value
    return body


def event(name: str, event_id: str | None = None, **changes) -> str:
    """An Events API request body, with an event id of its own unless given."""
    return json.dumps(payload(name, event_id=event_id or f"EvTEST{next(_ids)}", **changes))


def interaction(name: str, **changes) -> str:
    """A block action, shortcut or view submission, form-encoded as Slack sends it."""
    return interactive_body(payload(name, **changes))


def command(**fields) -> str:
    return form_body(payload("slash_command", **fields))
