"""Settings → components, in one place: the engine and model client, the store and its intake,
the answering policy, the learning loop (with the tiny model's embedded CPU profile), the Slack
Web API client, the Slack app with its listeners' dependencies, and the bot process as a whole.

Slack's modules are imported inside the functions that build Slack parts, so the training
worker, which uses this module too, never loads them (`tests/test_architecture.py`).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from secbot.bot.settings import Settings
from secbot.feedback.answering import MemoryPolicy, Responder
from secbot.feedback.intake.submissions import Intake
from secbot.feedback.learning.gate import GateConfig
from secbot.feedback.learning.loop import LearningLoop, Reporter, Schedule, follow_active_version, serve_active
from secbot.feedback.learning.periodic import Periodic
from secbot.feedback.learning.pipeline import LoopConfig
from secbot.feedback.store.repositories import Store
from secbot.model.runtime.engine import Engine
from secbot.model.runtime.generation import Sampling
from secbot.model.runtime.tiny import ensure_tiny_model
from secbot.model.serving.client import InProcessClient, ModelClient, OpenAIClient
from secbot.model.training.trainer import TrainConfig

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from secbot.bot.slack.admin import LoopControl
    from secbot.bot.slack.app import SecbotApp
    from secbot.bot.slack.deps import Deps
    from secbot.bot.slack.reporting import SlackReporter

log = logging.getLogger(__name__)
PRUNE_EVENTS_EVERY = 6 * 3600.0

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
    name = model or settings.model.path
    if name == "tiny":
        return ensure_tiny_model(settings.storage.data_dir / "tiny-model")
    return Path(name).expanduser()


def sampling(settings: Settings) -> Sampling:
    return Sampling(max_new_tokens=settings.model.max_new_tokens, do_sample=settings.model.do_sample,
                    top_p=settings.model.top_p, temperature=settings.model.temperature)


def load_engine(settings: Settings, model: str | None = None, adapter: str | Path | None = None) -> Engine:
    """The in-process engine, configured from settings; arguments override them."""
    return Engine.load(resolve_model_dir(settings, model), adapter or settings.model.adapter,
                       device=settings.model.device, dtype=settings.model.dtype,
                       system_prompt=settings.model.identity_prompt, sampling=sampling(settings))


def model_client(settings: Settings) -> ModelClient:
    """The HTTP client when SECBOT_MODEL_URL is set, else the in-process engine."""
    if settings.model.url:
        key = settings.model.api_key.get_secret_value() if settings.model.api_key else None
        return OpenAIClient(settings.model.url, key, model=settings.model.name, sampling=sampling(settings),
                            system_prompt=settings.model.identity_prompt, timeout=settings.model.answer_timeout,
                            switches=settings.model.server == "secbot")
    return InProcessClient(load_engine(settings))


def embedder(settings: Settings):
    """Team memory's embedding model (`SECBOT_EMBEDDING_MODEL`), or None for words only."""
    from secbot.model.runtime.embeddings import (
        EmbeddingError,
        SentenceTransformersEmbedder,
        ServerEmbedder,
        StaticEmbedder,
    )

    choice = settings.memory.embedding_model
    if choice == "off" or not settings.memory.enabled:
        return None
    if choice == "static":
        return StaticEmbedder()
    if choice == "server":
        if not settings.model.url:
            raise EmbeddingError("SECBOT_EMBEDDING_MODEL=server needs SECBOT_MODEL_URL (a model server with "
                              "/v1/embeddings, e.g. `secbot serve-model --embedding-model DIR`)")
        key = settings.model.api_key.get_secret_value() if settings.model.api_key else None
        try:
            return ServerEmbedder(settings.model.url, key)
        except EmbeddingError as exc:  # the model server is still starting, or down: answer by words
            log.error("%s; team memory matches by words only until this process restarts", exc)
            return None
    return SentenceTransformersEmbedder(settings.memory.embedding_directory,
                                        device=None if settings.model.device == "auto" else settings.model.device)


def open_store(settings: Settings, *, semantic: bool = True) -> Store:
    """The store; with `semantic`, its team memory also matches by meaning (commands that only read
    or write records skip loading the embedding model)."""
    from secbot.feedback.learning.evalsets import calibration_questions

    model = embedder(settings) if semantic else None
    return Store(settings.storage.url, embedder=model, calibration_questions=calibration_questions() if model else ())


