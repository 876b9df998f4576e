"""A fast tokenizer whose ids equal a ChatGLM SentencePiece model's, for every text.

Built with `tokenizers` from the SentencePiece model's own pieces and merges (transformers'
`SentencePieceExtractor`, merges ordered by piece score as SentencePiece's BPE applies them) and
its normalizer flags read from the model file: byte fallback, the "▁" prefix SentencePiece adds to
every text, spaces as "▁", whitespace runs kept (or collapsed, where the model says so). The
family's special tokens follow the vocabulary, as in THUDM's tokenizers.

An analyst's text that contains a special token's spelling (`<|user|>`) is text to THUDM's
tokenizer; encode it with `split_special_tokens=True` to get the same ids.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from secbot.model.conversion.families import Family
from secbot.model.errors import ConversionRefused

SPIECE_UNDERLINE = "▁"
BPE = 2  # sentencepiece_model.proto TrainerSpec.ModelType
USER_DEFINED = 4  # ModelProto.SentencePiece.Type


def _proto(model_file: Path):
    try:
        from sentencepiece import sentencepiece_model_pb2 as model_pb2
    except ImportError as exc:
        raise ConversionRefused(f"reading {model_file.name} needs protobuf and sentencepiece: "
                                "pip install 'secbot[chatglm]'") from exc
    proto = model_pb2.ModelProto()
    try:
        proto.ParseFromString(model_file.read_bytes())
    except Exception as exc:  # protobuf's DecodeError, or a file that is not a model at all
        raise ConversionRefused(f"{model_file}: not a SentencePiece model ({type(exc).__name__}). "
                                "Copy tokenizer.model again from where the checkpoint came from.") from None
    return proto


def build_fast_tokenizer(model_file: str | Path, family: Family, max_length: int):
    """The `PreTrainedTokenizerFast` for `model_file` with `family`'s special tokens and chat template."""
    try:
        import sentencepiece  # noqa: F401  (transformers' extractor reads the model through it)
    except ImportError as exc:
        raise ConversionRefused("reading tokenizer.model needs sentencepiece: pip install 'secbot[chatglm]'") from exc
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    model_file = Path(model_file)
    proto = _proto(model_file)
    spec, trainer = proto.normalizer_spec, proto.trainer_spec
    if trainer.model_type != BPE:
        raise ConversionRefused(f"{model_file}: a SentencePiece model of type {trainer.model_type}, not BPE as "
                                "ChatGLM2/3 ship; this is not a ChatGLM tokenizer.")
    if not trainer.byte_fallback:
        raise ConversionRefused(f"{model_file}: byte_fallback is off, unlike ChatGLM2/3's tokenizer; "
                                "this is not a ChatGLM tokenizer.")
    user_defined = [p.piece for p in proto.pieces if p.type == USER_DEFINED]
    if user_defined:  # matched whole before SentencePiece's "▁" prefix, which `tokenizers` cannot mirror exactly
        raise ConversionRefused(
            f"{model_file}: user-defined symbols ({', '.join(user_defined[:5])}) are not part of ChatGLM2/3's "
            "tokenizer, and secbot cannot reproduce their ids exactly; convert the checkpoint's original "
            "tokenizer.model.")
    extractor = importlib.import_module("transformers.convert_slow_tokenizer").SentencePieceExtractor
    scores = {piece.piece: piece.score for piece in proto.pieces}
    vocab, merges = extractor(str(model_file)).extract(scores)
    unk = proto.pieces[trainer.unk_id].piece
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    steps = []
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        from tokenizers import Regex

        # SentencePiece trims and collapses ASCII spaces only (tabs and newlines stay).
        steps += [normalizers.Replace(Regex(r"\A +| +\z"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend(SPIECE_UNDERLINE))
    steps.append(normalizers.Replace(" ", SPIECE_UNDERLINE))
    tok.normalizer = normalizers.Sequence(steps)
    undo = [decoders.Replace(SPIECE_UNDERLINE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if spec.add_dummy_prefix:
        undo.append(decoders.Strip(content=" ", left=1))
    tok.decoder = decoders.Sequence(undo)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in family.specials])
    eos = proto.pieces[trainer.eos_id].piece if trainer.eos_id >= 0 else None
    if eos is None:
        raise ConversionRefused(f"{model_file}: the SentencePiece model has no end-of-sequence piece.")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token=unk, eos_token=eos, pad_token=unk,
        additional_special_tokens=list(family.specials), chat_template=family.chat_template,
        clean_up_tokenization_spaces=False, padding_side="left", model_max_length=max_length)
    expected = family.special_ids(len(vocab))
    got = dict(zip(family.specials, fast.convert_tokens_to_ids(list(family.specials))))
    if got != expected:  # a piece that spells a special token would shift every id after it
        raise ConversionRefused(f"{model_file}: its vocabulary already holds a special token's spelling "
                                f"({', '.join(t for t in got if got[t] != expected[t])}); not a ChatGLM tokenizer.")
    return fast
