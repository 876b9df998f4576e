"""Model-server throughput and latency at concurrency 1, 8 and 32, beside sequential generate.

    python bench/serve.py                                   # tiny model, CPU
    python bench/serve.py --random glm-4-9b --device cuda --hbm-gbps 3350

The server (`secbot serve-model`'s app) runs under uvicorn in this process, once per batching
mode; the clients are real HTTP requests. Throughput counts the tokens actually generated.
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


from common import add_model_args, random_glm4_9b, sync  # noqa: E402

import httpx  # noqa: E402
import torch  # noqa: E402
import uvicorn  # noqa: E402

from secbot.model.engine import Engine  # noqa: E402
from secbot.model.generation import Sampling  # noqa: E402
from secbot.model.prompting import PromptBuilder, PromptFormat  # noqa: E402
from secbot.model.server import create_server  # noqa: E402
from secbot.model.tiny import build_tiny_model  # noqa: E402


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
    parser.add_argument("--batching", default="continuous,static",
                        help="batching modes to measure, comma-separated")
    parser.add_argument("--hbm-gbps", type=float)
    args = parser.parse_args()
    if not args.device.startswith("cuda") and (os.cpu_count() or 1) > 1:
        # Server and clients share this process: on a CPU, leave them a core, or torch's spinning
        # threads starve the HTTP side (on 2 cores: concurrency 1 at 0.4x sequential instead of 1.0x).
        torch.set_num_threads((os.cpu_count() or 2) - 1)

    if args.random:
        loaded = random_glm4_9b(args.device, args.dtype)
        engine = Engine(loaded, PromptBuilder(loaded.tokenizer, PromptFormat.CHAT_TEMPLATE, None))
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
    for mode in args.batching.split(","):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_server(engine, max_batch=args.max_batch, batching=mode),
                                               host="127.0.0.1", port=port, log_level="error"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"

        def one(q):
            t = time.perf_counter()
            r = http.post(url, json={"messages": [{"role": "user", "content": q}], "max_tokens": args.new_tokens})
            r.raise_for_status()
            return time.perf_counter() - t, r.json()["usage"]["completion_tokens"]

        print(f"{mode} batching (up to {args.max_batch} requests together):")
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
        server.should_exit = True
    if args.hbm_gbps:
        weights = sum(p.numel() * p.element_size() for p in engine.loaded.model.parameters())
        print(f"batch-1 bandwidth bound: {args.hbm_gbps * 1e9 / weights:.1f} tokens/s "
              f"({weights / 1e9:.1f} GB of weights / {args.hbm_gbps:.0f} GB/s)")


if __name__ == "__main__":
    main()
