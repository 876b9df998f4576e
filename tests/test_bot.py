"""The real bolt app driven by signed requests built from Slack's published example payloads
(tests/fixtures/slack), answering through the offline Slack Web API and the tiny model."""

import json
import subprocess
import sys
import textwrap
import time
from datetime import timedelta

import pytest
from conftest import answered
from slack_bot import ADMIN, ANALYST, NAMES, OTHER, SECRET, TRUSTED, Bot, body_text, finished, footer
from slack_payloads import DROP, event

from secbot.bot.slack.delivery import INTERRUPTED
from secbot.bot.slack.offline import BOT_USER_ID, OfflineSlack, signature_headers
from secbot.bot.slack.rendering import ZWSP, neutralise
from secbot.feedback.intake.redaction import Redactor
from secbot.feedback.intake.submissions import Intake
from secbot.feedback.store.entities import RecordSource, RecordStatus
from secbot.model.runtime.engine import Engine
from secbot.model.runtime.generation import Sampling
from secbot.model.serving.client import InProcessClient, OpenAIClient


# -- questions -----------------------------------------------------------------------------------
def test_a_mention_gets_a_status_then_a_natively_streamed_answer_with_feedback(bot, bot_engine, slack):
    assert bot.mention("What is phishing?", ts="1.1").status == 200
    [answer] = bot.answers("C1", "1.1")
    expected = bot_engine.generate("What is phishing?")
    assert body_text(answer) == neutralise(expected)
    assert slack.statuses[("C1", "1.1")] == "is thinking…"  # a status, not a placeholder message
    # What secbot is doing, as the status's loading messages and as the answer's task chunks.
    assert slack.status_history[("C1", "1.1")] == [
        ("is thinking…", ["Searching team memory…"]),
        ("is thinking…", ["No approved answer matched", "Asking the base model…"])]
    tasks = answer["tasks"]
    assert (tasks["memory"]["status"], tasks["memory"]["output"]) == ("complete", "No approved answer matched")
    assert (tasks["model"]["title"], tasks["model"]["status"]) == ("Asked the base model", "complete")
    assert [c.method for c in slack.calls if c.method.startswith("chat.")][0] == "chat.startStream"
    assert slack.calls_to("chat.stopStream") and not slack.calls_to("chat.postMessage")
    start = slack.calls_to("chat.startStream")[0].params
    assert (start["recipient_user_id"], start["recipient_team_id"], start["thread_ts"]) == (ANALYST, "T111", "1.1")
    turn = bot.turn("C1", answer["ts"])
    assert (turn.question, turn.answer, turn.asker) == ("What is phishing?", expected, ANALYST)
    assert turn.latency_ms is not None and turn.prompt_tokens > 0 and turn.completion_tokens > 0
    buttons = next(b for b in answer["blocks"] if b["type"] == "context_actions")["elements"][0]
    assert buttons["type"] == "feedback_buttons" and buttons["positive_button"]["value"] == f"up:{turn.id}"


def test_without_native_streaming_or_status_it_falls_back_to_a_placeholder_and_edits(tmp_path, bot_engine):
    with OfflineSlack(streaming=False, status=False) as slack:
        bot = Bot(slack, tmp_path, InProcessClient(bot_engine))
        bot.mention("What is phishing?", ts="2.1")
        [answer] = bot.answers("C1", "2.1")
        assert body_text(answer) == neutralise(bot_engine.generate("What is phishing?"))
        first = slack.calls_to("chat.postMessage")[0].params
        assert "Searching team memory" in first["text"] and first["thread_ts"] == "2.1"
        # The placeholder follows the stages, then the answer replaces it.
        stage = slack.calls_to("chat.update")[0].params
        assert stage["ts"] == answer["ts"] and "Asking the base model" in stage["text"]
        assert answer["blocks"][0]["type"] == "markdown"
        assert "▍" not in answer["text"]


def test_a_retried_event_and_one_message_sent_as_two_events_are_answered_once(bot, slack, tmp_path, bot_engine):
    bot.mention("What is a zero-day?", ts="3.1", event_id="EvSAME")
    bot.mention("What is a zero-day?", ts="3.1", event_id="EvSAME",
                headers={"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"})
    # The same Slack message as a `message` event too (as in a group DM): one question.
    bot.event("message_mpim", event__channel="C1", event__ts="3.1", event__user=ANALYST,
              event__text=f"<@{BOT_USER_ID}> What is a zero-day?")
    bot.answers("C1", "3.1")
    restarted = Bot(slack, tmp_path, InProcessClient(bot_engine))
    assert restarted.mention("What is a zero-day?", ts="3.1", event_id="EvSAME").status == 200
    restarted.settle()
    bot.settle()
    assert len(slack.calls_to("chat.startStream")) == 1 and len(bot.store.conversations.thread_turns("C1", "3.1")) == 1


def test_a_follow_up_in_the_thread_uses_its_history(bot, bot_engine):
    bot.mention("What is XSS?", ts="4.1")
    [first] = bot.answers("C1", "4.1")
    bot.event("message_thread_broadcast", event__channel="C1", event__ts="4.5", event__thread_ts="4.1",
              event__subtype=DROP, event__channel_type="channel", event__user=ANALYST, event__text="How do I stop it?")
    second = bot.answers("C1", "4.1", count=2)[1]
    history = [("What is XSS?", bot.turn("C1", first["ts"]).answer)]
    assert body_text(second) == neutralise(bot_engine.generate("How do I stop it?", history))


