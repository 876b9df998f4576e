import pytest
from peft import LoraConfig, PrefixTuningConfig, TaskType, get_peft_model

from secbot.model.errors import ModelFilesError
from secbot.model.runtime.generation import Sampling
from secbot.model.runtime.loading import load_base

GREEDY = Sampling(max_new_tokens=16)


def make_adapter(tiny_dir, out, config, seed):
    import torch

    torch.manual_seed(seed)
    peft_model = get_peft_model(load_base(tiny_dir).model, config)
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    prefix = lambda: PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=8)
    lora = LoraConfig(task_type=TaskType.CAUSAL_LM, r=4, target_modules=["q_proj", "v_proj"],
                      init_lora_weights=False)
    return {"prefix1": make_adapter(tiny_dir, root / "p1", prefix(), 1),
            "prefix2": make_adapter(tiny_dir, root / "p2", prefix(), 2),
            "lora": make_adapter(tiny_dir, root / "lora", lora, 3)}


def answer(engine):
    return engine.generate("What is lateral movement?", [], GREEDY)


def test_switching_adapters_changes_output_and_switching_back_restores_it(fresh_engine, adapters):
    base = answer(fresh_engine)
    fresh_engine.use_adapter(adapters["prefix1"])
    one = answer(fresh_engine)
    fresh_engine.use_adapter(adapters["prefix2"])
    two = answer(fresh_engine)
    assert len({base, one, two}) == 3
    fresh_engine.use_adapter(adapters["prefix1"])
    assert answer(fresh_engine) == one
    fresh_engine.use_adapter(None)
    assert answer(fresh_engine) == base


def test_switching_between_lora_and_prefix_keeps_the_base_intact(fresh_engine, adapters):
    base = answer(fresh_engine)
    fresh_engine.use_adapter(adapters["lora"])
    lora = answer(fresh_engine)
    fresh_engine.use_adapter(None)
    assert answer(fresh_engine) == base
    fresh_engine.use_adapter(adapters["prefix1"])
    prefix = answer(fresh_engine)
    fresh_engine.use_adapter(adapters["lora"])
    assert answer(fresh_engine) == lora
    assert len({base, lora, prefix}) == 3, (base, lora, prefix)  # each adapter changes the answer its own way
    fresh_engine.use_adapter(None)
    assert answer(fresh_engine) == base
    assert fresh_engine.adapter is None


def test_missing_adapter_files_are_named(fresh_engine, tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelFilesError, match="adapter weights"):
        fresh_engine.use_adapter(tmp_path)
    with pytest.raises(ModelFilesError, match="no such directory"):
        fresh_engine.use_adapter(tmp_path / "nope")
