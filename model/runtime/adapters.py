"""P-tuning v2 (prefix) and LoRA adapters on one base model, switched without reloading it."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from secbot.model.errors import AdapterMismatch, ModelFilesError, UnreadableModelFile
from secbot.model.runtime.loading import read_json

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
METADATA_FILE = "secbot_adapter.json"  # beside every adapter secbot writes: base model, method, where it came from
ADAPTER_HINT = "Point SECBOT_ADAPTER (or --adapter) at a directory written by `secbot train`."


def check_adapter_dir(path: str | Path) -> Path:
    """Return the directory if it holds an adapter config and weights; else raise."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelFilesError(path, [], ADAPTER_HINT)
    missing = [] if (path / "adapter_config.json").is_file() else ["adapter_config.json"]
    if not any((path / name).is_file() for name in ADAPTER_WEIGHTS):
        missing.append("adapter weights (adapter_model.safetensors)")
    if missing:
        raise ModelFilesError(path, missing, ADAPTER_HINT)
    return path


def verify_adapter(path: str | Path) -> Path:
    """Check that the adapter loads without a base model: its config parses as a PEFT config and
    every weight tensor reads. For processes that serve nothing (a CLI rollback) but must not make
    a broken adapter active; serving processes load it for real."""
    path = check_adapter_dir(path)
    from peft import PeftConfig

    read_json(path / "adapter_config.json", "adapter_config.json")
    try:
        PeftConfig.from_pretrained(str(path))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise UnreadableModelFile(path, "adapter_config.json", exc) from None
    weights = next(path / name for name in ADAPTER_WEIGHTS if (path / name).is_file())
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(weights))
        else:
            tensors = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, or not a tensor file at all
        raise UnreadableModelFile(path, "the adapter weights", exc) from None
    if not tensors:
        raise UnreadableModelFile(path, "the adapter weights", ValueError("the file holds no tensors"))
    return path


class AdapterSet:
    """Adapters loaded onto one base model; `activate` picks one (or none) for generation.

    Adapters of one PEFT type share a `PeftModel`. Switching to the other type unloads the
    current wrapper first (LoRA layers are removed, the base weights are untouched).
    Not thread-safe: the engine serialises calls.
    """

    def __init__(self, base: torch.nn.Module):
        self.base = base
        self.peft = None
        self._names: dict[tuple[str, int], str] = {}
        self.active: Path | None = None

    def activate(self, path: str | Path | None) -> None:
        if path is None:
            if self.peft is not None and not self._prompt_learning:
                self.peft.base_model.disable_adapter_layers()
            self.active = None
            return
        path = check_adapter_dir(path).resolve()
        from peft import PeftConfig, PeftModel

        read_json(path / "adapter_config.json", "adapter_config.json")
        try:
            config = PeftConfig.from_pretrained(str(path))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise UnreadableModelFile(path, "adapter_config.json", exc) from None
        if self.peft is not None and config.peft_type != self.peft.peft_type:
            self._unload()
        key = (str(path), max((path / n).stat().st_mtime_ns for n in ADAPTER_WEIGHTS
                              if (path / n).exists()))
        name = self._names.get(key)
        if name is None:
            name = f"adapter_{len(self._names) + 1}"
            try:
                if self.peft is None:
                    self.peft = PeftModel.from_pretrained(self.base, str(path), adapter_name=name)
                    self.peft.eval()
                else:
                    self.peft.load_adapter(str(path), adapter_name=name)
            except (RuntimeError, ValueError) as exc:
                raise AdapterMismatch(
                    f"{path} does not fit the loaded base model ({exc.__class__.__name__}: "
                    f"{str(exc)[:300]}). Load the base model it was trained on.") from exc
            except Exception as exc:  # a truncated or corrupt weights file
                raise UnreadableModelFile(path, "the adapter weights", exc) from None
            self._names[key] = name
            log.info("loaded adapter %s from %s (%s)", name, path, config.peft_type)
        if not self._prompt_learning:
            self.peft.base_model.enable_adapter_layers()
        self.peft.set_adapter(name)
        self.active = path

    @property
    def _prompt_learning(self) -> bool:
        return self.peft is not None and self.peft.peft_config[self.peft.active_adapter].is_prompt_learning

    def model(self) -> torch.nn.Module:
        """The module to call for the active choice."""
        if self.peft is None or (self.active is None and self._prompt_learning):
            return self.base
        return self.peft

    def network(self) -> torch.nn.Module:
        """The transformers model to call step by step: LoRA layers act inside it when active;
        a P-tuning prefix does not (see `prefix`)."""
        return self.base if self.peft is None else self.peft.get_base_model()

    def prefix(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """The active P-tuning prefix as per-layer (key, value) tensors for one row, or None."""
        if self.active is None or not self._prompt_learning:
            return None
        cache = self.peft.get_prompt(1)
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _unload(self) -> None:
        if not self._prompt_learning:
            self.base = self.peft.unload()  # strips LoRA layers, restoring the original modules
        self.peft = None
        self._names.clear()
