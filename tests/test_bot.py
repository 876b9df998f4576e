"""The real bolt app driven by signed requests, answering through a local Slack Web API."""

import json
import time

import pytest
from conftest import answered

from secbot.bot.answering import split_text
from secbot.bot.app import create_app
from secbot.bot.local_slack import (BOT_USER_ID, LocalSlack, event_body, form_body, interactive_body,
                             mention_event, signature_headers)
from secbot.bot.settings import Settings
from secbot.feedback.entities import RecordSource, RecordStatus
from secbot.feedback.intake import Intake
from secbot.feedback.store import Store
from secbot.model.client import InProcessClient, OpenAIClient
from secbot.model.engine import Engine
from secbot.model.generation import Sampling

SECRET = "test-signing-secret"
ADMIN, ANALYST, TRUSTED = "UADMIN", "UANALYST", "UTRUSTED"


@pytest.fixture
def slack():
    with LocalSlack() as fake:
        yield fake


@pytest.fixture(scope="module")
def bot_engine(tiny_dir):
    return Engine.load(tiny_dir, system_prompt="You are secbot.", sampling=Sampling(max_new_tokens=24))


def make_settings(slack, tmp_path, **extra) -> Settings:
    return Settings(_env_file=None, slack_bot_token="xoxb-test-token", slack_signing_secret=SECRET,
                    slack_api_url=slack.api_url, data_dir=tmp_path, admins=[ADMIN],
                    trusted_analysts=[TRUSTED], **extra)


class Bot:
    """The app under test plus helpers that send it what Slack would."""

    def __init__(self, slack, tmp_path, model, split_at=3000, **extra):
        self.slack = slack
        self.settings = make_settings(slack, tmp_path, **extra)
        self.store = Store(self.settings.effective_database_url)
        self.app = create_app(self.settings, self.store, model, update_interval=0.05, split_at=split_at)

    def send(self, body: str, content_type="application/json", headers=None, secret=SECRET):
        all_headers = signature_headers(body, secret, content_type=content_type) | (headers or {})
        return self.app.handle_raw(body, all_headers)

    def event(self, event: dict, event_id=None, headers=None):
        return self.send(event_body(event, event_id), headers=headers)

    def interact(self, payload: dict):
        return self.send(interactive_body(payload), "application/x-www-form-urlencoded")

    def command(self, text: str, user: str):
        return self.send(form_body({"command": "/secbot", "text": text, "user_id": user,
                                    "channel_id": "CADMIN", "team_id": "TLOCAL", "trigger_id": "t.1",
                                    "response_url": f"{self.slack.url}/respond/{user}"}),
                         "application/x-www-form-urlencoded")

    def answers(self, channel, thread_ts, count=1, timeout=120):
        """The bot's finished answers in a thread (those carrying feedback buttons)."""
        def done():
            msgs = [m for m in self.slack.thread_messages(channel, thread_ts) if m.get("blocks")]
            return msgs if len(msgs) >= count else None
        return self.slack.wait_for(done, timeout)


@pytest.fixture
def bot(slack, tmp_path, bot_engine):
    return Bot(slack, tmp_path, InProcessClient(bot_engine))


def test_mention_is_answered_in_its_thread_with_the_model_answer(bot, bot_engine):
    assert bot.event(mention_event("What is phishing?", channel="C1", ts="1.1")).status == 200
    [answer] = bot.answers("C1", "1.1")
    expected = bot_engine.generate("What is phishing?")
    assert answer["text"] == expected
    assert answer["blocks"][0]["text"]["text"] == expected
    assert [e["action_id"] for e in answer["blocks"][1]["elements"]] == [
        "feedback_up", "feedback_down", "open_correction"]
    first = bot.slack.calls_to("chat.postMessage")[0].params
    assert first["thread_ts"] == "1.1" and "Thinking" in first["text"]  # placeholder at once
    turn = bot.store.conversations.turn_for_message("C1", answer["ts"])
    assert (turn.question, turn.answer, turn.asker) == ("What is phishing?", expected, ANALYST)
    assert turn.latency_ms is not None and turn.prompt_tokens > 0 and turn.completion_tokens > 0


