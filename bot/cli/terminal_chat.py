"""`secbot chat`: a terminal conversation on the same answering path as the bot (team memory
first, then the model), also usable with piped stdin."""

from __future__ import annotations

import sys
from typing import TextIO

from secbot.feedback.answering import Responder, provenance

HELP = "Type a question. 'clear' forgets the conversation, 'stop' (or end of input) exits."


def run_chat(responder: Responder, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
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
        reply = responder.reply(query, history)
        answer = ""
        for delta in reply.deltas():
            answer += delta
            print(delta, end="", file=stdout, flush=True)
        print(file=stdout, flush=True)
        if reply.record is not None:
            print(f"  ({provenance(reply.record)})", file=stdout, flush=True)
        elif reply.references:
            print("  (team records given as reference: " + ", ".join(f"#{r.id}" for r in reply.references)
                  + ")", file=stdout, flush=True)
        history.append((query, answer))
