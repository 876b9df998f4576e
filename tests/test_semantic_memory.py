"""Team memory by meaning: vectors kept with the records, a model change detected, the bot and
`secbot chat` answering a question asked in other words, and `/v1/embeddings` for the openai SDK.

Two embedders: the embedded static model (real, as users get it), and `Concepts`, a stand-in
that knows a handful of synonyms, for the mechanics of a question answered by meaning only: the
static model's quality is measured by bench/memory.py, not asserted here."""

import hashlib
import re
import threading

import httpx
import numpy as np
import pytest
from conftest import answered
from servers import clean_env, free_port, secbot_server
from slack_bot import ANALYST, TRUSTED, Bot, body_text, footer

from secbot.feedback.answering import CONFIRM_SYSTEM, MemoryPolicy, Responder
from secbot.feedback.intake.submissions import Intake
from secbot.feedback.learning.evalsets import calibration_questions
from secbot.feedback.store.repositories import Store
from secbot.model.runtime.embeddings import SentenceTransformersEmbedder, ServerEmbedder, StaticEmbedder, unit_rows
from secbot.model.runtime.generation import Sampling
from secbot.model.serving.client import InProcessClient

STORED, ASKED = "Is 2FA mandatory for the VPN?", "Do we need multi-factor to connect to remote access?"
ANSWER = "Yes: Okta Verify push, no exceptions."


class Concepts:
    """Words to concepts through a small synonym table, a bag of concepts hashed into 1024 signed
    dimensions, unit length: questions that say the same thing in other words get one vector."""

    SYNONYMS = {"mfa": "2fa", "multi-factor": "2fa", "two-factor": "2fa", "mandatory": "need", "required": "need",
                "vpn": "remote-access", "remote": "remote-access", "access": "remote-access",
                "connect": "remote-access"}
    STOP = {"is", "the", "for", "do", "we", "to", "a", "an", "of", "on", "what", "how", "who"}

    def __init__(self, name="test-concepts"):
        self.name, self.dim = name, 1024

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[\w-]+", text.lower()):
                if word in self.STOP:
                    continue
                digest = hashlib.sha256(self.SYNONYMS.get(word, word).encode()).digest()
                out[i, digest[0] % self.dim] += 1 if digest[1] % 2 else -1
        return unit_rows(out)


def semantic_store(url, embedder) -> Store:
    return Store(url, embedder=embedder, calibration_questions=calibration_questions())


def teach(intake, question, answer, author=TRUSTED, thread="1.0"):
    return intake.correction(answered(intake, question=question, answer="(wrong)", thread_ts=thread),
                             author, answer).record


@pytest.fixture(scope="module")
def static():
    return StaticEmbedder()


@pytest.fixture
def model(engine):
    engine.sampling = Sampling(max_new_tokens=8)
    return InProcessClient(engine)


def test_a_question_in_other_words_is_answered_by_meaning_at_once_and_after_a_restart(db_url, model):
    store = semantic_store(db_url, Concepts())
    record = teach(Intake(store, trusted={TRUSTED}), STORED, ANSWER)
    reply = Responder(store.memory, store.records, model).reply(ASKED)
    assert reply.kind == "memory" and reply.record.id == record.id and "".join(reply.deltas()) == ANSWER
    assert Responder(Store(db_url).memory, store.records, model).reply(ASKED).kind != "memory"  # words alone miss
    store.close()
    restarted = semantic_store(db_url, Concepts())
    assert Responder(restarted.memory, restarted.records, model).reply(ASKED).record.id == record.id
    restarted.close()


def test_every_process_sees_a_new_vector_at_once_and_loses_a_revoked_one_at_once(db_url, model):
    first, second = semantic_store(db_url, Concepts()), semantic_store(db_url, Concepts())
    responder = Responder(second.memory, second.records, model)
    assert responder.reply("What is phishing?").kind != "memory"  # the second process has loaded its matrix
    record = teach(Intake(first, trusted={TRUSTED}), STORED, ANSWER)
    assert responder.reply(ASKED).record.id == record.id  # approved by the first process
    assert first.memory.vector_models() == {"test-concepts": 1}
    first.records.revoke(record.id, "UADMIN")
    assert first.memory.vector_models() == {}
    reply = responder.reply(ASKED)
    assert reply.kind != "memory" and record.id not in [r.id for r in reply.references]
    "".join(reply.deltas())


