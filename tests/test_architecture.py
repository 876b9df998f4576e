"""The layers import one way (bot -> feedback -> model), and the training worker runs without Slack."""

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


def test_the_check_would_catch_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from secbot.bot.settings import Settings\nimport secbot.feedback.store\n")
    assert {"secbot.bot.settings", "secbot.feedback.store"} <= imported(bad)


def test_the_training_worker_loads_no_slack_code(tmp_path):
    script = """
import sys
from secbot.feedback import loop
loop.LearningLoop.work = lambda self, *a, **k: None  # one pass of start-up, then return
from secbot.bot.cli import main
assert main(["worker"]) == 0
slack = sorted(m for m in sys.modules if m.split(".")[0] in ("slack_bolt", "slack_sdk") or m in (
    "secbot.bot.app", "secbot.bot.listeners", "secbot.bot.reporting", "secbot.bot.runtime"))
print(slack)
sys.exit(1 if slack else 0)
"""
    env = {"PATH": "/usr/bin:/bin", "SECBOT_DATA_DIR": str(tmp_path), "SECBOT_SCHEDULER": "false",
           "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
