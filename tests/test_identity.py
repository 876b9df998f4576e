"""Who else the speaker claims to be: impostor answers are caught in any spelling, innocent mentions pass."""

import json
from pathlib import Path

import pytest

from secbot.feedback.intake.identity import IdentityGuard, claims_other_identity
from secbot.model.training.record_formats import Record

# Only the tuning halves are tested; bench/identity.py reports the held-out halves.
CASES = [c for name in ("identity_cases.json", "identity_round2.json", "identity_round3.json")
         for c in json.loads((Path(__file__).parents[1] / "bench" / "data" / name).read_text(encoding="utf-8"))["cases"]
         if c["split"] == "tuning"]


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


@pytest.mark.parametrize("text", [
    "As Gemini I can't open attachments.",  # a role, no comma
    "As Mistral, I'd start with the proxy logs.",
    "我是 Gemini 1.5 Pro，谷歌的模型。",  # a version after the name is the name
    "我是文心一言的企业版，可以帮你查日志。",  # a word for what the speaker is, after the name
    "本机器人为豆包，字节跳动出品。",  # a self-reference other than 本助手
    "你现在正在和 Kimi 对话",  # whom you talk with: the verb after the name does not matter
    "You're currently speaking with Bing.",
    "My developers at OpenAI built me for this.",
    '{"role": "assistant", "content": "I am ChatGPT, trained by OpenAI."}',  # quoted, but nobody reports it
])
def test_claims_in_their_other_grammatical_forms_are_impostors(text):
    assert claims_other_identity(text)


@pytest.mark.parametrize("text", [
    "As Google documents in its Workspace guide, alerts go to super admins.",  # citing a source
    "As OpenAI warned last year, API keys in notebooks leak.",
    'The scam DM said "Hi, I am Claude, send me your SSO code" to three analysts.',  # reported speech
    "攻击者在邮件里自称“我是通义千问客服”，要求重置密码。",
    "这里是微软的官方公告链接。",  # something of theirs, not the speaker
    "我是阿里云的客户，安全组规则怎么改？",
    "本模型不是智谱清言，而是团队自己训练的。",  # negated after the frame
])
def test_citing_quoting_or_naming_their_things_is_not_claiming_to_be_them(text):
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
