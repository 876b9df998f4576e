"""The offline stand-in for Slack: its Web API over HTTP, for the demo, tests and benchmarks.

Not used in production. It answers every method secbot calls with the response shapes Slack
documents, keeps the messages it was sent (so `chat.update` edits what `chat.postMessage`
posted, and native streams accumulate their Markdown), and records every call. Every payload is checked as
Slack checks it (`bot.slack.refusals`) and refused with Slack's error. It also receives
`response_url` posts and file uploads, and hands out a Socket Mode URL (`apps.connections.open`)
when a test runs a websocket server. Point the bot at it with `SLACK_API_URL=<url>/api/`.
Switches: `streaming=False` answers the streaming methods as a workspace without them does;
`task_chunks=False` refuses streamed task chunks (`invalid_chunks`), as a workspace without them;
`users` and `usergroups` are the directory; `not_in` lists channels the bot is not a member of;
`refuse` answers the methods it names with the error given (a workspace or token that refuses them).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from secbot.bot.slack.refusals import MARKDOWN_TOTAL, refusal

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "TLOCAL"
# Methods that post into a channel: refused with not_in_channel where the bot is not a member.
POSTING = {"chat.postMessage", "chat.update", "files.completeUploadExternal", "chat.startStream"}


@dataclass
class Call:
    method: str
    params: dict
    at: float = field(default_factory=time.monotonic)


class OfflineSlack:
    """Run with `with OfflineSlack() as slack:`; `slack.api_url` is the Web API base URL."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, rate_limit_every: int = 0, *,
                 streaming: bool = True, status: bool = True, users: dict[str, str] | None = None,
                 usergroups: dict[str, list[str]] | None = None, not_in: set[str] | None = None,
                 refuse: dict[str, str] | None = None, task_chunks: bool = True):
        self.streaming, self.status, self.task_chunks = streaming, status, task_chunks
        self.refuse = refuse if refuse is not None else {}  # method -> the error Slack answers it with
        self.users = users if users is not None else {}
        self.usergroups = usergroups or {}
        self.not_in = not_in or set()
        self.socket_url: str | None = None  # what apps.connections.open hands out
        self.statuses: dict[tuple[str, str], str] = {}
        self.status_history: dict[tuple[str, str], list[tuple[str, list[str]]]] = {}  # each setStatus
        self.views: dict[str, dict] = {}  # the App Home published for each user
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], dict] = {}  # (channel, ts) -> message
        self.uploads: dict[str, bytes] = {}
        self.rate_limit_every = rate_limit_every  # answer every Nth call with HTTP 429
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._counter = itertools.count(1)
        slack = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test and demo output clean
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                self._reply(*slack._handle(self.path, self.headers.get("Content-Type", ""), raw))

            def do_GET(self):  # methods slack_sdk calls with GET (chat.getPermalink): query arguments
                path, _, query = self.path.partition("?")
                self._reply(*slack._handle(path, "application/x-www-form-urlencoded", query.encode()))

            def _reply(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_port}"
        self.api_url = self.url + "/api/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="local-slack")

    def __enter__(self) -> "OfflineSlack":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- inspection helpers --------------------------------------------------------------------
    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def thread_messages(self, channel: str, thread_ts: str) -> list[dict]:
        """Messages the bot posted in a thread, as they read now (after edits), oldest first."""
        with self._lock:
            found = [m for (ch, _), m in self.messages.items()
                     if ch == channel and m.get("thread_ts") == thread_ts]
        return sorted(found, key=lambda m: float(m["ts"]))

    def wait_for(self, predicate, timeout: float = 60.0, interval: float = 0.02):
        """Poll until `predicate()` is truthy; returns its value or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        raise TimeoutError("condition not met in time")

    # -- the fake API --------------------------------------------------------------------------
    def _params(self, content_type: str, raw: bytes) -> dict:
        if "json" in content_type:
            params = json.loads(raw or b"{}")
        elif "x-www-form-urlencoded" in content_type:
            params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        else:
            return {"raw": raw}
        for key in ("blocks", "view", "attachments", "chunks", "prompts", "files", "loading_messages"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        return params

    def _handle(self, path: str, content_type: str, raw: bytes) -> tuple[int, dict]:
        parsed = urlparse(path)
        if parsed.path.startswith("/upload/"):
            self.uploads[parsed.path.rsplit("/", 1)[1]] = raw
            return 200, {"ok": True}
        params = self._params(content_type, raw)
        method = parsed.path.rsplit("/", 1)[-1] if parsed.path.startswith("/api/") else parsed.path
        with self._lock:
            n = next(self._counter)
            self.calls.append(Call(method, params))
            if self.rate_limit_every and method.startswith("chat.") and n % self.rate_limit_every == 0:
                return 429, {"ok": False, "error": "ratelimited"}
            return 200, self._answer(method, params)

    def _message(self, channel: str, thread_ts: str | None, text: str, blocks) -> dict:
        ts = f"{1700000000 + next(self._ts)}.000100"
        message = {"ts": ts, "channel": channel, "text": text, "blocks": blocks, "thread_ts": thread_ts or ts,
                   "user": BOT_USER_ID, "bot_id": BOT_ID, "type": "message"}
        self.messages[(channel, ts)] = message
        return message

    @staticmethod
    def _markdown(p: dict) -> str:
        chunks = [c.get("text", "") for c in p.get("chunks") or [] if c.get("type") == "markdown_text"]
        return (p.get("markdown_text") or "") + "".join(chunks)

    def _answer(self, method: str, p: dict) -> dict:
        if method.startswith("/respond/"):  # a response_url
            return {"ok": True}
        handler = self._methods.get(method)
        if method in self.refuse:
            return {"ok": False, "error": self.refuse[method]}
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        if method in POSTING and (p.get("channel") or p.get("channel_id")) in self.not_in:
            return {"ok": False, "error": "not_in_channel"}
        if not self.task_chunks and any(c.get("type") != "markdown_text" for c in p.get("chunks") or []):
            return {"ok": False, "error": "invalid_chunks"}
        return refusal(method, p) or handler(p)

    # One handler per Web API method, each answering with the shape Slack documents.
    def _auth_test(self, p: dict) -> dict:
        return {"ok": True, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "team_id": TEAM_ID,
                "user": "secbot", "team": "local", "url": self.url + "/"}

    def _post_message(self, p: dict) -> dict:
        message = self._message(p["channel"], p.get("thread_ts"), p.get("text", ""), p.get("blocks"))
        return {"ok": True, "channel": p["channel"], "ts": message["ts"], "message": message}

    def _update(self, p: dict) -> dict:
        message = self.messages.get((p["channel"], p["ts"]))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message.update(text=p.get("text", ""), blocks=p.get("blocks"))
        return {"ok": True, "channel": p["channel"], "ts": p["ts"], "text": message["text"]}

    def _delete(self, p: dict) -> dict:
        if self.messages.pop((p["channel"], p["ts"]), None) is None:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": p["channel"], "ts": p["ts"]}

    def _start_stream(self, p: dict) -> dict:
        if not self.streaming:
            return {"ok": False, "error": "unknown_method"}
        message = self._message(p["channel"], p["thread_ts"], self._markdown(p), None)
        message["streaming"] = True
        self._tasks(message, p)
        return {"ok": True, "channel": p["channel"], "ts": message["ts"]}

    def _streaming_message(self, p: dict) -> dict | None:
        message = self.messages.get((p["channel"], p["ts"]))
        return message if message is not None and message.get("streaming") else None

    def _append_stream(self, p: dict) -> dict:
        if not self.streaming:
            return {"ok": False, "error": "unknown_method"}
        message = self._streaming_message(p)
        if message is None:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        added = self._markdown(p)
        if len(message["text"]) + len(added) > MARKDOWN_TOTAL:
            return {"ok": False, "error": "msg_too_long"}
        message["text"] += added
        self._tasks(message, p)
        return {"ok": True, "channel": p["channel"], "ts": p["ts"]}

    @staticmethod
    def _tasks(message: dict, p: dict) -> None:
        """A streamed message's tasks as they read now (each `task_update` replaces its id's)."""
        for chunk in p.get("chunks") or []:
            if chunk.get("type") == "task_update":
                message.setdefault("tasks", {})[chunk["id"]] = chunk

    def _stop_stream(self, p: dict) -> dict:
        answer = self._append_stream(p)
        if answer["ok"]:
            message = self.messages[(p["channel"], p["ts"])]
            message.update(streaming=False, blocks=p.get("blocks"))
            answer["message"] = dict(message)
        return answer

    def _assistant_threads(self, p: dict) -> dict:
        return {"ok": True} if self.status else {"ok": False, "error": "unknown_method"}

    def _set_status(self, p: dict) -> dict:
        if self.status:
            self.statuses[(p["channel_id"], p["thread_ts"])] = p.get("status", "")
            self.status_history.setdefault((p["channel_id"], p["thread_ts"]), []).append(
                (p.get("status", ""), list(p.get("loading_messages") or [])))
        return self._assistant_threads(p)

    def _users_info(self, p: dict) -> dict:
        if p.get("user") not in self.users:
            return {"ok": False, "error": "user_not_found"}
        name = self.users[p["user"]]
        return {"ok": True, "user": {"id": p["user"], "name": name.lower(), "real_name": name,
                                     "profile": {"display_name": name, "real_name": name}}}

    def _usergroup_members(self, p: dict) -> dict:
        if p.get("usergroup") not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": self.usergroups[p["usergroup"]]}

    def _connections_open(self, p: dict) -> dict:
        return {"ok": True, "url": self.socket_url} if self.socket_url else {"ok": False, "error": "invalid_auth"}

    def _upload_url(self, p: dict) -> dict:
        file_id = f"F{next(self._ts)}"
        return {"ok": True, "upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}

    def _complete_upload(self, p: dict) -> dict:
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in p.get("files") or []]}

    def _post_ephemeral(self, p: dict) -> dict:
        return {"ok": True, "message_ts": f"{1700000000 + next(self._ts)}.000200"}

    def _publish_view(self, p: dict) -> dict:
        self.views[p["user_id"]] = p["view"]
        return {"ok": True, "view": {"id": f"V{next(self._ts)}", **p["view"]}}

    def _open_view(self, p: dict) -> dict:
        return {"ok": True, "view": {"id": f"V{next(self._ts)}"}}

    def _permalink(self, p: dict) -> dict:
        if (p["channel"], p["message_ts"]) not in self.messages:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": p["channel"],
                "permalink": f"{self.url}/archives/{p['channel']}/p{p['message_ts'].replace('.', '')}"}

    def _ok(self, p: dict) -> dict:
        return {"ok": True}

    @cached_property
    def _methods(self) -> dict:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._permalink,
            "assistant.threads.setStatus": self._set_status,
            "assistant.threads.setTitle": self._assistant_threads,
            "assistant.threads.setSuggestedPrompts": self._assistant_threads,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroup_members,
            "apps.connections.open": self._connections_open,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "views.publish": self._publish_view,
            "views.open": self._open_view,
            "views.update": self._open_view,
            "reactions.add": self._ok,
        }


# -- signed requests, as Slack sends them ---------------------------------------------------------
def signature_headers(body: str, secret: str, timestamp: int | None = None,
                      content_type: str = "application/json") -> dict[str, str]:
    """Headers of a request Slack signed with `secret` (HMAC-SHA256 over v0:{ts}:{body})."""
    from slack_sdk.signature import SignatureVerifier

    ts = str(timestamp if timestamp is not None else int(time.time()))
    return {"content-type": content_type, "x-slack-request-timestamp": ts,
            "x-slack-signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)}


def event_body(event: dict, event_id: str | None = None) -> str:
    """An Events API envelope around `event`."""
    import uuid

    return json.dumps({
        "token": "unused", "team_id": TEAM_ID, "api_app_id": "ALOCAL", "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:12].upper()}", "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
        "event": event})


def mention_event(text: str, *, channel: str, ts: str, user: str = "UANALYST",
                  thread_ts: str | None = None) -> dict:
    event = {"type": "app_mention", "user": user, "text": f"<@{BOT_USER_ID}> {text}",
             "ts": ts, "channel": channel, "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def form_body(fields: dict) -> str:
    from urllib.parse import urlencode

    return urlencode(fields)


def interactive_body(payload: dict) -> str:
    """Block actions, shortcuts and view submissions arrive as a form field `payload`."""
    return form_body({"payload": json.dumps(payload)})
