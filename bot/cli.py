"""The `secbot` command line: one sub-command per job, each a small function."""

from __future__ import annotations

import argparse
import logging
import sys

from bot.settings import Settings
from model.errors import ModelError

log = logging.getLogger("secbot")


def cmd_config(args, settings: Settings) -> int:
    for name, value in settings.describe():
        print(f"{name}={value}")
    return 0


def cmd_tiny_model(args, settings: Settings) -> int:
    from model.tiny import build_tiny_model

    path = build_tiny_model(args.dir, seed=args.seed)
    print(f"tiny reference model written to {path}")
    return 0


def cmd_chat(args, settings: Settings) -> int:
    from bot.model_client import load_engine
    from bot.terminal_chat import run_chat

    engine = load_engine(settings, args.model, args.adapter)
    print(f"model {engine.loaded.path} on {engine.device}"
          + (f", adapter {engine.adapter}" if engine.adapter else ""), file=sys.stderr)
    return run_chat(engine)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secbot", description="A security team's own LLM in Slack.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("config", help="print the effective configuration, secrets masked")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("tiny-model", help="write the tiny GLM reference model and tokenizer to DIR")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_tiny_model)

    p = sub.add_parser("chat", help="chat with the model in the terminal (stdin may be piped)")
    p.add_argument("--model", help="model directory or `tiny` (default: SECBOT_MODEL)")
    p.add_argument("--adapter", help="adapter directory (default: SECBOT_ADAPTER)")
    p.set_defaults(func=cmd_chat)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError lists each bad variable
        print(f"secbot: bad configuration:\n{exc}", file=sys.stderr)
        return 2
    try:
        return args.func(args, settings)
    except ModelError as exc:
        print(f"secbot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