def test_dms_are_answered_with_or_without_a_mention_and_own_messages_and_edits_are_ignored(bot, bot_engine, slack):
    bot.event("message_im", event__channel="D1", event__ts="5.1", event__user=ANALYST, event__text="What is MFA?")
    bot.event("message_im", event__channel="D1", event__ts="5.2", event__user=ANALYST,
              event__text=f"<@{BOT_USER_ID}> What is EDR?")  # Slack sends no app_mention in a DM
    assert body_text(bot.answers("D1", "5.1")[0]) == neutralise(bot_engine.generate("What is MFA?"))
    assert body_text(bot.answers("D1", "5.2")[0]) == neutralise(bot_engine.generate("What is EDR?"))
    before = len(slack.calls)
    bot.event("message_im", event__channel="D1", event__ts="5.3", event__user=BOT_USER_ID, event__bot_id="BBOT",
              event__text="my own answer")
    bot.event("message_changed", event__channel="D1")
    bot.event("message_mpim", event__channel="G1", event__ts="5.4", event__user=ANALYST, event__text="chatter")
    bot.event("message_thread_broadcast", event__channel="C9", event__ts="5.6", event__thread_ts="5.5",
              event__user=ANALYST)  # a thread secbot is not in
    bot.settle()
    assert len(slack.calls) == before


def test_thread_broadcasts_file_shares_and_group_dm_mentions_are_answered(bot, slack):
    bot.mention("What is a SIEM?", ts="6.1")
    bot.answers("C1", "6.1")
    bot.event("message_thread_broadcast", event__channel="C1", event__ts="6.2", event__thread_ts="6.1",
              event__user=ANALYST, event__text="And what does it cost?")
    assert len(bot.answers("C1", "6.1", count=2)) == 2
    bot.event("message_file_share", event__channel="D2", event__channel_type="im", event__ts="6.3",
              event__user=ANALYST, event__text="Is this screenshot phishing?")
    bot.answers("D2", "6.3")
    bot.event("message_file_share", event__channel="D2", event__channel_type="im", event__ts="6.4",
              event__user=ANALYST, event__text="")  # a file with no words: nothing to answer
    bot.event("message_mpim", event__channel="G2", event__ts="6.5", event__user=ANALYST,
              event__text=f"<@{BOT_USER_ID}> What is DLP?")
    bot.answers("G2", "6.5")
    bot.settle()
    [reply] = slack.thread_messages("D2", "6.4")
    assert "do not read attached files (file.png)" in reply["text"] and "Paste the text" in reply["text"]
    assert bot.store.conversations.thread_turns("D2", "6.4") == []  # not a question: nothing stored


def test_the_home_tab_is_published_only_when_the_home_tab_opens(bot, slack):
    bot.event("app_home_opened", event__user=ADMIN, event__tab="messages")
    bot.event("app_home_opened", event__user=ADMIN)
    bot.settle()
    view = slack.views.get(ADMIN)
    assert "Active model" in json.dumps(view) and len(slack.calls_to("views.publish")) == 1
    bot.event("app_home_opened", event__user=ANALYST)
    home = json.dumps(slack.wait_for(lambda: slack.views.get(ANALYST)))
    # What secbot is, which model answers, what it keeps and how to teach it; no admin controls.
    assert all(part in home for part in ("security team's own assistant", "the base model", "What it keeps",
                                          "redacted", ":pencil2:", "Correct this answer", "0 approved answer"))
    assert "review_approve" not in home and "Active model" not in home


def test_channels_outside_the_allow_list_and_users_outside_the_group_get_a_polite_refusal(slack, tmp_path, bot_engine):
    slack.usergroups = {"STEAM": [ANALYST]}
    bot = Bot(slack, tmp_path, InProcessClient(bot_engine), channels=["CSEC"], allowed_usergroup="STEAM")
    bot.mention("What is phishing?", channel="CRANDOM", ts="7.1")
    refusal = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[0].params
    assert refusal["user"] == ANALYST and "only answer" in refusal["text"]
    bot.mention("What is phishing?", channel="CSEC", ts="7.2", user=OTHER)
    refusals = slack.wait_for(lambda: len(slack.calls_to("chat.postEphemeral")) > 1 and slack.calls_to("chat.postEphemeral"))
    assert refusals[1].params["user"] == OTHER and "only open to the security team" in refusals[1].params["text"]
    bot.mention("What is phishing?", channel="CSEC", ts="7.3")
    bot.answers("CSEC", "7.3")
    assert slack.thread_messages("CRANDOM", "7.1") == [] and slack.thread_messages("CSEC", "7.2") == []


