"""Typed settings, one group per concern, read from the environment and a `.env` file.

Every variable keeps its documented name (`SECBOT_<NAME>`, and Slack's own `SLACK_*`): a field
whose attribute name differs from its variable says so with an alias. `Settings.read()` reads
every group and reports every bad value at once (`BadSettings`), each as the variable, the value
(masked if secret) and what to do.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from secbot.feedback.learning.gate import GateConfig
from secbot.feedback.learning.schedule import DEFAULT_CRON
from secbot.feedback.memory.matching import CONFIDENT, REFERENCE
from secbot.feedback.store.db import mask_password
from secbot.model.runtime.prompting import DEFAULT_ASSISTANT_NAME, DEFAULT_SYSTEM_PROMPT

IdList = Annotated[list[str], NoDecode]
GATE = GateConfig()


def env(name: str) -> AliasChoices:
    """The field reads the environment variable `name` (and its own name, when built in code)."""
    return AliasChoices(name)


class Group(BaseSettings):
    """A group of settings; its fields read `SECBOT_<FIELD>` unless an alias names the variable."""

    model_config = SettingsConfigDict(env_prefix="SECBOT_", env_file=".env", extra="ignore",
                                      protected_namespaces=(), populate_by_name=True)

    @classmethod
    def env_name(cls, field: str) -> str:
        alias = cls.model_fields[field].validation_alias
        return alias.choices[0] if isinstance(alias, AliasChoices) else f"SECBOT_{field.upper()}"

    @classmethod
    def is_secret(cls, field: str) -> bool:
        return "SecretStr" in str(cls.model_fields[field].annotation)


class ModelSettings(Group):
    """Which model answers, where it runs, and how it writes."""

    path: str = Field("tiny", validation_alias=env("SECBOT_MODEL"), description="Local model directory, or "
                      "`tiny` for the reference model (built under the data dir on first use).")
    adapter: Path | None = Field(None, description="Adapter directory served on top of the model.")
    url: str | None = Field(None, validation_alias=env("SECBOT_MODEL_URL"), description="OpenAI-compatible "
                            "server to ask instead of loading the model in-process.")
    api_key: SecretStr | None = Field(None, validation_alias=env("SECBOT_MODEL_API_KEY"),
                                      description="Bearer token for the model server.")
    name: str = Field("secbot", validation_alias=env("SECBOT_MODEL_NAME"),
                      description="`model` sent to the server (a vLLM LoRA name).")
    server: Literal["secbot", "vllm"] = Field(
        "secbot", validation_alias=env("SECBOT_MODEL_SERVER"), description="secbot (serve-model: promotions "
        "switch its adapter) or vllm (adapters registered there under SECBOT_MODEL_NAME).")
    answer_timeout: float = Field(120.0, gt=0, description="Seconds before an answer is given up.")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$",
                        description="auto, cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto (bf16 on GPU, fp32 on CPU), bf16, fp16, fp32.")
    assistant_name: str = Field(DEFAULT_ASSISTANT_NAME, description="The identity the assistant keeps.")
    system_prompt: str | None = Field(None, description="Overrides the default identity prompt.")
    max_new_tokens: int = Field(512, ge=1)
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    top_p: float = Field(0.7, gt=0, le=1)
    temperature: float = Field(0.95, gt=0)

    @field_validator("adapter", mode="after")
    @classmethod
    def _expand(cls, value):
        return value.expanduser() if value is not None else value

    @property
    def identity_prompt(self) -> str:
        """The system prompt every answer and every training example is built with."""
        return self.system_prompt or DEFAULT_SYSTEM_PROMPT.format(name=self.assistant_name)

    @property
    def is_tiny(self) -> bool:
        return self.path == "tiny"


class StorageSettings(Group):
    data_dir: Path = Field(Path("~/.local/share/secbot"), description="Database, models, runs.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data dir.")

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'secbot.db'}"


class SlackSettings(Group):
    """The Slack app: tokens under Slack's own names, who may do what, and how answers show."""

    bot_token: SecretStr | None = Field(None, validation_alias=env("SLACK_BOT_TOKEN"))
    app_token: SecretStr | None = Field(None, validation_alias=env("SLACK_APP_TOKEN"))
    signing_secret: SecretStr | None = Field(None, validation_alias=env("SLACK_SIGNING_SECRET"))
    api_url: str = Field("https://slack.com/api/", validation_alias=env("SLACK_API_URL"))
    admins: IdList = Field(default_factory=list, description="Slack user ids, comma-separated.")
    trusted_analysts: IdList = Field(default_factory=list, description="Slack user ids whose "
                                     "corrections are approved without review.")
    admin_channel: str | None = Field(None, description="Channel id for review and run reports.")
    answer_thread_replies: bool = Field(True, description="Answer replies in threads the bot is "
                                        "already in, without a new mention.")
    correction_reaction: str = Field("pencil2", description="Reaction that asks to correct an answer.")
    channels: IdList = Field(default_factory=list, description="Channel ids secbot answers in "
                             "(comma-separated; empty: every channel it is in). DMs are always answered.")
    allowed_usergroup: str | None = Field(None, description="A Slack user group id: only its members "
                                          "may ask and give feedback.")
    suggested_prompts: IdList = Field(
        default_factory=lambda: ["What is lateral movement?", "How do I report a phishing email?",
                                 "什么是勒索软件？"],
        description="Prompts offered when an assistant thread starts ('|'-separated).")
    streaming: bool = Field(True, description="Stream answers with Slack's native streaming where the "
                            "workspace has it (edited messages otherwise).")

    @field_validator("admins", "trusted_analysts", "channels", mode="before")
    @classmethod
    def _split_ids(cls, value):
        if isinstance(value, str):
            if re.search(r"[;|]", value) or re.search(r"\w\s+\w", value):
                raise ValueError("separate ids with commas (`U01AAA,U02BBB`), not semicolons, bars or spaces")
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("admins", "trusted_analysts")
    @classmethod
    def _user_ids(cls, value: list[str]) -> list[str]:
        for item in value:
            if not SLACK_ID["user"].fullmatch(item):
                raise ValueError(f"{item!r} is not a Slack user id (U… or W…); find it in the person's "
                                 "profile, ⋮ → Copy member ID")
        return value

    @field_validator("channels")
    @classmethod
    def _channel_ids(cls, value: list[str]) -> list[str]:
        for item in value:
            _check_channel(item)
        return value

    @field_validator("admin_channel")
    @classmethod
    def _admin_channel_id(cls, value: str | None) -> str | None:
        return _check_channel(value) if value else value

    @field_validator("allowed_usergroup")
    @classmethod
    def _usergroup_id(cls, value: str | None) -> str | None:
        if value and not SLACK_ID["usergroup"].fullmatch(value):
            raise ValueError(f"{value!r} is not a user group id (S…), e.g. from `usergroups.list`; "
                             "a @handle will not do")
        return value

    @field_validator("suggested_prompts", mode="before")
    @classmethod
    def _split_prompts(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split("|") if part.strip()]
        return value


