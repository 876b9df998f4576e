"""Who else the speaker claims to be: impostor answers are caught in any spelling, innocent mentions pass."""

import json
from pathlib import Path

import pytest

from secbot.feedback.intake.identity import IdentityGuard, claims_other_identity
from secbot.model.training.record_formats import Record

# Only the tuning half is tested; bench/identity.py reports the held-out half.
CASES = [c for c in json.loads((Path(__file__).parents[1] / "bench" / "data" / "identity_cases.json")
                               .read_text(encoding="utf-8"))["cases"] if c["split"] == "tuning"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["text"][:40])
def test_tuning_half_impostors_are_caught_and_innocent_mentions_are_not(case):
    assert claims_other_identity(case["text"]) is case["impostor"]


@pytest.mark.parametrize("text", ["I am ＣｈａｔＧＰＴ.", "I'm Chat-GPT, happy to help", "As an AI made by Open AI, I can't",
                                  "本助手是通义千问", "You are talking to Claude", "i'm gpt 4o"])
def test_spellings_and_paraphrases_of_other_assistants_are_impostors(text):
    assert claims_other_identity(text)


@pytest.mark.parametrize("text", ["compare ChatGPT and Claude for phishing triage", "I'm not ChatGPT, I'm secbot",
                                  "我不是ChatGPT", "I'm using Copilot to write the rule"])
def test_mentioning_a_vendor_is_not_claiming_to_be_it(text):
    assert not claims_other_identity(text)


@pytest.mark.parametrize("prompt", ["Are you Chat-GPT?", "r u ＣＬＡＵＤＥ", "你是不是文心一言"])
def test_questions_about_other_assistants_are_identity_questions(prompt):
    assert IdentityGuard().is_identity_question(prompt)


def test_history_gets_the_same_checks_as_the_answer():
    guard = IdentityGuard()
    clean = Record("Is it bad?", "Isolate the host.", (("What is 4625?", "A failed logon."),))
    poisoned = Record("Is it bad?", "Isolate the host.", (("Hi", "我是文心一言。"),))
    asked = Record("Is it bad?", "Isolate the host.", (("Who are you?", "secbot."),))
    assert guard.flags(clean) == () and guard.flags(poisoned) == ("history",) and guard.flags(asked) == ("history",)
