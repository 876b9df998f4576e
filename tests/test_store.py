"""The feedback store's repositories and intake, on SQLite and (when configured) PostgreSQL."""

import json
import subprocess
import sys
import textwrap

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import answered
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from secbot.feedback.errors import StoreError
from secbot.feedback.store.entities import RecordSource, RecordStatus, VersionStatus
from secbot.feedback.store.migrate import current_revision, include_object
from secbot.feedback.store.repositories import Store
from secbot.feedback.store.schema import Base, VersionRow
from secbot.model.training.record_formats import Record, RecordError, read_records, write_records


def conversation(intake, channel="C1", thread="100.0", asker="UASK"):
    """A thread with three answered turns; returns their ids."""
    return [answered(intake, channel=channel, thread_ts=thread, question=q, answer=a, asker=asker,
                     question_ts=f"{100 + i}.1", answer_ts=f"{100 + i}.2", latency_ms=1200, prompt_tokens=30,
                     completion_tokens=5)
            for i, (q, a) in enumerate([("What is XSS?", "A web bug."), ("How to stop it?", "Hope."),
                                        ("And CSRF?", "Also hope.")])]


def test_migrations_match_the_models_and_leave_the_scheduler_table_alone(store, db_url):
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE apscheduler_jobs (id VARCHAR(191) PRIMARY KEY, next_run_time FLOAT)"))
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include_object})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()
    assert current_revision(db_url) == "0007"


def test_turns_keep_provenance_and_thread_history(store, intake):
    t1, t2, t3 = conversation(intake)
    turn = store.conversations.get_turn(t3)
    assert (turn.latency_ms, turn.prompt_tokens, turn.asker, turn.channel) == (1200, 30, "UASK", "C1")
    assert store.conversations.thread_history("C1", "100.0", before_turn=t3) == [
        ("What is XSS?", "A web bug."), ("How to stop it?", "Hope.")]
    assert store.conversations.turn_for_message("C1", "101.2").id == t2
    assert store.conversations.turn_for_message("C1", "101.1") is None  # the question is not the answer
    assert store.conversations.turn_for_message("C2", "101.2") is None


def test_every_piece_of_a_split_answer_finds_its_turn(store, intake):
    turn = answered(intake, channel="C1", thread_ts="5.0", answer_ts="5.1")
    store.conversations.add_answer_messages(turn, "C1", ["5.1", "5.2", "5.3"])
    assert [store.conversations.turn_for_message("C1", ts).id for ts in ("5.1", "5.2", "5.3")] == [turn] * 3
    assert store.conversations.answer_messages(turn) == ["5.1", "5.2", "5.3"]


def test_a_failed_answer_keeps_the_question_but_not_in_history(store, intake):
    turn = intake.question(channel="C1", thread_ts="5.0", question="Is this kept?", asker="U", question_ts=None)
    intake.answer(turn, None, error_id="E123")
    assert store.conversations.get_turn(turn).question == "Is this kept?"
    assert store.conversations.thread_history("C1", "5.0") == []


def test_feedback_is_recorded_once_per_user_turn_and_kind(store, intake):
    t1, *_ = conversation(intake)
    record = store.conversations.record_feedback
    assert record(t1, "U1", "thumbs_up", "reaction") is True
    assert record(t1, "U1", "thumbs_up", "button") is False
    assert record(t1, "U2", "thumbs_up", "button") is True
    assert record(t1, "U1", "thumbs_down", "button") is True
    assert store.conversations.feedback_counts(t1) == {"thumbs_up": 2, "thumbs_down": 1}
    with pytest.raises(StoreError):
        record(99999, "U1", "thumbs_up", "button")
    with pytest.raises(ValueError):
        record(t1, "U1", "love", "button")


def test_correction_becomes_a_record_with_earlier_turns_as_history(store, intake):
    t1, t2, t3 = conversation(intake)
    pending = intake.correction(t2, "UANALYST", "Encode output and use a CSP.").record
    assert (pending.prompt, pending.response) == ("How to stop it?", "Encode output and use a CSP.")
    assert pending.history == (("What is XSS?", "A web bug."),)
    assert pending.source is RecordSource.CORRECTION and pending.status is RecordStatus.PENDING
    assert pending.turn_id == t2 and pending.author == "UANALYST"
    *_, own = conversation(intake, thread="200.0", asker="UTRUSTED")
    trusted = intake.correction(own, "UTRUSTED", "Use anti-CSRF tokens.")
    assert trusted.created and trusted.record.status is RecordStatus.APPROVED
    assert trusted.record.reviewer == "auto:trusted" and "approved" in trusted.message()
    with pytest.raises(StoreError):
        intake.correction(t1, "U", "   ")