SLACK_ID = {"user": re.compile(r"[UW][A-Z0-9]+"), "channel": re.compile(r"[CGD][A-Z0-9]+"),
            "usergroup": re.compile(r"S[A-Z0-9]+")}


def _check_channel(value: str) -> str:
    if not SLACK_ID["channel"].fullmatch(value):
        raise ValueError(f"{value!r} is not a channel id (C…); a channel's id is at the bottom of its "
                         "details (click the channel name), names like #soc will not do")
    return value


class MemorySettings(Group):
    """Team memory: approved records answer at once (see `feedback.memory.matching` for the confidence)."""

    enabled: bool = Field(True, validation_alias=env("SECBOT_MEMORY"),
                          description="Answer from the team's approved records.")
    confident: float = Field(CONFIDENT, ge=0, le=1, validation_alias=env("SECBOT_MEMORY_CONFIDENT"),
                             description="Confidence at or above which the team's approved answer is "
                                         "given without a model call.")
    reference: float = Field(REFERENCE, ge=0, le=1, validation_alias=env("SECBOT_MEMORY_REFERENCE"),
                             description="Confidence at or above which approved records go to the model "
                                         "as reference.")
    max_references: int = Field(3, ge=0, le=10, validation_alias=env("SECBOT_MEMORY_MAX_REFERENCES"),
                                description="Approved records given as reference.")
    confirm: bool = Field(False, validation_alias=env("SECBOT_MEMORY_CONFIRM"),
                          description="Ask the chat model to confirm a borderline match (one short yes/no "
                                      "generation) before answering from memory; for a real model only.")
    embedding_model: str = Field("static", validation_alias=env("SECBOT_EMBEDDING_MODEL"),
                                 description="How team memory matches by meaning: `static` (the embedded "
                                             "WordLlama model), `server` (the model server's /v1/embeddings), "
                                             "a local sentence-transformers directory, or `off` (words only).")

    @field_validator("embedding_model")
    @classmethod
    def _embedding_model(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in ("static", "server", "off"):
            return value.lower()
        path = Path(value).expanduser()
        if not path.is_dir():
            raise ValueError(f"{value!r} is neither static, server, off nor a directory: point it at a local "
                             "sentence-transformers model (e.g. /models/bge-m3)")
        return str(path)

    @property
    def embedding_directory(self) -> str | None:
        """The local sentence-transformers directory SECBOT_EMBEDDING_MODEL names, if it names one."""
        return None if self.embedding_model in ("static", "server", "off") else self.embedding_model

    @model_validator(mode="after")
    def _reference_below_confident(self):
        if self.reference > self.confident:
            raise ValueError(f"SECBOT_MEMORY_REFERENCE ({self.reference}) must not be above "
                             f"SECBOT_MEMORY_CONFIDENT ({self.confident}): a record confident enough to "
                             "answer alone is also a reference")
        return self


class TrainingSettings(Group):
    """The learning loop: when it runs, where, on what data, and the overrides of its method."""

    cron: str = Field(DEFAULT_CRON, validation_alias=env("SECBOT_RETRAIN_CRON"),
                      description="When the nightly retraining runs (crontab).")
    timezone: str = Field("UTC", description="Time zone of the retrain schedule.")
    scheduler: bool = Field(True, description="Run the nightly schedule in this process (one only).")
    where: Literal["local", "worker"] = Field(
        "local", validation_alias=env("SECBOT_TRAINING"), description="local (train in a subprocess of "
        "this process) or worker (queue runs for `secbot worker` on the GPU host).")
    min_new: int = Field(1, ge=0, validation_alias=env("SECBOT_RETRAIN_MIN_NEW"),
                         description="New approved records needed for a run.")
    timeout: float = Field(6 * 3600, gt=0, validation_alias=env("SECBOT_RETRAIN_TIMEOUT"),
                           description="Seconds before a run is killed.")
    stale_after: float = Field(120, ge=30, validation_alias=env("SECBOT_RUN_STALE_AFTER"),
                               description="Seconds without a heartbeat after which a run on another host "
                               "counts as dead (on its own host a dead run is seen at once).")
    method: Literal["ptuning", "lora"] | None = Field(None, validation_alias=env("SECBOT_RETRAIN_METHOD"),
                                                      description="ptuning (default) or lora.")
    max_steps: int | None = Field(None, ge=1, validation_alias=env("SECBOT_RETRAIN_MAX_STEPS"))
    lr: float | None = Field(None, gt=0, validation_alias=env("SECBOT_RETRAIN_LR"))
    pre_seq_len: int | None = Field(None, ge=1, validation_alias=env("SECBOT_RETRAIN_PRE_SEQ_LEN"))
    batch_size: int | None = Field(None, ge=1, validation_alias=env("SECBOT_RETRAIN_BATCH_SIZE"))
    grad_accum: int | None = Field(None, ge=1, validation_alias=env("SECBOT_RETRAIN_GRAD_ACCUM"))
    replay_ratio: float = Field(4.0, ge=0, description="Earlier approved records replayed per new "
                                "record in each run.")
    general_ratio: float = Field(1.0, ge=0, description="Built-in general security records mixed in "
                                 "per new record.")
    max_author_share: float = Field(0.5, gt=0, le=1, description="Most of a snapshot one author "
                                    "may contribute.")
    preference: Literal["kto", "off"] = Field("kto", validation_alias=env("SECBOT_PREFERENCE"), description=(
        "kto: each run also learns from 👍/👎 on model answers (KTO, after the supervised stage); off: never."))
    preference_min_labels: int = Field(64, ge=1, validation_alias=env("SECBOT_PREFERENCE_MIN_LABELS"),
                                       description="Usable 👍/👎 labels the preference stage needs; as many new "
                                                   "ones also start a run without new records.")
    heldout_file: Path | None = Field(None, description="Extra held-out records (THUDM format).")
    mcq_file: Path | None = Field(None, description="Multiple-choice exam (JSON: question, choices, "
                                  "answer) scored for candidate and active.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"not a crontab line ({exc}); e.g. '0 2 * * *' for 02:00 every day") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a time zone; use an IANA name such as UTC or Europe/Berlin") from None
        return value

    @field_validator("heldout_file", "mcq_file", mode="after")
    @classmethod
    def _expand(cls, value):
        return value.expanduser() if value is not None else value

    def method_overrides(self) -> dict:
        """The training knobs set here (unset ones keep the method's or the model's defaults)."""
        knobs = {"method": self.method, "max_steps": self.max_steps, "lr": self.lr, "pre_seq_len": self.pre_seq_len,
                 "batch_size": self.batch_size, "grad_accum": self.grad_accum, "preference": self.preference}
        return {k: v for k, v in knobs.items() if v is not None}


class GateSettings(Group):
    """What a candidate must show to be promoted; unset margins take the model's profile (tiny or real)."""

    max_heldout_drop: float | None = Field(None, ge=0, validation_alias=env("SECBOT_GATE_MAX_HELDOUT_DROP"),
                                           description=f"Held-out ROUGE-L/BLEU-4 points a candidate may lose "
                                                       f"({GATE.max_heldout_drop:g}; 5 for tiny).")
    min_correction_match: float = Field(GATE.min_correction_match, ge=0, le=100,
                                        validation_alias=env("SECBOT_GATE_MIN_CORRECTION_MATCH"),
                                        description="% of new corrections a candidate must reproduce exactly.")
    min_identity: float | None = Field(None, ge=0, le=100, validation_alias=env("SECBOT_GATE_MIN_IDENTITY"),
                                       description=f"% of held-out identity prompts that must name the assistant "
                                                   f"({GATE.min_identity:g}; tiny: see README).")
    max_mcq_drop: float = Field(GATE.max_mcq_drop, ge=0, validation_alias=env("SECBOT_GATE_MAX_MCQ_DROP"),
                                description="Multiple-choice accuracy points a candidate may lose.")


GROUPS: dict[str, type[Group]] = {"model": ModelSettings, "storage": StorageSettings, "slack": SlackSettings,
                                  "memory": MemorySettings, "training": TrainingSettings, "gate": GateSettings}


class BadSettings(Exception):
    """One or more settings cannot be used; the message names each and says what to do."""


class Settings(BaseModel):
    """Every setting of secbot, by group."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())
    model: ModelSettings
    storage: StorageSettings
    slack: SlackSettings
    memory: MemorySettings
    training: TrainingSettings
    gate: GateSettings

    @classmethod
    def read(cls, env_file: str | None = ".env", **overrides: dict) -> "Settings":
        """Every group from the environment (and `env_file`); `overrides` set fields in code, by
        group: `Settings.read(None, model={"path": "tiny"})`. Raises BadSettings naming every bad value."""
        groups, problems = {}, unknown_names(env_file)
        for name, group in GROUPS.items():
            try:
                groups[name] = group(_env_file=env_file, **overrides.pop(name, {}))
            except ValidationError as exc:
                problems.append(explain(exc, group))
        if overrides:
            raise TypeError(f"no settings group {', '.join(overrides)}; the groups are {', '.join(GROUPS)}")
        if problems:
            raise BadSettings("; ".join(problems))
        return cls(**groups)

    def describe(self) -> list[tuple[str, str]]:
        """(environment name, value) pairs with secrets masked, for `secbot config`."""
        rows = []
        for name, group in GROUPS.items():
            values = getattr(self, name)
            for field in group.model_fields:
                value = getattr(values, field)
                if isinstance(value, SecretStr):
                    secret = value.get_secret_value()
                    shown = "****" + secret[-4:] if len(secret) > 12 else "****"
                elif isinstance(value, list):
                    shown = ("|" if field == "suggested_prompts" else ",").join(value)
                else:
                    shown = "" if value is None else str(value)
                if group is StorageSettings and field == "database_url":
                    shown = mask_password(shown) if value else f"{self.storage.url}  (default)"
                rows.append((group.env_name(field), shown))
        return rows

    @staticmethod
    def env_names() -> set[str]:
        """Every environment variable secbot reads."""
        return {group.env_name(field) for group in GROUPS.values() for field in group.model_fields}


# Read by the test suite and CI, or by deploy/compose.yml, not by secbot.
NOT_SETTINGS_PREFIXES = ("SECBOT_TEST_",)
NOT_SETTINGS = {"SECBOT_MODELS_DIR"}


def unknown_names(env_file: str | None) -> list[str]:
    """`SECBOT_*` names in the environment or `env_file` that secbot does not read: a typo there
    would silently keep a default (an open allow-list, the wrong model)."""
    import difflib
    import os

    names = set(os.environ)
    if env_file and Path(env_file).is_file():
        for line in Path(env_file).read_text(encoding="utf-8", errors="replace").splitlines():
            key = line.strip().removeprefix("export ").split("=", 1)[0].strip()
            if key and not key.startswith("#") and "=" in line:
                names.add(key)
    known = Settings.env_names()
    problems = []
    for name in sorted(n for n in names if n.upper().startswith("SECBOT_") and n.upper() not in known
                       and not n.upper().startswith(NOT_SETTINGS_PREFIXES) and n.upper() not in NOT_SETTINGS):
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
        problems.append(f"{name} is not a secbot setting" + (f"; did you mean {close[0]}?" if close else
                                                             "; `secbot config` lists them all"))
    return problems


def explain(error: ValidationError, group: type[Group]) -> str:
    """A pydantic ValidationError as one line per bad setting: the variable, its value, the fix."""
    lines = []
    for item in error.errors():
        if not item["loc"]:  # a rule across settings: its message names them
            lines.append(item["msg"].removeprefix("Value error, "))
            continue
        field = str(item["loc"][0])
        field = next((f for f, info in group.model_fields.items()
                      if f == field or (isinstance(info.validation_alias, AliasChoices)
                                        and field in info.validation_alias.choices)), field)
        known = field in group.model_fields
        name = group.env_name(field) if known else field
        shown = "****" if known and group.is_secret(field) else repr(item.get("input"))[:60]
        lines.append(f"{name}={shown}: {item['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)
