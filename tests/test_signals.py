"""Every analyst signal is used and says what happens: 👎 asks what was wrong and the reason
reaches the review queue and the App Home; the review queue shows what a reviewer needs, pages,
and asks why before rejecting; a question too long for the model, a file-only DM, and a workspace
that revoked secbot's token each get what they should. Driven through the real app with Slack's
published payloads (tests/fixtures/slack/README.md names each one's source)."""

import json

import pytest
from conftest import answered
from slack_bot import ADMIN, ANALYST, OTHER, Bot, body_text, make_settings
from slack_payloads import command

from secbot.bot.configure import BotProcess, learning_loop, slack_app, slack_reporter
from secbot.bot.slack.offline import TEAM_ID, OfflineSlack
from secbot.feedback.intake.submissions import Intake
from secbot.feedback.store.entities import DownReason, RecordStatus
from secbot.feedback.store.repositories import Store
from secbot.model.errors import QuestionTooLong
from secbot.model.serving.client import InProcessClient, question_too_long


def ephemerals(slack, user, text=None):
    return [c.params for c in slack.calls_to("chat.postEphemeral")
            if c.params["user"] == user and (text is None or text in json.dumps(c.params))]


def button(blocks, action_id, value_prefix=""):
    return next(e for b in blocks if b["type"] == "actions" for e in b["elements"]
                if e["action_id"] == action_id and e.get("value", "").startswith(value_prefix))


def responses(slack, path):
    return [c.params for c in slack.calls_to(path)]


def submit(bot, user, modal, block, value):
    """Submit `modal` with `value` typed into its text input `block`, as Slack sends it."""
    return bot.interact("view_submission", user__id=user, view__callback_id=modal["callback_id"],
                        view__private_metadata=modal["private_metadata"],
                        view__state={"values": {block: {block: {"type": "plain_text_input", "value": value}}}})


