"""Team memory: does a correction answer questions asked in other words, and how fast is it?

    python bench/memory.py                 # quality (test half), then timing at 1k, 10k, 100k records
    python bench/memory.py --sizes 1000    # quicker
    python bench/memory.py --fit           # fit the combination on the calibration half, print it
    python bench/memory.py --embedding-model DIR   # also a local sentence-transformers model

Quality, first: `data/memory_round2.json` (written for this: 122 paraphrase pairs, 42 of them
synonyms with no shared key word, 42 Chinese and 14 across English and Chinese, and 123 near
misses that share a stored question's words but ask something else), on top of the 166 built-in
security Q&A as distractors. Split once when written into a calibration half (the combination's
weights and the thresholds were chosen on it) and a test half, the only one reported. Each
question's confident answer (confidence >= SECBOT_MEMORY_CONFIDENT) is right when it is the
stored question it paraphrases (or that question's translation); recall counts paraphrases
answered right, precision the confident answers that were right, near misses included. Lexical
alone and lexical + semantic (the embedded static model) side by side, with the most any
combination of the two signals could answer right (the record first under some weighting).

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
import math
import random
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from secbot.feedback.learning.evalsets import builtin_heldout, calibration_questions, general_set
from secbot.feedback.store.entities import RecordSource, RecordStatus
from secbot.feedback.store.records import NewRecord
from secbot.feedback.store.repositories import Store
from secbot.model.training.record_formats import Record

DATA = json.loads((Path(__file__).parent / "data" / "memory_paraphrases.json").read_text(encoding="utf-8"))
ROUND2 = json.loads((Path(__file__).parent / "data" / "memory_round2.json").read_text(encoding="utf-8"))
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


def semantic_store(url: str, embedder) -> Store:
    return Store(url, embedder=embedder, calibration_questions=calibration_questions() if embedder else ())


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


def round2_store(tmp: str, embedder) -> tuple[Store, dict[int, int]]:
    """The built-in distractors and every stored question of the round-2 set, approved; returns the
    store and each record's answer group (translations share one)."""
    store = semantic_store(f"sqlite:///{tmp}/round2-{embedder.name if embedder else 'lexical'}.db", embedder)
    stored = list(dict.fromkeys([p["stored"] for p in ROUND2["pairs"]] + [n["stored"] for n in ROUND2["near_misses"]]))
    group = {q: i for i, q in enumerate(stored)}
    for en, zh in ROUND2["same_answer"]:
        group[zh] = group[en]
    approve(store, general_set() + builtin_heldout())
    approve(store, [Record(q, f"Team answer #{group[q]}") for q in stored])
    by_prompt = {r.prompt: r.id for r in store.records.list(RecordStatus.APPROVED)}
    return store, {"record": {by_prompt[q]: g for q, g in group.items()}, "stored": group}


def round2_results(store: Store, groups: dict, half: str) -> list[dict]:
    """Per asked question of `half`: what it should get (None for a near miss) and the matches."""
    out = []
    for p in ROUND2["pairs"]:
        if p["split"] == half:
            out.append({"kind": p["kind"], "expect": groups["stored"][p["stored"]],
                        "matches": store.memory.search(p["asked"], k=8)})
    for n in ROUND2["near_misses"]:
        if n["split"] == half:
            out.append({"kind": "near miss", "expect": None, "matches": store.memory.search(n["asked"], k=8)})
    return out


def scores(results: list[dict], groups: dict, threshold: float, kinds: set[str] | None = None) -> dict:
    pairs = [r for r in results if r["expect"] is not None and (kinds is None or r["kind"] in kinds)]
    confident = [r for r in results if r["matches"] and r["matches"][0].confidence >= threshold]
    right = [r for r in confident if r["expect"] is not None and groups["record"].get(r["matches"][0].record_id) == r["expect"]]
    recall = sum(1 for r in right if r in pairs)
    return {"recall": 100 * recall / len(pairs) if pairs else 0.0, "n": len(pairs), "hits": recall,
            "precision": 100 * len(right) / len(confident) if confident else 100.0,
            "wrong": len(confident) - len(right)}


