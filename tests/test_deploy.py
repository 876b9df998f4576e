"""Deployment files agree with the code: commands exist, settings are real, paths are there."""

import shlex
from pathlib import Path

import yaml

from secbot.bot.cli.commands import build_parser
from secbot.bot.settings import NOT_SETTINGS, Settings

DEPLOY = Path(__file__).parents[1] / "deploy"
KNOWN = Settings.env_names() | NOT_SETTINGS | {"POSTGRES_PASSWORD"}  # and compose-only variables


def parses(argv: list[str]) -> None:
    assert argv[0] == "secbot" or argv[0].endswith("/secbot"), argv
    build_parser().parse_args(argv[1:])


def test_compose_services_build_existing_images_and_run_real_commands():
    compose = yaml.safe_load((DEPLOY / "compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "model", "worker", "bot"} <= set(services)
    for name in ("model", "worker", "bot"):
        service = services[name]
        assert (DEPLOY.parent / service["build"]["dockerfile"]).is_file()
        parses(service["command"])
        assert set(service["environment"]) <= KNOWN, set(service["environment"]) - KNOWN
    gpu = services["model"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert "pgdata" in compose["volumes"]


def test_systemd_units_run_real_commands():
    units = sorted((DEPLOY / "systemd").glob("secbot-*.service"))
    assert [u.stem for u in units] == ["secbot-bot", "secbot-model", "secbot-worker"]
    for unit in units:
        exec_line = next(l for l in unit.read_text().splitlines() if l.startswith("ExecStart="))
        parses(shlex.split(exec_line.removeprefix("ExecStart=")))


def test_env_example_names_only_real_settings():
    names = [line.split("=", 1)[0] for line in (DEPLOY / ".env.example").read_text().splitlines()
             if line and not line.startswith("#")]
    assert names and set(names) <= KNOWN, set(names) - KNOWN
    assert "xoxb-..." in (DEPLOY / ".env.example").read_text()  # placeholders, never secrets
