"""The `secbot` command line: one sub-command per job, each a small function."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import threading
import time
import urllib.error

from sqlalchemy.exc import DBAPIError
from transformers import HfArgumentParser

from secbot.bot.settings import BadSettings, Settings
from secbot.model.errors import ModelError
from secbot.model.training.methods import LoraMethodConfig, PTuningConfig
from secbot.model.training.preference import PreferenceConfig
from secbot.model.training.record_formats import Columns
from secbot.model.training.trainer import SharedKnobs, TrainConfig

log = logging.getLogger("secbot")


def cmd_config(args, settings: Settings) -> int:
    for name, value in settings.describe():
        print(f"{name}={value}")
    return 0


def cmd_tiny_model(args, settings: Settings) -> int:
    from secbot.model.runtime.tiny import build_tiny_model

    path = build_tiny_model(args.dir, seed=args.seed)
    print(f"tiny reference model written to {path}")
    return 0


def cmd_chat(args, settings: Settings) -> int:
    from secbot.bot import configure
    from secbot.bot.cli.terminal_chat import run_chat
    from secbot.feedback.learning.loop import serve_active
    from secbot.model.serving.client import InProcessClient

    store = configure.open_store(settings)
    if args.model or args.adapter or not settings.model.url:
        model = InProcessClient(configure.load_engine(settings, args.model, args.adapter))
        served = serve_active(store, model) if not args.adapter else f"adapter {args.adapter}"
        print(f"model {model.engine.loaded.path} on {model.engine.device}, {served}", file=sys.stderr)
    else:
        model = configure.model_client(settings)
        print(f"model server {settings.model.url}", file=sys.stderr)
    memory = not args.no_memory
    print(f"team memory: {'on' if memory else 'off'} ({store.memory.size()} approved record(s), "
          f"{settings.storage.url.split('://')[0]} store)", file=sys.stderr)
    return run_chat(configure.responder(settings, store, model, memory))


def cmd_train(args, settings: Settings) -> int:
    from secbot.bot.configure import resolve_model_dir
    from secbot.model.training.record_formats import read_records
    from secbot.model.training.trainer import train

    columns = Columns(args.prompt_column, args.response_column, args.history_column or None)
    data = read_records(args.data, columns, skip_bad=args.skip_bad, labelled=True)
    for bad in data.skipped:
        print(f"skipped {bad}", file=sys.stderr)
    if data.skipped:
        print(f"skipped {len(data.skipped)} malformed record(s) of {args.data}", file=sys.stderr)
    val = read_records(args.val, columns).records if args.val else []
    config = TrainConfig.of(**vars(args))
    if data.labelled and config.stage.preference == "off":
        print(f"{len(data.labelled)} labelled completion(s) in {args.data} are not used: pass --preference kto "
              "to learn from them after the supervised steps", file=sys.stderr)
    result = train(resolve_model_dir(settings, args.model), data.records, args.out, config, val,
                   system_prompt=settings.model.identity_prompt, restart=args.restart, labelled=data.labelled)
    print(json.dumps({"adapter": str(result.adapter_dir), "steps": result.metadata["steps"],
                      "tokens_per_s": result.metadata["tokens_per_s"],
                      **result.metadata["metrics"]}, ensure_ascii=False))
    return 0


def cmd_eval(args, settings: Settings) -> int:
    from secbot.model.runtime.generation import Sampling
    from secbot.model.training.evaluation import compute_metrics, evaluate, read_predictions
    from secbot.model.training.record_formats import read_records

    if args.predictions:
        metrics = compute_metrics(*read_predictions(args.predictions))
    else:
        if not args.data:
            print("secbot eval: give --data FILE (records to answer) or --predictions FILE",
                  file=sys.stderr)
            return 2
        from secbot.bot.configure import load_engine

        columns = Columns(args.prompt_column, args.response_column, args.history_column or None)
        records = read_records(args.data, columns).records
        engine = load_engine(settings, args.model, args.adapter)
        metrics, _ = evaluate(engine, records, args.out, batch_size=args.batch_size,
                              sampling=Sampling(max_new_tokens=args.max_new_tokens), progress=True)
    print(json.dumps(metrics))
    return 0


def cmd_db(args, settings: Settings) -> int:
    from secbot.feedback.store.db import Database, mask_password
    from secbot.feedback.store.migrate import current_revision, upgrade

    url = settings.storage.url
    Database(url).check()
    if args.action == "upgrade":
        upgrade(url)
    print(f"{mask_password(url)}: schema revision {current_revision(url) or 'none'}")
    return 0


def cmd_export(args, settings: Settings) -> int:
    from secbot.bot.configure import open_store
    from secbot.model.training.record_formats import write_records

    store = open_store(settings)
    if args.format == "kto":
        from secbot.model.training.record_formats import write_labelled

        labels = store.labels.list() if args.status == "all" else store.labels.usable()
        count = write_labelled(args.out, [x.as_labelled() for x in labels])
        which = "" if args.status == "all" else "usable "
        print(f"exported {count} {which}labelled completion(s) (👍/👎, correction pairs, imports) to {args.out} "
              "in trl's unpaired prompt/completion/label format")
        return 0
    status = None if args.status == "all" else args.status
    records = [r.as_record() for r in store.records.list(status)]
    count = write_records(args.out, records, args.format)
    print(f"exported {count} {args.status} record(s) to {args.out}")
    return 0


def cmd_import(args, settings: Settings) -> int:
    from secbot.bot import configure

    columns = Columns(args.prompt_column, args.response_column, args.history_column or None)
    store = configure.open_store(settings)
    result = configure.intake(settings, store).import_file(args.file, status=args.status, columns=columns,
                                                           author=args.author)
    print(f"imported {result.added} record(s) as {args.status}; {result.duplicates} already "
          f"present; {result.redactions} secret(s) redacted"
          + (f"; {result.flagged} held for review (identity, impostor or history flags)" if result.flagged else "")
          + (f"; {result.labels} labelled completion(s) for the preference stage ({result.label_duplicates} "
             f"already present, {result.labels_excluded} identity/impostor kept out of training)"
             if result.labels or result.label_duplicates else ""))
    return 0


def cmd_rollback(args, settings: Settings) -> int:
    from secbot.bot import configure
    from secbot.feedback.learning.loop import LogReporter

    store = configure.open_store(settings)
    # Tell a model server to switch when one is configured; in-process bots follow the store.
    model = configure.model_client(settings) if settings.model.url else None
    message = configure.learning_loop(settings, store, model, LogReporter()).rollback(args.version, args.by)
    print(message)
    return 1 if message.startswith("Rollback refused") else 0


def cmd_convert(args, settings: Settings) -> int:
    from secbot.model.conversion.convert import convert

    dst = convert(args.src, args.dst, args.family)
    print(f"converted {args.src} to {dst}: serve it with SECBOT_MODEL={dst} (or --model {dst})")
    return 0


def cmd_convert_ptuning(args, settings: Settings) -> int:
    from secbot.model.conversion.ptuning import convert_ptuning

    out = convert_ptuning(args.checkpoint, args.out, args.model)
    print(f"wrote the prefix adapter {out}: serve it with SECBOT_ADAPTER={out}, or "
          f"`secbot serve-model --model {args.model} --adapter {out}`")
    if not args.activate:
        return 0
    from secbot.bot import configure
    from secbot.feedback.learning.loop import LogReporter

    store = configure.open_store(settings)
    model = configure.model_client(settings) if settings.model.url else None
    message = configure.learning_loop(settings, store, model, LogReporter()).adopt(str(out), str(args.model), args.by)
    print(message)
    return 1 if message.startswith("Activation refused") else 0


def cmd_serve(args, settings: Settings) -> int:
    from secbot.bot import configure
    from secbot.bot.slack.transport import serve_http, serve_socket_mode

    http = args.http or not settings.slack.app_token
    try:
        bot = configure.bot_process(settings, http_mode=http)
    except configure.SettingsError as exc:
        print(f"secbot: {exc}", file=sys.stderr)
        return 2
    bot.start()
    if http:
        print(f"secbot listening for Slack events on http://{args.host}:{args.port}/slack/events",
              file=sys.stderr, flush=True)
        serve_http(bot.slack.app, args.host, args.port)
    else:
        print("secbot connected to Slack in Socket Mode", file=sys.stderr, flush=True)
        serve_socket_mode(bot.slack.app, settings.slack.app_token.get_secret_value())
    return 0


def cmd_serve_model(args, settings: Settings) -> int:
    from secbot.bot import configure
    from secbot.feedback.learning.loop import serve_active
    from secbot.model.errors import ModelError
    from secbot.model.serving.client import InProcessClient
    from secbot.model.serving.http_api import serve_model

    key = settings.model.api_key.get_secret_value() if settings.model.api_key else None
    host = args.host or ("0.0.0.0" if key else "127.0.0.1")
    if not key and not is_loopback(host):
        print(f"secbot: serve-model without SECBOT_MODEL_API_KEY listens on 127.0.0.1 only, not {host}: "
              "set the key (and give it to the bot) to serve other hosts.", file=sys.stderr)
        return 2
    engine = configure.load_engine(settings, args.model, args.adapter)
    embedder = None
    embedding_dir = args.embedding_model or settings.memory.embedding_directory
    if embedding_dir:
        from secbot.model.runtime.embeddings import SentenceTransformersEmbedder

        embedder = SentenceTransformersEmbedder(embedding_dir, device=None if settings.model.device == "auto"
                                                else settings.model.device)
        print(f"secbot: serving embeddings from {embedding_dir} ({embedder.dim} dimensions) at /v1/embeddings",
              file=sys.stderr)
    version_adapter = None
    try:  # the store says which version is active; the data dir is shared with the worker
        store = configure.open_store(settings, semantic=False)
        served = serve_active(store, InProcessClient(engine))
        version_adapter = functools.partial(adapter_of_version, store)  # switches name known versions
    except ModelError as exc:
        served = f"the base model (no store: {exc})"
    print(f"secbot: serving {served}", file=sys.stderr)
    if not key:
        print("secbot: no SECBOT_MODEL_API_KEY: listening on loopback only; adapter switches are refused",
              file=sys.stderr)
    print(f"secbot model server on http://{host}:{args.port}/v1 ({engine.loaded.path} on "
          f"{engine.device})", file=sys.stderr, flush=True)
    serve_model(engine, host, args.port, api_key=key, model_name=settings.model.name,
                max_batch=args.max_batch, max_batch_tokens=args.max_batch_tokens,
                max_prompt_tokens=args.max_prompt_tokens, prefill_chunk=args.prefill_chunk,
                version_adapter=version_adapter, embedder=embedder)
    return 0


def adapter_of_version(store, version_id: int) -> str | None:
    version = store.runs.get_version(version_id)
    if version is None:
        raise KeyError(version_id)
    return version.adapter_path


def port_number(text: str) -> int:
    """A TCP port for argparse: 1-65535, said plainly otherwise."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number: use 1-65535 (e.g. 8000)")
    return port


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cmd_revoke(args, settings: Settings) -> int:
    from secbot.bot.configure import open_store
    from secbot.bot.slack.admin import AdminCommands

    message = AdminCommands(open_store(settings), settings.slack.admins).revoke(args.record, args.by)
    print(message)
    return 1 if message.startswith("Nothing revoked") else 0


