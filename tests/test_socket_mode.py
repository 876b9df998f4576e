"""`secbot serve` in Socket Mode, offline: a local websocket server plays Slack's side (the URL
from `apps.connections.open`, hello, envelopes, acks, a `disconnect` refresh)."""

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid

import pytest
from servers import clean_env
from slack_payloads import payload
from websockets.asyncio.server import serve

from secbot.bot.slack.offline import BOT_USER_ID, OfflineSlack


class SlackSocket:
    """Slack's Socket Mode endpoint: says hello, sends envelopes, collects acks, asks for refreshes."""

    def __init__(self):
        self.connections: list = []
        self.acks: dict[str, dict] = {}
        self.loop = asyncio.new_event_loop()
        self.port = None
        started = threading.Event()

        async def handler(ws):
            self.connections.append(ws)
            await ws.send(json.dumps({"type": "hello", "num_connections": 1,
                                      "debug_info": {"host": "applink-offline", "approximate_connection_time": 18060},
                                      "connection_info": {"app_id": "A111"}}))
            async for message in ws:
                data = json.loads(message)
                if "envelope_id" in data:
                    self.acks[data["envelope_id"]] = data

        async def main():
            server = await serve(handler, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            await server.serve_forever()

        threading.Thread(target=lambda: self.loop.run_until_complete(main()), daemon=True).start()
        started.wait(10)
        self.url = f"ws://127.0.0.1:{self.port}/link/?ticket=offline"

    def send(self, message: dict) -> None:
        asyncio.run_coroutine_threadsafe(self.connections[-1].send(json.dumps(message)), self.loop).result(10)

    def envelope(self, kind: str, body: dict) -> str:
        envelope_id = str(uuid.uuid4())
        self.send({"envelope_id": envelope_id, "type": kind, "payload": body,
                   "accepts_response_payload": kind != "events_api", "retry_attempt": 0, "retry_reason": ""})
        return envelope_id


def wait(predicate, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError("condition not met in time")


@pytest.fixture
def socket_mode(tiny_dir, tmp_path):
    socket = SlackSocket()
    with OfflineSlack() as slack:
        slack.socket_url = socket.url
        env = clean_env(SLACK_BOT_TOKEN="xoxb-socket-test", SLACK_APP_TOKEN="xapp-1-A111-socket-test",
                        SLACK_API_URL=slack.api_url, SECBOT_MODEL=str(tiny_dir), SECBOT_DATA_DIR=str(tmp_path),
                        SECBOT_MAX_NEW_TOKENS="16", SECBOT_ADMINS="UADMIN", SECBOT_SCHEDULER="0")
        proc = subprocess.Popen([sys.executable, "-m", "secbot.bot.cli.commands", "serve"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait(lambda: socket.connections or proc.poll() is not None)
            assert proc.poll() is None, proc.stderr.read()
            yield socket, slack
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def answered(slack, channel, thread_ts):
    return [m for m in slack.thread_messages(channel, thread_ts)
            if any(b.get("type") == "context_actions" for b in m.get("blocks") or [])]


def test_socket_mode_answers_mentions_and_commands_and_survives_a_refresh(socket_mode):
    socket, slack = socket_mode
    mention = payload("app_mention", event_id="EvSOCKET1", event__text=f"<@{BOT_USER_ID}> What is phishing?",
                      event__channel="C1", event__ts="1.1", event__event_ts="1.1")
    acked = socket.envelope("events_api", mention)
    wait(lambda: acked in socket.acks)
    wait(lambda: answered(slack, "C1", "1.1"))
    command = payload("slash_command", command="/secbot", text="help", user_id="UADMIN", channel_id="C1",
                      response_url=f"{slack.url}/respond/socket")
    acked = socket.envelope("slash_commands", command)
    wait(lambda: acked in socket.acks)
    reply = wait(lambda: slack.calls_to("/respond/socket"))[0].params
    assert "secbot admin commands" in reply["text"]
    # Slack asks for a refresh: the client opens a new connection from a new URL and carries on.
    opened = len(slack.calls_to("apps.connections.open"))
    socket.send({"type": "disconnect", "reason": "refresh_requested",
                 "debug_info": {"host": "applink-offline"}})
    wait(lambda: len(socket.connections) == 2 and len(slack.calls_to("apps.connections.open")) > opened)
    again = payload("app_mention", event_id="EvSOCKET2", event__text=f"<@{BOT_USER_ID}> What is MFA?",
                    event__channel="C1", event__ts="2.1", event__event_ts="2.1")
    acked = socket.envelope("events_api", again)
    wait(lambda: acked in socket.acks)
    wait(lambda: answered(slack, "C1", "2.1"))