def test_a_retried_event_is_answered_once_even_after_a_restart(bot, slack, tmp_path, bot_engine):
    event = mention_event("What is a zero-day?", channel="C1", ts="2.1")
    assert bot.event(event, event_id="EvSAME").status == 200
    assert bot.event(event, event_id="EvSAME", headers={"x-slack-retry-num": "1",
                                                        "x-slack-retry-reason": "http_timeout"}).status == 200
    bot.answers("C1", "2.1")
    restarted = Bot(slack, tmp_path, InProcessClient(bot_engine))
    assert restarted.event(event, event_id="EvSAME").status == 200
    time.sleep(0.5)
    placeholders = [c for c in slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == "2.1"]
    assert len(placeholders) == 1


def test_a_follow_up_in_the_thread_uses_its_history(bot, bot_engine):
    bot.event(mention_event("What is XSS?", channel="C1", ts="3.1"))
    [first] = bot.answers("C1", "3.1")
    # A plain reply in the thread, no mention: the bot is already in this thread.
    bot.event({"type": "message", "channel_type": "channel", "user": ANALYST, "channel": "C1",
               "text": "How do I stop it?", "ts": "3.5", "thread_ts": "3.1"})
    second = bot.answers("C1", "3.1", count=2)[1]
    assert second["text"] == bot_engine.generate("How do I stop it?", [("What is XSS?", first["text"])])
    assert second["text"] != bot_engine.generate("How do I stop it?")


def test_dm_is_answered_and_own_messages_and_edits_are_ignored(bot, bot_engine, slack):
    bot.event({"type": "message", "channel_type": "im", "user": ANALYST, "channel": "D1",
               "text": "What is MFA?", "ts": "4.1"})
    [answer] = bot.answers("D1", "4.1")
    assert answer["text"] == bot_engine.generate("What is MFA?")
    before = len(slack.calls)
    bot.event({"type": "message", "channel_type": "im", "bot_id": "BBOT", "user": BOT_USER_ID,
               "channel": "D1", "text": "my own answer", "ts": "4.2"})
    bot.event({"type": "message", "subtype": "message_changed", "channel_type": "im", "channel": "D1",
               "ts": "4.3", "message": {"text": "edited", "bot_id": "BBOT"}})
    bot.event({"type": "message", "channel_type": "channel", "user": ANALYST, "channel": "C9",
               "text": "chatter in a thread the bot is not in", "ts": "4.5", "thread_ts": "4.4"})
    time.sleep(0.5)
    assert len(slack.calls) == before


def test_thumbs_up_by_reaction_and_button_is_recorded(bot):
    bot.event(mention_event("What is CSRF?", channel="C1", ts="5.1"))
    [answer] = bot.answers("C1", "5.1")
    turn = bot.store.conversations.turn_for_message("C1", answer["ts"])
    bot.event({"type": "reaction_added", "user": ANALYST, "reaction": "+1::skin-tone-2",
               "item": {"type": "message", "channel": "C1", "ts": answer["ts"]}})
    bot.interact({"type": "block_actions", "user": {"id": "UOTHER"}, "trigger_id": "t.2",
                  "channel": {"id": "C1"}, "response_url": f"{bot.slack.url}/respond/x",
                  "actions": [{"action_id": "feedback_down", "value": str(turn.id)}]})
    bot.slack.wait_for(lambda: bot.store.conversations.feedback_counts(turn.id) == {"thumbs_up": 1, "thumbs_down": 1})
    [record] = bot.slack.wait_for(lambda: bot.store.records.list())
    assert record.source is RecordSource.APPROVED_ANSWER and record.status is RecordStatus.PENDING