def referenced(results: list[dict], groups: dict, reference: float, top: int = 3) -> tuple[int, int]:
    """Paraphrases whose record is among the references the model would get (as `Responder.lookup`
    picks them: either signal, ordered by rank fusion where there is one), of all paraphrases."""
    from secbot.feedback.memory.semantic import worth_referencing

    hits = pairs = 0
    for r in results:
        if r["expect"] is None:
            continue
        kept = [m for m in r["matches"] if worth_referencing(m, reference)]
        kept = sorted(kept, key=lambda m: -(m.fused or 0.0)) if kept and kept[0].fused is not None else kept
        pairs += 1
        hits += any(groups["record"].get(m.record_id) == r["expect"] for m in kept[:top])
    return hits, pairs


def fit(results: list[dict], groups: dict, target_precision: float = 99.0) -> dict[str, float]:
    """Logistic regression over the combination's features (every candidate of every calibration
    question, labelled by whether it is the right record), then the intercept moved so that the
    loosest threshold with `target_precision` on this half sits at SECBOT_MEMORY_CONFIDENT."""
    import math

    import numpy as np

    from secbot.feedback.memory.semantic import combined

    names = ["lexical", "z", "soft_mismatch", "hard_mismatch"]
    x, y = [], []
    for r in results:
        for m in r["matches"]:
            if m.features is not None:
                x.append([1.0] + [m.features[n] for n in names])
                y.append(1.0 if r["expect"] is not None and groups["record"].get(m.record_id) == r["expect"] else 0.0)
    x, y = np.array(x), np.array(y)
    w = np.zeros(x.shape[1])
    for _ in range(50):  # Newton's method with a little L2, for a well-posed fit on few positives
        p = 1 / (1 + np.exp(-x @ w))
        grad = x.T @ (p - y) + 0.1 * np.r_[0, w[1:]]
        hess = (x * (p * (1 - p))[:, None]).T @ x + 0.1 * np.diag(np.r_[0, np.ones(len(names))])
        w -= np.linalg.solve(hess, grad)
    weights = {"intercept": float(w[0])} | {n: float(v) for n, v in zip(names, w[1:])}

    def top(r):
        best = max((m for m in r["matches"] if m.features is not None),
                   key=lambda m: combined(m.features, weights), default=None)
        return (combined(best.features, weights), best) if best else (0.0, None)

    ranked = sorted((top(r) + (r,) for r in results), key=lambda t: -t[0])
    threshold, right, wrong = 1.0, 0, 0
    for p, best, r in ranked:
        good = r["expect"] is not None and groups["record"].get(best.record_id) == r["expect"]
        right, wrong = right + good, wrong + (not good)
        if 100 * right / (right + wrong) < target_precision:
            break
        threshold = p
    logit = lambda q: math.log(q / (1 - q))  # noqa: E731
    weights["intercept"] += logit(DEFAULT) - logit(min(max(threshold, 1e-6), 1 - 1e-6))
    return {k: round(v, 3) for k, v in weights.items()}


def earlier_set(embedder) -> tuple[list[dict], dict[int, int]]:
    """The earlier paraphrase set (memory_paraphrases.json, read and tuned on long ago), as
    calibration material in the same shape: its easy paraphrases keep the fit honest about them."""
    with tempfile.TemporaryDirectory() as tmp:
        store = semantic_store(f"sqlite:///{tmp}/earlier.db", embedder)
        approve(store, general_set() + builtin_heldout())
        approve(store, [Record(p["question"], p["answer"]) for p in DATA["pairs"]])
        ids = team_ids(store)
        groups = {rid: i for i, rid in enumerate(ids.values())}
        results = [{"kind": "earlier", "expect": groups[ids[p["question"]]],
                    "matches": store.memory.search(p["paraphrase"], k=8)} for p in DATA["pairs"]]
        results += [{"kind": "near miss", "expect": None, "matches": store.memory.search(q, k=8)}
                    for q in DATA["unrelated"]]
        store.close()
    return results, groups


