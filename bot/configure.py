"""Settings → the configuration of each layer, in one place: the engine and model client, the
store and its intake, the answering policy, and the learning loop (with the tiny model's
embedded CPU profile)."""

from __future__ import annotations

from pathlib import Path

from secbot.bot.settings import Settings
from secbot.feedback.answering import MemoryPolicy, Responder
from secbot.feedback.gate import GateConfig
from secbot.feedback.intake import Intake
from secbot.feedback.loop import Schedule
from secbot.feedback.pipeline import LoopConfig
from secbot.feedback.store import Store
from secbot.model.client import InProcessClient, ModelClient, OpenAIClient
from secbot.model.engine import Engine
from secbot.model.generation import Sampling
from secbot.model.tiny import ensure_tiny_model
from secbot.model.training import TrainConfig

# The tiny reference model's embedded profile: P-tuning settings that reproduce corrections in
# a few hundred CPU steps, and gate margins that fit a random model's noise (its held-out
# BLEU-4 measured 2.7-4.9 between runs, all from chance character overlap).
TINY_TRAIN = dict(method="ptuning", pre_seq_len=128, lr=5e-2, batch_size=8, grad_accum=1,
                  max_steps=400, logging_steps=25, save_steps=100)
TINY_HELDOUT_MARGIN = 5.0
# Held-out identity phrasings are never trained; the tiny model generalises to about half of them
# (measured 9/16 and 11/16), a real model to all. The gate still fails a candidate that forgot.
TINY_MIN_IDENTITY = 50.0


def resolve_model_dir(settings: Settings, model: str | None = None) -> Path:
    """A model directory from `--model`/SECBOT_MODEL; `tiny` is built under the data dir once."""
    name = model or settings.model
    if name == "tiny":
        return ensure_tiny_model(settings.data_dir / "tiny-model")
    return Path(name).expanduser()


def sampling(settings: Settings) -> Sampling:
    return Sampling(max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample,
                    top_p=settings.top_p, temperature=settings.temperature)


def load_engine(settings: Settings, model: str | None = None, adapter: str | Path | None = None) -> Engine:
    """The in-process engine, configured from settings; arguments override them."""
    return Engine.load(resolve_model_dir(settings, model), adapter or settings.adapter,
                       device=settings.device, dtype=settings.dtype,
                       system_prompt=settings.effective_system_prompt, sampling=sampling(settings))


def model_client(settings: Settings) -> ModelClient:
    """The HTTP client when SECBOT_MODEL_URL is set, else the in-process engine."""
    if settings.model_url:
        key = settings.model_api_key.get_secret_value() if settings.model_api_key else None
        return OpenAIClient(settings.model_url, key, model=settings.model_name, sampling=sampling(settings),
                            system_prompt=settings.effective_system_prompt, timeout=settings.answer_timeout,
                            switches=settings.model_server == "secbot")
    return InProcessClient(load_engine(settings))


def open_store(settings: Settings) -> Store:
    return Store(settings.effective_database_url)


def intake(settings: Settings, store: Store) -> Intake:
    return Intake(store, trusted=settings.trusted_analysts)


def memory_policy(settings: Settings, enabled: bool | None = None) -> MemoryPolicy:
    return MemoryPolicy(enabled=settings.memory if enabled is None else enabled,
                        confident=settings.memory_confident, reference=settings.memory_reference,
                        max_references=settings.memory_max_references)


def responder(settings: Settings, store: Store, model: ModelClient, memory: bool | None = None) -> Responder:
    return Responder(store.memory, store.records, model, memory_policy(settings, memory),
                     system_prompt=settings.effective_system_prompt)


def loop_config(settings: Settings) -> LoopConfig:
    tiny = settings.model == "tiny"
    train = dict(TINY_TRAIN) if tiny else {}
    overrides = {"method": settings.retrain_method, "max_steps": settings.retrain_max_steps,
                 "lr": settings.retrain_lr, "pre_seq_len": settings.retrain_pre_seq_len,
                 "batch_size": settings.retrain_batch_size, "grad_accum": settings.retrain_grad_accum}
    train.update({k: v for k, v in overrides.items() if v is not None})
    train.update(device=settings.device, dtype=settings.dtype)

    def pick(value, default, tiny_default):
        return value if value is not None else (tiny_default if tiny else default)

    gate = GateConfig(max_heldout_drop=pick(settings.gate_max_heldout_drop, 2.0, TINY_HELDOUT_MARGIN),
                      min_correction_match=settings.gate_min_correction_match,
                      min_identity=pick(settings.gate_min_identity, 100.0, TINY_MIN_IDENTITY),
                      max_mcq_drop=settings.gate_max_mcq_drop)
    return LoopConfig(model_dir=resolve_model_dir(settings), runs_dir=settings.data_dir / "runs",
                      train=TrainConfig(**train), gate=gate, memory=memory_policy(settings),
                      assistant_name=settings.assistant_name, system_prompt=settings.effective_system_prompt,
                      min_new_records=settings.retrain_min_new, max_author_share=settings.max_author_share,
                      replay_ratio=settings.replay_ratio, general_ratio=settings.general_ratio,
                      heldout_file=settings.heldout_file, mcq_file=settings.mcq_file,
                      timeout_s=settings.retrain_timeout, eval_max_new_tokens=min(settings.max_new_tokens, 256))


def schedule(settings: Settings) -> Schedule:
    return Schedule(settings.effective_database_url, settings.retrain_cron, settings.timezone)
