import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from secbot.model.errors import ModelFilesError, RemoteCodeRequired
from secbot.model.runtime.loading import load_base, pick_device, pick_dtype
from secbot.model.runtime.tiny import build_tiny_model


def test_tiny_model_round_trips_through_disk(tiny_dir, tmp_path):
    first = load_base(tiny_dir)
    assert type(first.model).__name__ == "GlmForCausalLM"
    first.model.save_pretrained(tmp_path / "copy")
    first.tokenizer.save_pretrained(tmp_path / "copy")
    second = load_base(tmp_path / "copy")
    ids = torch.tensor([first.tokenizer.encode("What is phishing? 什么是钓鱼攻击？")])
    with torch.no_grad():
        assert torch.equal(first.model(ids).logits, second.model(ids).logits)
    assert second.tokenizer.chat_template == first.tokenizer.chat_template
    assert second.tokenizer.encode("横向移动 lateral") == first.tokenizer.encode("横向移动 lateral")


def test_tiny_model_is_deterministic_for_a_seed(tiny_dir, tmp_path):
    again = build_tiny_model(tmp_path / "again", seed=0)
    other = build_tiny_model(tmp_path / "other", seed=1)
    a, b, c = (load_file(d / "model.safetensors") for d in (tiny_dir, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert (tiny_dir / "tokenizer.json").read_bytes() == (again / "tokenizer.json").read_bytes()


def test_missing_directory_names_the_path(tmp_path):
    with pytest.raises(ModelFilesError, match="no such directory") as err:
        load_base(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_incomplete_directory_lists_what_is_missing(tiny_dir, tmp_path):
    target = tmp_path / "partial"
    target.mkdir()
    shutil.copy(tiny_dir / "config.json", target)
    with pytest.raises(ModelFilesError) as err:
        load_base(target)
    message = str(err.value)
    assert str(target) in message and "weights" in message and "tokenizer" in message
    assert "config.json" not in message.split(":", 1)[1].split(".")[0]


def test_missing_shard_is_named(tiny_dir, tmp_path):
    target = tmp_path / "sharded"
    shutil.copytree(tiny_dir, target)
    (target / "model.safetensors").unlink()
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    (target / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFilesError, match="model-00001-of-00002.safetensors"):
        load_base(target)


def test_a_checkpoint_with_its_own_model_code_is_refused_with_what_to_use(tiny_dir, tmp_path):
    target = tmp_path / "chatglm"
    shutil.copytree(tiny_dir, target)
    config = json.loads((target / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration"}
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(RemoteCodeRequired, match="glm-4-9b-chat-hf"):
        load_base(target)


def test_dtype_follows_device():
    assert pick_dtype(torch.device("cpu")) is torch.float32
    assert pick_dtype(torch.device("cpu"), "bf16") is torch.bfloat16
    assert pick_device("cpu").type == "cpu"