def round2(embedder, half: str) -> tuple[list[dict], dict]:
    with tempfile.TemporaryDirectory() as tmp:
        store, groups = round2_store(tmp, embedder)
        store.memory.warm()
        results = round2_results(store, groups, half)
        store.close()
    return results, groups


def timing(sizes: list[int], embedder=None, lookups: int = 400) -> list[dict]:
    queries = [p["paraphrase"] for p in DATA["pairs"]] + DATA["unrelated"]
    out = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = semantic_store(f"sqlite:///{tmp}/bench.db", embedder)
            team = [Record(p["question"], p["answer"]) for p in DATA["pairs"]]
            index_s = approve(store, synthetic(n - len(team)) + team)
            store.memory.warm()
            store.memory.search(queries[0])  # loads the vectors, once per process and change
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


def first_somehow(results: list[dict], groups: dict, kinds: set[str] | None = None) -> tuple[int, int]:
    """Paraphrases whose record ranks first under *some* weighting of words and meaning (lexical
    confidence + t × z, t from 0 to meaning alone), of all paraphrases: no combination of the two
    signals answers more of them right, whatever its threshold."""
    weightings = [0.0] + [10 ** (k / 10) for k in range(-30, 21)] + [math.inf]

    def score(m, t: float) -> float:
        z = (m.features or {}).get("z")
        if t == math.inf:
            return z if z is not None else -math.inf
        lexical = m.lexical if m.lexical is not None else m.confidence  # words alone: the confidence is lexical
        return lexical + (t * z if z is not None and t else 0.0)

    pairs = [r for r in results if r["expect"] is not None and (kinds is None or r["kind"] in kinds)]
    first = sum(any(groups["record"].get(max(r["matches"], key=lambda m: score(m, t)).record_id) == r["expect"]
                    for t in weightings) for r in pairs if r["matches"])
    return first, len(pairs)


def rescored(results: list[dict], weights: dict[str, float]) -> list[dict]:
    """The same candidates under other combination weights (a model's own fit)."""
    from secbot.feedback.memory.semantic import combined

    out = []
    for r in results:
        matches = [replace(m, confidence=round(combined(m.features, weights), 4)) if m.features else m
                   for m in r["matches"]]
        out.append(r | {"matches": sorted(matches, key=lambda m: (-m.confidence, -m.bm25, m.record_id))})
    return out


def calibration_fit(embedder) -> dict[str, float]:
    """The combination fitted for `embedder` on the calibration half and the earlier set."""
    results, groups = round2(embedder, "calibration")
    earlier, earlier_groups = earlier_set(embedder)
    offset = max(groups["record"].values()) + 1  # keep the two sets' answer groups apart
    for r in earlier:
        r["matches"] = [replace(m, record_id=-m.record_id) for m in r["matches"]]
        r["expect"] = None if r["expect"] is None else r["expect"] + offset
    groups["record"] |= {-rid: g + offset for rid, g in earlier_groups.items()}
    return fit(results + earlier, groups)


def report_round2(embedders: list) -> None:
    """The test half, words alone and with each embedder: with the shipped combination, and for a
    model other than the default also with the combination fitted for it on the calibration half."""
    from secbot.feedback.memory.matching import CONFIDENT, REFERENCE

    print(f"Quality on the test half of memory_round2.json (confident answers at {CONFIDENT}; "
          f"'referenced': the paraphrased record among the 3 references the model gets otherwise):")
    print(f"{'matching':<52} {'recall %':>9} {'synonyms %':>11} {'chinese %':>10} {'cross %':>8} "
          f"{'reworded %':>11} {'precision %':>12} {'wrong':>6} {'referenced':>11} {'first somehow':>14}")
    rows = [("lexical alone", None, None)]
    for i, model in enumerate(embedders):
        rows.append((f"lexical + semantic ({model.name})", model, None))
        if i:
            rows.append((f"  the same, combination fitted for it", model, calibration_fit(model)))
    for label, model, weights in rows:
        results, groups = round2(model, "test")
        if weights:
            results = rescored(results, weights)
        overall = scores(results, groups, CONFIDENT)
        by_kind = {k: scores(results, groups, CONFIDENT, {k}) for k in
                   ("synonym", "chinese", "cross-language", "reworded")}
        print(f"{label:<52} {overall['recall']:>9.1f} {by_kind['synonym']['recall']:>11.1f} "
              f"{by_kind['chinese']['recall']:>10.1f} {by_kind['cross-language']['recall']:>8.1f} "
              f"{by_kind['reworded']['recall']:>11.1f} {overall['precision']:>12.1f} {overall['wrong']:>6} "
              f"{'%d/%d' % referenced(results, groups, REFERENCE):>11} "
              f"{'%d/%d' % first_somehow(results, groups):>14}"
              + (f" (synonyms {'%d/%d' % first_somehow(results, groups, {'synonym'})})" if model else ""))
    print(f"  ({overall['n']} paraphrases: " + ", ".join(f"{k} {v['n']}" for k, v in by_kind.items())
          + f"; {sum(r['expect'] is None for r in results)} near misses; 'first somehow': the paraphrased "
          "record ranks first for some weighting of words and meaning, the most any combination answers)\n")


