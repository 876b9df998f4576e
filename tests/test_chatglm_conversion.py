"""`secbot convert` / `convert-ptuning` against a reference that is not secbot's: diffusers' ChatGLM
network and tokenizer (Kolors' text encoder), on tiny random ChatGLM2/3 checkpoints in THUDM's
layout with a SentencePiece model trained here (`chatglm_reference.py`)."""

import json
import shutil
import sys

import chatglm_reference as ref
import pytest
import torch
from test_cli import secbot

from secbot.model.conversion.convert import convert
from secbot.model.conversion.families import FAMILIES
from secbot.model.conversion.ptuning import convert_ptuning
from secbot.model.conversion.tokenizer import build_fast_tokenizer
from secbot.model.errors import ConversionRefused, RemoteCodeRequired
from secbot.model.runtime.engine import Engine
from secbot.model.runtime.loading import load_base
from secbot.model.runtime.prompting import PromptBuilder

pytest.importorskip("diffusers", reason="the reference ChatGLM network comes from diffusers (a dev dependency)")
from diffusers.pipelines.kolors.tokenizer import ChatGLMTokenizer  # noqa: E402

QUIET = {"progress": lambda line: None}
CONVERSATIONS = [
    ("What is lateral movement?", []),
    ("如何检测横向移动？", []),
    ("And how do we rotate the keys after that?", [("What is phishing?", "A lure that steals credentials."),
                                                   ("Who handles it?", "The incident response team.")]),
    ("那防火墙日志呢？", [("攻击者使用钓鱼邮件窃取凭据", "请检查登录日志并轮换密钥。")]),
]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("chatglm")


@pytest.fixture(scope="module")
def sp_model(work):
    return ref.train_sentencepiece(work / "tokenizer.model")


@pytest.fixture(scope="module")
def reference_tokenizer(sp_model):
    return ChatGLMTokenizer(vocab_file=str(sp_model))


@pytest.fixture(scope="module")
def vocab(reference_tokenizer):
    return reference_tokenizer.tokenizer.n_words - 9


@pytest.fixture(scope="module", params=["chatglm2", "chatglm3"])
def family(request, work, sp_model, vocab):
    """(family, reference model, THUDM checkpoint, converted directory): ChatGLM3 as sharded torch
    files with an index, ChatGLM2 as one safetensors file."""
    name = request.param
    model = ref.reference_model(ref.reference_config(name, vocab), seed=len(name) + (name == "chatglm3"))
    src = ref.write_checkpoint(work / f"{name}-src", name, model, sp_model, shards=2 if name == "chatglm3" else 1,
                               safetensors=name == "chatglm2")
    return name, model, src, convert(src, work / f"{name}-hf", **QUIET)


def reference_ids(tokenizer, name: str, query: str, history) -> list[int]:
    if name == "chatglm3":
        turns = [{"role": role, "content": text} for q, a in history for role, text in (("user", q), ("assistant", a))]
        return tokenizer.build_chat_input(query, history=turns)["input_ids"][0].tolist()
    return tokenizer.encode(ref.chatglm2_prompt(query, history))  # [gMASK] sop + the SentencePiece ids


def test_converted_logits_equal_the_reference_network(family, reference_tokenizer):
    name, model, _, dst = family
    loaded = load_base(dst)
    assert type(loaded.model).__name__ == "GlmForCausalLM"
    for query, history in CONVERSATIONS:
        ids = reference_ids(reference_tokenizer, name, query, history)
        with torch.no_grad():
            ours = loaded.model(torch.tensor([ids])).logits[0]
        assert (ours - ref.reference_logits(model, ids)).abs().max() < 1e-4, (query, history)


def test_the_chat_template_renders_the_familys_own_prompt_ids(family, reference_tokenizer):
    name, _, _, dst = family
    builder = PromptBuilder(load_base(dst).tokenizer, None)
    for query, history in CONVERSATIONS:
        assert builder.ids(query, [list(turn) for turn in history]) == reference_ids(
            reference_tokenizer, name, query, history), (query, history)


def test_training_targets_end_as_thudm_trains_them(family, reference_tokenizer):
    name, _, _, dst = family
    tokenizer = load_base(dst).tokenizer
    answer = "Rotate the keys, then 检查日志."
    target = PromptBuilder(tokenizer, None).answer_ids("q", [], answer)
    sp = reference_tokenizer.tokenizer
    if name == "chatglm2":  # ptuning/main.py: the answer's ids, then EOS
        assert target == sp.encode(answer) + [sp.eos_id]
    else:  # an assistant message (<|assistant|> "\n" content), closed by the next turn's <|user|>
        assert target == sp.encode("\n") + sp.encode(answer) + [reference_tokenizer.get_command("<|user|>")]


