"""Team memory and the answering policy: approved records answer at once, in other words too."""

import itertools
import subprocess
import sys
import textwrap

import pytest
from conftest import answered

from secbot.feedback.answering import MemoryPolicy, Responder, provenance
from secbot.feedback.memory.matching import intent, terms
from secbot.feedback.store.entities import RecordSource, RecordStatus
from secbot.feedback.store.records import NewRecord
from secbot.feedback.store.repositories import Store
from secbot.model.runtime.generation import Sampling
from secbot.model.serving.client import InProcessClient
from secbot.model.training.record_formats import Record

THREADS = itertools.count(1000)


class Recording:
    """The real in-process client, noting each call (which prompt reached the model)."""

    def __init__(self, client):
        self.client, self.calls = client, []

    @property
    def version_id(self):
        return self.client.version_id

    def use_version(self, version):
        self.client.use_version(version)

    def stream(self, question, history, usage, system_prompt=None):
        self.calls.append((question, list(history), system_prompt))
        return self.client.stream(question, history, usage, system_prompt)


@pytest.fixture
def model(engine):
    engine.sampling = Sampling(max_new_tokens=12)
    return Recording(InProcessClient(engine))


def teach(intake, question, answer, author="UTRUSTED", **kwargs):
    """A question the bot answered in a thread of its own and an analyst's correction of it."""
    kwargs.setdefault("thread_ts", f"{next(THREADS)}.0")
    turn = answered(intake, question=question, answer="(the model's wrong answer)", **kwargs)
    return intake.correction(turn, author, answer)


def test_an_approved_correction_answers_at_once_without_the_model(store, intake, model):
    record = teach(intake, "What port does SSH use?", "SSH listens on TCP port 22.").record
    responder = Responder(store.memory, store.records, model)
    reply = responder.reply("What port does SSH use?")
    assert reply.kind == "memory" and "".join(reply.deltas()) == "SSH listens on TCP port 22."
    assert reply.record.id == record.id and model.calls == []
    assert provenance(reply.record) == f"Team answer · approved by @UTRUSTED on " \
        f"{record.reviewed_at:%Y-%m-%d} · record #{record.id}"


def test_a_paraphrase_with_the_key_words_hits_and_an_unrelated_question_does_not(store, intake, model):
    teach(intake, "What port does SSH use?", "SSH listens on TCP port 22.")
    teach(intake, "How do I report a suspicious email?", "Use the Report Phishing button.")
    teach(intake, "What is our password policy?", "At least 14 characters and MFA.")
    responder = Responder(store.memory, store.records, model)
    assert responder.reply("Which port is SSH on?").kind == "memory"
    assert "".join(responder.reply("how to report a suspicious email").deltas()) == "Use the Report Phishing button."
    for unrelated in ("What port does RDP use?", "How do I bake bread?", "What time is the all-hands?"):
        reply = responder.reply(unrelated)
        assert reply.kind != "memory", unrelated
        "".join(reply.deltas())
    assert len(model.calls) == 3


def test_chinese_questions_match_through_jieba(store, intake, model):
    teach(intake, "什么是横向移动？", "攻击者从第一台主机扩散到其他系统。", author="UTRUSTED")
    assert "横向" in terms("请解释一下横向移动") and "解释一下" not in terms("请解释一下横向移动")
    responder = Responder(store.memory, store.records, model)
    assert "".join(responder.reply("请解释一下横向移动").deltas()) == "攻击者从第一台主机扩散到其他系统。"
    assert responder.reply("什么是勒索软件？").kind != "memory"


def test_only_approved_records_answer_and_rejecting_or_revoking_removes_them_at_once(store, intake, model):
    pending = teach(intake, "Who approves firewall changes?", "The network lead.", author="UNEW").record
    responder = Responder(store.memory, store.records, model)
    assert responder.reply("Who approves firewall changes?").kind != "memory"  # pending: not yet
    store.records.review(pending.id, "UADMIN", approve=True)
    assert responder.reply("Who approves firewall changes?").record.id == pending.id
    store.records.revoke(pending.id, "UADMIN")
    assert responder.reply("Who approves firewall changes?").kind != "memory"
    rejected = teach(intake, "Where is the IR playbook?", "In Confluence.", author="UNEW").record
    store.records.review(rejected.id, "UADMIN", approve=False)
    assert responder.reply("Where is the IR playbook?").kind != "memory"


def test_a_newer_approved_correction_supersedes_the_older_one(store, intake, model):
    old = teach(intake, "What port does SSH use?", "Port 2222.", thread_ts="1.0").record
    new = teach(intake, "what port does ssh use", "TCP port 22.", thread_ts="2.0").record  # the same question
    assert store.records.get(old.id).status is RecordStatus.SUPERSEDED
    assert store.records.get(old.id).superseded_by == new.id
    responder = Responder(store.memory, store.records, model)
    assert "".join(responder.reply("Which port is SSH on?").deltas()) == "TCP port 22."


def test_correcting_a_memory_answer_replaces_that_record(store, intake, model):
    wrong = teach(intake, "Which EDR runs on our Linux servers?", "Carbon Black.").record
    # Asked in other words, memory answered with the wrong record; the analyst corrects that answer.
    turn = answered(intake, question="What EDR do we run on Linux servers?", answer="Carbon Black.",
                    memory_record_id=wrong.id)
    right = intake.correction(turn, "UTRUSTED", "CrowdStrike Falcon.").record
    assert store.records.get(wrong.id).status is RecordStatus.SUPERSEDED
    reply = Responder(store.memory, store.records, model).reply("Which EDR runs on our Linux servers?")
    assert reply.record.id == right.id


