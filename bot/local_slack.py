"""A local stand-in for Slack's Web API over HTTP, for the offline demo, tests and benchmarks.

It answers the methods secbot calls with Slack-shaped JSON, keeps the messages it was sent (so
`chat.update` edits what `chat.postMessage` posted), and records every call. It also receives
`response_url` posts and file uploads. Point the bot at it with `SLACK_API_URL=<url>/api/`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "TLOCAL"


@dataclass
class Call:
    method: str
    params: dict
    at: float = field(default_factory=time.monotonic)


class LocalSlack:
    """Run with `with LocalSlack() as slack:`; `slack.api_url` is the Web API base URL."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, rate_limit_every: int = 0):
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
                status, body = slack._handle(self.path, self.headers.get("Content-Type", ""), raw)
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

    def __enter__(self) -> "LocalSlack":
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
            return json.loads(raw or b"{}")
        if "x-www-form-urlencoded" in content_type:
            params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            for key in ("blocks", "view", "attachments"):
                if isinstance(params.get(key), str):
                    params[key] = json.loads(params[key])
            return params
        return {"raw": raw}

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

    def _answer(self, method: str, p: dict) -> dict:
        if method == "auth.test":
            return {"ok": True, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "team_id": TEAM_ID,
                    "user": "secbot", "team": "local", "url": self.url + "/"}
        if method == "chat.postMessage":
            ts = f"{1700000000 + next(self._ts)}.000100"
            message = {"ts": ts, "channel": p["channel"], "text": p.get("text", ""),
                       "blocks": p.get("blocks"), "thread_ts": p.get("thread_ts") or ts,
                       "user": BOT_USER_ID, "bot_id": BOT_ID}
            self.messages[(p["channel"], ts)] = message
            return {"ok": True, "channel": p["channel"], "ts": ts, "message": message}
        if method == "chat.update":
            message = self.messages.get((p["channel"], p["ts"]))
            if message is None:
                return {"ok": False, "error": "message_not_found"}
            message.update(text=p.get("text", ""), blocks=p.get("blocks"))
            return {"ok": True, "channel": p["channel"], "ts": p["ts"]}
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ts)}"
            return {"ok": True, "upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = p.get("files")
            files = json.loads(files) if isinstance(files, str) else files
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}
        if method in {"chat.postEphemeral"}:
            return {"ok": True, "message_ts": f"{1700000000 + next(self._ts)}.000200"}
        if method in {"views.open", "views.publish", "views.update", "reactions.add"}:
            return {"ok": True, "view": {"id": f"V{next(self._ts)}"}}
        if method.startswith("/respond/"):
            return {"ok": True}
        return {"ok": False, "error": "unknown_method"}


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
