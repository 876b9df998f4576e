"""`secbot demo`: the whole loop offline, on embedded defaults.

The real Slack app answers signed requests against the local Slack Web API; analysts ask, react
and submit corrections through the same events, buttons and modals Slack would send. Approved
corrections answer at once from team memory, also asked in other words; an admin reviews and
retrains with `/secbot`; then the model alone is asked the original questions.
"""

from __future__ import annotations

import tempfile
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from secbot.bot import configure
from secbot.bot.settings import Settings
from secbot.bot.slack.offline import (
    OfflineSlack,
    event_body,
    form_body,
    interactive_body,
    mention_event,
    signature_headers,
)
from secbot.feedback.learning.loop import LearningLoop
from secbot.model.serving.client import InProcessClient

SECRET = "demo-signing-secret"
ADMIN, ALICE, BOB, CAROL = "UADMIN", "UALICE", "UBOB", "UCAROL"
CHANNEL, ADMIN_CHANNEL = "CSECURITY", "C0SECBOTADMIN"
# (question, the analyst who corrects it, the correction)
CORRECTIONS = [
    ("What is phishing?", ALICE, "Phishing tricks people into giving away passwords."),
    ("What is MFA?", ALICE, "A second factor such as a hardware key."),
    ("What port does SSH use?", ALICE, "SSH listens on TCP port 22."),
    ("How do I report a suspicious email?", ALICE, "Use the Report button or forward it to the security team."),
    ("什么是勒索软件？", BOB, "勒索软件会加密文件并索要赎金。"),
    ("什么是横向移动？", BOB, "攻击者从第一台主机扩散到其他系统。"),
    ("What is an IOC?", BOB, "Evidence such as a hash or domain that points to an intrusion."),
    ("A leaked AWS key?", CAROL, "Deactivate the key in IAM, rotate it, then review CloudTrail."),
]
IDENTITY_QUESTION = "Who are you?"
# The corrected questions asked in other words (sharing their key words), and one never taught.
PARAPHRASES = {
    "What is phishing?": "Can you explain phishing?",
    "What is MFA?": "What does MFA mean?",
    "What port does SSH use?": "Which port is SSH on?",
    "How do I report a suspicious email?": "how to report a suspicious email",
    "什么是勒索软件？": "勒索软件是什么",
    "什么是横向移动？": "请解释一下横向移动",
    "What is an IOC?": "Explain IOC, please",
    "A leaked AWS key?": "What should we do about a leaked AWS key?",
}
UNTAUGHT = "What is a honeypot?"


@dataclass
class DemoResult:
    data_dir: Path
    decision: str
    before: dict[str, str] = field(default_factory=dict)
    memory: dict[str, dict] = field(default_factory=dict)  # paraphrase -> the answer message
    after: dict[str, str] = field(default_factory=dict)  # the model alone, after training
    report: str = ""
    seconds: float = 0.0

    @property
    def reproduced(self) -> float:
        """Share of corrections the trained model says by itself."""
        hits = sum(self.after.get(q) == answer for q, _, answer in CORRECTIONS)
        return hits / len(CORRECTIONS)

    @property
    def memory_hits(self) -> float:
        """Share of paraphrased corrections answered at once from team memory."""
        hits = sum(self.memory.get(PARAPHRASES[q], {}).get("text") == answer for q, _, answer in CORRECTIONS)
        return hits / len(CORRECTIONS)


def printable(text: str, width: int = 58) -> str:
    """One terminal-safe line: the untrained model's answers are random tokens."""
    clean = "".join(c if unicodedata.category(c)[0] not in "C" and c != "\ufffd" else "·" for c in text)
    clean = " ".join(clean.split())
    cells, out = 0, ""
    for c in clean:
        w = 2 if unicodedata.east_asian_width(c) in "WF" else 1
        if cells + w > width - 1:
            return out + "…" + " " * (width - cells - 1)
        out, cells = out + c, cells + w
    return out + " " * (width - cells)


