"""Feedback-store figures on SQLite (or --url): turns recorded per second, import and snapshot
time for 100k approved records.

    python bench/store.py [--records 100000] [--turns 2000] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


from secbot.feedback.store import Store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    url = args.url or f"sqlite:///{tmp / 'bench.db'}"
    store = Store(url)
    print(f"database {url.split('@')[-1]}")

    start = time.perf_counter()
    history: list[tuple[str, str]] = []
    for i in range(args.turns):
        store.record_turn(channel="CBENCH", thread_ts=f"{i // 10}.0", question=f"How do I triage alert {i}?",
                          answer=f"Check the process tree and network connections of host {i}.",
                          history=history[-3:], latency_ms=900, prompt_tokens=40, completion_tokens=20)
    elapsed = time.perf_counter() - start
    print(f"record_turn: {args.turns / elapsed:.0f} turns/s ({elapsed / args.turns * 1000:.2f} ms each, "
          "question and answer redacted, two transactions)")

    data = tmp / "records.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for i in range(args.records):
            fh.write(json.dumps({"prompt": f"Question {i}: what does event {i % 5000} mean?",
                                 "response": f"Answer {i}: it means a logon of type {i % 11}.",
                                 "history": [[f"context {i}", "ok"]] if i % 3 == 0 else []}) + "\n")
    start = time.perf_counter()
    result = store.import_records(data)
    print(f"import {result.added} records: {time.perf_counter() - start:.1f} s (one transaction)")

    start = time.perf_counter()
    snap = store.freeze_snapshot(heldout_prompts=[f"Question {i}: what does event {i} mean?" for i in range(100)],
                                 max_author_share=1.0)
    print(f"freeze_snapshot of {len(snap.records)} records: {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    store.snapshot_records(snap.snapshot.id)
    print(f"snapshot_records (reload for training): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