def intake(settings: Settings, store: Store) -> Intake:
    return Intake(store, trusted=settings.slack.trusted_analysts)


def memory_policy(settings: Settings, enabled: bool | None = None) -> MemoryPolicy:
    confirm = settings.memory.confirm
    if confirm and settings.model.is_tiny:
        log.warning("SECBOT_MEMORY_CONFIRM is ignored on the tiny reference model: it cannot judge two questions")
        confirm = False
    return MemoryPolicy(enabled=settings.memory.enabled if enabled is None else enabled,
                        confident=settings.memory.confident, reference=settings.memory.reference,
                        max_references=settings.memory.max_references, confirm=confirm)


def responder(settings: Settings, store: Store, model: ModelClient, memory: bool | None = None) -> Responder:
    return Responder(store.memory, store.records, model, memory_policy(settings, memory),
                     system_prompt=settings.model.identity_prompt)


def loop_config(settings: Settings) -> LoopConfig:
    tiny, training = settings.model.is_tiny, settings.training
    train = dict(TINY_TRAIN) if tiny else {}
    train.update(training.method_overrides(), device=settings.model.device, dtype=settings.model.dtype)

    gate = GateConfig(min_correction_match=settings.gate.min_correction_match, max_mcq_drop=settings.gate.max_mcq_drop)
    if tiny:  # unset margins take the tiny model's profile
        gate.max_heldout_drop, gate.min_identity = TINY_HELDOUT_MARGIN, TINY_MIN_IDENTITY
    if settings.gate.max_heldout_drop is not None:
        gate.max_heldout_drop = settings.gate.max_heldout_drop
    if settings.gate.min_identity is not None:
        gate.min_identity = settings.gate.min_identity
    return LoopConfig(model_dir=resolve_model_dir(settings), runs_dir=settings.storage.data_dir / "runs",
                      train=TrainConfig.of(**train), gate=gate, memory=memory_policy(settings),
                      assistant_name=settings.model.assistant_name, system_prompt=settings.model.identity_prompt,
                      min_new_records=training.min_new, min_labels=training.preference_min_labels,
                      max_author_share=training.max_author_share,
                      replay_ratio=training.replay_ratio, general_ratio=training.general_ratio,
                      heldout_file=training.heldout_file, mcq_file=training.mcq_file,
                      timeout_s=training.timeout, stale_after_s=training.stale_after,
                      eval_max_new_tokens=min(settings.model.max_new_tokens, 256))


def schedule(settings: Settings) -> Schedule:
    return Schedule(settings.storage.url, settings.training.cron, settings.training.timezone)


def learning_loop(settings: Settings, store: Store, model: ModelClient | None, reporter: Reporter, *,
                  training: str | None = None) -> LearningLoop:
    """The learning loop with its schedule; `training` overrides SECBOT_TRAINING (the worker: local)."""
    return LearningLoop(store, loop_config(settings), model, reporter, training=training or settings.training.where,
                        schedule=schedule(settings))


class SettingsError(Exception):
    """Slack settings are missing for the chosen mode."""


def slack_client(settings: Settings) -> WebClient:
    """The Web API client: SLACK_API_URL honoured, rate limits and dropped connections retried."""
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

    token = settings.slack.bot_token.get_secret_value() if settings.slack.bot_token else None
    return WebClient(token=token, base_url=settings.slack.api_url,
                     retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=5),
                                     ConnectionErrorRetryHandler(max_retry_count=2)])


def slack_reporter(settings: Settings, store: Store, client: WebClient | None = None) -> SlackReporter:
    """The learning loop's reporter for a process that talks to Slack: run reports to SECBOT_ADMIN_CHANNEL."""
    from secbot.bot.slack.reporting import SlackReporter

    return SlackReporter(client or slack_client(settings), store, settings.slack.admin_channel)


