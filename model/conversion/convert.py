"""`secbot convert SRC DST`: a ChatGLM2-6B / ChatGLM3-6B checkpoint → a native GLM directory.

Every refusal comes before anything is written; the output is built in `DST.partial` and renamed
to DST when whole, so a failure leaves DST as it was. Weights go one source file at a time (one
output shard per input shard), so memory stays near one shard whatever the model's size.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from secbot.model.conversion.checkpoint import (
    IGNORED, Network, check_network, expected_names, native, read_config, read_tensors, tensor_names, weight_files)
from secbot.model.conversion.families import FAMILIES, Family, detect_family
from secbot.model.conversion.output import refuse_existing, written_whole
from secbot.model.conversion.tokenizer import build_fast_tokenizer
from secbot.model.errors import ConversionRefused

NOTE_FILE = "secbot_conversion.json"


def _names(files: list[Path]) -> set[str]:
    index = files[0].parent / "pytorch_model.bin.index.json"
    if files[0].suffix == ".bin" and len(files) > 1 and index.is_file():
        return set(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    return {name for f in files for name in tensor_names(f)}


def _check_names(src: Path, files: list[Path], net: Network) -> None:
    names = {n for n in _names(files) if not IGNORED.fullmatch(n)}
    wanted = expected_names(net)
    missing, unknown = sorted(wanted - names), sorted(names - wanted)
    if missing or unknown:
        what = "; ".join(part for part in (
            f"missing {', '.join(missing[:3])}" + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            if missing else "",
            f"unexpected {', '.join(unknown[:3])}" + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
            if unknown else "") if part)
        raise ConversionRefused(f"{src}: its weights do not match its config ({what}). "
                                "Copy the whole checkpoint again; a P-tuning checkpoint converts with "
                                "`secbot convert-ptuning`.")


def plan(src: str | Path, family: str | None = None) -> tuple[Path, dict, Network, Family, list[Path]]:
    """Everything `convert` checks before writing: (src, config, network, family, weight files)."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise ConversionRefused(f"{src}: no such directory; point at a ChatGLM2/3-6B checkpoint directory.")
    config = read_config(src)
    net = check_network(src, config)
    if family is not None and family not in FAMILIES:
        raise ConversionRefused(f"--family must be one of {', '.join(FAMILIES)}, not {family!r}.")
    tokenizer_config = {}
    if (src / "tokenizer_config.json").is_file():
        try:
            tokenizer_config = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8"))
        except ValueError:
            raise ConversionRefused(f"{src}/tokenizer_config.json is not JSON; copy it again.") from None
    fam = FAMILIES[family] if family else detect_family(src, config, tokenizer_config)
    if not (src / "tokenizer.model").is_file():
        raise ConversionRefused(f"{src}: no tokenizer.model (the SentencePiece model ChatGLM2/3 ship).")
    files = weight_files(src)
    _check_names(src, files, net)
    return src, config, net, fam, files


def convert(src: str | Path, dst: str | Path, family: str | None = None,
            progress: Callable[[str], None] | None = None) -> Path:
    """Convert the checkpoint at `src` into a `save_pretrained`-style directory `dst`; returns `dst`."""
    from safetensors.torch import save_file
    from transformers import GenerationConfig, GlmConfig

    say = progress or (lambda line: print(line, file=sys.stderr))
    dst = Path(dst).expanduser()
    refuse_existing(dst)
    src, config, net, fam, files = plan(src, family)
    tokenizer = build_fast_tokenizer(src / "tokenizer.model", fam, config["seq_length"])
    if len(tokenizer) > net.vocab:
        raise ConversionRefused(f"{src}: the tokenizer has {len(tokenizer)} tokens but the model only "
                                f"{net.vocab} embeddings; tokenizer.model belongs to another checkpoint.")
    eos = [tokenizer.eos_token_id] + tokenizer.convert_tokens_to_ids(list(fam.stop_tokens))
    with written_whole(dst) as partial:
        weight_map, total, dtype = {}, 0, None
        for i, path in enumerate(files, 1):
            shard = "model.safetensors" if len(files) == 1 else f"model-{i:05d}-of-{len(files):05d}.safetensors"
            out = {}
            for name, tensor in read_tensors(path):
                if IGNORED.fullmatch(name):
                    continue
                for new, value in native(name, tensor, net):
                    out[new] = value.contiguous()
                    dtype = dtype or value.dtype
            save_file(out, str(partial / shard), metadata={"format": "pt"})
            weight_map |= dict.fromkeys(out, shard)
            total += sum(t.numel() * t.element_size() for t in out.values())
            del out
            say(f"converted {path.name} ({i}/{len(files)})")
        if len(files) > 1:
            (partial / "model.safetensors.index.json").write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2))
        glm = GlmConfig(**net.glm_config, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos,
                        bos_token_id=None, architectures=["GlmForCausalLM"], dtype=dtype)
        glm.save_pretrained(partial)
        GenerationConfig(eos_token_id=eos, pad_token_id=tokenizer.pad_token_id).save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        (partial / NOTE_FILE).write_text(json.dumps({
            "converted_by": "secbot convert", "source": str(src.resolve()), "family": fam.name,
            "source_weights": [p.name for p in files], "rope": {k: v for k, v in net.glm_config.items()
                                                                 if k.startswith("rope")},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}, indent=2))
    size = f"{total / 2**30:.2f} GiB" if total >= 2**30 else f"{total / 2**20:.1f} MiB"
    say(f"wrote {dst} ({fam.name}, {net.layers} layers, {size})")
    return dst