def test_the_static_model_keeps_vectors_with_records_and_refuses_a_near_miss(db_url, static, model):
    store = semantic_store(db_url, static)
    intake = Intake(store, trusted={TRUSTED})
    teach(intake, "How long do we keep proxy logs?", "Ninety days in the SIEM.", thread="1.0")
    teach(intake, "Who approves a firewall change?", "The network lead.", thread="2.0")
    assert store.memory.vector_models() == {static.name: 2} and store.memory.semantic
    responder = Responder(store.memory, store.records, model)
    assert responder.reply("How long do we keep proxy logs?").kind == "memory"
    for near_miss in ("How long do we keep proxy configs?", "Who can delete the proxy logs?",
                      "Who approves a budget change?"):
        reply = responder.reply(near_miss)
        assert reply.kind != "memory", near_miss
        "".join(reply.deltas())
    match = store.memory.search("How long are proxy logs retained?")[0]
    assert match.semantic is not None and match.lexical is not None and match.fused is not None
    store.close()


def test_a_changed_embedding_model_is_reported_never_mixed_and_reindex_fixes_it(db_url, static, capsys):
    store = semantic_store(db_url, Concepts("concepts-a"))
    intake = Intake(store, trusted={TRUSTED})
    teach(intake, STORED, ANSWER)
    teach(intake, "Who approves a pen test?", "The CISO.", thread="2.0")
    store.close()
    changed = semantic_store(db_url, Concepts("concepts-b"))
    assert "concepts-a (2 record(s))" in changed.memory.semantic_problem
    assert "secbot memory reindex" in changed.memory.semantic_problem and not changed.memory.semantic
    assert changed.memory.search(STORED)[0].semantic is None  # words only, until reindexed
    seen = []
    assert changed.memory.reindex(lambda done, total: seen.append((done, total)), batch=1) == 2
    assert seen == [(1, 2), (2, 2)] and changed.memory.semantic_problem is None
    assert changed.memory.vector_models() == {"concepts-b": 2}
    assert changed.memory.search(ASKED)[0].semantic is not None
    changed.close()


def test_records_indexed_before_semantic_matching_are_embedded_at_start(db_url):
    words_only = Store(db_url)
    teach(Intake(words_only, trusted={TRUSTED}), STORED, ANSWER)
    assert words_only.memory.vector_models() == {None: 1}
    words_only.close()
    store = semantic_store(db_url, Concepts())
    assert store.memory.vector_models() == {"test-concepts": 1}
    store.close()


def test_the_bot_answers_a_question_in_other_words_from_memory(slack, tmp_path, bot_engine):
    bot = Bot(slack, tmp_path, InProcessClient(bot_engine), embedder=Concepts())
    record = teach(Intake(bot.store, trusted={TRUSTED}), STORED, ANSWER)
    bot.mention(ASKED, channel="C7", ts="31.1", user=ANALYST)
    [answer] = bot.answers("C7", "31.1")
    assert body_text(answer) == ANSWER and footer(answer)[0].endswith(f"record #{record.id}")
    assert bot.turn("C7", answer["ts"]).memory_record_id == record.id