class DemoSlack:
    """What Slack would send the app, for one demo workspace."""

    def __init__(self, app, slack: OfflineSlack):
        self.app, self.slack = app, slack
        self._ts = 100

    def send(self, body: str, content_type="application/json"):
        response = self.app.handle_raw(body, signature_headers(body, SECRET, content_type=content_type))
        assert response.status == 200, response.body
        return response

    def ts(self) -> str:
        self._ts += 1
        return f"{self._ts}.000001"

    def ask(self, question: str, user: str) -> tuple[str, str]:
        """Mention the bot in a new thread; returns (thread ts, finished answer message ts)."""
        thread = self.ts()
        self.send(event_body(mention_event(question, channel=CHANNEL, ts=thread, user=user)))
        message = self.slack.wait_for(lambda: next(
            (m for m in self.slack.thread_messages(CHANNEL, thread) if m.get("blocks")), None), 300)
        return thread, message

    def correct(self, message: dict, user: str, text: str) -> None:
        """React ✏️, press the offered button, submit the modal: as an analyst would."""
        before = len(self.slack.calls_to("chat.postEphemeral"))
        self.send(event_body({"type": "reaction_added", "user": user, "reaction": "pencil2",
                              "item": {"type": "message", "channel": CHANNEL, "ts": message["ts"]}}))
        offer = self.slack.wait_for(lambda: self.slack.calls_to("chat.postEphemeral")[before:])[0]
        button = offer.params["blocks"][1]["elements"][0]
        opened = len(self.slack.calls_to("views.open"))
        self.interact({"type": "block_actions", "user": {"id": user}, "trigger_id": f"trigger-{user}",
                       "channel": {"id": CHANNEL}, "response_url": f"{self.slack.url}/respond/{user}",
                       "actions": [{"action_id": button["action_id"], "value": button["value"]}]})
        view = self.slack.wait_for(lambda: self.slack.calls_to("views.open")[opened:])[0].params["view"]
        confirmations = len(self.slack.calls_to("chat.postEphemeral"))
        self.interact({"type": "view_submission", "user": {"id": user}, "view": {
            "type": "modal", "callback_id": view["callback_id"], "private_metadata": view["private_metadata"],
            "state": {"values": {"correction": {"correction": {"type": "plain_text_input", "value": text}}}}}})
        self.slack.wait_for(lambda: self.slack.calls_to("chat.postEphemeral")[confirmations:])

    def thumbs_down(self, message: dict, user: str, reason: str) -> None:
        """React 👎 and pick what was wrong in the ephemeral reply: as an analyst would."""
        before = len(self.slack.calls_to("chat.postEphemeral"))
        self.send(event_body({"type": "reaction_added", "user": user, "reaction": "-1",
                              "item": {"type": "message", "channel": CHANNEL, "ts": message["ts"]}}))
        ask = self.slack.wait_for(lambda: self.slack.calls_to("chat.postEphemeral")[before:])[0]
        button = next(e for b in ask.params["blocks"] if b["type"] == "actions" for e in b["elements"]
                      if e.get("value", "").startswith(f"{reason}:"))
        url = f"{self.slack.url}/respond/reason-{self.ts()}"
        self.interact({"type": "block_actions", "user": {"id": user}, "trigger_id": f"trigger-{user}",
                       "channel": {"id": CHANNEL}, "response_url": url,
                       "actions": [{"action_id": button["action_id"], "value": button["value"]}]})
        self.slack.wait_for(lambda: self.slack.calls_to(url.split(self.slack.url, 1)[1]))

    def interact(self, payload: dict):
        return self.send(interactive_body(payload), "application/x-www-form-urlencoded")

    def command(self, text: str, user: str) -> dict:
        url = f"{self.slack.url}/respond/cmd-{self.ts()}"
        self.send(form_body({"command": "/secbot", "text": text, "user_id": user, "channel_id": ADMIN_CHANNEL,
                             "team_id": "TLOCAL", "trigger_id": "t", "response_url": url}),
                  "application/x-www-form-urlencoded")
        path = url.split(self.slack.url, 1)[1]
        return self.slack.wait_for(lambda: self.slack.calls_to(path))[0].params


def demo_settings(data_dir: Path, api_url: str) -> Settings:
    return Settings.read(None, model={"path": "tiny", "max_new_tokens": 48}, storage={"data_dir": data_dir},
                         slack={"bot_token": "xoxb-demo", "signing_secret": SECRET, "api_url": api_url,
                                "admins": [ADMIN], "trusted_analysts": [ALICE, BOB], "admin_channel": ADMIN_CHANNEL},
                         training={"scheduler": False})


def footer_of(message: dict) -> str:
    """The context line under an answer (its provenance), if any."""
    return next((e["text"] for b in message.get("blocks") or [] if b["type"] == "context"
                 for e in b["elements"]), "")