def test_the_user_group_covers_feedback_buttons_the_shortcut_and_the_modal(slack, tmp_path, bot_engine):
    slack.usergroups = {"STEAM": [ANALYST]}
    bot = Bot(slack, tmp_path, InProcessClient(bot_engine), allowed_usergroup="STEAM")
    bot.mention("What is phishing?", ts="7.5")
    [answer] = bot.answers("C1", "7.5")
    turn = bot.turn("C1", answer["ts"])
    bot.interact("block_actions", user__id=OTHER, channel__id="C1", response_url=f"{slack.url}/respond/z",
                 actions__0__action_id="feedback", actions__0__type="feedback_buttons",
                 actions__0__value=f"up:{turn.id}")
    bot.interact("message_action", callback_id="correct_answer", user__id=OTHER, channel__id="C1",
                 message__ts=answer["ts"], trigger_id="t.20")
    response = bot.interact("view_submission", user__id=OTHER, view__callback_id="correction_modal",
                            view__private_metadata=json.dumps({"turn_id": turn.id, "channel": "C1"}),
                            view__state={"values": {"correction": {"correction": {"value": "Click the link."}}}})
    assert "only open to the security team" in json.loads(response.body)["errors"]["correction"]
    [modal] = slack.wait_for(lambda: slack.calls_to("views.open"))
    assert "only open to the security team" in json.dumps(modal.params["view"])
    [said] = slack.wait_for(lambda: slack.calls_to("/respond/z"))
    assert "only open to the security team" in said.params["text"]
    assert bot.store.records.list() == [] and bot.store.conversations.feedback_counts(turn.id) == {}


@pytest.mark.parametrize("payload", [
    '[1, 2, 3]',
    '{"type": "event_callback", "event": {"type": "app_mention", "text": 12345, "user": "U1", "channel": "C1", '
    '"ts": "1.1"}}',
    '{"type": "event_callback", "event": {"type": "reaction_added", "user": "U1", "reaction": "+1", "item": '
    '{"type": "message", "channel": "C1", "ts": "123456789012345678901234567890.1"}}}',
    '{"type": "event_callback", "event": {"type": "app_mention", "text": "hi \\ud800 there", "user": "U1", '
    '"channel": "C1", "ts": "1.2"}}',
])
def test_signed_but_odd_event_payloads_are_acknowledged_never_a_500(bot, payload):
    assert bot.send(payload, "application/json").status < 500


@pytest.mark.parametrize("changes", [{"actions": []}, {"user": None}, {"actions__0__value": "up:" + "9" * 30}])
def test_signed_but_odd_interactions_are_acknowledged_never_a_500(bot, changes):
    assert bot.interact("block_actions", **changes).status < 500


# -- the text boundary ---------------------------------------------------------------------------
def test_incoming_slack_markup_reaches_the_model_and_the_store_as_plain_text(bot, slack):
    raw = ("Is &lt;script&gt; in <https://evil.example/x?a=1&amp;b=2|this page> from <@UOTHER> "
           "in <#C42|general> a problem? <!here>")
    bot.mention(raw, ts="8.1")
    [answer] = bot.answers("C1", "8.1")
    turn = bot.turn("C1", answer["ts"])
    assert turn.question == ("Is <script> in this page (https://evil.example/x?a=1&b=2) from @bob in #general "
                             "a problem? @here")
    record = Intake(bot.store, trusted=[TRUSTED]).correction(turn.id, TRUSTED, "Yes: it is an XSS attempt.").record
    assert record.prompt == turn.question and "<@" not in record.prompt and "&lt;" not in record.prompt


def test_nothing_an_answer_says_can_notify_anyone_and_markdown_renders(bot, slack):
    bot.mention("Who do we page?", ts="9.1")
    [first] = bot.answers("C1", "9.1")
    poisoned = ("Page <!here> and <!channel>, ask <@UADMIN> in <#C1|sec>, tell <!subteam^S1|@sec> or @everyone.\n\n"
                "**Bold**, [runbook](https://wiki.example/ir) & `grep '<script' access.log`\n\n"
                "| step | who |\n|---|---|\n| 1 | SOC |\n\n```bash\nredis-cli -h <host>\n```")
    Intake(bot.store, trusted=[TRUSTED]).correction(bot.turn("C1", first["ts"]).id, TRUSTED, poisoned)
    bot.mention("Who do we page?", ts="9.2")  # answered from team memory, word for word
    [answer] = bot.answers("C1", "9.2")
    shown = body_text(answer)
    for token in ("<!here>", "<!channel>", "<@UADMIN>", "<#C1|sec>", "<!subteam^S1|@sec>", "@everyone"):
        assert token not in shown and token not in answer["text"], token
    assert shown.replace(ZWSP, "") == poisoned  # still reads the same, and the Markdown is intact
    assert "**Bold**" in shown and "```bash" in shown and "| step | who |" in shown
    assert "Team answer" in footer(answer)[0]
    stop = slack.calls_to("chat.stopStream")[-1].params
    assert all("<!" not in json.dumps(b) for b in stop["blocks"])


def test_a_long_answer_continues_in_further_messages_and_every_piece_takes_feedback(slack, tmp_path, tiny_dir):
    engine = Engine.load(tiny_dir, sampling=Sampling(max_new_tokens=600))
    expected = engine.generate("list every port")
    assert len(expected) > 800  # precondition: long enough for three 400-character messages
    bot = Bot(slack, tmp_path, InProcessClient(engine), split_at=400)
    bot.mention("list every port", ts="10.1")
    bot.answers("C1", "10.1", timeout=300)
    messages = slack.thread_messages("C1", "10.1")
    assert len(messages) >= 3
    assert "".join(body_text(m) for m in messages).replace(ZWSP, "") == expected
    [turn_id] = {bot.turn("C1", m["ts"]).id for m in messages}
    assert bot.turn("C1", messages[0]["ts"]).answer == Redactor().redact(expected).text  # stored redacted
    bot.event("reaction_added", event__user=OTHER, event__reaction="+1",
              event__item={"type": "message", "channel": "C1", "ts": messages[-1]["ts"]})
    slack.wait_for(lambda: bot.store.conversations.feedback_counts(turn_id) == {"thumbs_up": 1})