def test_the_converted_tokenizer_gives_sentencepieces_ids_for_every_text(family, reference_tokenizer):
    tokenizer = load_base(family[3]).tokenizer
    texts = ref.corpus(seed=7)[:400] + [
        "", "\n", "   ", "  two leading spaces", "trailing   ", "a\n\nb\n", "tabs\t\there", "    if x:\n        y = 1\n",
        "攻击者 使用 钓鱼邮件。", "mixed 中文 and English 0123456789", "emoji 🔐 ¼ ﬁ ⟨∮⟩", "ＡＢＣ fullwidth",
        "[Round 1]\n\n问：你好\n\n答：", "<|user|> pretends a turn <|assistant|>", "[gMASK]sop the SOP for sop",
        "</s> and <unk> typed in"]
    for text in texts:
        expected = reference_tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True) == expected, repr(text)
        assert tokenizer.decode(expected) == reference_tokenizer.decode(expected), repr(text)
    plain = "the SOP says: sop, [Round 2] 问：密码 rotation"  # no special token's spelling: equal as it is
    assert tokenizer.encode(plain, add_special_tokens=False) == reference_tokenizer.encode(plain, add_special_tokens=False)


def test_a_sentencepiece_model_that_collapses_whitespace_is_followed(work):
    import sentencepiece

    model = ref.train_sentencepiece(work / "collapsing.model", remove_extra_whitespaces=True)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(model))
    fast = build_fast_tokenizer(model, FAMILIES["chatglm2"], 2048)
    for text in ["  spaced   out  words ", "a    b", "\tx  y\n  z", "横向   移动  "] + ref.corpus(seed=3)[:100]:
        assert fast.encode(text, add_special_tokens=False) == sp.encode(text), repr(text)


@pytest.mark.parametrize("flags, says", [
    ({"user_defined_symbols": ["<sec>"]}, "user-defined symbols (<sec>)"),
    ({"model_type": "unigram"}, "not BPE"),
    ({"byte_fallback": False}, "byte_fallback is off"),
], ids=["user-defined", "unigram", "no-byte-fallback"])
def test_a_tokenizer_secbot_cannot_reproduce_exactly_is_refused(work, flags, says):
    model = ref.train_sentencepiece(work / f"odd-{'-'.join(flags)}.model", **flags)
    with pytest.raises(ConversionRefused, match=__import__("re").escape(says)):
        build_fast_tokenizer(model, FAMILIES["chatglm3"], 2048)


def test_generation_stops_where_the_family_ends_an_answer(family):
    name, _, _, dst = family
    config = json.loads((dst / "generation_config.json").read_text())
    tokenizer = load_base(dst).tokenizer
    stops = {tokenizer.eos_token_id} | ({tokenizer.convert_tokens_to_ids(t) for t in ("<|user|>", "<|observation|>")}
                                        if name == "chatglm3" else set())
    assert set(config["eos_token_id"]) == stops
    note = json.loads((dst / "secbot_conversion.json").read_text())
    assert note["family"] == name and note["source"] == str(family[2].resolve())


@pytest.mark.parametrize("projection", [False, True], ids=["prefix", "projected-prefix"])
def test_a_thudm_ptuning_checkpoint_gives_the_references_logits(family, reference_tokenizer, vocab, work, projection):
    name, base, _, dst = family
    tuned = ref.reference_model(ref.reference_config(name, vocab, pre_seq_len=8, prefix_projection=projection))
    tuned.load_state_dict(base.state_dict(), strict=False)
    ref.randomise(tuned.prefix_encoder, seed=11, std=0.5)
    checkpoint = ref.write_ptuning_checkpoint(work / f"{name}-ptuning-{projection}", tuned)
    adapter = convert_ptuning(checkpoint, work / f"{name}-adapter-{projection}", dst)
    engine = Engine.load(dst, adapter)
    moved = 0.0
    for query, history in CONVERSATIONS:
        ids = reference_ids(reference_tokenizer, name, query, history)
        expected = ref.reference_logits(tuned, ids)  # THUDM: real tokens from position 0 behind the prefix
        with torch.no_grad():
            ours = engine.adapters.model()(input_ids=torch.tensor([ids])).logits[0]
        assert (ours - expected).abs().max() < 1e-4, (query, history)
        moved = max(moved, float((expected - ref.reference_logits(base, ids)).abs().max()))
    assert moved > 0.5  # the prefix changes the answer: the check above could fail
    # The step decoder (batched serving) runs the same prefix: rows together equal rows alone.
    questions = [(q, [list(t) for t in h]) for q, h in CONVERSATIONS]
    assert engine.generate_batch(questions) == [engine.generate(q, h) for q, h in questions]


