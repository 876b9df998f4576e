"""What Slack refuses: the checks the offline stand-in (`bot.slack.offline`) applies to every call,
and the error Slack answers each refusal with.

Block Kit goes through slack_sdk's own models (`Block.parse(...).validate_json()`, `View(...)`),
which know each element's documented limits (section text 3,000, `action_id` 255, button `value`
2,000, modal title 24, a markdown block 12,000); a block they cannot parse, or one that loses a
field on the way through (Slack refuses fields it does not know), is `invalid_blocks`. Added here,
from Slack's method and block references: at most 50 blocks in a message and 100 in a view,
12,000 characters of markdown blocks in one payload, a `plain_text_input` initial value within
3,000 and its own `max_length`, a message `text` within 40,000 (`msg_too_long`), streamed
`markdown_text` within 12,000 a call and a streamed message within 12,000 in all (as a markdown
block), streaming chunks of a known type with their fields (`invalid_chunks`), at most 10
`loading_messages`, and the required arguments of each method (`invalid_arguments`).
"""

from __future__ import annotations

import json

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MESSAGE_BLOCKS, VIEW_BLOCKS = 50, 100
MARKDOWN_TOTAL = 12_000  # all markdown blocks of one payload, and one streamed message
TEXT_LIMIT = 40_000
INPUT_LIMIT = 3_000

# The arguments each method must have (any one of a tuple will do).
REQUIRED: dict[str, list[str | tuple[str, ...]]] = {
    "chat.postMessage": ["channel", ("text", "blocks", "attachments")],
    "chat.postEphemeral": ["channel", "user", ("text", "blocks", "attachments")],
    "chat.update": ["channel", "ts"],
    "chat.delete": ["channel", "ts"],
    "chat.startStream": ["channel", "thread_ts"],
    "chat.appendStream": ["channel", "ts", ("markdown_text", "chunks")],
    "chat.stopStream": ["channel", "ts"],
    "views.open": [("trigger_id", "interactivity_pointer"), "view"],
    "views.publish": ["user_id", "view"],
    "views.update": [("view_id", "external_id"), "view"],
    "assistant.threads.setStatus": ["channel_id", "thread_ts", "status"],
    "assistant.threads.setTitle": ["channel_id", "thread_ts", "title"],
    "assistant.threads.setSuggestedPrompts": ["channel_id", "prompts"],
    "reactions.add": ["channel", "timestamp", "name"],
    "chat.getPermalink": ["channel", "message_ts"],
}
LOADING_MESSAGES = 10  # assistant.threads.setStatus rotates through at most this many
# Streaming chunks and the fields each needs (chat.startStream/appendStream/stopStream).
CHUNKS = {"markdown_text": ("text",), "task_update": ("id", "title", "status"), "plan_update": ("title",)}
TASK_STATUSES = {"pending", "in_progress", "complete", "error"}


def refusal(method: str, params: dict) -> dict | None:
    """Slack's answer to a call it refuses (`{"error": ..., "errors": [...]}`), or None."""
    for need in REQUIRED.get(method, []):
        names = need if isinstance(need, tuple) else (need,)
        if not any(params.get(name) not in (None, "") for name in names):
            return _refused("invalid_arguments", f"missing required argument: {' or '.join(names)}")
    if method == "chat.startStream" and str(params["channel"])[:1] in "CG" and not (
            params.get("recipient_user_id") and params.get("recipient_team_id")):
        return _refused("invalid_arguments", "recipient_user_id and recipient_team_id are required in channels")
    if params.get("chunks") is not None:
        problem = chunks_problem(params["chunks"])
        if problem:
            return _refused("invalid_chunks", problem)
    if len(params.get("loading_messages") or []) > LOADING_MESSAGES:
        return _refused("invalid_arguments", f"at most {LOADING_MESSAGES} loading_messages")
    if len(params.get("text") or "") > TEXT_LIMIT:
        return _refused("msg_too_long", f"text is over {TEXT_LIMIT} characters")
    if len(params.get("markdown_text") or "") > MARKDOWN_TOTAL:
        return _refused("msg_too_long", f"markdown_text is over {MARKDOWN_TOTAL} characters")
    if "view" in params:
        problem = view_problem(params["view"])
        if problem:
            return _refused("invalid_arguments", problem)
    if params.get("blocks") is not None:
        problem = blocks_problem(params["blocks"], MESSAGE_BLOCKS)
        if problem:
            return _refused("invalid_blocks", problem)
    return None


def chunks_problem(chunks) -> str | None:
    if not isinstance(chunks, list):
        return "chunks must be a JSON array"
    for i, chunk in enumerate(chunks):
        kind = chunk.get("type") if isinstance(chunk, dict) else None
        if kind not in CHUNKS:
            return f"chunk {i}: unknown chunk type {kind!r}"
        missing = [name for name in CHUNKS[kind] if not chunk.get(name)]
        if missing:
            return f"chunk {i}: {kind} needs {', '.join(missing)}"
        if kind == "task_update" and chunk["status"] not in TASK_STATUSES:
            return f"chunk {i}: task status {chunk['status']!r} is not one of {sorted(TASK_STATUSES)}"
    return None


def view_problem(view) -> str | None:
    if not isinstance(view, dict):
        return "view must be a JSON object"
    problem = blocks_problem(view.get("blocks") or [], VIEW_BLOCKS)
    if problem:
        return problem
    try:
        View(**view).validate_json()
    except (SlackObjectFormationError, TypeError) as exc:
        return f"invalid view: {exc}"
    return None


def blocks_problem(blocks, most: int) -> str | None:
    """Why Slack would refuse these blocks, or None."""
    if not isinstance(blocks, list):
        return "blocks must be a JSON array"
    if len(blocks) > most:
        return f"{len(blocks)} blocks; at most {most}"
    markdown = 0
    for i, raw in enumerate(blocks):
        try:
            block = Block.parse(raw) if isinstance(raw, dict) else None
            if block is None:
                return f"block {i}: unknown block type {raw.get('type') if isinstance(raw, dict) else raw!r}"
            parsed = block.to_dict()  # validates, as validate_json() does
        except (SlackObjectFormationError, TypeError, KeyError, AttributeError) as exc:
            return f"block {i}: {exc}"
        if _canonical(parsed) != _canonical(raw):
            return f"block {i}: has fields Slack does not accept for a {raw.get('type')} block"
        if raw.get("type") == "markdown":
            markdown += len(raw.get("text") or "")
        for element in _elements(raw):
            if element.get("type") == "plain_text_input":
                most_chars = min(INPUT_LIMIT, element.get("max_length") or INPUT_LIMIT)
                if len(element.get("initial_value") or "") > most_chars:
                    return f"block {i}: plain_text_input initial_value is over {most_chars} characters"
    if markdown > MARKDOWN_TOTAL:
        return f"{markdown} characters of markdown blocks; at most {MARKDOWN_TOTAL}"
    return None


def _elements(block: dict) -> list[dict]:
    found = [block["element"]] if isinstance(block.get("element"), dict) else []
    found += [e for e in block.get("elements") or [] if isinstance(e, dict)]
    if isinstance(block.get("accessory"), dict):
        found.append(block["accessory"])
    return found


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _refused(error: str, detail: str) -> dict:
    return {"ok": False, "error": error, "errors": [detail], "response_metadata": {"messages": [f"[ERROR] {detail}"]}}
