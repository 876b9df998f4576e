"""The layers import one way (bot -> feedback -> model), the stage folders inside them too, and
the training worker runs without Slack."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["model", "feedback", "bot"]  # each may import only the ones before it


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_nothing_above_it(layer):
    above = LAYERS[LAYERS.index(layer) + 1:]
    wrong = {f"{path.relative_to(ROOT)}: {name}"
             for path in (ROOT / layer).rglob("*.py")
             for name in imported(path)
             if any(name == f"secbot.{up}" or name.startswith(f"secbot.{up}.") for up in above)}
    assert not wrong, f"{layer} must not import {', '.join(above)}: {sorted(wrong)}"


# Inside each layer, which stage folders (or modules) a stage must not know of.
MUST_NOT_KNOW = {
    "model/runtime": ["secbot.model.serving", "secbot.model.training", "secbot.model.conversion"],
    "model/serving": ["secbot.model.training", "secbot.model.conversion"],
    "model/training": ["secbot.model.serving", "secbot.model.conversion"],
    "model/conversion": ["secbot.model.serving", "secbot.model.training"],
    "feedback/memory": ["secbot.feedback.store", "secbot.feedback.intake", "secbot.feedback.learning",
                        "secbot.feedback.answering"],
    "feedback/store": ["secbot.feedback.intake", "secbot.feedback.learning", "secbot.feedback.answering"],
    "feedback/intake": ["secbot.feedback.learning", "secbot.feedback.answering"],
    "feedback/answering.py": ["secbot.feedback.learning"],
    "bot/settings.py": ["secbot.bot.slack", "secbot.bot.cli", "secbot.bot.configure"],
    "bot/slack": ["secbot.bot.cli", "secbot.bot.configure"],
}


def sources(place: str) -> list[Path]:
    path = ROOT / place
    return [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))


@pytest.mark.parametrize("place", sorted(MUST_NOT_KNOW))
def test_a_stage_knows_nothing_of_the_stages_built_on_it(place):
    assert sources(place), f"{place} does not exist: update MUST_NOT_KNOW with the layout"
    wrong = {f"{path.relative_to(ROOT)}: {name}"
             for path in sources(place)
             for name in imported(path)
             if any(name == other or name.startswith(f"{other}.") for other in MUST_NOT_KNOW[place])}
    assert not wrong, f"{place} must not import {', '.join(MUST_NOT_KNOW[place])}: {sorted(wrong)}"


def test_every_module_lives_in_a_stage_folder_or_is_shared_by_the_layer():
    # A layer's top level keeps only what several of its stages share; new modules go to a stage.
    top = {str(path.relative_to(ROOT)) for layer in LAYERS for path in (ROOT / layer).glob("*.py")}
    assert top == {"model/__init__.py", "model/errors.py", "model/conversation.py", "feedback/__init__.py",
                   "feedback/errors.py",
                   "feedback/answering.py", "bot/__init__.py", "bot/settings.py", "bot/configure.py"}


def test_the_check_would_catch_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from secbot.bot.settings import Settings\nimport secbot.feedback.store.repositories\n")
    assert {"secbot.bot.settings", "secbot.feedback.store.repositories"} <= imported(bad)


def test_the_training_worker_loads_no_slack_code(tmp_path):
    script = """
import sys
from secbot.feedback.learning import loop
loop.LearningLoop.work = lambda self, *a, **k: None  # one pass of start-up, then return
from secbot.bot.cli.commands import main
assert main(["worker"]) == 0
slack = sorted(m for m in sys.modules if m.split(".")[0] in ("slack_bolt", "slack_sdk")
               or m == "secbot.bot.slack" or m.startswith("secbot.bot.slack."))
print(slack)
sys.exit(1 if slack else 0)
"""
    env = {"PATH": "/usr/bin:/bin", "SECBOT_DATA_DIR": str(tmp_path), "SECBOT_SCHEDULER": "false",
           "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
