"""Team memory: does a correction answer questions asked in other words, and how fast is it?

    python bench/memory.py                 # quality sweep + timing at 1k, 10k, 100k records
    python bench/memory.py --sizes 1000    # quicker

Quality: `data/memory_paraphrases.json` (written for secbot: 40 team Q&A in English and Chinese,
each asked again in other words sharing its key words, and 34 unrelated questions, many sharing
words with stored ones) on top of secbot's 166 built-in security Q&A as distractors. For each
confidence threshold: recall (paraphrases answered confidently with the right record) and
precision (confident answers that were the right record, over paraphrases and unrelated).

Speed: synthetic approved records (questions from templates over a security vocabulary, a long
tail of terms like real data) added through the records repository on SQLite, which indexes
each in the same transaction; then lookups with the evaluation questions.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from secbot.feedback.learning.evalsets import builtin_heldout, general_set
from secbot.feedback.store.entities import RecordSource, RecordStatus
from secbot.feedback.store.records import NewRecord
from secbot.feedback.store.repositories import Store
from secbot.model.training.record_formats import Record

DATA = json.loads((Path(__file__).parent / "data" / "memory_paraphrases.json").read_text(encoding="utf-8"))
THRESHOLDS = [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]
DEFAULT = 0.75  # SECBOT_MEMORY_CONFIDENT

VERBS = ["configure", "rotate", "audit", "disable", "enable", "monitor", "patch", "isolate", "harden",
         "back up", "restore", "revoke", "scan", "encrypt", "decommission", "approve", "review", "log",
         "alert on", "segment"]
OBJECTS = ("firewall rule|VPN gateway|S3 bucket policy|IAM role|service account|TLS certificate|SSH key|"
           "database password|Kubernetes secret|Docker image|domain controller|GPO|Okta app|Azure AD group|"
           "EDR sensor|SIEM parser|WAF rule|load balancer|DNS zone|mail gateway|proxy allowlist|HSM key|"
           "Vault policy|Jenkins job|GitHub runner|Terraform state|backup job|NAS share|printer|badge reader|"
           "laptop|MDM profile|Splunk index|Sentinel workspace|Zeek sensor|honeypot|jump host|bastion|"
           "Redis cache|Kafka topic|Elastic cluster|API gateway|OAuth client|SAML app|Windows server|"
           "Linux host|macOS fleet|container registry|CI pipeline|cloud trail").split("|")
CONTEXTS = ["in production", "in staging", "on Linux", "on Windows", "in AWS", "in Azure", "in GCP",
            "after an incident", "during a pentest", "for contractors", "for the payments team",
            "for PCI scope", "before an audit", "in the DMZ", "for the HR app", "on weekends",
            "in the London office", "for the SOC", "in the data centre", "for new hires"]
ZH_VERBS = ["配置", "轮换", "审计", "禁用", "启用", "监控", "修补", "隔离", "加固", "备份", "恢复", "吊销"]
ZH_OBJECTS = ["防火墙规则", "VPN网关", "服务账号", "数据库密码", "证书", "域控制器", "邮件网关", "堡垒机",
              "终端代理", "日志索引", "容器镜像", "密钥", "访问策略", "备份任务", "告警规则"]
ZH_CONTEXTS = ["在生产环境", "在测试环境", "在云上", "在办公网", "在应急响应后", "在审计前", "给外包人员"]


def synthetic(n: int, seed: int = 0) -> list[Record]:
    rng = random.Random(seed)
    seen, out = set(), []
    while len(out) < n:
        if rng.random() < 0.8:
            q = (f"How do I {rng.choice(VERBS)} the {rng.choice(OBJECTS)} {rng.choice(CONTEXTS)} "
                 f"for ticket SEC-{rng.randrange(100000)}?")
        else:
            q = f"{rng.choice(ZH_CONTEXTS)}如何{rng.choice(ZH_VERBS)}{rng.choice(ZH_OBJECTS)}（工单{rng.randrange(100000)}）？"
        if q not in seen:
            seen.add(q)
            out.append(Record(q, f"Follow runbook RB-{rng.randrange(1000)}."))
    return out


def approve(store: Store, records: list[Record]) -> float:
    """Add records as approved (each indexed in the same transaction); seconds taken."""
    started = time.perf_counter()
    store.records.add_many([NewRecord(r, RecordSource.IMPORT, RecordStatus.APPROVED, "bench", reviewer="bench")
                            for r in records])
    return time.perf_counter() - started


def team_ids(store: Store) -> dict[str, int]:
    """Team question -> its record id."""
    by_prompt = {r.prompt: r.id for r in store.records.list(RecordStatus.APPROVED)}
    return {p["question"]: by_prompt[p["question"]] for p in DATA["pairs"]}


def quality(store: Store) -> list[dict]:
    ids = team_ids(store)
    pairs = [(p["paraphrase"], ids[p["question"]]) for p in DATA["pairs"]]
    top = {q: store.memory.search(q, k=3) for q, _ in pairs}
    top |= {q: store.memory.search(q, k=3) for q in DATA["unrelated"]}
    rows = []
    for threshold in THRESHOLDS:
        right = sum(bool(top[q]) and top[q][0].confidence >= threshold and top[q][0].record_id == rid
                    for q, rid in pairs)
        confident = sum(bool(m) and m[0].confidence >= threshold for m in top.values())
        rows.append({"threshold": threshold, "recall": 100 * right / len(pairs),
                     "precision": 100 * right / confident if confident else 100.0,
                     "wrong": confident - right})
    return rows


def timing(sizes: list[int], lookups: int = 400) -> list[dict]:
    queries = [p["paraphrase"] for p in DATA["pairs"]] + DATA["unrelated"]
    out = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(f"sqlite:///{tmp}/bench.db")
            team = [Record(p["question"], p["answer"]) for p in DATA["pairs"]]
            index_s = approve(store, synthetic(n - len(team)) + team)
            store.memory.warm()
            times = []
            for i in range(lookups):
                started = time.perf_counter()
                store.memory.search(queries[i % len(queries)])
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            q = quality(store)
            store.close()
        out.append({"records": n, "index_s": index_s, "p50_ms": statistics.median(times),
                    "p99_ms": times[int(0.99 * len(times)) - 1],
                    "quality_at_default": next(r for r in q if r["threshold"] == DEFAULT)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/quality.db")
        approve(store, general_set() + builtin_heldout())
        approve(store, [Record(p["question"], p["answer"]) for p in DATA["pairs"]])
        print(f"Quality: {len(DATA['pairs'])} paraphrases + {len(DATA['unrelated'])} unrelated questions, "
              f"memory of {store.memory.size()} records")
        print(f"{'threshold':>9} {'recall %':>9} {'precision %':>12} {'wrong':>6}")
        for row in quality(store):
            print(f"{row['threshold']:>9.2f} {row['recall']:>9.1f} {row['precision']:>12.1f} {row['wrong']:>6}")
        store.close()
    print("\nSpeed on SQLite (synthetic approved records + the 40 team records):")
    print(f"{'records':>8} {'index s':>8} {'per 1k s':>9} {'lookup p50 ms':>14} {'p99 ms':>7} "
          f"{'recall@0.75':>12} {'precision@0.75':>15}")
    for row in timing([int(s) for s in args.sizes.split(",")]):
        q = row["quality_at_default"]
        print(f"{row['records']:>8} {row['index_s']:>8.1f} {1000 * row['index_s'] / row['records']:>9.2f} "
              f"{row['p50_ms']:>14.2f} {row['p99_ms']:>7.2f} {q['recall']:>12.1f} {q['precision']:>15.1f}")


if __name__ == "__main__":
    main()