def confirmation_cost(n: int = 20) -> float:
    """Milliseconds one borderline confirmation takes on the tiny reference model in this process
    (a prompt of two questions, the first word of the reply): the mechanics' cost, not a real
    model's (there: one prefill of ~80 tokens and two or three decode steps)."""
    from secbot.feedback.answering import Responder
    from secbot.model.runtime.engine import Engine
    from secbot.model.runtime.tiny import ensure_tiny_model
    from secbot.model.serving.client import InProcessClient

    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine.load(ensure_tiny_model(Path(tmp) / "tiny"))
        responder = Responder(None, None, InProcessClient(engine))
        responder.same_question("How long are proxy logs kept?", "How long do we keep proxy logs?")
        started = time.perf_counter()
        for _ in range(n):
            responder.same_question("How long are proxy logs kept?", "How long do we keep proxy logs?")
        return 1000 * (time.perf_counter() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--fit", action="store_true",
                        help="fit the combination's weights on the calibration half and print them")
    parser.add_argument("--embedding-model", metavar="DIR",
                        help="a local sentence-transformers directory, measured beside the embedded default "
                             "(with --fit: the model to fit for)")
    args = parser.parse_args()
    from secbot.model.runtime.embeddings import SentenceTransformersEmbedder, StaticEmbedder

    embedder = StaticEmbedder()
    other = SentenceTransformersEmbedder(args.embedding_model) if args.embedding_model else None
    if args.fit:
        print("COMBINE =", calibration_fit(other or embedder))
        return
    report_round2([embedder] + ([other] if other else []))
    print(f"Confirming a borderline match with the chat model (SECBOT_MEMORY_CONFIRM): "
          f"{confirmation_cost():.0f} ms a question on the tiny reference model\n")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/quality.db")
        approve(store, general_set() + builtin_heldout())
        approve(store, [Record(p["question"], p["answer"]) for p in DATA["pairs"]])
        print(f"The earlier set (memory_paraphrases.json, lexical, tuned on): {len(DATA['pairs'])} paraphrases + "
              f"{len(DATA['unrelated'])} unrelated questions, memory of {store.memory.size()} records")
        print(f"{'threshold':>9} {'recall %':>9} {'precision %':>12} {'wrong':>6}")
        for row in quality(store):
            print(f"{row['threshold']:>9.2f} {row['recall']:>9.1f} {row['precision']:>12.1f} {row['wrong']:>6}")
        store.close()
    for label, model in (("lexical", None), (f"lexical + semantic, {embedder.name}", embedder)):
        print(f"\nSpeed on SQLite, {label} (synthetic approved records + the 40 team records):")
        print(f"{'records':>8} {'index s':>8} {'per 1k s':>9} {'lookup p50 ms':>14} {'p99 ms':>7}")
        for row in timing([int(s) for s in args.sizes.split(",")], model):
            print(f"{row['records']:>8} {row['index_s']:>8.1f} {1000 * row['index_s'] / row['records']:>9.2f} "
                  f"{row['p50_ms']:>14.2f} {row['p99_ms']:>7.2f}")


if __name__ == "__main__":
    main()
