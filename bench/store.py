"""Feedback-store figures on SQLite (or --url): turns recorded per second, import (with team-memory
indexing) and snapshot time for 100k approved records.

    python bench/store.py [--records 100000] [--turns 2000] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from secbot.feedback.intake.identity import IdentityGuard
from secbot.feedback.intake.submissions import Intake
from secbot.feedback.learning.curation import curate
from secbot.feedback.store.entities import RecordStatus
from secbot.feedback.store.repositories import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--url", help="database URL (default: a fresh SQLite file)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    url = args.url or f"sqlite:///{tmp / 'bench.db'}"
    store = Store(url)
    intake = Intake(store)
    print(f"database {url.split('@')[-1]}")

    start = time.perf_counter()
    for i in range(args.turns):
        turn = intake.question(channel="CBENCH", thread_ts=f"{i // 10}.0", question=f"How do I triage alert {i}?",
                               asker="UBENCH", question_ts=f"{i}.1")
        intake.answer(turn, f"Check the process tree and network connections of host {i}.", answer_ts=f"{i}.2",
                      latency_ms=900, prompt_tokens=40, completion_tokens=20)
        store.conversations.add_answer_messages(turn, "CBENCH", [f"{i}.2"])
    elapsed = time.perf_counter() - start
    print(f"turns: {args.turns / elapsed:.0f} turns/s ({elapsed / args.turns * 1000:.2f} ms each: question and "
          "answer redacted, three transactions)")

    data = tmp / "records.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for i in range(args.records):
            fh.write(json.dumps({"prompt": f"Question {i}: what does event {i % 5000} mean?",
                                 "response": f"Answer {i}: it means a logon of type {i % 11}.",
                                 "history": [[f"context {i}", "ok"]] if i % 3 == 0 else []}) + "\n")
    start = time.perf_counter()
    result = intake.import_file(data)
    print(f"import {result.added} records: {time.perf_counter() - start:.1f} s (one transaction: redaction, "
          "identity checks, team-memory indexing)")

    start = time.perf_counter()
    curated = curate(store.records.list(RecordStatus.APPROVED),
                     [f"Question {i}: what does event {i} mean?" for i in range(100)], IdentityGuard(), 1.0)
    snapshot = store.records.create_snapshot(curated.kept, curated.summary())
    print(f"snapshot of {len(snapshot.record_ids)} records: {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    store.records.snapshot_records(snapshot.id)
    print(f"snapshot records reloaded for training: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