def test_a_weaker_match_goes_to_the_model_as_reference(store, intake, model):
    record = teach(intake, "How long do we keep firewall logs?", "400 days in the SIEM.").record
    responder = Responder(store.memory, store.records, model, system_prompt="You are secbot.")
    reply = responder.reply("How long are firewall logs archived?")  # confidence 0.47: a weaker match
    assert reply.kind == "model+references" and [r.id for r in reply.references] == [record.id]
    "".join(reply.deltas())  # the model is asked as the answer is read
    assert reply.usage.prompt_tokens > 0 and reply.record is None  # the model wrote it, not memory
    [(question, _, system)] = model.calls
    assert system.startswith("You are secbot.") and f"[#{record.id}]" in system and "400 days in the SIEM." in system


def test_thread_follow_ups_rank_with_the_threads_earlier_questions(store, intake, model):
    # Asked by the trusted analyst who corrects: no one else's turns ride along unreviewed.
    first = answered(intake, channel="C1", thread_ts="9.0", question="What is XSS?", answer="A web bug.",
                     asker="UTRUSTED")
    follow = answered(intake, channel="C1", thread_ts="9.0", question="How do I stop it?", answer="?",
                      asker="UTRUSTED")
    assert first < follow
    record = intake.correction(follow, "UTRUSTED", "Encode output and set a CSP.").record
    teach(intake, "What is SQL injection?", "Untrusted input in a query.")
    other = answered(intake, channel="C2", thread_ts="8.0", question="What is SQL injection?", answer="?",
                     asker="UTRUSTED")
    intake.correction(answered(intake, channel="C2", thread_ts="8.0", question="How do I stop it?", answer="?",
                               asker="UTRUSTED"), "UTRUSTED", "Use parameterised queries.")
    assert other
    responder = Responder(store.memory, store.records, model)
    in_thread = responder.reply("How do I stop it?", [("What is XSS?", "A web bug.")])
    assert in_thread.record is not None and in_thread.record.id == record.id
    sql_thread = responder.reply("how do I stop it", [("What is SQL injection?", "...")])
    assert sql_thread.record is not None and sql_thread.record.response == "Use parameterised queries."


def test_memory_survives_a_restart_and_other_processes_see_it_at_once(db_url, intake, model):
    APPROVER = textwrap.dedent("""
        import sys
        from secbot.feedback.intake.submissions import Intake
        from secbot.feedback.store.repositories import Store
        store = Store(sys.argv[1], migrate=False)
        intake = Intake(store, trusted={"UTRUSTED"})
        turn = intake.question(channel="C", thread_ts="p.0", question="Who is on call for security?",
                               asker=None, question_ts=None)
        intake.answer(turn, "?")
        print(intake.correction(turn, "UTRUSTED", "The rota is pinned in #sec-oncall.").record.id)
    """)
    here = Responder(intake.store.memory, intake.store.records, model)
    assert here.reply("Who is on call for security?").kind != "memory"
    out = subprocess.run([sys.executable, "-c", APPROVER, db_url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    record_id = int(out.stdout.split()[-1])
    assert here.reply("Who is on call for security?").record.id == record_id  # no restart here
    restarted = Store(db_url)
    again = Responder(restarted.memory, restarted.records, model)
    assert again.reply("Who is on call for security?").record.id == record_id
    restarted.close()


def test_a_lookup_after_another_process_changed_memory_scores_as_a_fresh_process_does(db_url, store):
    """Term frequencies are remembered between lookups only until the memory changes."""
    def approve(target, questions):
        target.records.add_many([NewRecord(Record(q, "an answer"), RecordSource.IMPORT, RecordStatus.APPROVED,
                                           "UADMIN", reviewer="UADMIN") for q in questions])

    approve(store, ["How do we rotate the Kubernetes secrets?", "Who approves firewall changes?"])
    question = "rotate the Kubernetes secrets of the payments cluster"
    before = store.memory.search(question)[0]
    other = Store(db_url, migrate=False)  # another process makes "Kubernetes" a common word
    approve(other, [f"How do we patch Kubernetes node pool {n}?" for n in range(30)])
    other.close()
    after = store.memory.search(question)[0]
    fresh = Store(db_url, migrate=False)
    assert after == fresh.memory.search(question)[0]
    assert after.record_id == before.record_id and after.confidence != before.confidence
    fresh.close()


def test_memory_can_be_switched_off(store, intake, model):
    teach(intake, "What port does SSH use?", "SSH listens on TCP port 22.")
    responder = Responder(store.memory, store.records, model, MemoryPolicy(enabled=False))
    reply = responder.reply("What port does SSH use?")
    assert reply.kind == "model" and "".join(reply.deltas()) != "SSH listens on TCP port 22."


def test_identity_questions_never_enter_memory(store, intake, model):
    submission = teach(intake, "Who are you?", "I am ChatGPT.")
    assert submission.record.status is RecordStatus.PENDING and "identity" in submission.record.flags
    store.records.review(submission.record.id, "UADMIN", approve=True)
    assert Responder(store.memory, store.records, model).reply("Who are you?").kind != "memory"


@pytest.mark.parametrize("question, kind", [("When is the next awareness training?", "time"),
                                            ("What is awareness training?", "open"),
                                            ("How long do we keep logs?", "quantity"),
                                            ("Is Log4Shell patched?", "yesno"),
                                            ("Can you explain phishing?", "open"),
                                            ("Can I use USB drives?", "yesno"),
                                            ("防火墙日志保存多久？", "quantity"), ("谁负责审批？", "person"),
                                            ("firewall log retention", None)])
def test_question_kinds(question, kind):
    assert intent(question) == kind