def test_the_whole_correction_flow_creates_the_right_record(bot, slack):
    bot.event(mention_event("What is lateral movement?", channel="C2", ts="6.1"))
    [first] = bot.answers("C2", "6.1")
    bot.event(mention_event("How do we detect it?", channel="C2", ts="6.3", thread_ts="6.1"))
    second = bot.answers("C2", "6.1", count=2)[1]
    # The correction reaction: reactions carry no trigger_id, so an ephemeral button comes back.
    bot.event({"type": "reaction_added", "user": ANALYST, "reaction": "pencil2",
               "item": {"type": "message", "channel": "C2", "ts": second["ts"]}})
    offer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[0].params
    assert offer["user"] == ANALYST and offer["channel"] == "C2"
    button = offer["blocks"][1]["elements"][0]
    bot.interact({"type": "block_actions", "user": {"id": ANALYST}, "trigger_id": "t.3",
                  "channel": {"id": "C2"}, "response_url": f"{slack.url}/respond/x",
                  "actions": [{"action_id": button["action_id"], "value": button["value"]}]})
    modal = slack.wait_for(lambda: slack.calls_to("views.open"))[0].params["view"]
    modal = json.loads(modal) if isinstance(modal, str) else modal
    assert modal["blocks"][1]["element"]["initial_value"] == second["text"]
    assert "How do we detect it?" in modal["blocks"][0]["text"]["text"]
    correction = "Look for new remote logons (4624 type 3) and PsExec services."
    bot.interact({"type": "view_submission", "user": {"id": ANALYST}, "view": {
        "type": "modal", "callback_id": "correction_modal", "private_metadata": modal["private_metadata"],
        "state": {"values": {"correction": {"correction": {"type": "plain_text_input",
                                                           "value": correction}}}}}})
    [record] = slack.wait_for(lambda: bot.store.records.list())
    assert (record.prompt, record.response) == ("How do we detect it?", correction)
    assert record.history == (("What is lateral movement?", first["text"]),)
    assert record.source is RecordSource.CORRECTION and record.author == ANALYST
    assert record.status is RecordStatus.PENDING
    confirm = slack.wait_for(lambda: [c for c in slack.calls_to("chat.postEphemeral")
                                      if "record #" in c.params.get("text", "")])[0]
    assert confirm.params["user"] == ANALYST and "waiting for an admin's review" in confirm.params["text"]


def test_the_message_shortcut_opens_the_same_modal(bot, slack):
    bot.event(mention_event("What is EDR?", channel="C3", ts="7.1"))
    [answer] = bot.answers("C3", "7.1")
    bot.interact({"type": "message_action", "callback_id": "correct_answer", "trigger_id": "t.4",
                  "user": {"id": TRUSTED}, "channel": {"id": "C3"}, "message": {"ts": answer["ts"]},
                  "response_url": f"{slack.url}/respond/x"})
    modal = slack.wait_for(lambda: slack.calls_to("views.open"))[0].params["view"]
    assert modal["callback_id"] == "correction_modal"


def test_an_empty_correction_is_refused_with_a_field_error(bot):
    turn = answered(Intake(bot.store), channel="C", question="q", answer="a")
    response = bot.interact({"type": "view_submission", "user": {"id": ANALYST}, "view": {
        "type": "modal", "callback_id": "correction_modal", "private_metadata": json.dumps({"turn_id": turn, "channel": "C"}),
        "state": {"values": {"correction": {"correction": {"value": "   "}}}}}})
    assert json.loads(response.body)["response_action"] == "errors"
    assert bot.store.records.list() == []


