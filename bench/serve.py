"""Model-server throughput and latency at concurrency 1, 8 and 32, beside sequential generate;
then a mixed workload: streams running while long prompts join, with the running streams'
inter-token gaps, and what a join or leave of the batch costs.

    python bench/serve.py                                   # tiny model, CPU
    python bench/serve.py --random glm-4-9b --device cuda --hbm-gbps 3350

The server (`secbot serve-model`'s app) runs under uvicorn in this process; the clients are real
HTTP requests. Throughput counts the tokens actually generated.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx  # noqa: E402
import torch  # noqa: E402
import uvicorn  # noqa: E402
from common import add_model_args, random_glm4_9b, sync  # noqa: E402

from secbot.model.runtime.engine import Engine  # noqa: E402
from secbot.model.runtime.generation import (
    Sampling,  # noqa: E402
    TextDeltas,  # noqa: E402
)
from secbot.model.runtime.prompting import PromptBuilder  # noqa: E402
from secbot.model.runtime.step_decoder import Decoder, Row, _Joining  # noqa: E402
from secbot.model.serving.http_api import create_server  # noqa: E402
from secbot.model.serving.telemetry import Metrics  # noqa: E402

STEPS: list[tuple[float, float]] = []  # (wall-clock end, compute seconds) of every batcher step
_on_step = Metrics.on_step


def _timed_step(self, rows, tokens, seconds):  # instrumentation: every step also gives a timestamp
    STEPS.append((time.time(), seconds))
    _on_step(self, rows, tokens, seconds)


Metrics.on_step = _timed_step
from secbot.model.runtime.tiny import build_tiny_model  # noqa: E402


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--prefill-chunk", type=int, default=512)
    parser.add_argument("--long-prompt", type=int, default=1500, help="tokens in each joining long prompt")
    parser.add_argument("--hbm-gbps", type=float)
    args = parser.parse_args()
    if not args.device.startswith("cuda") and (os.cpu_count() or 1) > 1:
        # Server and clients share this process: on a CPU, leave them a core, or torch's spinning
        # threads starve the HTTP side (on 2 cores: concurrency 1 at 0.4x sequential instead of 1.0x).
        torch.set_num_threads((os.cpu_count() or 2) - 1)

    if args.random:
        loaded = random_glm4_9b(args.device, args.dtype)
        engine = Engine(loaded, PromptBuilder(loaded.tokenizer))
    else:
        engine = Engine.load(args.model or build_tiny_model(Path(tempfile.mkdtemp()) / "tiny"),
                             device=args.device, dtype=args.dtype)
    questions = [f"Question {i}: how do we triage alert {i}?" for i in range(args.requests)]

    sampling = Sampling(max_new_tokens=args.new_tokens)
    engine.generate(questions[0], [], sampling)  # warm-up
    sync(engine.device)
    start, generated = time.perf_counter(), 0
    for q in questions[: max(4, args.requests // 4)]:  # the server's code path, one at a time
        streamer = engine.generate_streams([engine.prompt_ids(q, [], sampling)], [args.new_tokens], sampling)
        generated += streamer.tokens(0)
    sync(engine.device)
    sequential = generated / (time.perf_counter() - start)
    print(f"model {engine.loaded.path} on {engine.device} ({torch.get_num_threads()} torch threads); up to {args.new_tokens} tokens per request "
          "(greedy, stops at EOS; tokens counted as generated)")
    print(f"sequential generate: {sequential:9.1f} tokens/s")

    http = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=64))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_server(engine, max_batch=args.max_batch, prefill_chunk=args.prefill_chunk,
                        max_prompt_tokens=engine.context_length(), max_batch_tokens=1 << 20)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"

    def one(q):
        t = time.perf_counter()
        r = http.post(url, json={"model": "secbot", "messages": [{"role": "user", "content": q}],
                                 "max_tokens": args.new_tokens})
        r.raise_for_status()
        return time.perf_counter() - t, r.json()["usage"]["completion_tokens"]

    print(f"continuous batching (up to {args.max_batch} requests together):")
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, questions))
        elapsed = time.perf_counter() - start
        latencies = [r[0] for r in results]
        tokens = sum(r[1] for r in results)
        print(f"  concurrency {concurrency:>3}: {tokens / elapsed:9.1f} tokens/s "
              f"({tokens / elapsed / sequential:.2f}x sequential)  latency p50 {percentile(latencies, 0.5):.2f} s"
              f"  p99 {percentile(latencies, 0.99):.2f} s")
    mixed(engine, http, url, args)
    costs(engine, args)
    server.should_exit = True
    if args.hbm_gbps:
        weights = sum(p.numel() * p.element_size() for p in engine.loaded.model.parameters())
        print(f"batch-1 bandwidth bound: {args.hbm_gbps * 1e9 / weights:.1f} tokens/s "
              f"({weights / 1e9:.1f} GB of weights / {args.hbm_gbps:.0f} GB/s)")


def stream_gaps(http, url, question, max_tokens):
    """(wall-clock end, seconds) of each gap between the content pieces of one streamed answer."""
    gaps, last = [], None
    body = {"model": "secbot", "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
            "stream": True}
    with http.stream("POST", url, json=body) as response:
        for line in response.iter_lines():
            if '"content"' in line and '"content":""' not in line.replace(" ", ""):
                now = time.time()
                if last is not None:
                    gaps.append((now, now - last))
                last = now
    return gaps


def long_question(engine, tokens: int) -> str:
    text, piece = "Summarise this log: ", "failed login for admin from 10.0.0.7 port 22; "
    while len(engine.prompts.ids(text)) < tokens:
        text += piece
    return text


def _runners(url: str, questions: list[str], seconds_queue, stop, ready) -> None:
    """In a process of its own (so client threads do not compete with the server for the GIL):
    stream answers to `questions` until `stop`, and send back every inter-token gap."""
    http = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=64))
    gaps: list[float] = []

    def runner(q):
        while not stop.is_set():
            gaps.extend(stream_gaps(http, url, q, 256))
            ready.set()

    threads = [threading.Thread(target=runner, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds_queue.put(gaps)


def mixed(engine, http, url, args) -> None:
    """8 streams answering while long prompts join one after another: the running streams'
    inter-token gaps (measured by clients in another process), against the time of one prefill
    chunk and one decode step."""
    import multiprocessing

    runners = [f"Question {i}: list all ports" for i in range(8)]
    longs = [long_question(engine, args.long_prompt) + f" case {i}" for i in range(4)]
    context = multiprocessing.get_context("spawn")
    stop, ready, result = context.Event(), context.Event(), context.Queue()
    clients = context.Process(target=_runners, args=(url, runners, result, stop, ready))
    clients.start()
    ready.wait(120)  # the streams are running
    time.sleep(3.0)  # a window without joins, for comparison
    started = time.time()
    for q in longs:
        http.post(url, json={"model": "secbot", "messages": [{"role": "user", "content": q}], "max_tokens": 4})
    ended = time.time()
    joined_s = ended - started
    stop.set()
    timed = result.get()
    clients.join()
    gaps = [g for at, g in timed if started <= at <= ended + 0.05]
    quiet = [g for at, g in timed if at < started - 0.05]
    chunk_s, step_s = prefill_chunk_seconds(engine, args.prefill_chunk, args.long_prompt)
    print(f"mixed workload: 8 streams running while {len(longs)} prompts of {args.long_prompt} tokens join "
          f"(prefill chunk {args.prefill_chunk}; all joined in {joined_s:.1f} s):")
    # Every step gives each running stream one token, so the time between steps is the time
    # between a stream's tokens; what clients see between text pieces is longer wherever the
    # tiny model's bytes need several tokens to make a whole character.
    steps = [(b[0], b[0] - a[0], b[1]) for a, b in zip(STEPS, STEPS[1:])]
    tokens = [g for at, g, _ in steps if started <= at <= ended]
    compute = [c for at, _, c in steps if started <= at <= ended]
    quiet_tokens = [g for at, g, _ in steps if started - 3.0 <= at < started]
    for label, values in (("while they join", tokens), ("without joins", quiet_tokens)):
        print(f"  running streams' inter-token gap {label}: p50 {percentile(values, 0.5) * 1000:.1f} ms  "
              f"p99 {percentile(values, 0.99) * 1000:.1f} ms  max {max(values) * 1000:.1f} ms  ({len(values)} steps)")
    for label, values in (("while they join", gaps), ("without joins", quiet)):
        print(f"  text pieces as clients receive them {label}: p50 {percentile(values, 0.5) * 1000:.1f} ms  "
              f"p99 {percentile(values, 0.99) * 1000:.1f} ms  max {max(values) * 1000:.1f} ms")
    print(f"  one decode step (8 rows) {step_s * 1000:.1f} ms + the slowest prefill chunk {chunk_s * 1000:.1f} ms "
          f"= {(step_s + chunk_s) * 1000:.1f} ms: the longest a running stream should wait")
    print(f"  inter-token gaps over that bound while joining: {sum(g > step_s + chunk_s for g in tokens)} "
          f"of {len(tokens)}; the steps' own compute: max {max(compute) * 1000:.1f} ms (the rest of a gap is "
          "the HTTP side and the clients sharing the CPU)")


def prefill_chunk_seconds(engine, chunk: int, prompt_tokens: int) -> tuple[float, float]:
    """Seconds for the slowest prefill chunk of a `prompt_tokens` prompt (the last: it attends to
    the whole prompt), and for one decode step of 8 rows."""
    ids = engine.prompts.ids(long_question(engine, prompt_tokens))
    with engine._lock, torch.inference_mode():
        decoder = Decoder(engine, chunk)
        row = Row(ids, Sampling(max_new_tokens=1), TextDeltas(engine.tokenizer, set(), 1))
        joining = _Joining(decoder, [row])
        chunk_s, done = 0.0, False
        while not done:
            sync(engine.device)
            t = time.perf_counter()
            done = joining.step(decoder, chunk)
            sync(engine.device)
            chunk_s = max(chunk_s, time.perf_counter() - t)
        rows = [Row(engine.prompts.ids(f"Question {i}"), Sampling(max_new_tokens=2),
                    TextDeltas(engine.tokenizer, set(), 2)) for i in range(8)]
        batch = _Joining(decoder, rows)
        batch.step(decoder, 10_000)
        sync(engine.device)
        t = time.perf_counter()
        decoder._decode(batch.batch)
        sync(engine.device)
        step_s = time.perf_counter() - t
    return chunk_s, step_s


def costs(engine, args) -> None:
    """What a join (cache concatenation) and a leave (row selection) of the running batch copy."""
    context = [256, 1024, 4096]
    with engine._lock, torch.inference_mode():
        decoder = Decoder(engine)
        for width in context:
            if width + 8 > engine.context_length():
                continue
            rows = [Row([engine.tokenizer.pad_token_id + 1] * width, Sampling(max_new_tokens=1),
                        TextDeltas(engine.tokenizer, set(), 1)) for _ in range(8)]
            full = _Joining(decoder, rows)
            full.step(decoder, 1 << 20)
            one = _Joining(decoder, rows[:1])
            one.step(decoder, 1 << 20)
            sync(engine.device)
            t = time.perf_counter()
            full.batch.extend(one.batch)
            sync(engine.device)
            join_s = time.perf_counter() - t
            t = time.perf_counter()
            full.batch.keep(list(range(8)))
            sync(engine.device)
            leave_s = time.perf_counter() - t
            t = time.perf_counter()
            decoder._decode(full.batch)
            sync(engine.device)
            step_s = time.perf_counter() - t
            size = sum(l.keys.numel() * l.keys.element_size() * 2 for l in full.batch.cache.layers)
            print(f"  batch of 8+1 rows x {width} tokens ({size / 1e6:.0f} MB of KV cache): join {join_s * 1000:.1f} ms, "
                  f"leave {leave_s * 1000:.1f} ms, one decode step {step_s * 1000:.1f} ms")


if __name__ == "__main__":
    main()
