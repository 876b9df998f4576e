"""Errors a user can meet in the model runtime, each saying what to do about it."""

from __future__ import annotations

from pathlib import Path


class ModelError(Exception):
    """Base class for model-runtime errors with a user-facing message."""


class ModelFilesError(ModelError):
    """A model or adapter directory is missing or incomplete."""

    def __init__(self, path: str | Path, missing: list[str], hint: str):
        self.path = Path(path)
        self.missing = missing  # empty: the directory itself does not exist
        what = f"missing {', '.join(missing)}" if missing else "no such directory"
        super().__init__(f"{self.path}: {what}. {hint}")


class UnreadableModelFile(ModelError):
    """A model or adapter file exists but cannot be read (truncated, corrupt, wrong format)."""

    def __init__(self, path: str | Path, what: str, error: BaseException):
        detail = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        super().__init__(f"{path}: {what} cannot be read ({type(error).__name__}: {detail}). "
                         "Copy the files again from where the model came from.")


class RemoteCodeRequired(ModelError):
    """The model directory ships its own Python code (ChatGLM-6B/2/3), which secbot does not run."""


class ConversionRefused(ModelError):
    """`secbot convert` / `convert-ptuning` will not convert this checkpoint; nothing was written.
    The message names what differs (a flag, a file, an architecture) and what to do."""


class AdapterMismatch(ModelError):
    """An adapter was trained for a different base model or architecture."""


class TrainingError(ModelError):
    """Training cannot start or continue; the message says what to change."""


class QuestionTooLong(ModelError):
    """The question alone (with the system prompt and template) does not fit what the model takes.
    `prompt_tokens` and `limit` are in tokens, None where the model server did not say."""

    def __init__(self, prompt_tokens: int | None, limit: int | None, detail: str | None = None):
        self.prompt_tokens, self.limit = prompt_tokens, limit
        super().__init__(detail or (
            f"the prompt needs {prompt_tokens} tokens but only {limit} fit the context window with the "
            "requested answer length; shorten the question or ask for fewer tokens"))