YAML_ANSWER = "The hardened config:\n\n```yaml\n" + "\n".join(
    f"rule_{i}:\n  match: process.name == 'proc{i}.exe'\n  action: alert  # see runbook section {i}" for i in range(260)
) + "\n```\n\nApply it with `kubectl apply -f rules.yaml`."
TABLE_ANSWER = "Open ports found:\n\n| host | port | service | owner |\n|:-----|-----:|---------|-------|\n" + "\n".join(
    f"| web-{i:03}.corp.example | {8000 + i} | nginx 1.{i % 27} reverse proxy for the {i}th tenant | team-{i % 9} |"
    for i in range(100)) + "\n\nClose what nobody owns."
CHINESE_ANSWER = "\n\n".join(
    f"第{i}步：请 <!here> 和 <@UADMIN> 检查 <#C1|sec> 里的告警，轮换泄露的密钥，并在工单里记录处理时间。@channel 请确认。"
    * 3 for i in range(60)) + "\n\n| host | port | service | owner |\n|:-----|-----:|---------|-------|\n" + "\n".join(
    f"| 主机-{i} | {i} | 服务 {i} | 团队 {i % 5} |" for i in range(60))


def shown_pieces(slack, channel, thread_ts, count) -> list[str]:
    messages = slack.wait_for(lambda: (lambda m: m if len(m) >= count and finished(m[-1]) else None)(
        [m for m in slack.thread_messages(channel, thread_ts) if body_text(m).strip()]), timeout=300)
    return [body_text(m) for m in messages]


def without_layout(text: str) -> str:
    """The text less fence lines, table header rows and whitespace: what splitting must not change."""
    return "".join("".join(line.split()) for line in text.split("\n")
                   if not line.startswith("```") and not line.startswith("| host") and not line.startswith("|:--"))