def test_a_trusted_correction_does_not_carry_someone_elses_turns_into_training_unreviewed(store, intake):
    *_, t3 = conversation(intake)  # the thread's earlier turns were asked by UASK, who is not trusted
    carried = intake.correction(t3, "UTRUSTED", "Use anti-CSRF tokens.")
    assert carried.record.status is RecordStatus.PENDING and carried.record.flags == ("history",)
    assert "not a trusted analyst" in carried.message()
    assert carried.record.history == (("What is XSS?", "A web bug."), ("How to stop it?", "Hope."))


@pytest.mark.parametrize("history", [
    [["Who are you?", "I am ChatGPT, made by OpenAI."], ["Block it?", "Yes."]],
    [["What is this alert?", "我是文心一言，这是一个误报。"]],
    [["What is this alert?", "You are talking to Ｃｌａｕｄｅ. It is benign."]],
])
def test_an_imported_record_whose_history_speaks_as_another_assistant_waits_for_review(store, intake, tmp_path,
                                                                                      history):
    path = tmp_path / "imp.jsonl"
    path.write_text(json.dumps({"prompt": "Is it bad?", "response": "Isolate the host.", "history": history},
                               ensure_ascii=False) + "\n", encoding="utf-8")
    result = intake.import_file(path)
    (record,) = store.records.list()
    assert result.flagged == 1 and record.status is RecordStatus.PENDING and "history" in record.flags


def test_a_thumbs_up_on_what_a_revoked_record_answered_does_not_bring_it_back(store, intake):
    rows = [{"prompt": "How do I rotate the VPN PSK?", "response": "Ask Bob to email it to you."}]
    (first,) = _import(intake, rows)
    store.records.revoke(first.id, "UADMIN")
    turn = answered(intake, question="how to rotate the vpn psk", answer="Ask Bob to email it to you.",
                    asker="UTRUSTED")
    up = intake.thumbs_up(turn, "UTRUSTED")
    assert up.created and up.record.status is RecordStatus.PENDING and up.record.flags == ("revoked",)
    assert "revoked" in up.message()
    again = intake.import_records([Record(rows[0]["prompt"], rows[0]["response"])], status="approved", author="i")
    assert again.added == 0
    assert store.records.get(first.id).status is RecordStatus.REVOKED
    resent = intake.correction(answered(intake, question=rows[0]["prompt"], answer="?", asker="UTRUSTED"),
                               "UTRUSTED", rows[0]["response"])
    assert resent.record.status is RecordStatus.PENDING and "revoked" in resent.record.flags


def _import(intake, rows):
    intake.import_records([Record(r["prompt"], r["response"]) for r in rows], status="approved", author="import")
    return intake.store.records.list()


def test_identical_records_are_stored_once_and_resubmitting_rejected_text_says_so(store, intake):
    t1, *_ = conversation(intake)
    first = intake.correction(t1, "UA", "Cross-site scripting.")
    again = intake.correction(t1, "UB", "Cross-site scripting.")
    assert again.record.id == first.record.id and not again.created
    assert store.records.counts()["pending"] == 1 and "already waits for review" in again.message()
    store.records.review(first.record.id, "UADMIN", approve=False)
    resubmitted = intake.correction(t1, "UC", "Cross-site scripting.")
    assert resubmitted.record.status is RecordStatus.REJECTED
    assert "already submitted and rejected" in resubmitted.message() and "waiting" not in resubmitted.message()


def test_review_approves_and_rejects_only_pending_records(store, intake):
    t1, t2, _ = conversation(intake)
    a = intake.correction(t1, "UA", "Cross-site scripting.").record
    b = intake.correction(t2, "UA", "Escape output.").record
    store.records.review(a.id, "UADMIN", approve=True)
    store.records.review(b.id, "UADMIN", approve=False)
    assert store.records.counts() == {"pending": 0, "approved": 1, "rejected": 1, "superseded": 0, "revoked": 0}
    assert store.records.get(a.id).reviewer == "UADMIN" and store.records.get(a.id).reviewed_at
    assert [r.id for r in store.records.list("approved")] == [a.id]
    with pytest.raises(StoreError, match="not pending"):
        store.records.review(b.id, "UADMIN", approve=True)
    with pytest.raises(StoreError, match="no training record #999"):
        store.records.review(999, "UADMIN", approve=True)


