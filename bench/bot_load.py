"""Load on the Slack app: N mentions at a fixed rate over HTTP, with Slack-style retries.

    python bench/bot_load.py [--events 500] [--rate 50] [--model-latency 0.5] [--retry-share 0.1]

The app is the real one (`secbot serve --http`'s ASGI app under uvicorn), signing checked, the
store on SQLite, Slack's Web API the local stand-in; only the model is replaced by one that
answers after a fixed delay, so the figures are the bot's own. Prints ack latency p50/p99,
answers delivered, duplicates (a thread answered twice) and lost (a thread never answered).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

from secbot.bot import configure
from secbot.bot.settings import Settings
from secbot.bot.slack.offline import OfflineSlack, event_body, mention_event, signature_headers
from secbot.bot.slack.transport import asgi_app
from secbot.feedback.store.repositories import Store

SECRET = "bench-secret"


class FixedLatencyModel:
    """Answers every question after `latency` seconds, in four streamed pieces."""

    version_id = None

    def __init__(self, latency: float):
        self.latency = latency

    def use_version(self, version):
        pass

    def stream(self, question, history, usage, system_prompt=None):
        for i in range(4):
            time.sleep(self.latency / 4)
            yield f"part {i} of the answer to {question!r}. "
        usage.prompt_tokens, usage.completion_tokens = 20, 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--model-latency", type=float, default=0.5)
    parser.add_argument("--retry-share", type=float, default=0.1, help="share of events delivered twice")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp())
    with OfflineSlack() as slack:
        settings = Settings.read(None, storage={"data_dir": tmp},
                                 slack={"bot_token": "xoxb-bench", "signing_secret": SECRET, "api_url": slack.api_url})
        store = Store(settings.storage.url)
        app = configure.slack_app(settings, store, FixedLatencyModel(args.model_latency)).app
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(asgi_app(app), host="127.0.0.1", port=port,
                                               log_level="error", access_log=False))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}/slack/events"

        http = httpx.Client(limits=httpx.Limits(max_connections=64))
        latencies: list[float] = []
        statuses: list[int] = []
        lock = threading.Lock()

        def send(body: str, retry: bool) -> None:
            headers = signature_headers(body, SECRET)
            if retry:
                headers |= {"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"}
            start = time.perf_counter()
            response = http.post(url, content=body, headers=headers)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                statuses.append(response.status_code)

        retries = int(args.events * args.retry_share)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=64) as pool:
            for i in range(args.events):
                target = started + i / args.rate
                time.sleep(max(0.0, target - time.perf_counter()))
                body = event_body(mention_event(f"question {i}", channel="CLOAD", ts=f"{1000 + i}.1"),
                                  event_id=f"EvLOAD{i}")
                pool.submit(send, body, False)
                if i < retries:  # the same delivery again, as Slack retries it
                    pool.submit(send, body, True)
        sent_for = time.perf_counter() - started

        def answered():
            return sum(1 for i in range(args.events)
                       if any(b.get("type") == "context_actions" for m in slack.thread_messages("CLOAD", f"{1000 + i}.1")
                              for b in m.get("blocks") or []))

        deadline = time.time() + 60 + args.events * args.model_latency
        while answered() < args.events and time.time() < deadline:
            time.sleep(0.5)
        drained = time.perf_counter() - started
        started_answers: dict[str, int] = {}
        for call in slack.calls_to("chat.startStream"):
            key = call.params.get("thread_ts")
            started_answers[key] = started_answers.get(key, 0) + 1
        duplicates = sum(n - 1 for n in started_answers.values() if n > 1)
        delivered = answered()
        server.should_exit = True

    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(f"{args.events} events (+{retries} retried deliveries) at {args.events / sent_for:.1f}/s, "
          f"model latency {args.model_latency:.2f} s")
    print(f"ack latency: p50 {p(0.50):.1f} ms  p99 {p(0.99):.1f} ms  max {latencies[-1] * 1000:.1f} ms  "
          f"(mean {statistics.mean(latencies) * 1000:.1f} ms; HTTP statuses {sorted(set(statuses))})")
    print(f"answers delivered: {delivered}/{args.events}  duplicates: {duplicates}  "
          f"lost: {args.events - delivered}  (all answered after {drained:.1f} s)")


if __name__ == "__main__":
    main()