@pytest.fixture(scope="module")
def tiny_sentence_model(tmp_path_factory):
    """A sentence-transformers directory built here: a two-layer BERT over a word vocabulary and
    mean pooling, saved the way `SentenceTransformer.save` saves downloaded models."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("st")
    words = sorted({w for text in (STORED, ASKED, "proxy logs firewall change pen test phishing")
                    for w in re.findall(r"\w+", text.lower())})
    (root / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizerFast(str(root / "vocab.txt")).save_pretrained(root / "bert")
    import torch

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=5 + len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(root / "bert")
    encoder = models.Transformer(str(root / "bert"), max_seq_length=32)
    SentenceTransformer(modules=[encoder, models.Pooling(32, "mean")]).save(str(root / "model"))
    return root / "model"


def test_embeddings_endpoint_speaks_openais_protocol_to_its_sdk(tiny_dir, tiny_sentence_model, tmp_path):
    import openai

    local = SentenceTransformersEmbedder(tiny_sentence_model)
    port, key = free_port(), "embedding-test-key"
    env = clean_env(SECBOT_MODEL_API_KEY=key, SECBOT_DATA_DIR=str(tmp_path), SECBOT_MAX_NEW_TOKENS="8")
    base = f"http://127.0.0.1:{port}"
    with secbot_server(["serve-model", "--model", str(tiny_dir), "--host", "127.0.0.1", "--port", str(port),
                        "--embedding-model", str(tiny_sentence_model)], env, base + "/health"):
        sdk = openai.OpenAI(base_url=base + "/v1", api_key=key)
        answer = sdk.embeddings.create(model="secbot-embedding", input=[STORED, ASKED])  # base64 on the wire
        got = np.array([d.embedding for d in answer.data], dtype=np.float32)
        assert got.shape == (2, local.dim) and answer.usage.prompt_tokens > 0
        assert np.allclose(got, local.embed([STORED, ASKED]), atol=1e-5)
        floats = sdk.embeddings.create(model="secbot-embedding", input=STORED, encoding_format="float")
        assert np.allclose(floats.data[0].embedding, got[0], atol=1e-5)
        assert np.allclose(ServerEmbedder(base, key).embed([ASKED]), got[1:], atol=1e-5)
        for bad, param in (({"input": [1, 2, 3]}, "input"), ({"input": []}, "input"),
                           ({"input": "x", "dimensions": 7}, "dimensions")):
            response = httpx.post(base + "/v1/embeddings", json={"model": "m", **bad}, timeout=60,
                                  headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 400 and response.json()["error"]["param"] == param, response.text
        assert httpx.post(base + "/v1/embeddings", json={"model": "m", "input": "x"}, timeout=60).status_code == 401


def test_a_store_on_the_static_model_answers_from_threads_concurrently(db_url, static, model):
    store = semantic_store(db_url, static)
    teach(Intake(store, trusted={TRUSTED}), "How long do we keep proxy logs?", "Ninety days in the SIEM.")
    responder, errors = Responder(store.memory, store.records, model), []

    def ask():
        try:
            assert responder.reply("How long do we keep proxy logs?").kind == "memory"
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store.close()


class Judge:
    """A stand-in chat model for the confirmation step: says `verdict` to a comparison prompt, and
    a fixed answer otherwise; notes every prompt it was given."""

    version_id = None

    def __init__(self, verdict):
        self.verdict, self.prompts = verdict, []

    def use_version(self, version):
        pass

    def stream(self, question, history, usage, system_prompt=None):
        self.prompts.append((question, system_prompt))
        text = self.verdict if "Same question?" in question else "the model's own answer"
        yield from (text[i:i + 2] for i in range(0, len(text), 2))


@pytest.mark.parametrize("verdict, from_memory", [("Yes, they do.", True), ("No.", False), ("是的", True)])
def test_a_borderline_match_is_confirmed_by_the_model_when_asked_to(db_url, verdict, from_memory):
    store = Store(db_url)
    record = teach(Intake(store, trusted={TRUSTED}), "How long do we keep proxy logs?", "Ninety days in the SIEM.")
    asked = "What is the retention for proxy logs?"
    match = store.memory.search(asked)[0]
    policy = MemoryPolicy(confirm=True, reference=0.2)
    assert match.record_id == record.id and policy.reference <= match.confidence < policy.confident  # borderline
    judge = Judge(verdict)
    reply = Responder(store.memory, store.records, judge, policy).reply(asked)
    assert reply.from_memory is from_memory and reply.confirmed is from_memory
    compare, system = judge.prompts[0]
    assert "How long do we keep proxy logs?" in compare and asked in compare and system == CONFIRM_SYSTEM
    assert "".join(reply.deltas()) == ("Ninety days in the SIEM." if from_memory else "the model's own answer")
    off = Judge("Yes")
    assert Responder(store.memory, store.records, off, MemoryPolicy(reference=0.2)).reply(asked).kind != "memory"
    assert not any("Same question?" in q for q, _ in off.prompts)  # off by default: no comparison asked
    store.close()


def test_an_unreachable_embedding_server_leaves_memory_on_words_and_records_get_vectors_later(tmp_path, caplog):
    from secbot.bot import configure
    from secbot.bot.settings import Settings

    settings = Settings.read(None, storage={"data_dir": tmp_path},
                             model={"url": f"http://127.0.0.1:{free_port()}/v1"},
                             memory={"embedding_model": "server"})
    store = configure.open_store(settings)  # nothing listens there
    assert store.memory.embedder is None and "matches by words only" in caplog.text
    teach(Intake(store, trusted={TRUSTED}), STORED, ANSWER)
    assert store.memory.vector_models() == {None: 1}
    store.close()
    later = semantic_store(settings.storage.url, Concepts())  # the next start, with an embedder
    assert later.memory.vector_models() == {"test-concepts": 1}
    later.close()