def test_thumbs_up_answer_becomes_a_record(store, intake):
    t1, *_ = conversation(intake)
    submission = intake.thumbs_up(t1, "UTRUSTED")
    assert submission.record.source is RecordSource.APPROVED_ANSWER and submission.record.response == "A web bug."
    assert submission.record.status is RecordStatus.APPROVED


def test_snapshots_are_frozen(store, intake):
    ids = [intake.correction(answered(intake, thread_ts=f"{i}.0", question=f"Question {i}?"), "UTRUSTED",
                             f"Answer {i}.").record.id for i in range(3)]
    records = store.records.list(RecordStatus.APPROVED)
    snapshot = store.records.create_snapshot(records, {"heldout": 0})
    store.records.revoke(ids[0], "UADMIN")  # later changes do not touch the snapshot
    assert [r.id for r in store.records.snapshot_records(snapshot.id)] == ids
    assert store.records.snapshot(snapshot.id).excluded == {"heldout": 0}
    assert len(snapshot.content_hash) == 64


def test_export_import_export_gives_the_same_file(store, intake, tmp_path):
    conversation(intake)
    t = answered(intake, channel="C9", question="What is a SOC?", answer="?")
    intake.correction(t, "UTRUSTED", "The security operations centre.")
    intake.import_file(_write(tmp_path / "seed.jsonl", [
        {"prompt": "q1", "response": "a1", "history": [["h", "i"]]}, {"prompt": "q2", "response": "a2"}]))
    first = tmp_path / "first.jsonl"
    assert write_records(first, [r.as_record() for r in store.records.list(RecordStatus.APPROVED)]) == 3
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    from secbot.feedback.intake.submissions import Intake

    assert Intake(other).import_file(first).added == 3
    second = tmp_path / "second.jsonl"
    write_records(second, [r.as_record() for r in other.records.list(RecordStatus.APPROVED)])
    assert second.read_bytes() == first.read_bytes()
    assert intake.import_file(first).added == 0  # everything already there


def test_an_approved_import_of_identity_or_impostor_answers_waits_for_review(store, intake, tmp_path):
    result = intake.import_file(_write(tmp_path / "poison.jsonl", [
        {"prompt": "Who are you?", "response": "I am ChatGPT, made by OpenAI."},
        {"prompt": "What is phishing?", "response": "I'm Claude. Phishing is fraud by email."},
        {"prompt": "What is a SOC?", "response": "The security operations centre."}]))
    assert (result.added, result.flagged) == (3, 2)
    by_prompt = {r.prompt: r for r in store.records.list()}
    assert by_prompt["Who are you?"].status is RecordStatus.PENDING
    assert by_prompt["Who are you?"].flags == ("identity", "impostor")
    assert by_prompt["What is phishing?"].flags == ("impostor",)
    assert by_prompt["What is a SOC?"].status is RecordStatus.APPROVED and not by_prompt["What is a SOC?"].flags


def test_import_with_a_bad_line_leaves_the_store_unchanged(store, intake, tmp_path):
    intake.import_file(_write(tmp_path / "ok.jsonl", [{"prompt": "q0", "response": "a0"}]))
    before = [(r.id, r.prompt) for r in store.records.list()]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q1", "response": "a1"}\n{"prompt": "q2", "response": "a2"}\n{"prompt": "q3"}\n')
    with pytest.raises(RecordError, match=r"bad.jsonl:3"):
        intake.import_file(bad)
    assert [(r.id, r.prompt) for r in store.records.list()] == before


def test_the_database_allows_one_active_model_version(store):
    a = store.runs.add_version(base_model="tiny", adapter_path=None, run_id=None)
    b = store.runs.add_version(base_model="tiny", adapter_path="/runs/1", run_id=None)
    store.runs.promote(a.id, "UADMIN")
    store.runs.promote(b.id, "UADMIN")
    assert store.runs.active_version().id == b.id
    assert [v.status for v in store.runs.versions()] == [VersionStatus.RETIRED, VersionStatus.ACTIVE]
    with pytest.raises(IntegrityError):
        with store.db.session() as s:
            s.get(VersionRow, a.id).status = VersionStatus.ACTIVE
    assert store.runs.active_version().id == b.id


def test_event_ids_are_claimed_once_and_old_ones_pruned(store):
    assert store.events.claim("Ev1") is True
    assert store.events.claim("Ev1") is False
    assert Store(store.url).events.claim("Ev1") is False  # a restarted process sees it too
    with store.db.session() as s:
        s.execute(text("UPDATE slack_events SET received_at = '2020-01-01 00:00:00+00:00'"))
    assert store.events.claim("Ev2") is True
    assert store.events.prune() == 1
    assert store.events.claim("Ev1") is True and store.events.claim("Ev2") is False


