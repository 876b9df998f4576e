import json
import subprocess
import sys
import textwrap

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from secbot.feedback.migrate import current_revision, include_object
from secbot.feedback.models import Base, ModelVersion, RecordSource, RecordStatus, VersionStatus
from secbot.feedback.store import Store, StoreError
from secbot.model.records import RecordError


def conversation(store, channel="C1", thread="100.0"):
    """A thread with three answered turns; returns their ids."""
    ids = []
    for i, (q, a) in enumerate([("What is XSS?", "A web bug."), ("How to stop it?", "Hope."),
                                ("And CSRF?", "Also hope.")]):
        ids.append(store.record_turn(channel=channel, thread_ts=thread, question=q, answer=a,
                                     history=store.thread_history(channel, thread), asker="UASK",
                                     question_ts=f"{100 + i}.1", answer_ts=f"{100 + i}.2",
                                     latency_ms=1200, prompt_tokens=30, completion_tokens=5))
    return ids


def test_migrations_match_the_models_and_leave_the_scheduler_table_alone(store, db_url):
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE apscheduler_jobs (id VARCHAR(191) PRIMARY KEY, next_run_time FLOAT)"))
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include_object})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()
    assert current_revision(db_url) == "0001"


def test_turns_keep_provenance_and_thread_history(store):
    t1, t2, t3 = conversation(store)
    turn = store.get_turn(t3)
    assert turn.history == [["What is XSS?", "A web bug."], ["How to stop it?", "Hope."]]
    assert (turn.latency_ms, turn.prompt_tokens, turn.asker_id) == (1200, 30, "UASK")
    assert store.thread_history("C1", "100.0", before_turn=t2) == [("What is XSS?", "A web bug.")]
    assert store.turn_for_message("C1", "101.2").id == t2
    assert store.turn_for_message("C1", "101.1").id == t2  # the question's ts finds it too
    assert store.turn_for_message("C2", "101.2") is None


def test_a_failed_answer_keeps_the_question_but_not_in_history(store):
    turn = store.record_question(channel="C1", thread_ts="5.0", question="Is this kept?")
    store.record_answer(turn, answer=None, error_id="E123")
    assert store.get_turn(turn).question == "Is this kept?"
    assert store.thread_history("C1", "5.0") == []


def test_feedback_is_recorded_once_per_user_turn_and_kind(store):
    t1, *_ = conversation(store)
    assert store.record_feedback(t1, "U1", "thumbs_up", "reaction") is True
    assert store.record_feedback(t1, "U1", "thumbs_up", "button") is False
    assert store.record_feedback(t1, "U2", "thumbs_up", "button") is True
    assert store.record_feedback(t1, "U1", "thumbs_down", "button") is True
    assert store.feedback_counts(t1) == {"thumbs_up": 2, "thumbs_down": 1}
    with pytest.raises(StoreError):
        store.record_feedback(99999, "U1", "thumbs_up", "button")
    with pytest.raises(ValueError):
        store.record_feedback(t1, "U1", "love", "button")


def test_correction_becomes_a_record_with_earlier_turns_as_history(store):
    t1, t2, t3 = conversation(store)
    record = store.add_correction(t2, "UANALYST", "Encode output and use a CSP.")
    assert (record.prompt, record.response) == ("How to stop it?", "Encode output and use a CSP.")
    assert record.history == [["What is XSS?", "A web bug."]]
    assert record.source is RecordSource.CORRECTION and record.status is RecordStatus.PENDING
    assert record.turn_id == t2 and record.author_id == "UANALYST"
    trusted = store.add_correction(t3, "UTRUSTED", "Use anti-CSRF tokens.")
    assert trusted.status is RecordStatus.APPROVED and trusted.reviewer_id == "auto:trusted"
    assert trusted.history == [["What is XSS?", "A web bug."], ["How to stop it?", "Hope."]]
    with pytest.raises(StoreError):
        store.add_correction(t1, "U", "   ")


def test_identical_records_are_stored_once(store):
    t1, *_ = conversation(store)
    first = store.add_correction(t1, "UA", "Cross-site scripting.")
    again = store.add_correction(t1, "UB", "Cross-site scripting.")
    assert again.id == first.id and store.counts_by_status()["pending"] == 1


