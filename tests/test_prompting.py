import pytest

from secbot.model.prompting import PromptBuilder, PromptFormat, chatglm2_prompt, chatglm_prompt, detect_format

H1 = [["什么是XSS？", "跨站脚本攻击。"]]
H3 = [["q0", "a0"], ["q1", "a1"], ["q2", "a2"]]


def test_chatglm6b_format_matches_thudm_byte_for_byte():
    assert chatglm_prompt("你好", []) == "你好"
    assert chatglm_prompt("怎么防御？", H1) == (
        "[Round 0]\n问：什么是XSS？\n答：跨站脚本攻击。\n[Round 1]\n问：怎么防御？\n答：")
    assert chatglm_prompt("q3", H3) == (
        "[Round 0]\n问：q0\n答：a0\n[Round 1]\n问：q1\n答：a1\n[Round 2]\n问：q2\n答：a2\n"
        "[Round 3]\n问：q3\n答：")


def test_chatglm2_format_matches_thudm_byte_for_byte():
    assert chatglm2_prompt("你好", []) == "[Round 1]\n\n问：你好\n\n答："
    assert chatglm2_prompt("怎么防御？", H1) == (
        "[Round 1]\n\n问：什么是XSS？\n\n答：跨站脚本攻击。\n\n[Round 2]\n\n问：怎么防御？\n\n答：")
    assert chatglm2_prompt("q3", H3) == (
        "[Round 1]\n\n问：q0\n\n答：a0\n\n[Round 2]\n\n问：q1\n\n答：a1\n\n"
        "[Round 3]\n\n问：q2\n\n答：a2\n\n[Round 4]\n\n问：q3\n\n答：")


def test_chat_template_path_uses_tokenizer_template_with_system_prompt(engine):
    builder = PromptBuilder(engine.tokenizer, PromptFormat.CHAT_TEMPLATE, "You are secbot.")
    assert builder.text("q1", [["q0", "a0"]]) == (
        "[gMASK]<sop><|system|>\nYou are secbot.<|user|>\nq0<|assistant|>\na0"
        "<|user|>\nq1<|assistant|>\n")
    ids = builder.ids("q1")
    gmask = engine.tokenizer.convert_tokens_to_ids("[gMASK]")
    assert ids.count(gmask) == 1 and ids[0] == gmask
    assert builder.answer_ids("a")[-1] == engine.tokenizer.eos_token_id


def test_detect_format(engine, tmp_path):
    assert detect_format(engine.tokenizer) is PromptFormat.CHAT_TEMPLATE

    class NoTemplate:
        chat_template = None

    (tmp_path / "config.json").write_text('{"model_type": "chatglm", "position_encoding_2d": true}')
    assert detect_format(NoTemplate(), tmp_path) is PromptFormat.CHATGLM
    (tmp_path / "config.json").write_text('{"model_type": "chatglm", "multi_query_attention": true}')
    assert detect_format(NoTemplate(), tmp_path) is PromptFormat.CHATGLM2


@pytest.mark.parametrize("fmt", list(PromptFormat))
def test_fit_drops_oldest_turns_first(engine, fmt):
    builder = PromptBuilder(engine.tokenizer, fmt, "You are secbot.")
    history = [[f"old question {i} " * 5, f"old answer {i} " * 5] for i in range(3)]
    full = builder.ids("newest?", history)
    budget = len(builder.ids("newest?", history[1:]))
    ids, dropped = builder.fit("newest?", history, budget)
    assert len(ids) < len(full) and dropped == 1
    text = engine.tokenizer.decode(ids)
    assert "old question 0" not in text and "old question 2" in text and "newest?" in text


def test_fit_cuts_an_overlong_query_and_keeps_the_template(engine):
    builder = PromptBuilder(engine.tokenizer, PromptFormat.CHAT_TEMPLATE, None)
    ids, _ = builder.fit("word " * 500, [["q", "a"]], 40)
    assert len(ids) <= 40
    assert engine.tokenizer.decode(ids).startswith("[gMASK]<sop><|user|>")