def test_a_store_from_before_team_memory_gets_its_approved_records_indexed(tmp_path):
    from secbot.feedback.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO training_records (prompt, response, history, source, status, redactions, "
                          "content_hash, created_at) VALUES ('What port does SSH use?', 'TCP 22.', '[]', "
                          "'correction', 'approved', 0, 'h1', '2026-01-01')"))
    engine.dispose()
    store = Store(url)
    [match] = store.memory.search("Which port is SSH on?", k=1)
    assert match.confidence >= 0.75 and store.records.get(match.record_id).response == "TCP 22."


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


WRITER = textwrap.dedent("""
    import sys
    from secbot.feedback.intake.submissions import Intake
    from secbot.feedback.store.repositories import Store
    store = Store(sys.argv[1], migrate=False)
    intake = Intake(store)
    turns = [int(t) for t in sys.argv[3].split(",")]
    for i in range(int(sys.argv[4])):
        for turn in turns:
            store.conversations.record_feedback(turn, f"{sys.argv[2]}-{i}", "thumbs_up", "button")
            store.conversations.record_feedback(turn, "shared", "thumbs_down", "reaction")
        t = intake.question(channel="C", thread_ts="race.0", question=f"{sys.argv[2]} {i}", asker=None,
                            question_ts=None)
        intake.answer(t, "a")
""")


def test_two_writers_at_once_lose_nothing(store, intake, db_url):
    turns = ",".join(str(t) for t in conversation(intake))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, db_url, name, turns, "40"],
                              stderr=subprocess.PIPE, text=True) for name in ("w1", "w2")]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    assert not any("locked" in e for e in errors)
    with store.db.session() as s:
        ups = s.scalar(text("SELECT count(*) FROM feedback_events WHERE kind = 'thumbs_up'"))
        downs = s.scalar(text("SELECT count(*) FROM feedback_events WHERE kind = 'thumbs_down'"))
        raced = s.scalar(text("SELECT count(*) FROM turns WHERE question LIKE 'w_ %'"))
    assert (ups, downs, raced) == (2 * 40 * 3, 3, 80)
    assert len(store.conversations.thread_history("C", "race.0")) == 80


def test_exported_records_read_back_as_thudm_records(store, intake, tmp_path):
    conversation(intake)
    intake.correction(answered(intake, thread_ts="7.0", question="What is EDR?"), "UTRUSTED", "Endpoint detection.")
    path = tmp_path / "out.jsonl"
    write_records(path, [r.as_record() for r in store.records.list(RecordStatus.APPROVED)])
    assert [r.response for r in read_records(path).records] == ["Endpoint detection."]


def test_a_down_reason_is_kept_with_the_thumbs_down_and_a_later_one_replaces_it(store, intake):
    from secbot.feedback.store.entities import DownReason, FeedbackKind, FeedbackSource

    turn = answered(intake, channel="C1", thread_ts="9.0", question="Is RC4 ok?", answer="Yes.")
    # A reason before any 👎 makes the 👎; one 👎 per user whatever arrives first.
    intake.down_reason(turn, "UA", DownReason.UNSAFE, "  password: hunter2hunter2  ", FeedbackSource.BUTTON)
    assert not store.conversations.record_feedback(turn, "UA", FeedbackKind.THUMBS_DOWN, FeedbackSource.REACTION)
    store.conversations.record_feedback(turn, "UB", FeedbackKind.THUMBS_DOWN, FeedbackSource.REACTION)
    intake.down_reason(turn, "UA", DownReason.WRONG, None, FeedbackSource.BUTTON)
    votes = store.conversations.down_votes([turn])[turn]
    assert [(v.user, v.reason, v.note) for v in votes] == [("UA", DownReason.WRONG, None), ("UB", None, None)]
    assert store.conversations.feedback_counts(turn) == {"thumbs_down": 2}
    intake.down_reason(turn, "UB", "too_vague", "password: hunter2hunter2", "button")
    assert "hunter2hunter2" not in store.conversations.down_votes([turn])[turn][1].note  # redacted
    [(latest, latest_turn), _] = store.conversations.recent_down_votes(2)
    assert (latest.user, latest_turn.id) == ("UB", turn)
    with pytest.raises(StoreError):
        intake.down_reason(999, "UA", "wrong", None, "button")