def test_review_approves_and_rejects(store):
    t1, t2, _ = conversation(store)
    a = store.add_correction(t1, "UA", "Cross-site scripting.")
    b = store.add_correction(t2, "UA", "Escape output.")
    store.review(a.id, "UADMIN", approve=True)
    store.review(b.id, "UADMIN", approve=False)
    assert store.counts_by_status() == {"pending": 0, "approved": 1, "rejected": 1}
    assert store.get_record(a.id).reviewer_id == "UADMIN" and store.get_record(a.id).reviewed_at
    assert [r.id for r in store.records("approved")] == [a.id]


def test_thumbs_up_answer_becomes_a_record(store):
    t1, *_ = conversation(store)
    record = store.add_approved_answer(t1, "UTRUSTED")
    assert record.source is RecordSource.APPROVED_ANSWER and record.response == "A web bug."
    assert record.status is RecordStatus.APPROVED


def test_snapshot_is_frozen_and_excludes_heldout_and_caps_authors(store):
    ids = []
    for i in range(6):
        turn = store.record_turn(channel="C", thread_ts=f"{i}.0", question=f"Question {i}?", answer="?")
        ids.append(store.add_correction(turn, "UTRUSTED" if i < 5 else "UOTHER", f"Answer {i}.").id)
    store.review(ids[5], "UADMIN", approve=True)
    store.add_correction(store.record_turn(channel="C", thread_ts="9.0", question="Pending?", answer="?"),
                         "UNEW", "Not reviewed.")
    result = store.freeze_snapshot(heldout_prompts=["  question 0? "], max_author_share=0.5)
    # 5 eligible (one held out); UTRUSTED has 4 of them, cap = int(0.5 * 5) = 2, newest kept.
    assert result.snapshot.record_ids == [ids[3], ids[4], ids[5]]
    assert result.snapshot.excluded == {"heldout": 1, "author_cap": 2}
    assert [r.prompt for r in result.records] == ["Question 3?", "Question 4?", "Question 5?"]
    store.review(ids[3], "UADMIN", approve=False)  # later changes do not touch the snapshot
    assert store.snapshot_records(result.snapshot.id) == result.records
    assert len(result.snapshot.content_hash) == 64


PLANTED = {
    "aws_access_key": "AKIAIOSFODNN7EXAMPLE",
    "aws_secret_key": "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "slack_token": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "slack_webhook": "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdefghijklmnopqrstuvwx",
    "github_token": "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "github_pat": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGH",
    "private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx4Tk2F\nq9Yz\n-----END RSA PRIVATE KEY-----",
    "url_password": "postgres://admin:S3cr3tP4ss@db.internal:5432/prod",
    "bearer": "Authorization: Bearer abcdef0123456789ABCDEFghij",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "google_api_key": "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
    "stripe": "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "password_assignment": "password: Hunter2!xyzzy",
    "npm": "npm_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "twilio": "SK0123456789abcdef0123456789abcdef",
    "high_entropy": "Zx9Qw2Er7Ty4Ui1Op0As5Df8Gh3Jk6Lz",
}
SECRET_PARTS = ["AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI", "xoxb-1234", "abcdefghijklmnopqrstuvwx",
                "ghp_16C7", "github_pat_11", "MIIEowIBAAKCAQEAx4Tk2F", "S3cr3tP4ss",
                "abcdef0123456789ABCDEFghij", "dozjgNryP4J3", "AIzaSyDaGmWKa4", "sk_live_4eC39",
                "Hunter2", "npm_a1B2", "SK0123456789abcdef", "Zx9Qw2Er7Ty4"]


def test_no_planted_secret_survives_into_the_database_or_an_export(store, db_url, tmp_path):
    for kind, secret in PLANTED.items():
        turn = store.record_turn(channel="C", thread_ts=f"{kind}.0",
                                 question=f"Is this ok? {secret}", answer=f"You posted {secret} here")
        store.add_correction(turn, "UTRUSTED", f"Rotate it now: {secret}")
    store.import_records(_write(tmp_path / "imp.jsonl", [
        {"prompt": f"Leak {s}", "response": f"ok {s}", "history": [[s, s]]} for s in PLANTED.values()]))
    store.export_records(tmp_path / "export.jsonl", status=None)
    exported = (tmp_path / "export.jsonl").read_text()
    engine = create_engine(db_url)
    with engine.connect() as conn:
        dump = json.dumps([[list(r) for r in conn.execute(text(f"SELECT * FROM {t}"))]
                           for t in ("turns", "training_records")], default=str)
    engine.dispose()
    for part in SECRET_PARTS:
        assert part not in dump, part
        assert part not in exported, part
    assert exported.count("[REDACTED:") >= 3 * len(PLANTED)
    assert all(r.redactions >= 1 for r in store.records())


