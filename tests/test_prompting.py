import copy
from pathlib import Path

import pytest

from secbot.model.runtime.prompting import ContextOverflow, NoChatTemplate, PromptBuilder

TEMPLATES = Path(__file__).parent / "fixtures" / "templates"
GLM4_TEMPLATES = ["glm-4-9b-chat.jinja", "glm-4-0414.jinja"]


def with_template(tokenizer, name: str):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = (TEMPLATES / name).read_text(encoding="utf-8")
    return tok


def test_tiny_template_renders_like_glm4(engine):
    builder = PromptBuilder(engine.tokenizer, "You are secbot.")
    assert builder.text("q1", [["q0", "a0"]]) == (
        "[gMASK]<sop><|system|>\nYou are secbot.<|user|>\nq0<|assistant|>\na0"
        "<|user|>\nq1<|assistant|>")
    ids = builder.ids("q1")
    gmask = engine.tokenizer.convert_tokens_to_ids("[gMASK]")
    assert ids.count(gmask) == 1 and ids[0] == gmask


@pytest.mark.parametrize("name", GLM4_TEMPLATES + [None])
def test_training_target_is_what_the_template_puts_after_the_generation_prompt(engine, name):
    """Upstream GLM-4 layout: the answer turn is <|assistant|>\\n{answer}, ended by the next
    turn's <|user|>; the target is everything after the generation prompt up to that token."""
    tok = with_template(engine.tokenizer, name) if name else engine.tokenizer
    builder = PromptBuilder(tok, "You are secbot.")
    history = [["What is XSS?", "Cross-site scripting."]]
    prompt = builder.ids("怎么防御？", history)
    target = builder.answer_ids("怎么防御？", history, "Escape output; set a CSP.")
    user = tok.convert_tokens_to_ids("<|user|>")
    assert builder.lead == "\n" and target[-1] == user
    # The whole training sequence is exactly the upstream rendering of the conversation that
    # continues with a next user turn, cut right after that turn's <|user|>.
    continued = tok.apply_chat_template(
        [{"role": "system", "content": "You are secbot."}, {"role": "user", "content": "What is XSS?"},
         {"role": "assistant", "content": "Cross-site scripting."}, {"role": "user", "content": "怎么防御？"},
         {"role": "assistant", "content": "Escape output; set a CSP."}, {"role": "user", "content": "next"}],
        tokenize=False)
    expected = continued[: continued.rindex("<|user|>") + len("<|user|>")]
    assert tok.decode(prompt + target) == expected
    assert tok.decode(target) == "\nEscape output; set a CSP.<|user|>"
    # Inference sees the same prompt ids; what the model writes first ("\n") is the template's lead,
    # which the text streamers hold back (tests/test_generation.py).
    assert builder.lead == "\n"


def test_a_template_that_strips_answers_gives_the_stripped_target(engine):
    builder = PromptBuilder(with_template(engine.tokenizer, "glm-4-0414.jinja"))
    target = builder.answer_ids("q", [], "  padded answer \n")
    assert engine.tokenizer.decode(target) == "\npadded answer<|user|>"


def test_a_template_that_closes_its_own_turns_ends_the_target_there(engine):
    tok = copy.deepcopy(engine.tokenizer)
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|endoftext|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    builder = PromptBuilder(tok)
    assert builder.lead == ""
    target = builder.answer_ids("q", [], "an answer")
    assert tok.decode(target) == "an answer<|endoftext|>"


def test_answer_target_is_cut_to_fit_and_keeps_the_end_of_turn(engine):
    builder = PromptBuilder(engine.tokenizer)
    target = builder.answer_ids("q", [], "word " * 100, max_tokens=10)
    assert len(target) == 10 and target[-1] == engine.tokenizer.convert_tokens_to_ids("<|user|>")


def test_a_model_without_a_chat_template_is_refused_with_what_to_do(engine):
    tok = copy.deepcopy(engine.tokenizer)
    tok.chat_template = None
    with pytest.raises(NoChatTemplate, match="GLM-4"):
        PromptBuilder(tok)


def test_fit_drops_oldest_turns_first(engine):
    builder = PromptBuilder(engine.tokenizer, "You are secbot.")
    history = [[f"old question {i} " * 5, f"old answer {i} " * 5] for i in range(3)]
    full = builder.ids("newest?", history)
    budget = len(builder.ids("newest?", history[1:]))
    ids, dropped = builder.fit("newest?", history, budget)
    assert len(ids) < len(full) and dropped == 1
    text = engine.tokenizer.decode(ids)
    assert "old question 0" not in text and "old question 2" in text and "newest?" in text


def test_fit_never_cuts_the_question_unless_training_asks(engine):
    builder = PromptBuilder(engine.tokenizer)
    with pytest.raises(ContextOverflow) as caught:
        builder.fit("word " * 500, [["q", "a"]], 40)
    assert caught.value.limit == 40 and caught.value.prompt_tokens > 40
    ids, _ = builder.fit("word " * 500, [["q", "a"]], 40, truncate=True)
    assert len(ids) <= 40
    assert engine.tokenizer.decode(ids).startswith("[gMASK]<sop><|user|>")
