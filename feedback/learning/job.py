"""The training job of a nightly run, as the pipeline hands it to its subprocess.

One typed spec, written as `job.json` in the run directory and read back by
`feedback.learning.train_job`; the data files sit beside it under fixed names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from secbot.model.runtime.prompting import DEFAULT_ASSISTANT_NAME
from secbot.model.training.trainer import TrainConfig

# Evaluation sets, each answered by the candidate and the active version.
EVAL_SETS = ("heldout", "identity_heldout", "identity_train", "corrections")
# Labelled completions (trl's unpaired format): the preference stage's, and those that judge it.
PREFERENCE_TRAIN, PREFERENCE_HELDOUT = "preference_train", "preference_heldout"


def adapter_dir(run_dir: str | Path) -> Path:
    """Where a run's adapter is written (whole only once training and its metadata are done)."""
    return Path(run_dir) / "adapter"


@dataclass
class JobSpec:
    model_dir: str
    run_dir: str
    train: TrainConfig = field(default_factory=TrainConfig)
    active_adapter: str | None = None
    system_prompt: str | None = None
    assistant_name: str = DEFAULT_ASSISTANT_NAME
    eval_max_new_tokens: int = 128
    mcq_file: str | None = None

    @property
    def dir(self) -> Path:
        return Path(self.run_dir)

    def data(self, name: str) -> Path:
        """The run's data file `name` (train, val, or an evaluation set)."""
        return self.dir / f"{name}.jsonl"

    @property
    def adapter(self) -> Path:
        return adapter_dir(self.dir)

    @property
    def result(self) -> Path:
        return self.dir / "result.json"

    @property
    def file(self) -> Path:
        return self.dir / "job.json"

    def write(self) -> Path:
        data = asdict(self) | {"train": self.train.flat()}
        self.file.write_text(json.dumps(data, indent=2, ensure_ascii=False))
        return self.file

    @classmethod
    def read(cls, path: str | Path) -> "JobSpec":
        raw = json.loads(Path(path).read_text())
        return cls(**raw | {"train": TrainConfig.of(**raw["train"])})
