"""The offline Slack refuses what Slack refuses, with Slack's error, through slack_sdk's own client."""

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from secbot.bot.slack.offline import OfflineSlack
from secbot.bot.slack.views import answer_blocks, correction_modal, feedback_blocks


@pytest.fixture(scope="module")
def client():
    with OfflineSlack() as slack:
        yield WebClient(token="xoxb-test", base_url=slack.api_url)


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(**fields) -> dict:
    return {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Go"},
                                             "action_id": "go", **fields}]}


def text_input(**fields) -> dict:
    return {"type": "input", "block_id": "b", "label": {"type": "plain_text", "text": "Answer"},
            "element": {"type": "plain_text_input", "action_id": "a", "multiline": True, **fields}}


def modal(title="Correct this answer", blocks=None) -> dict:
    return {"type": "modal", "title": {"type": "plain_text", "text": title},
            "submit": {"type": "plain_text", "text": "Save"}, "blocks": blocks or [section("x")]}


def error_of(call) -> str:
    with pytest.raises(SlackApiError) as raised:
        call()
    return raised.value.response["error"]


@pytest.mark.parametrize("blocks", [
    [section("x")] * 51,
    [section("x" * 3001)],
    [{"type": "markdown", "text": "x" * 6001}, {"type": "markdown", "text": "y" * 6000}],
    [button(action_id="a" * 256)],
    [button(value="v" * 2001)],
    [text_input(initial_value="x" * 3001)],
    [text_input(initial_value="x" * 101, max_length=100)],
    [{"type": "no_such_block", "text": "x"}],
    [{**section("x"), "colour": "red"}],  # a field Slack does not know
], ids=["51-blocks", "section-3001", "markdown-12001", "action-id-256", "value-2001", "input-3001",
        "input-over-max-length", "unknown-type", "unknown-field"])
def test_blocks_slack_would_refuse_are_refused(client, blocks):
    assert error_of(lambda: client.chat_postMessage(channel="C1", text="t", blocks=blocks)) == "invalid_blocks"


def test_blocks_at_the_limits_and_secbots_own_payloads_are_accepted(client):
    at_limits = [section("x" * 3000), {"type": "markdown", "text": "m" * 6000}, {"type": "markdown", "text": "m" * 6000},
                 button(action_id="a" * 255, value="v" * 2000), text_input(initial_value="x" * 3000)]
    assert client.chat_postMessage(channel="C1", text="t", blocks=at_limits + [section("y")] * 45)["ok"]
    own = answer_blocks("**Rotate** the key 轮换密钥 <!here>", turn_id=7, footer="Team answer") + feedback_blocks(8)
    assert client.chat_postMessage(channel="C1", text="t", blocks=own)["ok"]
    assert client.views_open(trigger_id="1.2.abc", view=correction_modal(7, "C1", "q?", "a" * 2999))["ok"]


def test_views_and_their_titles_are_checked(client):
    assert error_of(lambda: client.views_open(trigger_id="1.2.abc", view=modal(title="x" * 25))) == "invalid_arguments"
    assert error_of(lambda: client.views_open(view=modal())) == "invalid_arguments"  # no trigger_id
    assert error_of(lambda: client.views_publish(user_id="U1", view={"type": "home", "blocks": [section("x")] * 101})
                    ) == "invalid_arguments"
    assert error_of(lambda: client.views_publish(user_id="U1", view={"type": "home", "blocks": [section("x" * 3001)]})
                    ) == "invalid_arguments"
    assert client.views_open(trigger_id="1.2.abc", view=modal(title="x" * 24))["ok"]


def test_stream_arguments_and_sizes_are_checked(client):
    assert error_of(lambda: client.chat_startStream(channel="C1", thread_ts="1.1")) == "invalid_arguments"  # no recipient
    assert error_of(lambda: client.api_call("chat.startStream", json={"channel": "D1"})) == "invalid_arguments"
    started = client.chat_startStream(channel="C1", thread_ts="1.1", recipient_user_id="U1", recipient_team_id="T1",
                                      markdown_text="a" * 6000)
    ts = started["ts"]
    assert error_of(lambda: client.api_call("chat.appendStream", json={"channel": "C1", "ts": ts})) == "invalid_arguments"
    assert error_of(lambda: client.chat_appendStream(channel="C1", ts=ts, markdown_text="b" * 12_001)) == "msg_too_long"
    assert client.chat_appendStream(channel="C1", ts=ts, markdown_text="b" * 6000)["ok"]
    assert error_of(lambda: client.chat_appendStream(channel="C1", ts=ts, markdown_text="c")) == "msg_too_long"
    assert error_of(lambda: client.api_call("chat.stopStream", json={"channel": "C1"})) == "invalid_arguments"
    assert error_of(lambda: client.chat_stopStream(channel="C1", ts=ts, blocks=[section("x" * 3001)])) == "invalid_blocks"
    assert client.chat_stopStream(channel="C1", ts=ts, blocks=feedback_blocks(3))["ok"]


def test_message_text_over_slacks_limit_is_refused(client):
    assert error_of(lambda: client.chat_postMessage(channel="C1", text="x" * 40_001)) == "msg_too_long"
    assert error_of(lambda: client.chat_postMessage(channel="C1")) == "invalid_arguments"


def test_a_correction_modal_for_an_answer_longer_than_its_box_says_so(client):
    long_answer = "Rotate the key and review the logs. " * 200  # 7,200 characters
    view = correction_modal(7, "C1", "q?", long_answer)
    assert client.views_open(trigger_id="1.2.abc", view=view)["ok"]  # within Slack's limits
    said = " ".join(b["text"]["text"] for b in view["blocks"] if b["type"] == "section")
    assert "7,200 characters" in said and "only its first part" in said
    short = correction_modal(7, "C1", "q?", "Rotate the key.")
    assert not any("characters" in b["text"]["text"] for b in short["blocks"] if b["type"] == "section")