def test_admin_commands_and_refusal_of_non_admins(bot, slack):
    bot.command("status", ANALYST)
    refusal = slack.wait_for(lambda: slack.calls_to(f"/respond/{ANALYST}"))[0].params
    assert "for secbot admins" in refusal["text"]
    bot.command("status", ADMIN)
    status = slack.wait_for(lambda: slack.calls_to(f"/respond/{ADMIN}"))[0].params
    assert "Active model" in status["text"] and "0 pending" in status["text"]
    turn = answered(Intake(bot.store), channel="C", question="q", answer="a")
    record = Intake(bot.store).correction(turn, ANALYST, "better").record
    bot.command("review", ADMIN)
    review = slack.wait_for(lambda: len(slack.calls_to(f"/respond/{ADMIN}")) > 1 and
                            slack.calls_to(f"/respond/{ADMIN}")[1])
    approve = review.params["blocks"][2]["elements"][0]
    bot.interact({"type": "block_actions", "user": {"id": ANALYST}, "response_url": f"{slack.url}/respond/r1",
                  "actions": [{"action_id": approve["action_id"], "value": approve["value"]}]})
    bot.interact({"type": "block_actions", "user": {"id": ADMIN}, "response_url": f"{slack.url}/respond/r2",
                  "actions": [{"action_id": approve["action_id"], "value": approve["value"]}]})
    slack.wait_for(lambda: bot.store.records.get(record.id).status is RecordStatus.APPROVED)
    assert "Only secbot admins" in slack.calls_to("/respond/r1")[0].params["text"]
    bot.command("export", ADMIN)
    slack.wait_for(lambda: slack.calls_to("files.completeUploadExternal"))
    [content] = slack.uploads.values()
    assert json.loads(content) == {"prompt": "q", "response": "better", "history": []}


def test_home_tab_shows_status_to_admins(bot, slack):
    bot.event({"type": "app_home_opened", "user": ADMIN, "channel": "D1", "tab": "home"})
    view = slack.wait_for(lambda: slack.calls_to("views.publish"))[0].params["view"]
    assert "Active model" in json.dumps(view)


def test_a_bad_signature_gets_401_and_nothing_happens(bot, slack):
    response = bot.send(event_body(mention_event("hi", channel="C1", ts="8.1")), secret="wrong-secret")
    assert response.status == 401
    stale = event_body(mention_event("hi", channel="C1", ts="8.2"))
    headers = signature_headers(stale, SECRET, timestamp=int(time.time()) - 600)
    assert bot.app.handle_raw(stale, headers).status == 401
    time.sleep(0.3)
    assert slack.calls_to("chat.postMessage") == []


def test_unknown_and_malformed_payloads_are_ignored_without_a_crash(bot, slack, bot_engine):
    assert bot.event({"type": "team_rename", "name": "x"}).status == 200
    assert bot.event({"type": "reaction_added", "user": ANALYST, "reaction": "+1",
                      "item": {"type": "file", "file": "F1"}}).status == 200
    assert bot.send('{"type": "event_callback", "event": ').status in (200, 400, 404)
    assert bot.send("garbage=%%%", "application/x-www-form-urlencoded").status in (200, 400, 404)
    assert bot.interact({"type": "block_actions", "user": {"id": ADMIN},
                         "actions": [{"action_id": "no_such_button"}]}).status in (200, 404)
    assert bot.interact({"type": "view_submission", "user": {"id": ADMIN},
                         "view": {"callback_id": "correction_modal"}}).status == 400
    time.sleep(0.3)
    assert slack.calls_to("chat.postMessage") == []
    bot.event(mention_event("Still there?", channel="C1", ts="9.1"))
    assert bot.answers("C1", "9.1")[0]["text"] == bot_engine.generate("Still there?")


def test_a_failing_model_gets_a_friendly_message_and_the_question_is_kept(slack, tmp_path):
    dead = OpenAIClient("http://127.0.0.1:9/v1", timeout=2)  # nothing listens on port 9
    bot = Bot(slack, tmp_path, dead)
    bot.event(mention_event("Will this fail?", channel="C1", ts="10.1"))
    message = slack.wait_for(lambda: [m for m in slack.thread_messages("C1", "10.1")
                                      if "error id" in m["text"]])[0]
    assert "Traceback" not in message["text"] and "Sorry" in message["text"]
    [turn] = bot.store.conversations.thread_turns("C1", "10.1")
    assert turn.question == "Will this fail?" and turn.answer is None
    assert turn.error_id and turn.error_id in message["text"]