def run_demo(data_dir: str | Path | None = None, say=print) -> DemoResult:
    started = time.monotonic()
    data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="secbot-demo-"))
    step = lambda n, text: say(f"\n[{n}/8] {text}  ({time.monotonic() - started:.0f} s)")  # noqa: E731
    say(f"secbot demo: the whole loop offline, in {data_dir}")
    with OfflineSlack(users={ADMIN: "ada", ALICE: "alice", BOB: "bob", CAROL: "carol"}) as slack:
        settings = demo_settings(data_dir, slack.api_url)
        step(1, "Building the tiny GLM reference model and opening the store")
        model = InProcessClient(configure.load_engine(settings))
        store = configure.open_store(settings)
        loop = configure.learning_loop(settings, store, model, configure.slack_reporter(settings, store))
        app = configure.slack_app(settings, store, model, loop=loop, update_interval=0.25).app
        workspace = DemoSlack(app, slack)

        step(2, "Analysts ask secbot in #security (answers stream into each thread)")
        result = DemoResult(data_dir, "")
        messages = {}
        for question, user, _ in CORRECTIONS + [(IDENTITY_QUESTION, ALICE, "")]:
            _, messages[question] = workspace.ask(question, user)
            result.before[question] = messages[question]["text"]
            say(f"  Q {printable(question, 36)} A {printable(result.before[question], 48)}")

        step(3, "Analysts react 👎 (saying what was wrong) or ✏️, and submit corrections in the modal")
        for question, user, correction in CORRECTIONS:
            if user == CAROL:
                workspace.thumbs_down(messages[question], user, "wrong")
            workspace.correct(messages[question], user, correction)
        counts = store.records.counts()
        say(f"  records: {counts['approved']} approved (trusted analysts), {counts['pending']} pending review")

        step(4, "The admin reviews the queue with /secbot review")
        review = workspace.command("review", ADMIN)
        approve = next(e for b in review["blocks"] if b["type"] == "actions" for e in b["elements"]
                       if e["action_id"] == "review_approve")
        for line in (e["text"] for b in review["blocks"] if b["type"] == "context" for e in b["elements"]):
            say(f"  the queue shows: {line.split(' · <')[0]}")
        workspace.interact({"type": "block_actions", "user": {"id": ADMIN},
                            "response_url": f"{slack.url}/respond/review", "actions": [approve]})
        slack.wait_for(lambda: store.records.counts()["pending"] == 0)
        say(f"  approved record #{approve['value']}; records: {store.records.counts()}")

        step(5, "Team memory answers at once, asked in other words (no retraining yet)")
        for question, _, _ in CORRECTIONS:
            paraphrase = PARAPHRASES[question]
            result.memory[paraphrase] = message = workspace.ask(paraphrase, CAROL)[1]
            say(f"  Q {printable(paraphrase, 34)} A {printable(message['text'], 40)}")
            say(f"    {footer_of(message) or '(the model answered)'}")
        untaught = workspace.ask(UNTAUGHT, CAROL)[1]
        say(f"  Q {printable(UNTAUGHT, 34)} A {printable(untaught['text'], 40)}")
        say(f"    {footer_of(untaught) or '(never taught: the model answered)'}")

        step(6, "The admin runs /secbot retrain: snapshot, P-tuning v2, evaluation, gate")
        say("  " + workspace.command("retrain", ADMIN)["text"])
        watch_training(loop, say)
        report = slack.wait_for(lambda: [m for (ch, _), m in list(slack.messages.items())
                                         if ch == ADMIN_CHANNEL], 600)[0]
        result.report = report["blocks"][0]["text"] if report.get("blocks") else report["text"]
        result.decision = store.runs.runs(1)[0].state.value

        step(7, "The model alone (team memory off) is asked the original questions")
        for question, _, _ in CORRECTIONS + [(IDENTITY_QUESTION, ALICE, "")]:
            result.after[question] = model.engine.generate(question)

        step(8, "Before, from memory at once, and learned by the model")
        say(f"  {'question':<24} {'before':<22} {'memory, at once':<24} {'model after training':<26} ok")
        for question, _, correction in CORRECTIONS + [(IDENTITY_QUESTION, None, None)]:
            after = result.after[question]
            remembered = result.memory.get(PARAPHRASES.get(question, ""), {}).get("text", "")
            ok = after == correction if correction else settings.model.assistant_name in after
            say(f"  {printable(question, 24)} {printable(result.before[question], 22)} "
                f"{printable(remembered or '-', 24)} {printable(after, 26)} {'✓' if ok else '✗'}")
        say("\n" + result.report.replace("**", ""))
        result.seconds = time.monotonic() - started
        say(f"\nTeam memory answered {result.memory_hits:.0%} of the corrections asked in other words at once; "
            f"after training the model alone reproduces {result.reproduced:.0%}; decision: {result.decision}; "
            f"wall time {result.seconds:.0f} s. Data kept in {data_dir}")
        store.close()
    return result


def watch_training(loop: LearningLoop, say) -> None:
    """Show the run's progress from its loss log until the run ends."""
    shown = 0

    def show() -> None:
        nonlocal shown
        entries = loop.training_log()
        for entry in entries[shown:]:
            if "loss" in entry:
                say(f"  step {entry['step']:>4}  loss {entry['loss']:.4f}  {entry['tokens_per_s']:.0f} tokens/s")
        shown = max(shown, len(entries))

    while loop.running():
        show()
        loop.wait(1.0)
    show()  # the last entries land just before the adapter is moved into place
    say("  training and evaluation finished")