@pytest.mark.parametrize("streaming", [True, False], ids=["native", "edited"])
@pytest.mark.parametrize("answer", [YAML_ANSWER, TABLE_ANSWER, CHINESE_ANSWER], ids=["yaml", "table", "chinese"])
def test_a_long_code_block_or_table_arrives_as_messages_that_each_render(tmp_path, bot_engine, streaming, answer):
    with OfflineSlack(users=dict(NAMES), streaming=streaming) as slack:
        bot = Bot(slack, tmp_path, InProcessClient(bot_engine), split_at=4000)
        bot.mention("Show the full detection config", ts="10.1")
        [first] = bot.answers("C1", "10.1")
        Intake(bot.store, trusted=[TRUSTED]).correction(bot.turn("C1", first["ts"]).id, TRUSTED, answer)
        bot.mention("Show the full detection config", ts="10.2")  # the team answer, word for word
        pieces = shown_pieces(slack, "C1", "10.2", count=len(answer) // 4000 + 1)
    assert (slack.calls_to("chat.stopStream") != []) is streaming  # the path under test was taken
    assert all(len(p) <= 4000 for p in pieces)  # as Slack counts: mentions made inert
    pieces = [p.replace(ZWSP, "") for p in pieces]
    assert without_layout("\n".join(pieces)) == without_layout(answer)  # nothing lost, nothing added
    for before, piece in zip(pieces, pieces[1:]):
        assert not before.endswith(" ") and not piece.startswith((" ", "\n"))  # broken at a line
        if answer is YAML_ANSWER:
            assert fences_balanced(before) and fences_balanced(piece)
            assert "  action:" not in piece or -1 < piece.find("```yaml\n") < piece.find("  action:")  # its tag
        elif answer is TABLE_ANSWER:
            assert piece.startswith("| host | port | service | owner |\n|:-----|-----:|---------|-------|\n| web-")
        else:  # a paragraph never straddles two messages, a table row never loses its header
            assert piece.startswith(("第", "| host | port | service | owner |\n|:-----|")), piece[:40]


def test_mentions_that_grow_when_made_inert_still_fit_a_message(tmp_path, bot_engine):
    poisoned = "<!here> " * 1375  # 11,000 characters; each mention gains an invisible space
    with OfflineSlack(users=dict(NAMES), streaming=False) as slack:
        bot = Bot(slack, tmp_path, InProcessClient(bot_engine))
        bot.mention("Who do we page?", ts="9.1")
        [first] = bot.answers("C1", "9.1")
        Intake(bot.store, trusted=[TRUSTED]).correction(bot.turn("C1", first["ts"]).id, TRUSTED, poisoned)
        bot.mention("Who do we page?", ts="9.2")
        messages = slack.wait_for(lambda: (lambda m: m if m and finished(m[-1]) else None)(
            slack.thread_messages("C1", "9.2")), timeout=300)
    pieces = [body_text(m) for m in messages]
    assert len(pieces) == 2 and all(len(p) <= 11_000 for p in pieces)
    assert "".join(pieces).replace(ZWSP, "").split() == poisoned.split()


def fences_balanced(piece: str) -> bool:
    return piece.count("```") % 2 == 0


# -- feedback ------------------------------------------------------------------------------------
def test_thumbs_by_reaction_and_native_button_are_recorded_and_the_question_is_not_an_answer(bot, slack):
    bot.mention("What is CSRF?", ts="11.1")
    [answer] = bot.answers("C1", "11.1")
    turn = bot.turn("C1", answer["ts"])
    bot.event("reaction_added", event__user=ANALYST, event__reaction="+1::skin-tone-2",
              event__item={"type": "message", "channel": "C1", "ts": "11.1"})  # on the question
    bot.event("reaction_added", event__user=ANALYST, event__reaction="thumbsup",
              event__item={"type": "message", "channel": "C1", "ts": answer["ts"]})
    bot.interact("block_actions", user__id=OTHER, channel__id="C1", response_url=f"{slack.url}/respond/x",
                 actions__0__action_id="feedback", actions__0__type="feedback_buttons",
                 actions__0__value=f"down:{turn.id}")
    slack.wait_for(lambda: bot.store.conversations.feedback_counts(turn.id) == {"thumbs_up": 1, "thumbs_down": 1})
    [record] = slack.wait_for(lambda: bot.store.records.list())
    assert record.source is RecordSource.APPROVED_ANSWER and record.status is RecordStatus.PENDING


def test_the_whole_correction_flow_creates_the_right_record(bot, slack):
    bot.mention("What is lateral movement?", channel="C2", ts="12.1")
    [first] = bot.answers("C2", "12.1")
    bot.mention("How do we detect it?", channel="C2", ts="12.3", thread_ts="12.1")
    second = bot.answers("C2", "12.1", count=2)[1]
    bot.event("reaction_added", event__user=ANALYST, event__reaction="pencil2",
              event__item={"type": "message", "channel": "C2", "ts": second["ts"]})
    offer = slack.wait_for(lambda: slack.calls_to("chat.postEphemeral"))[0].params
    assert offer["user"] == ANALYST and offer["channel"] == "C2"
    button = offer["blocks"][1]["elements"][0]
    bot.interact("block_actions", user__id=ANALYST, channel__id="C2", trigger_id="t.3",
                 actions__0__action_id=button["action_id"], actions__0__value=button["value"])
    modal = slack.wait_for(lambda: slack.calls_to("views.open"))[0].params["view"]
    earlier = bot.turn("C2", first["ts"]).answer
    assert modal["blocks"][1]["element"]["initial_value"] == bot.turn("C2", second["ts"]).answer
    assert "How do we detect it?" in modal["blocks"][0]["text"]["text"]
    correction = "Look for new remote logons (4624 type 3) and PsExec services."
    bot.interact("view_submission", user__id=ANALYST, view__callback_id="correction_modal",
                 view__private_metadata=modal["private_metadata"],
                 view__state={"values": {"correction": {"correction": {"type": "plain_text_input", "value": correction}}}})
    [record] = slack.wait_for(lambda: bot.store.records.list())
    assert (record.prompt, record.response) == ("How do we detect it?", correction)
    assert record.history == (("What is lateral movement?", earlier),)
    assert record.source is RecordSource.CORRECTION and record.author == ANALYST and record.status is RecordStatus.PENDING
    confirm = slack.wait_for(lambda: [c for c in slack.calls_to("chat.postEphemeral") if "record #" in c.params.get("text", "")])[0]
    assert confirm.params["user"] == ANALYST and "waiting for an admin's review" in confirm.params["text"]


def test_the_message_shortcut_opens_the_same_modal_and_not_for_other_messages(bot, slack):
    bot.mention("What is EDR?", channel="C3", ts="13.1")
    [answer] = bot.answers("C3", "13.1")
    bot.interact("message_action", callback_id="correct_answer", user__id=TRUSTED, channel__id="C3",
                 message__ts="13.1")  # the question, not an answer
    bot.interact("message_action", callback_id="correct_answer", user__id=TRUSTED, channel__id="C3",
                 message__ts=answer["ts"])
    views = slack.wait_for(lambda: len(slack.calls_to("views.open")) == 2 and slack.calls_to("views.open"))
    assert "not one of secbot's answers" in json.dumps(views[0].params["view"])
    assert views[1].params["view"]["callback_id"] == "correction_modal"


def test_an_empty_correction_is_refused_with_a_field_error(bot):
    turn = answered(Intake(bot.store), channel="C", question="q", answer="a")
    response = bot.interact("view_submission", user__id=ANALYST, view__callback_id="correction_modal",
                            view__private_metadata=json.dumps({"turn_id": turn, "channel": "C"}),
                            view__state={"values": {"correction": {"correction": {"value": "   "}}}})
    assert json.loads(response.body)["response_action"] == "errors"
    assert bot.store.records.list() == []


def test_forged_turn_ids_cannot_reach_another_users_dm(bot, slack):
    intake = Intake(bot.store)
    private = answered(intake, channel="D9", thread_ts="14.0", question="My password is hunter2, is that ok?",
                       answer="No.", asker=ANALYST)
    response = bot.interact("view_submission", user__id=OTHER, view__callback_id="correction_modal",
                            view__private_metadata=json.dumps({"turn_id": private, "channel": "D9"}),
                            view__state={"values": {"correction": {"correction": {"value": "leak it"}}}})
    assert json.loads(response.body)["response_action"] == "errors"
    bot.interact("block_actions", user__id=OTHER, channel__id="C1", trigger_id="t.9",
                 actions__0__action_id="open_correction", actions__0__value=str(private))
    bot.interact("block_actions", user__id=OTHER, channel__id="D9", response_url=f"{slack.url}/respond/y",
                 actions__0__action_id="feedback", actions__0__value=f"up:{private}")
    modal = slack.wait_for(lambda: slack.calls_to("views.open"))[0].params["view"]
    assert "hunter2" not in json.dumps(modal) and "not one you can" in json.dumps(modal)
    slack.wait_for(lambda: slack.calls_to("/respond/y"))
    assert bot.store.records.list() == [] and bot.store.conversations.feedback_counts(private) == {}


# -- admin ---------------------------------------------------------------------------------------
def test_admin_commands_are_case_insensitive_and_refused_to_others(bot, slack):
    bot.command("status", ANALYST)
    refusal = slack.wait_for(lambda: slack.calls_to(f"/respond/{ANALYST}"))[0].params
    assert "for secbot admins" in refusal["text"]
    bot.command("STATUS", ADMIN)
    status = slack.wait_for(lambda: slack.calls_to(f"/respond/{ADMIN}"))[0].params
    assert "Active model" in status["text"] and "0 pending" in status["text"]


def buttons(blocks: list[dict], action_id: str, value: str | None = None) -> list[dict]:
    return [e for b in blocks if b["type"] in ("actions", "section") for e in b.get("elements") or [b.get("accessory")]
            if e and e.get("action_id") == action_id and (value is None or e.get("value") == value)]


def test_review_from_a_channel_and_from_the_app_home(bot, slack):
    intake = Intake(bot.store)
    first = intake.correction(answered(intake, thread_ts="15.0", question="q1", answer="a"), ANALYST, "better 1").record
    second = intake.correction(answered(intake, thread_ts="15.1", question="q2", answer="a"), ANALYST, "better 2").record
    bot.command("Review", ADMIN)
    review = slack.wait_for(lambda: slack.calls_to(f"/respond/{ADMIN}"))[0].params
    [approve] = buttons(review["blocks"], "review_approve", str(first.id))
    bot.interact("block_actions", user__id=ADMIN, response_url=f"{slack.url}/respond/r1",
                 actions__0__action_id=approve["action_id"], actions__0__value=approve["value"])
    slack.wait_for(lambda: bot.store.records.get(first.id).status is RecordStatus.APPROVED)
    # From the App Home: Reject asks why in a modal; the record changes and the Home is published again.
    response = bot.interact("block_actions_home", user__id=ADMIN, trigger_id="t.home", actions__0__action_id="review_reject",
                            actions__0__value=str(second.id))
    assert response.status == 200  # acknowledged (how fast: bench/bot_load.py)
    modal = slack.wait_for(lambda: slack.calls_to("views.open"))[0].params["view"]
    assert bot.store.records.get(second.id).status is RecordStatus.PENDING  # nothing until they confirm
    bot.interact("view_submission", user__id=ADMIN, view__callback_id=modal["callback_id"],
                 view__private_metadata=modal["private_metadata"],
                 view__state={"values": {"reject_reason": {"reject_reason": {"value": "Duplicates #1; token abc"}}}})
    slack.wait_for(lambda: bot.store.records.get(second.id).status is RecordStatus.REJECTED)
    assert bot.store.records.get(second.id).review_note == "Duplicates #1; token abc"
    slack.wait_for(lambda: slack.views.get(ADMIN) and "Recently approved" in json.dumps(slack.views[ADMIN]))
    # A non-admin's click in the Home changes nothing and gets a note in the app's DM.
    response = bot.interact("block_actions_home", user__id=ANALYST, actions__0__action_id="review_revoke",
                            actions__0__value=str(first.id))
    assert response.status == 200
    note = slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c.params["channel"] == ANALYST])
    assert "Only secbot admins" in note[0].params["text"]
    assert bot.store.records.get(first.id).status is RecordStatus.APPROVED