def test_a_long_answer_continues_in_further_messages(slack, tmp_path, tiny_dir):
    engine = Engine.load(tiny_dir, sampling=Sampling(max_new_tokens=600))
    expected = engine.generate("Tell me everything about ransomware.")
    assert len(expected) > 800  # precondition: long enough for three 400-character messages
    bot = Bot(slack, tmp_path, InProcessClient(engine), split_at=400)
    bot.event(mention_event("Tell me everything about ransomware.", channel="C1", ts="11.1"))
    bot.answers("C1", "11.1", timeout=300)
    messages = slack.thread_messages("C1", "11.1")
    assert len(messages) >= 3 and all(len(m["text"]) <= 400 for m in messages)
    assert "".join(m["text"] for m in messages).replace(" ", "").replace("\n", "") == \
        expected.replace(" ", "").replace("\n", "")
    assert messages[-1]["blocks"] and not messages[0]["blocks"]
    assert bot.store.conversations.turn_for_message("C1", messages[0]["ts"]).answer == expected
    assert {bot.store.conversations.turn_for_message("C1", m["ts"]).id for m in messages} == {
        bot.store.conversations.turn_for_message("C1", messages[0]["ts"]).id}  # every piece


def test_split_text_keeps_slack_limits_and_cuts_at_whitespace():
    paragraph = ("Rotate the key, then review CloudTrail for its use. " * 20)[:999].rsplit(" ", 1)[0] + "."
    text = "\n\n".join([paragraph] * 7)  # about 7,000 characters in 7 paragraphs
    pieces = split_text(text)
    assert len(pieces) == 4 and all(len(p) <= 3000 for p in pieces)  # two paragraphs a message
    assert "\n\n".join(pieces) == text
    assert all(p.endswith(".") for p in pieces)
    assert split_text("x" * 7000) == ["x" * 3000, "x" * 3000, "x" * 1000]


def test_rate_limited_web_api_calls_are_retried(tmp_path, bot_engine):
    with LocalSlack(rate_limit_every=2) as slack:
        bot = Bot(slack, tmp_path, InProcessClient(bot_engine))
        bot.event(mention_event("What is a SIEM?", channel="C1", ts="12.1"))
        [answer] = bot.answers("C1", "12.1", timeout=120)
        assert answer["text"] == bot_engine.generate("What is a SIEM?")


def test_a_correction_answers_at_once_from_memory_and_feedback_works_on_it(bot, slack, bot_engine):
    bot.event(mention_event("What port does SSH use?", channel="C4", ts="13.1"))
    [answer] = bot.answers("C4", "13.1")
    turn = bot.store.conversations.turn_for_message("C4", answer["ts"])
    record = Intake(bot.store, trusted=[TRUSTED]).correction(turn.id, TRUSTED, "SSH listens on TCP port 22.").record
    calls = len(slack.calls)
    bot.event(mention_event("Which port is SSH on?", channel="C4", ts="14.1"))  # other words, new thread
    [remembered] = bot.answers("C4", "14.1")
    assert remembered["text"] == "SSH listens on TCP port 22."
    footer = [e["text"] for b in remembered["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert footer == [f"Team answer · approved by @{TRUSTED} on {record.reviewed_at:%Y-%m-%d} · record #{record.id}"]
    memory_turn = bot.store.conversations.turn_for_message("C4", remembered["ts"])
    assert memory_turn.memory_record_id == record.id and memory_turn.model_version_id is None
    assert "Thinking" in slack.calls[calls].params["text"]  # the same path: stored, shown, feedback buttons
    bot.event({"type": "reaction_added", "user": TRUSTED, "reaction": "+1",
               "item": {"type": "message", "channel": "C4", "ts": remembered["ts"]}})
    paraphrase = slack.wait_for(lambda: [r for r in bot.store.records.list() if r.prompt == "Which port is SSH on?"])
    assert paraphrase[0].response == "SSH listens on TCP port 22."
    assert bot.store.conversations.feedback_counts(memory_turn.id) == {"thumbs_up": 1}