def cmd_memory(args, settings: Settings) -> int:
    from secbot.bot.configure import open_store
    from secbot.bot.slack.home import usage_line

    store = open_store(settings)
    if args.action == "reindex":
        return memory_reindex(store)
    print(f"team memory: {store.memory.size()} approved record(s) answer at once")
    print(f"matching: {semantic_line(store.memory)}")
    for title, by in (("most used", "hits"), ("most disputed (👎 on the answers they gave)", "down")):
        usage = store.records.memory_usage(args.limit, by)
        print(f"\n{title}:" + ("" if usage else " none yet"))
        for item in usage:
            print(f"  {usage_line(item)}")
    return 0


def semantic_line(memory) -> str:
    if memory.embedder is None:
        return "by words only (SECBOT_EMBEDDING_MODEL=off)"
    models = memory.vector_models()
    line = f"by words and meaning ({memory.embedder.name}"
    if models.get(None):
        line += f"; {models[None]} record(s) without a vector"
    if memory.semantic_problem:
        return line + f") — {memory.semantic_problem}"
    return line + ")"


def memory_reindex(store) -> int:
    if store.memory.embedder is None:
        print("secbot: SECBOT_EMBEDDING_MODEL is off: there is nothing to embed with", file=sys.stderr)
        return 2
    total = store.memory.size()
    print(f"re-embedding {total} record(s) with {store.memory.embedder.name}", file=sys.stderr)

    def progress(done: int, of: int) -> None:
        print(f"  {done}/{of} ({100 * done // max(of, 1)}%)", file=sys.stderr, flush=True)

    done = store.memory.reindex(progress)
    print(f"team memory: {done} record(s) embedded with {store.memory.embedder.name}; matching by words and meaning")
    return 0