def slack_deps(settings: Settings, store: Store, model: ModelClient, *, loop: LoopControl | None = None,
               client: WebClient | None = None, update_interval: float = 1.0, split_at: int | None = None) -> Deps:
    """What the Slack listeners work with: the Web API client, intake, the answerer (team memory,
    then the model), the admin commands, the review queue, the App Home and the directory."""
    from secbot.bot.slack.admin import AdminCommands
    from secbot.bot.slack.delivery import Answerer
    from secbot.bot.slack.deps import Deps
    from secbot.bot.slack.home import HomeTab
    from secbot.bot.slack.rendering import MESSAGE_LIMIT
    from secbot.bot.slack.review import ReviewQueue
    from secbot.bot.slack.users import Directory

    client = client or slack_client(settings)
    directory = Directory(client)
    feed = intake(settings, store)
    answerer = Answerer(client, feed, responder(settings, store, model), name_of=directory.name,
                        interval=update_interval, timeout=settings.model.answer_timeout,
                        limit=split_at or MESSAGE_LIMIT, streaming=settings.slack.streaming)
    queue = ReviewQueue(store, directory.name, directory.permalink)
    admin = AdminCommands(store, settings.slack.admins, loop, queue, feed)
    home = HomeTab(store, admin, queue, settings.model.assistant_name, directory.name, directory.permalink)
    return Deps(settings, client, store, feed, answerer, admin, directory, queue, home)


@dataclass
class SlackBot:
    """The Slack app and what its listeners were built with."""

    app: SecbotApp
    deps: Deps


def slack_app(settings: Settings, store: Store, model: ModelClient, *, loop: LoopControl | None = None,
              http_mode: bool = True, client: WebClient | None = None, update_interval: float = 1.0,
              split_at: int | None = None, listener_executor: Executor | None = None) -> SlackBot:
    """The Slack app, after checking that the settings its mode needs are there; listeners run on
    `listener_executor` (bolt's default pool when None)."""
    from secbot.bot.slack.app import create_app

    if not settings.slack.bot_token:
        raise SettingsError("SLACK_BOT_TOKEN is not set: create the app from deploy/manifest.yml "
                            "and export its bot token (xoxb-...).")
    if http_mode and not settings.slack.signing_secret:
        raise SettingsError("SLACK_SIGNING_SECRET is not set: HTTP mode verifies every request "
                            "with it (Basic Information → App Credentials).")
    deps = slack_deps(settings, store, model, loop=loop, client=client, update_interval=update_interval,
                      split_at=split_at)
    return SlackBot(create_app(deps, http_mode=http_mode, listener_executor=listener_executor), deps)


@dataclass
class BotProcess:
    """The Slack bot process: store, model on the active version, learning loop, the app, and
    what it does in the background once started."""

    settings: Settings
    store: Store
    model: ModelClient
    loop: LearningLoop
    reporter: SlackReporter
    slack: SlackBot
    periodic: Periodic | None = None

    def start(self) -> None:
        """Schedule, run reports, following the model, forgetting old event ids, recovery."""
        # The token works here (the app checked it): a workspace that had revoked it reinstalled.
        team = self.slack.deps.client.auth_test().get("team_id")
        if team and self.store.events.restore(team):
            log.warning("secbot's token works in workspace %s again: posting there resumes", team)
        self.reporter.team = team
        self.periodic = Periodic()
        if isinstance(self.model, InProcessClient):
            log.warning("serving %s", serve_active(self.store, self.model))
            follow_active_version(self.store, self.model, self.periodic)  # promotions made by a worker
        # A model server is told to switch by whichever process changes the active version; each
        # answer says which version produced it, so this process never switches it on its own.
        if self.settings.training.scheduler:
            self.loop.start_schedule()
        self.reporter.start(self.periodic)
        self.periodic.every(PRUNE_EVENTS_EVERY, self.store.events.prune, "secbot-prune-events")
        self.store.memory.warm()
        self.slack.deps.intake.redactor.warm()
        # Questions a stopped process left unanswered are finished in the background, not before serving.
        threading.Thread(target=self.slack.deps.answerer.recover, name="secbot-recover", daemon=True).start()


def bot_process(settings: Settings, *, http_mode: bool) -> BotProcess:
    """Every part of `secbot serve`, built from settings and not yet started."""
    store = open_store(settings)
    model = model_client(settings)
    client = slack_client(settings)
    reporter = slack_reporter(settings, store, client)
    loop = learning_loop(settings, store, model, reporter)
    bot = slack_app(settings, store, model, loop=loop, http_mode=http_mode, client=client)
    return BotProcess(settings, store, model, loop, reporter, bot)