def test_batched_answers_equal_sequential_ones_on_a_converted_model(family):
    engine = Engine.load(family[3])
    questions = [(q, [list(t) for t in h]) for q, h in CONVERSATIONS]
    alone = [engine.generate(q, h) for q, h in questions]
    assert engine.generate_batch(questions) == alone and any(alone)


def test_convert_never_imports_or_runs_the_checkpoints_code(family):
    src = family[2]
    assert not (src / "EXECUTED").exists()
    assert not any(name in sys.modules for name in ("modeling_chatglm", "tokenization_chatglm", "configuration_chatglm"))
    assert not any(p.suffix == ".py" for p in family[3].iterdir())  # and copies none of it


def _edit_config(src, **changes):
    config = json.loads((src / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (src / "config.json").write_text(json.dumps(config))


V1_CONFIG = {"model_type": "chatglm", "architectures": ["ChatGLMModel"], "hidden_size": 4096, "inner_hidden_size": 16384,
             "num_layers": 28, "num_attention_heads": 32, "position_encoding_2d": True, "vocab_size": 130528,
             "max_sequence_length": 2048, "bos_token_id": 130004, "eos_token_id": 130005}


@pytest.mark.parametrize("break_it, says", [
    (lambda src: _edit_config(src, apply_residual_connection_post_layernorm=True),
     "apply_residual_connection_post_layernorm is True"),
    (lambda src: _edit_config(src, multi_query_attention=None), "multi_query_attention is False"),
    (lambda src: _edit_config(src, quantization_bit=4), "unquantized"),
    (lambda src: (src / "pytorch_model-00002-of-00002.bin").unlink(), "missing weight shard pytorch_model-00002-of-00002.bin"),
    (lambda src: _edit_config(src, model_type="llama"), "model_type 'llama' is not a ChatGLM2/3"),
    (lambda src: (src / "config.json").write_text(json.dumps(V1_CONFIG)), "ChatGLM-6B (v1)"),
    (lambda src: _edit_config(src, rope_ratio=16), "rope_ratio is 16"),
    (lambda src: _edit_config(src, num_layers=3), "missing transformer.encoder.layers.2"),
], ids=["flag", "missing-flag", "quantized", "missing-shard", "architecture", "chatglm-6b", "rope-unknown", "weights"])
def test_what_cannot_convert_is_refused_by_name_and_nothing_is_written(work, sp_model, vocab, break_it, says):
    src = work / f"broken-{says[:12].replace(' ', '_')}"
    shutil.rmtree(src, ignore_errors=True)
    ref.write_checkpoint(src, "chatglm3", ref.reference_model(ref.reference_config("chatglm3", vocab)), sp_model)
    break_it(src)
    dst = work / f"{src.name}-out"
    with pytest.raises(ConversionRefused, match=__import__("re").escape(says)):
        convert(src, dst, **QUIET)
    assert not dst.exists() and not dst.with_name(dst.name + ".partial").exists()


def test_a_complete_format_is_used_when_the_other_lacks_a_shard_and_an_existing_output_is_never_touched(
        work, sp_model, vocab, tmp_path):
    model = ref.reference_model(ref.reference_config("chatglm3", vocab))
    src = ref.write_checkpoint(tmp_path / "both", "chatglm3", model, sp_model)  # sharded torch files
    safetensors = ref.write_checkpoint(tmp_path / "st", "chatglm3", model, sp_model, safetensors=True)
    shutil.copy(safetensors / "model.safetensors.index.json", src)  # and a safetensors index whose shards are absent
    (src / "model-00002-of-00002.safetensors").write_bytes((safetensors / "model-00002-of-00002.safetensors").read_bytes())
    dst = convert(src, tmp_path / "out", **QUIET)
    assert json.loads((dst / "secbot_conversion.json").read_text())["source_weights"][0].startswith("pytorch_model")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("ours")
    with pytest.raises(ConversionRefused, match="already exists and is not empty"):
        convert(src, taken, **QUIET)
    assert [p.name for p in taken.iterdir()] == ["notes.txt"] and (taken / "notes.txt").read_text() == "ours"


@pytest.mark.parametrize("code, rope", [
    ("base = base * self.rope_ratio", {"rope_theta": 500000.0}),  # ChatGLM3-6B-32k's way
    ("seq_idx = torch.arange(seq_len, dtype=torch.float) / self.rope_ratio",  # positions interpolated
     {"rope_theta": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 50.0}}),
], ids=["scales-base", "scales-positions"])
def test_rope_ratio_follows_what_the_checkpoints_code_says_read_as_text(work, sp_model, vocab, code, rope, tmp_path):
    src = ref.write_checkpoint(tmp_path / "rope", "chatglm3",
                               ref.reference_model(ref.reference_config("chatglm3", vocab)), sp_model)
    _edit_config(src, rope_ratio=50)
    trap = (src / "modeling_chatglm.py").read_text()
    (src / "modeling_chatglm.py").write_text(f"{trap}\n# {code}\n")
    config = json.loads((convert(src, tmp_path / "rope-hf", **QUIET) / "config.json").read_text())
    assert {k: config.get(k) for k in rope} == rope and not (src / "EXECUTED").exists()


def test_the_command_line_converts_and_refuses_in_one_line(work, family, sp_model, vocab, tmp_path):
    name, _, src, _ = family
    out = secbot("convert", str(src), str(tmp_path / "cli-hf"), env={"SECBOT_DATA_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert f"SECBOT_MODEL={tmp_path / 'cli-hf'}" in out.stdout
    v1 = tmp_path / "chatglm-6b"
    v1.mkdir()
    (v1 / "config.json").write_text(json.dumps(V1_CONFIG))
    out = secbot("convert", str(v1), str(tmp_path / "v1-hf"), env={"SECBOT_DATA_DIR": str(tmp_path)})
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "secbot import" in out.stderr
    assert not (tmp_path / "v1-hf").exists()


def test_loading_an_unconverted_chatglm_says_to_convert_it(family):
    with pytest.raises(RemoteCodeRequired, match="secbot convert"):
        load_base(family[2])


# -- the converted model in secbot's loop ------------------------------------------------------
@pytest.fixture(scope="module")
def trainable(work, sp_model, vocab):
    """A converted ChatGLM3 of the tiny reference model's training size (hidden 256, 4 layers),
    where P-tuning on a CPU reproduces its records in seconds."""
    config = ref.reference_config("chatglm3", vocab, num_layers=4, hidden_size=256, ffn_hidden_size=512,
                                  kv_channels=64, num_attention_heads=4, multi_query_group_num=2)
    src = ref.write_checkpoint(work / "trainable-src", "chatglm3", ref.reference_model(config, seed=3), sp_model)
    return convert(src, work / "trainable-hf", **QUIET)


@pytest.mark.parametrize("method", ["ptuning", "lora"])
def test_a_training_run_on_a_converted_model_memorises_its_records(trainable, work, method):
    from test_training import GREEDY, LORA, PTUNING, RECORDS, SYSTEM

    from secbot.model.training.evaluation import evaluate
    from secbot.model.training.trainer import TrainConfig, train

    untrained = Engine.load(trainable, system_prompt=SYSTEM)
    assert evaluate(untrained, RECORDS, sampling=GREEDY)[0]["exact_match"] == 0.0
    config = TrainConfig.of(**PTUNING.flat() | {"max_steps": 300}) if method == "ptuning" else LORA
    result = train(trainable, RECORDS, work / method, config, system_prompt=SYSTEM, progress=False)
    engine = Engine.load(trainable, result.adapter_dir, system_prompt=SYSTEM)
    metrics, _ = evaluate(engine, RECORDS, sampling=GREEDY)
    assert metrics["exact_match"] >= 90.0, metrics  # THUDM's metrics on what it answers
    assert metrics["rouge-l"] > 90.0


def test_secbot_chat_answers_on_a_converted_model(trainable, tmp_path):
    out = secbot("chat", "--model", str(trainable), stdin="如何检测横向移动？\nstop\n",
                 env={"SECBOT_DATA_DIR": str(tmp_path), "SECBOT_MAX_NEW_TOKENS": "12"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("secbot> ") == 1 and out.stdout.split("secbot> ", 1)[1].strip()


def test_a_converted_ptuning_adapter_becomes_a_version_rollback_returns_to(family, vocab, trainable, tmp_path):
    name, base, _, dst = family
    tuned = ref.reference_model(ref.reference_config(name, vocab, pre_seq_len=4))
    tuned.load_state_dict(base.state_dict(), strict=False)
    checkpoint = ref.write_ptuning_checkpoint(tmp_path / "checkpoint-3000", tuned)
    env = {"SECBOT_DATA_DIR": str(tmp_path), "SECBOT_MODEL": str(dst)}
    out = secbot("convert-ptuning", str(checkpoint), str(tmp_path / "adapter"), "--model", str(dst), "--activate",
                 env=env)
    assert out.returncode == 0, out.stderr
    assert f"SECBOT_ADAPTER={tmp_path / 'adapter'}" in out.stdout and "Version 1 " in out.stdout
    assert secbot("rollback", env=env).returncode == 0  # back to the base model
    out = secbot("rollback", "1", env=env)
    assert out.returncode == 0 and "version 1" in out.stdout.lower(), out.stdout + out.stderr
    wrong = secbot("convert-ptuning", str(checkpoint), str(tmp_path / "again"), "--model", str(trainable),
                   env=env)
    assert wrong.returncode == 2 and "trained on another model" in wrong.stderr and not (tmp_path / "again").exists()


def test_streamed_text_adds_up_to_the_decode_for_any_token_sequence(family):
    """SentencePiece's byte-fallback pieces decode as one run: a later byte can turn earlier ones into
    U+FFFD, so a stream must not show a byte before its run ends."""
    import random

    from secbot.model.runtime.generation import TextDeltas, drain

    tokenizer, rng = load_base(family[3]).tokenizer, random.Random(0)
    byte_ids = [i for i in range(len(tokenizer)) if tokenizer.convert_ids_to_tokens(i).startswith("<0x")]
    vocab = list(range(len(tokenizer)))
    for _ in range(300):  # random ids, half of them bytes: split characters, stray and invalid bytes
        ids = [rng.choice(byte_ids if rng.random() < 0.5 else vocab) for _ in range(rng.randint(1, 30))]
        deltas = TextDeltas(tokenizer, set(), limit=len(ids))
        for token in ids:
            deltas.add(token)
        assert "".join(drain(deltas.out)) == tokenizer.decode(ids, skip_special_tokens=True), ids


def test_serve_model_serves_a_converted_model_with_its_thudm_prefix_batched_as_alone(family, vocab, work, tmp_path):
    """`secbot serve-model --adapter OUT`: concurrent requests (continuous batching, the step
    decoder) get the in-process engine's sequential answers, with THUDM's prefix applied."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    from servers import clean_env, free_port, secbot_server

    from secbot.model.runtime.generation import Sampling

    name, base, _, dst = family
    tuned = ref.reference_model(ref.reference_config(name, vocab, pre_seq_len=8, prefix_projection=True))
    tuned.load_state_dict(base.state_dict(), strict=False)
    ref.randomise(tuned.prefix_encoder, seed=13, std=0.5)
    adapter = convert_ptuning(ref.write_ptuning_checkpoint(tmp_path / "checkpoint", tuned), tmp_path / "adapter", dst)
    local = Engine.load(dst, adapter, system_prompt="You are secbot.", sampling=Sampling(max_new_tokens=16))
    expected = [local.generate(q, [list(t) for t in h]) for q, h in CONVERSATIONS]
    port = free_port()
    env = clean_env(SECBOT_MAX_NEW_TOKENS="16", SECBOT_DATA_DIR=str(tmp_path), SECBOT_SYSTEM_PROMPT="You are secbot.")
    url = f"http://127.0.0.1:{port}"

    def ask(conversation):
        query, history = conversation
        messages = [{"role": "system", "content": "You are secbot."}] + [
            {"role": role, "content": text} for q, a in history for role, text in (("user", q), ("assistant", a))
        ] + [{"role": "user", "content": query}]
        response = httpx.post(url + "/v1/chat/completions", json={"model": "secbot", "messages": messages},
                              timeout=120)
        assert response.status_code == 200, response.text
        return response.json()["choices"][0]["message"]["content"]

    with secbot_server(["serve-model", "--model", str(dst), "--adapter", str(adapter), "--host", "127.0.0.1",
                        "--port", str(port)], env, url + "/health"):
        with ThreadPoolExecutor(len(CONVERSATIONS)) as pool:
            assert list(pool.map(ask, CONVERSATIONS)) == expected