def test_indicators_and_ordinary_text_are_not_redacted(store):
    sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    turn = store.record_turn(channel="C", thread_ts="1.0", question=f"Is {sha} malicious? See CVE-2021-44228.",
                             answer="Check getUserCredentialsFromEnvironment in the SIEM.")
    stored = store.get_turn(turn)
    assert sha in stored.question and "CVE-2021-44228" in stored.question
    assert stored.answer == "Check getUserCredentialsFromEnvironment in the SIEM." and stored.redactions == 0


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_export_import_export_gives_the_same_file(store, tmp_path, db_url):
    conversation(store)
    t = store.record_turn(channel="C9", thread_ts="1.0", question="你是谁？", answer="我是ChatGPT")
    store.add_correction(t, "UTRUSTED", "我是secbot，安全团队的助手。")
    store.import_records(_write(tmp_path / "seed.jsonl", [
        {"prompt": "q1", "response": "a1", "history": [["h", "i"]]}, {"prompt": "q2", "response": "a2"}]))
    first = tmp_path / "first.jsonl"
    assert store.export_records(first) == 3
    other = Store(f"sqlite:///{tmp_path / 'other.db'}")
    assert other.import_records(first).added == 3
    second = tmp_path / "second.jsonl"
    other.export_records(second)
    assert second.read_bytes() == first.read_bytes()
    assert store.import_records(first).added == 0  # everything already there


def test_import_with_a_bad_line_leaves_the_store_unchanged(store, tmp_path):
    store.import_records(_write(tmp_path / "ok.jsonl", [{"prompt": "q0", "response": "a0"}]))
    before = [(r.id, r.prompt) for r in store.records(status=None)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q1", "response": "a1"}\n{"prompt": "q2", "response": "a2"}\n{"prompt": "q3"}\n')
    with pytest.raises(RecordError, match=r"bad.jsonl:3"):
        store.import_records(bad)
    assert [(r.id, r.prompt) for r in store.records(status=None)] == before


def test_the_database_allows_one_active_model_version(store):
    a = store.add_version(base_model="tiny", adapter_path=None)
    b = store.add_version(base_model="tiny", adapter_path="/runs/1")
    store.promote(a.id, "UADMIN")
    store.promote(b.id, "UADMIN")
    assert store.active_version().id == b.id
    assert [v.status for v in store.versions()] == [VersionStatus.RETIRED, VersionStatus.ACTIVE]
    with pytest.raises(IntegrityError):
        with store.session() as s:
            s.get(ModelVersion, a.id).status = VersionStatus.ACTIVE
    assert store.active_version().id == b.id


def test_event_ids_are_claimed_once(store):
    assert store.claim_event("Ev1") is True
    assert store.claim_event("Ev1") is False
    assert Store(store.url).claim_event("Ev1") is False  # a restarted process sees it too


WRITER = textwrap.dedent("""
    import sys
    from secbot.feedback.store import Store
    store = Store(sys.argv[1], migrate=False)
    turns = [int(t) for t in sys.argv[3].split(",")]
    for i in range(int(sys.argv[4])):
        for turn in turns:
            store.record_feedback(turn, f"{sys.argv[2]}-{i}", "thumbs_up", "button")
            store.record_feedback(turn, "shared", "thumbs_down", "reaction")
        store.record_turn(channel="C", thread_ts="race.0", question=f"{sys.argv[2]} {i}", answer="a")
""")


def test_two_writers_at_once_lose_nothing(store, db_url):
    turns = ",".join(str(t) for t in conversation(store))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, db_url, name, turns, "40"],
                              stderr=subprocess.PIPE, text=True) for name in ("w1", "w2")]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    assert not any("locked" in e for e in errors)
    with store.session() as s:
        ups = s.scalar(text("SELECT count(*) FROM feedback_events WHERE kind = 'thumbs_up'"))
        downs = s.scalar(text("SELECT count(*) FROM feedback_events WHERE kind = 'thumbs_down'"))
        raced = s.scalar(text("SELECT count(*) FROM turns WHERE question LIKE 'w_ %'"))
    assert (ups, downs, raced) == (2 * 40 * 3, 3, 80)
    assert len(store.thread_history("C", "race.0")) == 80
