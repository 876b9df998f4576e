"""Helpers for tests that run secbot commands in their own processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any SECBOT_/SLACK_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SECBOT_", "SLACK_"))}
    return env | extra


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def secbot_server(args: list[str], env: dict[str, str], probe_url: str, timeout: float = 120):
    """Run `secbot ARGS` until it answers HTTP at `probe_url`; stop it afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "secbot.bot.cli.commands", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    try:
        while True:
            assert proc.poll() is None, proc.stderr.read()
            try:
                httpx.get(probe_url)
                break
            except httpx.TransportError:
                assert time.time() < deadline, f"secbot {args[0]} did not start"
                time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