# `secbot retrain` exit status, for scripts: what the run decided.
RETRAIN_EXIT = {"promoted": 0, "skipped": 0, "failed": 1, "rejected": 3, "busy": 4}


def cmd_retrain(args, settings: Settings) -> int:
    from secbot.bot import configure
    from secbot.feedback.learning.loop import LogReporter
    from secbot.feedback.learning.report import render

    store = configure.open_store(settings)
    model = configure.model_client(settings) if settings.model.url else None
    loop = configure.learning_loop(settings, store, model, LogReporter())
    if settings.training.where == "worker":
        loop.pipeline.recover()  # a run whose process died does not block this one
        queued = store.runs.enqueue_run(method=loop.config.train.method, requested_by=args.by)
        if queued is None:
            print("A retraining run is already queued or in progress; nothing queued.", file=sys.stderr)
            return RETRAIN_EXIT["busy"]
        print(f"run {queued.id} queued for the training worker (`secbot worker`)", flush=True)
        if not args.wait:
            return 0
        report = _wait_for_run(store, queued.id)
    else:  # this process trains (in a subprocess of its own), so it always waits
        print("retraining here (SECBOT_TRAINING=local): snapshot, training, evaluation, gate", flush=True)
        stop = threading.Event()
        threading.Thread(target=_show_progress, args=(loop, stop), daemon=True).start()
        try:
            report = loop.run_and_report(args.by)
        finally:
            stop.set()
    print(render(report))
    return RETRAIN_EXIT.get(report.decision, 1)