def test_revoke_from_slack_removes_a_record_from_memory_at_once(bot, slack):
    record = Intake(bot.store, trusted=[TRUSTED]).correction(
        answered(Intake(bot.store), thread_ts="16.0", question="What port does SSH use?", answer="?"),
        TRUSTED, "SSH listens on TCP port 22.").record
    bot.command(f"revoke {record.id}", ADMIN)
    reply = slack.wait_for(lambda: slack.calls_to(f"/respond/{ADMIN}"))[0].params
    assert f"Record #{record.id} is revoked" in reply["text"]
    assert bot.store.records.get(record.id).status is RecordStatus.REVOKED and bot.store.memory.size() == 0


def test_export_uploads_the_dataset_or_says_why_it_could_not(slack, tmp_path, bot_engine):
    slack.not_in = {"CNOTIN"}
    bot = Bot(slack, tmp_path, InProcessClient(bot_engine))
    intake = Intake(bot.store, trusted=[TRUSTED])
    intake.correction(answered(intake, question="q", answer="a"), TRUSTED, "better")
    bot.command("export", ADMIN)
    slack.wait_for(lambda: slack.calls_to("files.completeUploadExternal"))
    [content] = slack.uploads.values()
    assert json.loads(content) == {"prompt": "q", "response": "better", "history": []}
    bot.command("Export", ADMIN, channel="CNOTIN")
    reply = slack.wait_for(lambda: slack.calls_to(f"/respond/{ADMIN}"))[0].params
    assert "not_in_channel" in reply["text"] and "/invite" in reply["text"]


