"""The bot under test and what Slack would send it: the real bolt app, built by the same code as
`secbot serve`, driven by signed requests built from Slack's published example payloads
(tests/fixtures/slack) and answering through the offline Slack Web API."""

import threading
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
from slack_payloads import command, event, interaction

from secbot.bot import configure
from secbot.bot.settings import Settings
from secbot.bot.slack.offline import BOT_USER_ID, OfflineSlack, signature_headers
from secbot.feedback.learning.evalsets import calibration_questions
from secbot.feedback.store.repositories import Store
from secbot.model.runtime.engine import Engine
from secbot.model.runtime.generation import Sampling
from secbot.model.serving.client import InProcessClient

SECRET = "test-signing-secret"
ADMIN, ANALYST, OTHER, TRUSTED = "UADMIN", "UANALYST", "UOTHER", "UTRUSTED"
NAMES = {ADMIN: "ada", ANALYST: "alice", OTHER: "bob", TRUSTED: "trudy"}


@pytest.fixture
def slack():
    with OfflineSlack(users=dict(NAMES)) as fake:
        yield fake


@pytest.fixture(scope="module")
def bot_engine(tiny_dir):
    return Engine.load(tiny_dir, system_prompt="You are secbot.", sampling=Sampling(max_new_tokens=24))


def make_settings(slack, tmp_path, **extra) -> Settings:
    return Settings.read(None, storage={"data_dir": tmp_path},
                         slack={"bot_token": "xoxb-test-token", "signing_secret": SECRET, "api_url": slack.api_url,
                                "admins": [ADMIN], "trusted_analysts": [TRUSTED], **extra})


class Listeners(ThreadPoolExecutor):
    """bolt's pool for listeners, able to say when every listener it was handed has returned."""

    def __init__(self):
        super().__init__(max_workers=5)
        self.futures, self.lock = [], threading.Lock()

    def submit(self, fn, /, *args, **kwargs):
        future = super().submit(fn, *args, **kwargs)
        with self.lock:
            self.futures.append(future)
        return future

    def settle(self, timeout=120) -> None:
        """Wait until every listener started so far (and any it led to) has finished."""
        while True:
            with self.lock:
                pending = [f for f in self.futures if not f.done()]
            if not pending:
                return
            wait(pending, timeout)


class Bot:
    """The app under test plus what Slack would send it."""

    def __init__(self, slack, tmp_path, model, split_at=11_000, embedder=None, **extra):
        self.slack = slack
        self.settings = make_settings(slack, tmp_path, **extra)
        self.store = Store(self.settings.storage.url, embedder=embedder,
                           calibration_questions=calibration_questions() if embedder else ())
        self.listeners = Listeners()
        self.slack_bot = configure.slack_app(self.settings, self.store, model, update_interval=0.05,
                                             split_at=split_at, listener_executor=self.listeners)
        self.app, self.deps = self.slack_bot.app, self.slack_bot.deps

    def settle(self) -> None:
        """Every event sent so far has been handled to the end (not only acknowledged)."""
        self.listeners.settle()

    def send(self, body: str, content_type="application/json", headers=None, secret=SECRET):
        return self.app.handle_raw(body, signature_headers(body, secret, content_type=content_type) | (headers or {}))

    def event(self, name, event_id=None, headers=None, **changes):
        return self.send(event(name, event_id, **changes), headers=headers)

    def mention(self, text, channel="C1", ts="1.1", user=ANALYST, thread_ts=None, event_id=None, **changes):
        extra = {"event__thread_ts": thread_ts} if thread_ts else {}
        return self.event("app_mention", event_id, event__text=f"<@{BOT_USER_ID}> {text}", event__channel=channel,
                          event__ts=ts, event__event_ts=ts, event__user=user, **extra, **changes)

    def interact(self, name, **changes):
        return self.send(interaction(name, **changes), "application/x-www-form-urlencoded")

    def command(self, text: str, user: str, channel="CADMIN"):
        return self.send(command(command="/secbot", text=text, user_id=user, channel_id=channel,
                                 response_url=f"{self.slack.url}/respond/{user}"),
                         "application/x-www-form-urlencoded")

    def answers(self, channel, thread_ts, count=1, timeout=120):
        """The bot's finished answers in a thread (those carrying feedback controls)."""
        def done():
            msgs = [m for m in self.slack.thread_messages(channel, thread_ts) if finished(m)]
            return msgs if len(msgs) >= count else None
        return self.slack.wait_for(done, timeout)

    def turn(self, channel, ts):
        return self.store.conversations.turn_for_message(channel, ts)


def finished(message: dict) -> bool:
    return any(b.get("type") == "context_actions" for b in message.get("blocks") or [])


def body_text(message: dict) -> str:
    """What an answer message shows: its streamed Markdown, or its markdown blocks."""
    blocks = [b["text"] for b in message.get("blocks") or [] if b.get("type") == "markdown"]
    return "\n".join(blocks) if blocks else message["text"]


def footer(message: dict) -> list[str]:
    return [e["text"] for b in message.get("blocks") or [] if b["type"] == "context" for e in b["elements"]]


@pytest.fixture
def bot(slack, tmp_path, bot_engine):
    return Bot(slack, tmp_path, InProcessClient(bot_engine))