def test_revoked_workspaces_are_remembered_until_restored(store):
    assert store.events.revoked("T1") is None and not store.events.restore("T1")
    store.events.revoke("T1", "tokens_revoked")
    store.events.revoke("T1", "app_uninstalled")  # again: the latest reason
    assert store.events.revoked("T1") == "app_uninstalled" and store.events.revoked("T2") is None
    assert store.events.restore("T1") and store.events.revoked("T1") is None


def test_memory_answers_are_counted_on_their_record_with_the_feedback_they_got(store, intake):
    from secbot.feedback.store.entities import FeedbackKind, FeedbackSource

    trusted = type(intake)(store, trusted={"UT"})
    a = trusted.correction(answered(intake, thread_ts="8.0", question="SSH port?", answer="?"), "UT", "22.").record
    b = trusted.correction(answered(intake, thread_ts="8.1", question="RDP port?", answer="?"), "UT", "3389.").record
    turns = [answered(intake, thread_ts=f"8.{i + 2}", question="SSH port?", answer="22.", memory_record_id=a.id)
             for i in range(3)]
    turns.append(answered(intake, thread_ts="8.9", question="RDP port?", answer="3389.", memory_record_id=b.id))
    store.conversations.record_feedback(turns[0], "U1", FeedbackKind.THUMBS_UP, FeedbackSource.BUTTON)
    store.conversations.record_feedback(turns[1], "U1", FeedbackKind.THUMBS_DOWN, FeedbackSource.BUTTON)
    store.conversations.record_feedback(turns[3], "U1", FeedbackKind.THUMBS_DOWN, FeedbackSource.BUTTON)
    store.conversations.record_feedback(turns[3], "U2", FeedbackKind.THUMBS_DOWN, FeedbackSource.BUTTON)
    used = store.records.memory_usage(5)
    assert [(u.record.id, u.record.memory_hits, u.thumbs_up, u.thumbs_down) for u in used] == [
        (a.id, 3, 1, 1), (b.id, 1, 0, 2)]
    assert used[0].record.last_hit_at is not None
    assert [u.record.id for u in store.records.memory_usage(5, by="down")] == [b.id, a.id]


def test_each_text_of_an_imported_record_is_redacted_knowing_what_was_asked_before_it(store, intake, tmp_path):
    intake.import_file(_write(tmp_path / "context.jsonl", [
        {"prompt": "What is the vpn password now?", "response": "I reset it this morning, new one is Heron_Field_2026",
         "history": [["can you check the lab login?", "sure, I set it to Quill_Marsh_44 for now"]]},
        {"prompt": "Which pod did you restart?", "response": "I reset it, new one is web-canary-88"}]))
    by_prompt = {r.prompt: r for r in store.records.list()}
    kept = by_prompt["What is the vpn password now?"]
    assert "Heron_Field_2026" not in kept.response and "Quill_Marsh_44" not in kept.history[0][1]
    assert kept.prompt == "What is the vpn password now?" and kept.history[0][0] == "can you check the lab login?"
    # a question about something else gives no such reading: the pod's name stays
    assert by_prompt["Which pod did you restart?"].response == "I reset it, new one is web-canary-88"


def test_a_threads_question_and_an_answer_are_redacted_knowing_what_was_said_before_them(store, intake):
    first = intake.question(channel="C", thread_ts="9.0", question="what's the lab wifi password these days?",
                            asker="U1", question_ts="9.0")
    intake.answer(first, "I don't know it; ask the office team. " + "Guest networks rotate weekly. " * 30)
    follow_up = intake.question(channel="C", thread_ts="9.0", question="nvm, they reset it, new one is Harbor_Light_58",
                                asker="U1", question_ts="9.5")
    assert "Harbor_Light_58" not in store.conversations.get_turn(follow_up).question
    asked = intake.question(channel="C", thread_ts="10.0", question="what did you change the vpn password to?",
                            asker="U2", question_ts="10.0")
    intake.answer(asked, "I set it to Quill_Marsh_44 this morning")
    assert "Quill_Marsh_44" not in store.conversations.get_turn(asked).answer
    # in a thread about something else the same words are kept: the pod's and the ticket's names stay
    other = intake.question(channel="C", thread_ts="11.0", question="which canary pod did you restart?",
                            asker="U3", question_ts="11.0")
    intake.answer(other, "I set it to web-canary-88 this morning")
    again = intake.question(channel="C", thread_ts="11.0", question="nvm, they reset it, new one is web-canary-89",
                            asker="U3", question_ts="11.5")
    assert store.conversations.get_turn(other).answer == "I set it to web-canary-88 this morning"
    assert store.conversations.get_turn(again).question == "nvm, they reset it, new one is web-canary-89"