def _show_progress(loop, stop: threading.Event, every: float = 10.0) -> None:
    """The newest loss-log entry, every `every` seconds while the run trains (stderr)."""
    shown = None
    while not stop.wait(every):
        log = loop.training_log()
        if log and log[-1] != shown:
            shown = log[-1]
            step = f"step {shown.get('step')}" + (f"/{shown['max_steps']}" if shown.get("max_steps") else "")
            loss = f", loss {shown['loss']:.3f}" if isinstance(shown.get("loss"), (int, float)) else ""
            print(f"  training: {step}{loss}", file=sys.stderr, flush=True)


def _wait_for_run(store, run_id: int, poll: float = 5.0):
    """Wait until the worker finishes run `run_id`, saying when its state changes; its report."""
    from secbot.feedback.learning.report import RunReport

    state = None
    while True:
        run = store.runs.get_run(run_id)
        if run.state != state:
            state = run.state
            print(f"  run {run_id}: {state.value}", file=sys.stderr, flush=True)
        if state.finished:
            if run.report:
                return RunReport.from_json(run.report)
            return RunReport(state.value if state.value in RETRAIN_EXIT else "failed", run.error or state.value,
                             run_id=run_id)
        time.sleep(poll)


def cmd_worker(args, settings: Settings) -> int:
    from secbot.bot import configure
    from secbot.feedback.learning.loop import LogReporter

    store = configure.open_store(settings)
    # With SECBOT_MODEL_URL set, a promotion tells the model server to switch (this process is
    # the one that does); the worker itself loads the model only to train and evaluate, in its
    # subprocesses. Run reports are kept with each run; the bot posts them to Slack.
    model = configure.model_client(settings) if settings.model.url else None
    loop = configure.learning_loop(settings, store, model, LogReporter(), training="local")
    if settings.training.scheduler:
        loop.start_schedule()
    print("secbot training worker: waiting for queued runs" +
          (f" and the schedule ({settings.training.cron} {settings.training.timezone})" if settings.training.scheduler else ""),
          file=sys.stderr, flush=True)
    loop.work()
    return 0


def cmd_demo(args, settings: Settings) -> int:
    from secbot.bot.cli.demo import run_demo

    result = run_demo(args.data_dir)
    return 0 if result.decision == "promoted" else 1


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}")
    return value