# -- the assistant panel -------------------------------------------------------------------------
def test_the_messages_tab_greets_each_user_once_with_the_suggested_prompts(bot, slack):
    # The agent messaging experience: app_home_opened with tab "messages", no assistant thread.
    for _ in range(2):
        bot.event("app_home_opened", event__user=ANALYST, event__channel="D8", event__tab="messages")
    bot.event("app_context_changed", event__user=ANALYST, event__channel="D8")  # acknowledged, ignored
    bot.event("app_home_opened", event__user=OTHER, event__channel="D9", event__tab="messages")
    greetings = slack.wait_for(lambda: len(slack.calls_to("chat.postMessage")) >= 2
                               and slack.calls_to("chat.postMessage"))
    bot.settle()
    assert sorted(c.params["channel"] for c in slack.calls_to("chat.postMessage")) == ["D8", "D9"]
    assert bot.settings.model.assistant_name in greetings[0].params["text"]
    prompts = slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert {p.params["channel_id"] for p in prompts} == {"D8", "D9"} and "thread_ts" not in prompts[0].params
    assert [p["message"] for p in prompts[0].params["prompts"]] == bot.settings.slack.suggested_prompts[:4]
    assert slack.views.get(ANALYST) is None  # the Messages tab publishes no Home view



def test_the_assistant_panel_suggests_prompts_and_answers_on_the_same_path(bot, slack, bot_engine):
    bot.event("assistant_thread_started", event__assistant_thread__user_id=ANALYST,
              event__assistant_thread__channel_id="D7", event__assistant_thread__thread_ts="17.0")
    prompts = slack.wait_for(lambda: slack.calls_to("assistant.threads.setSuggestedPrompts"))[0].params
    assert [p["message"] for p in prompts["prompts"]] == bot.settings.slack.suggested_prompts
    bot.event("assistant_user_message", event__user=ANALYST, event__channel="D7", event__ts="17.1",
              event__thread_ts="17.0", event__text="What is a honeypot?")
    [answer] = bot.answers("D7", "17.0")
    assert body_text(answer) == neutralise(bot_engine.generate("What is a honeypot?"))
    title = slack.wait_for(lambda: slack.calls_to("assistant.threads.setTitle"))[0].params
    assert title["title"] == "What is a honeypot?"
    assert bot.turn("D7", answer["ts"]).asker == ANALYST


def test_a_refused_title_or_name_lookup_never_stops_a_claimed_question(bot, slack, bot_engine):
    slack.refuse.update({"assistant.threads.setTitle": "not_allowed_token_type", "users.info": "ratelimited"})
    bot.event("assistant_user_message", event__user=ANALYST, event__channel="D8", event__ts="19.1",
              event__thread_ts="19.0", event__text=f"What does <@{OTHER}> mean by a honeypot?")
    [answer] = bot.answers("D8", "19.0")
    assert slack.calls_to("assistant.threads.setTitle") and slack.calls_to("users.info")  # both were refused
    assert body_text(answer) == neutralise(bot_engine.generate(f"What does @{OTHER} mean by a honeypot?"))


# -- failures ------------------------------------------------------------------------------------
def test_bad_signatures_and_malformed_payloads_get_the_right_status(bot, slack):
    body = event("app_mention")
    assert bot.send(body, secret="wrong-secret").status == 401
    stale = signature_headers(body, SECRET, timestamp=int(time.time()) - 600)
    assert bot.app.handle_raw(body, stale).status == 401
    assert bot.app.handle_raw(body, stale | {"x-slack-request-timestamp": "soon"}).status == 401
    assert bot.send('{"type": "event_callback", "event": ').status == 400
    assert bot.send("garbage=%%%", "application/x-www-form-urlencoded").status == 400
    assert bot.event("app_mention", event__type="team_rename").status == 200  # acknowledged, ignored
    assert bot.interact("block_actions", actions__0__action_id="no_such_button").status == 200
    broken = bot.interact("view_submission", view__callback_id="correction_modal", view__state=DROP)
    assert broken.status == 200 and json.loads(broken.body)["response_action"] == "errors"
    bot.settle()
    assert slack.calls_to("chat.startStream") == [] and slack.calls_to("chat.postMessage") == []


def test_a_failing_model_gets_a_friendly_message_and_the_question_is_kept(slack, tmp_path):
    dead = OpenAIClient("http://127.0.0.1:9/v1", timeout=2)  # nothing listens on port 9
    bot = Bot(slack, tmp_path, dead)
    bot.mention("Will this fail?", ts="18.1")
    message = slack.wait_for(lambda: [m for m in slack.thread_messages("C1", "18.1") if "error id" in m["text"]])[0]
    assert "Traceback" not in message["text"] and "Sorry" in message["text"]
    [turn] = bot.store.conversations.thread_turns("C1", "18.1")
    assert turn.question == "Will this fail?" and turn.answer is None
    assert turn.error_id and turn.error_id in message["text"]


