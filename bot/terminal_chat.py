"""`secbot chat`: a terminal conversation with the model, also usable with piped stdin."""

from __future__ import annotations

import sys
from typing import TextIO

from secbot.model.engine import Engine

HELP = "Type a question. 'clear' forgets the conversation, 'stop' (or end of input) exits."


def run_chat(engine: Engine, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    interactive = stdin.isatty()
    history: list[tuple[str, str]] = []
    if interactive:
        print(HELP, file=stdout)
    while True:
        if interactive:
            print("\nyou> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            return 0
        query = line.strip()
        if not query:
            continue
        if query == "stop":
            return 0
        if query == "clear":
            history.clear()
            print("(history cleared)", file=stdout, flush=True)
            continue
        print("secbot> ", end="", file=stdout, flush=True)
        answer = ""
        for delta in engine.stream(query, history):
            answer += delta
            print(delta, end="", file=stdout, flush=True)
        print(file=stdout, flush=True)
        history.append((query, answer))