def option_group(*options: tuple[tuple[str, ...], dict]) -> argparse.ArgumentParser:
    """Options several sub-commands share, defined once (argparse parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    for flags, kwargs in options:
        parent.add_argument(*flags, **kwargs)
    return parent


MODEL = option_group((("--model",), {"help": "model directory or `tiny` (default: SECBOT_MODEL)"}))
ADAPTER = option_group((("--adapter",), {"help": "adapter directory (default: the active version's, "
                                                 "or SECBOT_ADAPTER)"}))
COLUMNS = option_group((("--prompt-column",), {"default": "prompt"}),
                       (("--response-column",), {"default": "response"}),
                       (("--history-column",), {"default": "history", "help": "'' for none"}))
BY = option_group((("--by",), {"default": "cli", "help": "recorded as who did it"}))


class CommandParser(HfArgumentParser):
    """argparse's parser that also takes a dataclass's fields as options (`dataclass_types`),
    showing defaults only where it does."""

    def __init__(self, *args, formatter_class=argparse.HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secbot", description="A security team's own LLM in Slack.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)

    p = sub.add_parser("config", help="print the effective configuration, secrets masked")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("tiny-model", help="write the tiny GLM reference model and tokenizer to DIR")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_tiny_model)

    p = sub.add_parser("chat", help="chat with the model in the terminal (stdin may be piped)",
                       parents=[MODEL, ADAPTER])
    p.add_argument("--no-memory", action="store_true", help="answer from the model only, not the "
                   "team's approved records")
    p.set_defaults(func=cmd_chat)

    # Each method's options come from its own config, titled by method (transformers' HfArgumentParser).
    p = sub.add_parser("train", help="P-tune (v2) or LoRA-tune an adapter on training records",
                       parents=[MODEL, COLUMNS], dataclass_types=[SharedKnobs, PTuningConfig, LoraMethodConfig, PreferenceConfig],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help=".json/.jsonl (one record per line) or JSON array: "
                   "THUDM prompt/response/history, or chat `messages`; with --preference kto also trl's "
                   "labelled completions")
    p.add_argument("--out", required=True, help="adapter directory to create")
    p.add_argument("--val", help="validation records; their loss is reported")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed records, and count them")
    p.add_argument("--restart", action="store_true", help="discard an interrupted run's checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="answer records and score them as THUDM does (ROUGE, BLEU-4)",
                       parents=[MODEL, ADAPTER, COLUMNS])
    p.add_argument("--data", help="records to answer")
    p.add_argument("--out", help="write generated_predictions.txt and metrics.json here")
    p.add_argument("--predictions", help="score an existing generated_predictions.txt instead")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("convert", help="a ChatGLM2-6B/ChatGLM3-6B checkpoint into a native GLM directory "
                       "(nothing in SRC is run)")
    p.add_argument("src", help="the THUDM checkpoint directory (config.json, pytorch_model*.bin or "
                   "*.safetensors, tokenizer.model)")
    p.add_argument("dst", help="the directory to write (new or empty)")
    p.add_argument("--family", choices=["chatglm2", "chatglm3"],
                   help="which prompt format; read from the checkpoint's files when left out")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("convert-ptuning", help="a THUDM P-tuning checkpoint into a prefix adapter for a "
                       "converted model", parents=[BY])
    p.add_argument("checkpoint", help="THUDM's output/…/checkpoint-N directory (prefix encoder, config.json)")
    p.add_argument("out", help="the adapter directory to write (new or empty)")
    p.add_argument("--model", required=True, help="the directory `secbot convert` wrote for its base model")
    p.add_argument("--activate", action="store_true", help="also make it a model version and the active one "
                   "(`secbot rollback` can return to it later)")
    p.set_defaults(func=cmd_convert_ptuning)

    p = sub.add_parser("demo", help="the whole loop offline: ask, correct, retrain, ask again")
    p.add_argument("--data-dir", help="keep the demo's model, database and runs here "
                   "(default: a new temporary directory)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="run the Slack bot (Socket Mode if SLACK_APP_TOKEN is set)")
    p.add_argument("--http", action="store_true", help="HTTP Events API instead of Socket Mode")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=port_number, default=3000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("serve-model", help="OpenAI-compatible model server (batched, streaming)",
                       parents=[MODEL, ADAPTER])
    p.add_argument("--host", help="address to listen on (default: 0.0.0.0 with SECBOT_MODEL_API_KEY, "
                   "else 127.0.0.1; without a key only loopback is allowed)")
    p.add_argument("--port", type=port_number, default=8000)
    p.add_argument("--max-batch", type=positive_int, default=8, help="requests decoded together (default: 8)")
    p.add_argument("--max-batch-tokens", type=positive_int, default=65536,
                   help="KV-cache room of the batch in tokens; each request reserves its prompt and its "
                        "max tokens, and waits until that fits (default: 65536)")
    p.add_argument("--max-prompt-tokens", type=positive_int, default=16384,
                   help="longer prompts are refused with 400 (default: 16384)")
    p.add_argument("--prefill-chunk", type=positive_int, default=512,
                   help="prompt tokens prefilled per step while other answers keep streaming (default: 512)")
    p.add_argument("--embedding-model", metavar="DIR",
                   help="a local sentence-transformers directory to serve at /v1/embeddings for team memory "
                        "(default: SECBOT_EMBEDDING_MODEL when it names a directory)")
    p.set_defaults(func=cmd_serve_model)

    p = sub.add_parser("worker", help="training worker for the GPU host: queued runs and the schedule")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("db", help="database schema: `upgrade` to the latest, `current` to show it")
    p.add_argument("action", choices=["upgrade", "current"])
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("export", help="write training records (or labelled completions) as JSON lines")
    p.add_argument("out")
    p.add_argument("--status", default="approved", choices=["approved", "pending", "rejected", "all"],
                   help="records of this status; with --format kto, all writes every label, excluded ones too")
    p.add_argument("--format", default="thudm", choices=["thudm", "messages", "kto"],
                   help="thudm: prompt/response/history (default); messages: GLM-4 / OpenAI chat "
                        "`messages` lists; kto: the 👍/👎 labelled completions the preference stage uses, "
                        "trl's unpaired prompt/completion/label")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="add training records (THUDM or chat `messages`) and labelled "
                       "completions (trl's prompt/completion/label or prompt/chosen/rejected, text or "
                       "messages), told apart per line (all or nothing)", parents=[COLUMNS])
    p.add_argument("file")
    p.add_argument("--status", default="approved", choices=["approved", "pending"],
                   help="approved (default: an admin is importing) or pending (review first)")
    p.add_argument("--author", default="import", help="recorded as the records' author")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("revoke", help="take an approved record back: out of team memory and of every "
                       "later training run", parents=[BY])
    p.add_argument("record", type=int, help="record number (see /secbot review, the App Home, export)")
    p.set_defaults(func=cmd_revoke)

    p = sub.add_parser("retrain", help="a retraining run now: here (SECBOT_TRAINING=local, waits) or queued "
                       "for the training worker; exit status 0 promoted or nothing to train, 1 failed, "
                       "3 rejected by the gate, 4 another run in progress", parents=[BY])
    p.add_argument("--wait", action="store_true", help="with SECBOT_TRAINING=worker: wait for the worker "
                   "to finish the run and exit with its decision")
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("memory", help="team memory: `stats` shows its most used and most disputed answers; "
                       "`reindex` embeds every record again with SECBOT_EMBEDDING_MODEL")
    p.add_argument("action", choices=["stats", "reindex"])
    p.add_argument("--limit", type=int, default=10, help="records in each list (default 10)")
    p.set_defaults(func=cmd_memory)

    p = sub.add_parser("rollback", help="make an earlier model version active (default: the one "
                       "before the active one)", parents=[BY])
    p.add_argument("version", nargs="?", type=int, help="version number (see /secbot status)")
    p.set_defaults(func=cmd_rollback)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.read()
    except BadSettings as exc:
        said = str(exc).rstrip()
        print(f"secbot: bad configuration: {said}{'' if said.endswith(('.', '?', '!')) else '.'} "
              "Fix it in the environment or .env.", file=sys.stderr)
        return 2
    try:
        return args.func(args, settings)
    except ModelError as exc:
        print(f"secbot: {exc}", file=sys.stderr)
        return 2
    except (ConnectionError, TimeoutError, urllib.error.URLError) as exc:  # a service, not a path
        reason = getattr(exc, "reason", None) or exc
        print(f"secbot: cannot reach a service this command needs ({reason}). Check SLACK_API_URL and "
              "SECBOT_MODEL_URL and that the server behind them is up, then run it again.", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be written or read
        where = f" {exc.filename}" if exc.filename else ""
        print(f"secbot: cannot use{where}: {exc.strerror or exc}. Check the path and its permissions.",
              file=sys.stderr)
        return 2
    except DBAPIError as exc:  # the database refused: disk full, read-only, locked, gone
        print(f"secbot: the database refused the work ({str(exc.orig).splitlines()[0][:200]}); nothing of this "
              "command was stored. Free disk space or fix the database (SECBOT_DATABASE_URL), then run it again.",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