def test_a_full_disk_still_gets_a_reply_with_an_error_id_and_the_bot_recovers(bot, slack, bot_engine):
    from sqlalchemy import event as sa_event

    engine = bot.store.db.engine
    with engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    full = {"on": True}

    @sa_event.listens_for(engine, "connect")
    def _no_room(dbapi_conn, _record):  # SQLite then fails writes with "database or disk is full"
        if full["on"]:
            dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")

    engine.pool.dispose()
    bot.mention("What is this? " + "x" * 50_000, ts="19.1")
    message = slack.wait_for(lambda: [m for m in slack.thread_messages("C1", "19.1") if "error id" in m["text"]])[0]
    assert "Sorry" in message["text"] and "Traceback" not in message["text"]
    full["on"] = False  # space again: the next question is answered without a restart
    engine.pool.dispose()
    bot.mention("What is MFA?", ts="19.2")
    assert body_text(bot.answers("C1", "19.2")[0]) == neutralise(bot_engine.generate("What is MFA?"))


def test_a_question_left_by_a_killed_process_is_answered_at_once_not_after_the_timeout(bot, slack, bot_engine):
    url = bot.store.db.engine.url.render_as_string(hide_password=False)
    code = textwrap.dedent(f"""
        import time
        from secbot.feedback.intake.submissions import Intake
        from secbot.feedback.store.repositories import Store
        turn = Intake(Store({url!r})).question(channel="C1", thread_ts="22.0", question="What is a bootkit?",
                                               asker={ANALYST!r}, question_ts="22.0")
        print(turn, flush=True)
        time.sleep(600)
    """)
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        turn = int(owner.stdout.readline())
        assert bot.deps.answerer.recover() == 0  # its owner is alive and may still answer it
    finally:
        owner.kill()  # SIGKILL: the process dies mid-answer
        owner.wait(30)
    assert bot.deps.answerer.recover() == 1  # default: no waiting out the answer timeout
    [answer] = bot.answers("C1", "22.0")
    assert bot.turn("C1", answer["ts"]).id == turn
    assert body_text(answer) == neutralise(bot_engine.generate("What is a bootkit?"))


def test_questions_a_stopped_process_left_are_finished_at_start_up(bot, slack, bot_engine):
    intake = Intake(bot.store)
    # One cut off mid-stream (a message showing half an answer), one never started.
    half = intake.question(channel="C1", thread_ts="20.0", question="What is a rootkit?", asker=ANALYST,
                           question_ts="20.0")
    shown = bot.app.client.chat_postMessage(channel="C1", thread_ts="20.0", text="A rootkit hides ▍")["ts"]
    bot.store.conversations.add_answer_messages(half, "C1", [shown])
    waiting = intake.question(channel="C1", thread_ts="21.0", question="What is a keylogger?", asker=ANALYST,
                              question_ts="21.0")
    assert bot.deps.answerer.recover(older_than=timedelta(0)) == 2
    cut = slack.messages[("C1", shown)]
    assert cut["text"].startswith(INTERRUPTED.split("{")[0]) and "▍" not in cut["text"]
    assert bot.store.conversations.get_turn(half).error_id in cut["text"]
    [answer] = bot.answers("C1", "21.0")
    assert bot.turn("C1", answer["ts"]).id == waiting
    assert body_text(answer) == neutralise(bot_engine.generate("What is a keylogger?"))


def test_rate_limited_web_api_calls_are_retried(tmp_path, bot_engine):
    with OfflineSlack(rate_limit_every=2) as slack:
        bot = Bot(slack, tmp_path, InProcessClient(bot_engine))
        bot.mention("What is a SIEM?", ts="22.1")
        [answer] = bot.answers("C1", "22.1", timeout=120)
        assert body_text(answer) == neutralise(bot_engine.generate("What is a SIEM?"))


def test_a_correction_answers_at_once_from_memory_and_feedback_works_on_it(bot, slack):
    bot.mention("What port does SSH use?", channel="C4", ts="23.1")
    [answer] = bot.answers("C4", "23.1")
    record = Intake(bot.store, trusted=[TRUSTED]).correction(bot.turn("C4", answer["ts"]).id, TRUSTED,
                                                             "SSH listens on TCP port 22.").record
    bot.mention("Which port is SSH on?", channel="C4", ts="24.1")  # other words, new thread
    [remembered] = bot.answers("C4", "24.1")
    assert body_text(remembered) == "SSH listens on TCP port 22."
    assert footer(remembered) == [f"Team answer · approved by @trudy on {record.reviewed_at:%Y-%m-%d} · record #{record.id}"]
    memory_turn = bot.turn("C4", remembered["ts"])
    assert memory_turn.memory_record_id == record.id and memory_turn.model_version_id is None
    bot.event("reaction_added", event__user=TRUSTED, event__reaction="+1",
              event__item={"type": "message", "channel": "C4", "ts": remembered["ts"]})
    paraphrase = slack.wait_for(lambda: [r for r in bot.store.records.list() if r.prompt == "Which port is SSH on?"])
    assert paraphrase[0].response == "SSH listens on TCP port 22."
    assert bot.store.conversations.feedback_counts(memory_turn.id) == {"thumbs_up": 1}
