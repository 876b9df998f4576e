import threading

import torch

from secbot.model.runtime.generation import Sampling

QUERIES = [("What is phishing?", []),
           ("怎么防御？", [["什么是XSS？", "跨站脚本攻击。"]]),
           ("And ransomware?", [["q0", "a0"], ["What is MFA?", "A second factor."]])]


def test_streaming_text_equals_greedy_text(engine):
    sampling = Sampling(max_new_tokens=40)
    for query, history in QUERIES:
        deltas = list(engine.stream(query, history, sampling))
        assert len(deltas) > 1
        assert "".join(deltas) == engine.generate(query, history, sampling)


def test_batch_equals_single_greedy(engine):
    sampling = Sampling(max_new_tokens=24)
    requests = QUERIES * 3  # prompts of different lengths, so left padding is exercised
    batched = engine.generate_batch(requests, sampling)
    assert batched == [engine.generate(q, h, sampling) for q, h in requests]


def test_max_new_tokens_bounds_the_answer(engine):
    sampling = Sampling(max_new_tokens=7)
    streamer = engine.generate_streams([engine.prompt_ids("hi", [], sampling)], [7], sampling)
    assert streamer.tokens(0) == 7


def test_generation_stops_at_eos(fresh_engine):
    eos = fresh_engine.tokenizer.convert_tokens_to_ids("<|user|>")
    steps = []

    def prefer_eos_after_three(module, args, logits):
        steps.append(1)
        if len(steps) > 3:
            logits[..., eos] += 1e4
        return logits

    fresh_engine.loaded.model.lm_head.register_forward_hook(prefer_eos_after_three)
    sampling = Sampling(max_new_tokens=50)
    streamer = fresh_engine.generate_streams([fresh_engine.prompt_ids("hi", [], sampling)], [50], sampling)
    assert streamer.tokens(0) == 3 and eos not in streamer.rows[0].ids  # three tokens, then the end


def test_sampling_is_reproducible_for_a_seed_and_differs_from_greedy(engine):
    sampling = Sampling(max_new_tokens=30, do_sample=True, top_p=0.95, temperature=1.5)
    torch.manual_seed(3)
    first = engine.generate("What is phishing?", [], sampling)
    torch.manual_seed(3)
    assert engine.generate("What is phishing?", [], sampling) == first
    assert first != engine.generate("What is phishing?", [], Sampling(max_new_tokens=30))


def test_long_history_is_truncated_from_the_oldest_turn(engine):
    sampling = Sampling(max_new_tokens=engine.context_length() - 60)
    history = [[f"first question {'x ' * 30}", "first answer"], ["last question", "last answer"]]
    text = engine.tokenizer.decode(engine.prompt_ids("now?", history, sampling))
    assert "first question" not in text and "last question" in text
    assert engine.generate("now?", history, Sampling(max_new_tokens=5)) is not None


def test_closing_a_stream_stops_generation_and_frees_the_engine(engine):
    stream = engine.stream("What is phishing?", [], Sampling(max_new_tokens=2000))
    next(stream)
    stream.close()
    done = threading.Event()
    threading.Thread(target=lambda: (engine.generate("hi", [], Sampling(max_new_tokens=2)),
                                     done.set()), daemon=True).start()
    assert done.wait(60), "a closed stream kept the engine busy"


def test_text_deltas_add_up_to_the_decode_for_any_token_sequence(engine):
    import random

    from secbot.model.runtime.generation import TextDeltas, drain

    tokenizer, rng = engine.tokenizer, random.Random(0)
    eos = engine.eos_ids()
    vocab = [i for i in range(len(tokenizer)) if i not in eos]
    for _ in range(300):  # random ids: split multi-byte characters, stray continuation bytes
        ids = [rng.choice(vocab) for _ in range(rng.randint(1, 60))]
        deltas = TextDeltas(tokenizer, eos, limit=len(ids))
        for token in ids:
            deltas.add(token)
        pieces = list(drain(deltas.out))
        assert "".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True)
        assert all(not piece.endswith("\ufffd") for piece in pieces[:-1])


def test_the_templates_lead_is_held_back_and_left_out(engine):
    """GLM-4's template has the model write "\\n" before the answer: nobody is shown it."""
    from secbot.model.runtime.generation import END, TextDeltas

    tok = engine.tokenizer
    for written, shown in (("\nEscape output.", "Escape output."), ("No lead here.", "No lead here.")):
        deltas = TextDeltas(tok, eos_ids=set(), limit=1000, lead="\n")
        for token in tok.encode(written, add_special_tokens=False):
            deltas.add(token)
        deltas.finish()
        pieces = []
        while (piece := deltas.out.get_nowait()) is not END:
            pieces.append(piece)
        assert "".join(pieces) == shown == deltas.text
