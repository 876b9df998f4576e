"""How the bot reaches the model: the in-process engine built from settings."""

from __future__ import annotations

from pathlib import Path

from bot.settings import Settings
from model.engine import Engine
from model.generation import Sampling
from model.tiny import ensure_tiny_model


def resolve_model_dir(settings: Settings, model: str | None = None) -> Path:
    """A model directory from `--model`/SECBOT_MODEL; `tiny` is built under the data dir once."""
    name = model or settings.model
    if name == "tiny":
        return ensure_tiny_model(settings.data_dir / "tiny-model")
    return Path(name).expanduser()


def sampling_from(settings: Settings) -> Sampling:
    return Sampling(max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample,
                    top_p=settings.top_p, temperature=settings.temperature)


def load_engine(settings: Settings, model: str | None = None,
                adapter: str | Path | None = None) -> Engine:
    """The in-process engine, configured from settings; arguments override them."""
    return Engine.load(resolve_model_dir(settings, model), adapter or settings.adapter,
                       device=settings.device, dtype=settings.dtype,
                       trust_remote_code=settings.trust_remote_code,
                       prompt_format=settings.prompt_format,
                       system_prompt=settings.effective_system_prompt,
                       sampling=sampling_from(settings))