# -- 👎 asks what was wrong ------------------------------------------------------------------------
def test_a_thumbs_down_reaction_asks_why_and_the_reason_reaches_the_review_queue_and_home(bot, slack):
    bot.mention("Which TLS versions should we allow?", channel="C5", ts="30.1")
    [answer] = bot.answers("C5", "30.1")
    turn = bot.turn("C5", answer["ts"])
    bot.event("reaction_added", event__user=ANALYST, event__reaction="-1",
              event__item={"type": "message", "channel": "C5", "ts": answer["ts"]})
    [ask] = slack.wait_for(lambda: ephemerals(slack, ANALYST, "down_reason"))
    assert ask["channel"] == "C5" and ask["thread_ts"] == "30.1"
    labels = [e["text"]["text"] for b in ask["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert labels[:5] == ["Wrong", "Outdated", "Unsafe", "Too vague", "Other…"]
    assert button(ask["blocks"], "open_correction")["value"] == str(turn.id)  # ✏️ offered with it
    assert bot.store.conversations.feedback_counts(turn.id) == {"thumbs_down": 1}
    # The analyst picks "Outdated" in that ephemeral message (Slack's block_actions from an ephemeral).
    outdated = button(ask["blocks"], "down_reason", "outdated:")
    bot.interact("block_actions", user__id=ANALYST, channel__id="C5", container__channel_id="C5",
                 response_url=f"{slack.url}/respond/reason", actions__0__action_id=outdated["action_id"],
                 actions__0__value=outdated["value"])
    [noted] = slack.wait_for(lambda: responses(slack, "/respond/reason"))
    assert noted["replace_original"] is True and "Noted: *Outdated*" in json.dumps(noted["blocks"])
    [vote] = bot.store.conversations.down_votes([turn.id])[turn.id]
    assert (vote.user, vote.reason, vote.note) == (ANALYST, DownReason.OUTDATED, None)
    # "Add details" opens a modal; their words are stored redacted.
    details = button(noted["blocks"], "reason_detail")
    bot.interact("block_actions", user__id=ANALYST, channel__id="C5", trigger_id="t.details",
                 response_url=f"{slack.url}/respond/reason2", actions__0__action_id=details["action_id"],
                 actions__0__value=details["value"])
    modal = slack.wait_for(lambda: slack.calls_to("views.open"))[0].params["view"]
    assert "Which TLS versions" in json.dumps(modal)
    submit(bot, ANALYST, modal, "reason", "TLS 1.0/1.1 are deprecated (RFC 8996). export PGPASSWORD=Winter2024!pw")
    slack.wait_for(lambda: bot.store.conversations.down_votes([turn.id])[turn.id][0].note)
    [vote] = bot.store.conversations.down_votes([turn.id])[turn.id]
    assert vote.reason is DownReason.OUTDATED and "RFC 8996" in vote.note and "Winter2024!pw" not in vote.note
    slack.wait_for(lambda: ephemerals(slack, ANALYST, "Thanks, noted: Outdated"))
    # The analyst's correction waits for review, shown with the 👎 reason, the original answer and a link.
    Intake(bot.store).correction(turn.id, ANALYST, "Allow TLS 1.2 and 1.3 only.")
    bot.command("review", ADMIN)
    [review] = slack.wait_for(lambda: responses(slack, f"/respond/{ADMIN}"))
    shown = json.dumps(review["blocks"], ensure_ascii=False)
    assert "Which TLS versions" in shown and "Allow TLS 1.2 and 1.3 only." in shown
    assert "secbot answered:" in shown and "correction by @alice" in shown
    assert "👎 @alice: *Outdated*" in shown and "RFC 8996" in shown and "Winter2024" not in shown
    assert f"/archives/C5/p{answer['ts'].replace('.', '')}|Open the thread" in shown  # chat.getPermalink
    # The admin's App Home shows the latest 👎 with the reason.
    bot.event("app_home_opened", event__user=ADMIN)
    home = json.dumps(slack.wait_for(lambda: slack.views.get(ADMIN)), ensure_ascii=False)
    assert "Latest* :-1:" in home and "*Outdated*" in home and "Which TLS versions" in home


def test_the_thumbs_down_button_asks_why_and_other_takes_their_words(bot, slack):
    bot.mention("Is MD5 fine for password hashing?", channel="C6", ts="31.1")
    [answer] = bot.answers("C6", "31.1")
    turn = bot.turn("C6", answer["ts"])
    bot.interact("block_actions", user__id=ANALYST, channel__id="C6", response_url=f"{slack.url}/respond/down",
                 actions__0__action_id="feedback", actions__0__type="feedback_buttons",
                 actions__0__value=f"down:{turn.id}")
    [ask] = slack.wait_for(lambda: responses(slack, "/respond/down"))
    other = button(ask["blocks"], "down_reason", "other:")
    bot.interact("block_actions", user__id=ANALYST, channel__id="C6", trigger_id="t.other",
                 response_url=f"{slack.url}/respond/other", actions__0__action_id=other["action_id"],
                 actions__0__value=other["value"])
    modal = slack.wait_for(lambda: slack.calls_to("views.open"))[0].params["view"]
    submit(bot, ANALYST, modal, "reason", "It says MD5 is fine; it is not.")
    slack.wait_for(lambda: bot.store.conversations.down_votes([turn.id]).get(turn.id, [None])[0]
                   and bot.store.conversations.down_votes([turn.id])[turn.id][0].note)
    [vote] = bot.store.conversations.down_votes([turn.id])[turn.id]
    assert (vote.reason, vote.note) == (DownReason.OTHER, "It says MD5 is fine; it is not.")
    # Someone who cannot see the answer cannot give it a reason.
    bot.interact("block_actions", user__id=OTHER, channel__id="C9", response_url=f"{slack.url}/respond/forged",
                 actions__0__action_id="down_reason", actions__0__value=f"unsafe:{turn.id}")
    [refused] = slack.wait_for(lambda: responses(slack, "/respond/forged"))
    assert "not one you can" in refused["text"]
    assert [v.user for v in bot.store.conversations.down_votes([turn.id])[turn.id]] == [ANALYST]


def test_a_thumbs_down_on_a_team_answer_sends_its_record_back_to_review(bot, slack):
    record = Intake(bot.store, trusted=[ANALYST]).correction(
        answered(Intake(bot.store), thread_ts="32.0", question="How long do we keep VPN logs?", answer="?"),
        ANALYST, "VPN logs are kept for 90 days.").record
    bot.mention("How long do we keep VPN logs?", channel="C6", ts="32.1", user=OTHER)
    [answer] = bot.answers("C6", "32.1")
    assert body_text(answer) == "VPN logs are kept for 90 days."  # the team's answer, from memory
    bot.event("reaction_added", event__user=OTHER, event__reaction="thumbsdown",
              event__item={"type": "message", "channel": "C6", "ts": answer["ts"]})
    [ask] = slack.wait_for(lambda: ephemerals(slack, OTHER, "down_reason"))
    assert f"record #{record.id}" in json.dumps(ask["blocks"]) and "waits for an admin" in json.dumps(ask["blocks"])
    disputed = bot.store.records.get(record.id)
    assert disputed.status is RecordStatus.PENDING and "disputed" in disputed.flags
    wrong = button(ask["blocks"], "down_reason", "outdated:")
    bot.interact("block_actions", user__id=OTHER, channel__id="C6", response_url=f"{slack.url}/respond/d",
                 actions__0__action_id=wrong["action_id"], actions__0__value=wrong["value"])
    slack.wait_for(lambda: responses(slack, "/respond/d"))
    # It no longer answers: the same question goes to the model.
    bot.mention("How long do we keep VPN logs?", channel="C6", ts="32.2", user=OTHER)
    assert body_text(bot.answers("C6", "32.2")[0]) != "VPN logs are kept for 90 days."
    # The review queue shows it with the 👎 and its reason; approving it again puts it back in memory.
    bot.command("review", ADMIN)
    [review] = slack.wait_for(lambda: responses(slack, f"/respond/{ADMIN}"))
    shown = json.dumps(review["blocks"], ensure_ascii=False)
    assert "flagged: disputed" in shown and "👎 @bob: *Outdated*" in shown
    # The admins' App Home lists it among team memory's most disputed answers, with its hit count.
    bot.event("app_home_opened", event__user=ADMIN)
    home = json.dumps(slack.wait_for(lambda: slack.views.get(ADMIN)), ensure_ascii=False)
    assert "Team memory: most disputed" in home and f"#{record.id} · 1 answer(s)" in home and "👎 1" in home
    bot.command(f"approve {record.id}", ADMIN)
    slack.wait_for(lambda: bot.store.records.get(record.id).status is RecordStatus.APPROVED)
    assert "disputed" not in bot.store.records.get(record.id).flags
    bot.mention("How long do we keep VPN logs?", channel="C6", ts="32.3", user=OTHER)
    assert body_text(bot.answers("C6", "32.3")[0]) == "VPN logs are kept for 90 days."


# -- the review queue ------------------------------------------------------------------------------
def test_the_review_queue_pages_past_ten_and_reject_takes_a_reason(bot, slack):
    intake = Intake(bot.store)
    records = [intake.correction(answered(intake, channel="C7", thread_ts=f"40.{i}", question=f"Question {i}?",
                                          answer=f"Original answer {i}"), ANALYST, f"Correction {i}").record
               for i in range(12)]
    bot.command("review", ADMIN)
    [first] = slack.wait_for(lambda: responses(slack, f"/respond/{ADMIN}"))
    shown = json.dumps(first["blocks"], ensure_ascii=False)
    assert "12 record(s) wait for review" in shown and "showing 1–10" in shown
    assert "Question 9?" in shown and "Question 10?" not in shown
    assert "Original answer 0" in shown and "Correction 0" in shown  # the answer given and its correction
    assert len(first["blocks"]) <= 50
    more = button(first["blocks"], "review_page")
    bot.interact("block_actions", user__id=ADMIN, channel__id="CADMIN", response_url=f"{slack.url}/respond/page",
                 actions__0__action_id=more["action_id"], actions__0__value=more["value"])
    [second] = slack.wait_for(lambda: responses(slack, "/respond/page"))
    assert second["replace_original"] is True
    shown = json.dumps(second["blocks"], ensure_ascii=False)
    assert "showing 11–12" in shown and "Question 11?" in shown and "Question 9?" not in shown
    assert "Previous 10" in shown and "Next 10" not in shown
    bot.command("review 2", ADMIN)
    slack.wait_for(lambda: len(responses(slack, f"/respond/{ADMIN}")) == 2)
    assert "showing 11–12" in json.dumps(responses(slack, f"/respond/{ADMIN}")[1]["blocks"], ensure_ascii=False)
    # Reject from the channel asks why, then says so where the admin clicked.
    reject = button(second["blocks"], "review_reject", str(records[11].id))
    bot.interact("block_actions", user__id=ADMIN, channel__id="CADMIN", trigger_id="t.reject",
                 response_url=f"{slack.url}/respond/rejected", actions__0__action_id=reject["action_id"],
                 actions__0__value=reject["value"])
    modal = slack.wait_for(lambda: slack.calls_to("views.open"))[0].params["view"]
    submit(bot, ADMIN, modal, "reject_reason", "Not our policy.")
    [told] = slack.wait_for(lambda: responses(slack, "/respond/rejected"))
    assert f"Record #{records[11].id} rejected: Not our policy." in told["text"]
    assert bot.store.records.get(records[11].id).review_note == "Not our policy."
    # And by command, with the reason after the number; approve by command too.
    bot.command(f"reject {records[10].id} duplicate of #{records[0].id}", ADMIN)
    bot.command(f"approve {records[0].id}", ADMIN)
    slack.wait_for(lambda: len(responses(slack, f"/respond/{ADMIN}")) == 4)
    assert bot.store.records.get(records[10].id).review_note == f"duplicate of #{records[0].id}"
    assert bot.store.records.get(records[0].id).status is RecordStatus.APPROVED
    bot.command("reject", ADMIN)
    slack.wait_for(lambda: len(responses(slack, f"/respond/{ADMIN}")) == 5)
    assert "Usage: `/secbot reject <record number> [why]`" in responses(slack, f"/respond/{ADMIN}")[4]["text"]


# -- a question too long for the model ---------------------------------------------------------------
def test_a_long_paste_gets_a_reply_that_says_how_long_it_may_be(bot, slack):
    log_line = ("Dec  3 10:14:07 bastion sshd[48213]: Failed password for invalid user admin from "
                "203.0.113.45 port 51422 ssh2\n")
    paste = "Why do we see this?\n" + log_line * 40
    assert len(paste) > 4000
    bot.event("message_im", event__channel="D7", event__ts="50.1", event__user=ANALYST, event__text=paste)
    [reply] = slack.wait_for(lambda: slack.thread_messages("D7", "50.1"))
    text = reply["text"]
    assert "too long for me to read" in text and "Paste only the part that matters" in text
    assert "tokens" in text and "characters" in text and "error id" not in text
    [turn] = bot.store.conversations.thread_turns("D7", "50.1")
    assert turn.question.startswith("Why do we see this?") and turn.error_id  # the question is kept
    # A short question in the same DM is answered as usual.
    bot.event("message_im", event__channel="D7", event__ts="50.2", event__user=ANALYST,
              event__text="What is brute force?")
    assert body_text(bot.answers("D7", "50.2")[0])


@pytest.mark.parametrize("message, prompt, limit", [
    ("This model's maximum context length is 8192 tokens. However, you requested 9500 tokens (8500 in the "
     "messages, 1000 in the completion). Please reduce the length of the messages or completion.", 8500, 7192),
    ("This model's maximum context length is 4096 tokens. However, your request has 5000 input tokens. "
     "Please reduce the length of the input messages.", 5000, 4096 - 256),
    ("The messages take 6000 tokens; this server takes prompts of up to 4096 (--max-prompt-tokens).", 6000, 4096),
    ("context too long", None, None),
])
def test_a_model_servers_context_error_says_how_long_the_question_may_be(message, prompt, limit):
    error = question_too_long(message, max_new_tokens=256)
    assert isinstance(error, QuestionTooLong) and (error.prompt_tokens, error.limit) == (prompt, limit)


# -- progress ------------------------------------------------------------------------------------
def test_a_workspace_without_task_chunks_still_gets_a_natively_streamed_answer(tmp_path, bot_engine):
    with OfflineSlack(task_chunks=False) as slack:
        bot = Bot(slack, tmp_path, InProcessClient(bot_engine))
        bot.mention("What is a honeypot?", ts="55.1")
        [answer] = bot.answers("C1", "55.1")
        assert body_text(answer) and "tasks" not in answer
        assert not bot.deps.answerer.task_progress and bot.deps.answerer.streaming  # tasks off, streaming on
        bot.mention("What is a honeynet?", ts="55.2")
        bot.answers("C1", "55.2")
        refused = [c for c in slack.calls_to("chat.startStream") if "task_update" in json.dumps(c.params)]
        assert len(refused) == 1  # asked once, not on every answer


def test_a_memory_answer_says_which_record_it_found(bot, slack):
    record = Intake(bot.store, trusted=[ANALYST]).correction(
        answered(Intake(bot.store), thread_ts="56.0", question="What port does RDP use?", answer="?"),
        ANALYST, "RDP listens on TCP port 3389.").record
    bot.mention("What port does RDP use?", ts="56.1")
    [answer] = bot.answers("C1", "56.1")
    assert slack.status_history[("C1", "56.1")][-1] == ("is thinking…", [f"Found record #{record.id}: the team's answer"])
    assert answer["tasks"]["memory"]["output"] == f"Found record #{record.id}: the team's answer"
    assert "model" not in answer["tasks"]  # no model was asked


# -- files ---------------------------------------------------------------------------------------
def test_a_file_in_a_channel_mention_is_not_read_and_says_so(bot, slack):
    bot.event("message_file_share", event__channel="C8", event__channel_type="channel", event__ts="60.1",
              event__user=ANALYST, event__text="<@UBOT>", event__files__0__name="auth.log")
    [reply] = slack.wait_for(lambda: slack.thread_messages("C8", "60.1"))
    assert "do not read attached files (auth.log)" in reply["text"]


# -- a workspace that revoked secbot ------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["tokens_revoked", "app_uninstalled"])
def test_a_revoked_token_or_uninstall_is_recorded_and_nothing_more_is_posted(slack, tmp_path, bot_engine, fixture):
    bot = Bot(slack, tmp_path, InProcessClient(bot_engine))
    assert bot.event(fixture, team_id="T111").status == 200
    bot.settle()
    assert bot.store.events.revoked("T111") == fixture
    posted = len(slack.calls)
    bot.mention("Are you still there?", channel="C1", ts="70.1")
    bot.event("app_home_opened", event__user=ANALYST)
    bot.send(command(command="/secbot", text="status", user_id=ADMIN, channel_id="CADMIN", team_id="T111",
                     response_url=f"{slack.url}/respond/{ADMIN}"), "application/x-www-form-urlencoded")
    bot.settle()
    assert slack.calls[posted:] == []  # no answer, no status, no Home, no reply
    assert bot.store.conversations.thread_turns("C1", "70.1") == []
    # Another workspace is still answered (the slash command fixture's T0001).
    bot.command("status", ADMIN)
    assert "Active model" in slack.wait_for(lambda: responses(slack, f"/respond/{ADMIN}"))[0]["text"]
    assert bot.store.events.restore("T111") and bot.store.events.revoked("T111") is None


def test_revoking_only_user_tokens_leaves_the_bot_posting(bot, slack):
    bot.event("tokens_revoked", team_id="T111", event__tokens={"oauth": ["U1"]})
    bot.settle()
    assert bot.store.events.revoked("T111") is None
    bot.mention("Still there?", channel="C1", ts="71.1")
    assert bot.answers("C1", "71.1")


def test_start_up_with_a_working_token_resumes_posting(tmp_path, bot_engine):
    with OfflineSlack() as slack:
        settings = make_settings(slack, tmp_path)
        settings = settings.model_copy(update={"training": settings.training.model_copy(update={"scheduler": False})})
        store = Store(settings.storage.url)
        store.events.revoke(TEAM_ID, "app_uninstalled")  # the workspace the offline Slack's token is in
        model = InProcessClient(bot_engine)
        reporter = slack_reporter(settings, store)
        process = BotProcess(settings, store, model, learning_loop(settings, store, model, reporter), reporter,
                             slack_app(settings, store, model))
        process.start()
        try:
            assert store.events.revoked(TEAM_ID) is None and reporter.team == TEAM_ID
        finally:
            process.periodic.stop()
