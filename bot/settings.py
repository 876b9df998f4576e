"""One typed settings object, read from the environment and a `.env` file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from secbot.feedback.store.db import mask_password
from secbot.model.runtime.prompting import DEFAULT_SYSTEM_PROMPT

IdList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every knob of secbot; environment names are `SECBOT_<FIELD>` unless noted."""

    model_config = SettingsConfigDict(env_prefix="SECBOT_", env_file=".env", extra="ignore",
                                      protected_namespaces=())

    # Model
    model: str = Field("tiny", description="Local model directory, or `tiny` for the reference "
                       "model (built under the data dir on first use).")
    adapter: Path | None = Field(None, description="Adapter directory served on top of the model.")
    model_url: str | None = Field(None, description="OpenAI-compatible server to ask instead of "
                                  "loading the model in-process.")
    model_api_key: SecretStr | None = Field(None, description="Bearer token for the model server.")
    model_name: str = Field("secbot", description="`model` sent to the server (a vLLM LoRA name).")
    model_server: Literal["secbot", "vllm"] = Field(
        "secbot", description="secbot (serve-model: promotions switch its adapter) or vllm (adapters "
        "registered there under SECBOT_MODEL_NAME).")
    answer_timeout: float = Field(120.0, gt=0, description="Seconds before an answer is given up.")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$",
                        description="auto, cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto (bf16 on GPU, fp32 on CPU), bf16, fp16, fp32.")
    assistant_name: str = Field("secbot", description="The identity the assistant keeps.")
    system_prompt: str | None = Field(None, description="Overrides the default identity prompt.")
    max_new_tokens: int = Field(512, ge=1)
    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    top_p: float = Field(0.7, gt=0, le=1)
    temperature: float = Field(0.95, gt=0)

    # Storage
    data_dir: Path = Field(Path("~/.local/share/secbot"), description="Database, models, runs.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data dir.")

    # Slack (standard Slack names, no prefix)
    slack_bot_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "slack_bot_token"))
    slack_app_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "slack_app_token"))
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "slack_signing_secret"))
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=AliasChoices(
        "SLACK_API_URL", "slack_api_url"))
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
    suggested_prompts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["What is lateral movement?", "How do I report a phishing email?",
                                 "什么是勒索软件？"],
        description="Prompts offered when an assistant thread starts ('|'-separated).")
    streaming: bool = Field(True, description="Stream answers with Slack's native streaming where the "
                            "workspace has it (edited messages otherwise).")

    # Team memory: approved records answer at once (see feedback.memory for the confidence)
    memory: bool = Field(True, description="Answer from the team's approved records.")
    memory_confident: float = Field(0.75, ge=0, le=1, description="Confidence at or above which the "
                                    "team's approved answer is given without a model call.")
    memory_reference: float = Field(0.35, ge=0, le=1, description="Confidence at or above which "
                                    "approved records go to the model as reference.")
    memory_max_references: int = Field(3, ge=0, le=10, description="Approved records given as reference.")

    # The learning loop
    retrain_cron: str = Field("0 2 * * *", description="When the nightly retraining runs (crontab).")
    timezone: str = Field("UTC", description="Time zone of the retrain schedule.")
    scheduler: bool = Field(True, description="Run the nightly schedule in this process (one only).")
    training: Literal["local", "worker"] = Field(
        "local", description="local (train in a subprocess of this process) or worker (queue runs "
        "for `secbot worker` on the GPU host).")
    retrain_min_new: int = Field(1, ge=0, description="New approved records needed for a run.")
    retrain_timeout: float = Field(6 * 3600, gt=0, description="Seconds before a run is killed.")
    retrain_method: Literal["ptuning", "lora"] | None = Field(None, description="ptuning (default) or lora.")
    retrain_max_steps: int | None = Field(None, ge=1)
    retrain_lr: float | None = Field(None, gt=0)
    retrain_pre_seq_len: int | None = Field(None, ge=1)
    retrain_batch_size: int | None = Field(None, ge=1)
    retrain_grad_accum: int | None = Field(None, ge=1)
    replay_ratio: float = Field(4.0, ge=0, description="Earlier approved records replayed per new "
                                "record in each run.")
    general_ratio: float = Field(1.0, ge=0, description="Built-in general security records mixed in "
                                 "per new record.")
    gate_max_heldout_drop: float | None = Field(None, ge=0, description="Held-out ROUGE-L/BLEU-4 "
                                                "points a candidate may lose (2; 5 for tiny).")
    gate_min_correction_match: float = Field(80.0, ge=0, le=100, description="% of new "
                                             "corrections a candidate must reproduce exactly.")
    gate_min_identity: float | None = Field(None, ge=0, le=100, description="% of held-out identity "
                                            "prompts that must name the assistant (100; tiny: see README).")
    gate_max_mcq_drop: float = Field(2.0, ge=0, description="Multiple-choice accuracy points a "
                                     "candidate may lose.")
    max_author_share: float = Field(0.5, gt=0, le=1, description="Most of a snapshot one author "
                                    "may contribute.")
    heldout_file: Path | None = Field(None, description="Extra held-out records (THUDM format).")
    mcq_file: Path | None = Field(None, description="Multiple-choice exam (JSON: question, choices, "
                                  "answer) scored for candidate and active.")

    @field_validator("admins", "trusted_analysts", "channels", mode="before")
    @classmethod
    def _split_ids(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("suggested_prompts", mode="before")
    @classmethod
    def _split_prompts(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split("|") if part.strip()]
        return value

    @field_validator("retrain_cron")
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

    @field_validator("data_dir", "adapter", "heldout_file", "mcq_file", mode="after")
    @classmethod
    def _expand(cls, value):
        return value.expanduser() if value is not None else value

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'secbot.db'}"

    @property
    def effective_system_prompt(self) -> str:

        return self.system_prompt or DEFAULT_SYSTEM_PROMPT.format(name=self.assistant_name)

    @classmethod
    def env_name(cls, field: str) -> str:
        alias = cls.model_fields[field].validation_alias
        return alias.choices[0] if isinstance(alias, AliasChoices) else f"SECBOT_{field.upper()}"

    def describe(self) -> list[tuple[str, str]]:
        """(environment name, value) pairs with secrets masked, for `secbot config`."""
        rows = []
        for field in type(self).model_fields:
            value = getattr(self, field)
            if isinstance(value, SecretStr):
                shown = "****" + value.get_secret_value()[-4:] if len(value.get_secret_value()) > 12 \
                    else "****"
            elif isinstance(value, list):
                shown = ("|" if field == "suggested_prompts" else ",").join(value)
            else:
                shown = "" if value is None else str(value)
            if field == "database_url" and value is None:
                shown = f"{self.effective_database_url}  (default)"
            elif field == "database_url":
                shown = mask_password(shown)
            rows.append((self.env_name(field), shown))
        return rows


def explain(error) -> str:
    """A pydantic ValidationError as one line per bad setting: the variable, its value, the fix."""
    lines = []
    for item in error.errors():
        field = item["loc"][0] if item["loc"] else ""
        name = Settings.env_name(field) if field in Settings.model_fields else str(field)
        value = item.get("input")
        secret = field in Settings.model_fields and "SecretStr" in str(Settings.model_fields[field].annotation)
        shown = "****" if secret else repr(value)[:60]
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{name}={shown}: {message}")
    return "; ".join(lines)
