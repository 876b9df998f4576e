"""`secbot serve --http` in its own process: signed HTTP requests in, answers to the local Slack."""

import subprocess
import sys

import httpx
import pytest
import yaml
from servers import clean_env, free_port, secbot_server

from secbot.bot.slack.offline import OfflineSlack, event_body, mention_event, signature_headers

SECRET = "serve-test-secret"


@pytest.fixture
def served(tiny_dir, tmp_path):
    with OfflineSlack() as slack:
        port = free_port()
        env = clean_env(SLACK_BOT_TOKEN="xoxb-serve-test", SLACK_SIGNING_SECRET=SECRET,
                        SLACK_API_URL=slack.api_url, SECBOT_MODEL=str(tiny_dir),
                        SECBOT_DATA_DIR=str(tmp_path), SECBOT_MAX_NEW_TOKENS="16")
        url = f"http://127.0.0.1:{port}/slack/events"
        with secbot_server(["serve", "--http", "--host", "127.0.0.1", "--port", str(port)], env, url):
            yield url, slack


def test_http_mode_answers_signed_events_and_rejects_bad_ones(served):
    url, slack = served
    body = event_body(mention_event("What is phishing?", channel="C1", ts="1.1"))
    response = httpx.post(url, content=body, headers=signature_headers(body, SECRET))
    assert response.status_code == 200  # acknowledged (how fast: bench/bot_load.py)
    slack.wait_for(lambda: [m for m in slack.thread_messages("C1", "1.1") if m.get("blocks")], timeout=120)
    bad = httpx.post(url, content=body, headers=signature_headers(body, "not-the-secret"))
    assert bad.status_code == 401
    garbled = httpx.post(url, content="{not json", headers=signature_headers("{not json", SECRET))
    assert garbled.status_code == 400


def test_serve_without_tokens_says_what_to_set(tmp_path):
    out = subprocess.run([sys.executable, "-m", "secbot.bot.cli.commands", "serve", "--http"],
                         env=clean_env(SECBOT_DATA_DIR=str(tmp_path)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "SLACK_BOT_TOKEN" in out.stderr and "Traceback" not in out.stderr


def test_serve_with_slack_unreachable_says_so_not_a_path(tmp_path):
    closed = free_port()  # nothing listens there
    out = subprocess.run([sys.executable, "-m", "secbot.bot.cli.commands", "serve", "--http"],
                         env=clean_env(SLACK_BOT_TOKEN="xoxb-serve-test", SLACK_SIGNING_SECRET=SECRET,
                                       SLACK_API_URL=f"http://127.0.0.1:{closed}/api/", SECBOT_DATA_DIR=str(tmp_path)),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "cannot reach" in out.stderr and "SLACK_API_URL" in out.stderr and "permissions" not in out.stderr


def test_the_manifest_declares_exactly_the_scopes_and_events_the_code_uses():
    from pathlib import Path

    from secbot.bot.slack.listeners import BOT_EVENTS, BOT_SCOPES

    manifest = yaml.safe_load((Path(__file__).parents[1] / "deploy" / "manifest.yml").read_text())
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == BOT_EVENTS
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == set(BOT_SCOPES)
    assert "im:write" not in manifest["oauth_config"]["scopes"]["bot"]
    assert manifest["features"]["shortcuts"][0]["callback_id"] == "correct_answer"
    assert manifest["features"]["slash_commands"][0]["command"] == "/secbot"
    agent = manifest["features"]["agent_view"]  # new apps get only the agent messaging experience
    assert "assistant_view" not in manifest["features"] and agent["agent_description"]
    from secbot.bot.settings import SlackSettings

    defaults = SlackSettings.model_fields["suggested_prompts"].default_factory()
    assert [p["message"] for p in agent["suggested_prompts"]] == defaults[:4]
