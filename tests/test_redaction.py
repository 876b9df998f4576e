"""Credentials never reach the store: every path that stores text goes through redaction."""

import json
import re
from pathlib import Path

import pytest
from conftest import answered
from sqlalchemy import create_engine, text

from secbot.feedback.intake.redaction import Redactor
from secbot.model.training.record_formats import write_records

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


def test_no_planted_secret_survives_into_the_database_or_an_export(store, intake, db_url, tmp_path):
    for kind, secret in PLANTED.items():
        turn = answered(intake, thread_ts=f"{kind}.0", question=f"Is this ok? {secret}",
                        answer=f"You posted {secret} here")
        intake.correction(turn, "UTRUSTED", f"Rotate it now: {secret}")
    rows = [{"prompt": f"Leak {s}", "response": f"ok {s}", "history": [[s, s]]} for s in PLANTED.values()]
    (tmp_path / "imp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    intake.import_file(tmp_path / "imp.jsonl")
    write_records(tmp_path / "export.jsonl", [r.as_record() for r in store.records.list()])
    exported = (tmp_path / "export.jsonl").read_text()
    engine = create_engine(db_url)
    with engine.connect() as conn:
        dump = json.dumps([[list(r) for r in conn.execute(text(f"SELECT * FROM {t}"))]
                           for t in ("turns", "training_records", "memory_docs", "memory_postings")], default=str)
    engine.dispose()
    for part in SECRET_PARTS:
        assert part not in dump, part
        assert part not in exported, part
    assert exported.count("[REDACTED:") >= 3 * len(PLANTED)
    assert all("[REDACTED:" in r.prompt + r.response for r in store.records.list())


def test_indicators_and_ordinary_text_are_not_redacted(store, intake):
    sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    turn = answered(intake, question=f"Is {sha} malicious? See CVE-2021-44228.",
                    answer="Check getUserCredentialsFromEnvironment in the SIEM.")
    stored = store.conversations.get_turn(turn)
    assert sha in stored.question and "CVE-2021-44228" in stored.question
    assert stored.answer == "Check getUserCredentialsFromEnvironment in the SIEM."


DATA = Path(__file__).parents[1] / "bench" / "data"
CASES = json.loads((DATA / "redaction_cases.json").read_text(encoding="utf-8"))
REDACTOR = Redactor()


@pytest.mark.parametrize("case", CASES["paste"], ids=lambda c: c["text"][:40])
def test_credentials_pasted_the_way_analysts_paste_them_are_redacted(case):
    out = REDACTOR.redact(case["text"]).text
    assert case["secret"] not in out and "[REDACTED:" in out


def test_ordinary_security_text_passes_unchanged():
    changed = [line for line in CASES["ordinary"] if REDACTOR.redact(line).text != line]
    assert changed == []


def test_published_scanner_test_data_is_caught():
    corpus = json.loads((DATA / "secret_corpus.json").read_text(encoding="utf-8"))["samples"]
    non_hex = [s for s in corpus if s["secret"] is None or not re.fullmatch(r"[0-9a-fA-F]+", s["secret"])]
    missed = [s for s in non_hex if (s["secret"] or "\0") in REDACTOR.redact(s["text"]).text
              or "[REDACTED:" not in REDACTOR.redact(s["text"]).text]
    assert len(missed) <= 0.05 * len(non_hex), missed[:5]


def test_nul_characters_and_broken_surrogates_are_stored_without_error(store, intake):
    turn = answered(intake, question="What is this\x00 blob? \ud800", answer="A \x00 test.")
    stored = store.conversations.get_turn(turn)
    assert "\x00" not in stored.question and "\ud800" not in stored.question and stored.answer == "A  test."


@pytest.mark.timeout(120)  # a hang guard: these take well under a second each when matching is linear
@pytest.mark.parametrize("text", ["x" * 200_000, "DB_PASSWORD=" * 20_000, "password is " * 20_000,
                                  "<@" * 100_000, "-" * 200_000, "密码是" * 50_000, "a=b " * 50_000])
def test_long_adversarial_input_is_redacted_without_catastrophic_backtracking(text):
    assert REDACTOR.redact(text).text is not None
