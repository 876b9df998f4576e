"""How well redaction holds: recall on published scanner test data and on paste-style cases,
false positives on ordinary security text.

    python bench/redaction.py [--show-misses]
    python bench/redaction.py --fit --ordinary 'sigma/rules/**/*.yml' \
        --ordinary 'panther-analysis/rules/**/*.yml' \
        --outsider credsweeper=CredSweeper --outsider loghub=loghub ...   # refit the last signal

`--fit` fits the redactor's last signal (`feedback/intake/redaction/classifier.py`) on the tuning
material only: (b), (c), (f), (g) whole and the tuning halves of (w), (v), (u), (t), (s), (r), (q), (p), (o), (n), (m), (l), (k), (j), (i), (h), (d) and (e), labelled by their
secrets, the `--ordinary` files (e.g. a detection-rule checkout) as text that holds none, and the
tuning halves of `--outsider NAME=PATH` checkouts (any flag of `redaction_outsider.py`: their
labelled credentials and their ordinary text); its threshold is above every value of the project's
ordinary lines, so it changes none of them, changes at most one in 10,000 texts of the `--ordinary`
files and outsider checkouts, and is never below 0.5.

(a) `data/secret_corpus.json`: gitleaks' rule samples (a secret from each rule's own pattern in
    its sample templates) and detect-secrets' plugin test payloads; built by
    `build_secret_corpus.py`, sources named there. A gitleaks sample counts as caught when its
    secret is gone; a detect-secrets payload when anything in it was redacted.
(b) `data/redaction_cases.json` "paste": credentials as analysts paste them, English and Chinese.
(c) `data/redaction_cases.json` "ordinary": lines that must come through unchanged.
(d) `data/redaction_round4.json` and (e) `data/redaction_round3.json`: pasted credentials and
    ordinary lines (shell history, tool output, configs, application code, cloud logs, detections,
    infrastructure code, mail headers, prose), each case split into a tuning and a held-out half
    when the file was written. Rules are chosen on the tuning halves; the held-out halves, which
    nobody has read, are the honest figures.
(h) `data/redaction_round5.json`: the fifth set, written the same way after the seventh round's rules.
(i) `data/redaction_round6.json`: the sixth set, written the same way after the eighth round's rules.
(j) `data/redaction_round7.json`: the seventh set, written the same way after the ninth round's changes.
(k) `data/redaction_round8.json`: the eighth set, written the same way after the tenth round's changes.
(l) `data/redaction_round9.json`: the ninth set, written the same way after the eleventh round's first changes.
(m) `data/redaction_round10.json`: the tenth set, written the same way after the eleventh round's changes.
(n) `data/redaction_round11.json`: the eleventh set, written the same way after the eleventh round's changes.
(o) `data/redaction_round12.json`: the twelfth set, written the same way after the twelfth round's changes.
(p) `data/redaction_round13.json`: the thirteenth set, written the same way after the twelfth round's changes.
(q) `data/redaction_round14.json`: the fourteenth set, written the same way after the thirteenth set's rules.
(r) `data/redaction_round15.json`: the fifteenth set, written the same way after the fourteenth set's rules.
(s) `data/redaction_round16.json`: the sixteenth set, written the same way after the fifteenth set's rules.
(t) `data/redaction_round17.json`: the seventeenth set, written the same way after the sixteenth set's rules.
(u) `data/redaction_round18.json`: the eighteenth set, written the same way after the seventeenth set's rules.
(v) `data/redaction_round19.json`: the nineteenth set, written the same way after the eighteenth set's rules.
(w) `data/redaction_round20.json`: the twentieth set, written the same way after the nineteenth set's first rules.
(f) `data/redaction_round2.json` and (g) `data/redaction_fresh.json`: the sets written that way
    before them. Their held-out halves were read once their figures were published, so both halves
    are tuning material now; shown for regressions.
Targets: (a) >= 95% of non-hex secrets, (b) >= 98%, (c) <= 1% false positives;
(w), (v), (u), (t), (s), (r), (q), (p), (o), (n), (m), (l), (k), (j), (i), (h), (d), (e) held-out: >= 98% of pasted credentials caught, <= 0.5% of ordinary lines changed.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import re
import time
from pathlib import Path

from secbot.feedback.intake.redaction import Redactor

DATA = Path(__file__).parent / "data"
SPLIT_SETS = [("(w)", "redaction_round20.json"), ("(v)", "redaction_round19.json"), ("(u)", "redaction_round18.json"), ("(t)", "redaction_round17.json"), ("(s)", "redaction_round16.json"), ("(r)", "redaction_round15.json"), ("(q)", "redaction_round14.json"), ("(p)", "redaction_round13.json"), ("(o)", "redaction_round12.json"), ("(n)", "redaction_round11.json"), ("(m)", "redaction_round10.json"),
              ("(l)", "redaction_round9.json"),
              ("(k)", "redaction_round8.json"), ("(j)", "redaction_round7.json"), ("(i)", "redaction_round6.json"), ("(h)", "redaction_round5.json"),
              ("(d)", "redaction_round4.json"), ("(e)", "redaction_round3.json"),
              ("(f)", "redaction_round2.json"), ("(g)", "redaction_fresh.json")]
HELD_OUT = {"(w)", "(v)", "(u)", "(t)", "(s)", "(r)", "(q)", "(p)", "(o)", "(n)", "(m)", "(l)", "(k)", "(j)", "(i)", "(h)", "(d)", "(e)"}  # the sets whose held-out halves nobody has read
# The share of `--ordinary` lines (text the project did not write) the last signal may change at most
# when it is fitted: a fiftieth of the 0.5% target, so one odd line there does not set the threshold.
EXTRA_BUDGET = 0.0001
CLASSIFIER = Path(__file__).parents[1] / "feedback" / "intake" / "redaction" / "classifier.json"


def caught(redactor: Redactor, text: str, secret: str | None) -> bool:
    out = redactor.redact(text).text
    return "[REDACTED:" in out if secret is None else secret not in out


def own_lines(pattern: str) -> list[str]:
    """The distinct non-empty lines of the files `pattern` matches."""
    return sorted({line.rstrip("\n") for path in glob.glob(pattern, recursive=True)
                   for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()})


def tuning_material(extra_pastes: list[dict] = ()) -> tuple[list[dict], list[str]]:
    """Every pasted credential and ordinary line that rules may be chosen on (never a held-out half),
    with `extra_pastes` (outsider checkouts' tuning halves)."""
    cases = json.loads((DATA / "redaction_cases.json").read_text(encoding="utf-8"))
    paste, ordinary = list(cases["paste"]) + list(extra_pastes), list(cases["ordinary"])
    for label, name in SPLIT_SETS:
        split = json.loads((DATA / name).read_text(encoding="utf-8"))
        halves = {"tuning"} if label in HELD_OUT else {"tuning", "heldout"}
        paste += [c for c in split["paste"] if c["split"] in halves]
        ordinary += [c["text"] for c in split["ordinary"] if c["split"] in halves]
    return paste, ordinary


def fit_classifier(extra_ordinary: list[str], extra_pastes: list[dict] = ()) -> dict:
    """Logistic regression over every value of the tuning material (a value is positive when it is
    the case's secret), then the threshold above every value the redactor leaves open in ordinary
    lines."""
    import numpy as np

    from secbot.feedback.intake.redaction import classifier

    paste, ordinary = tuning_material(extra_pastes)
    x, y = [], []
    for case in paste:
        secret = case["secret"]
        for start, end in classifier.candidates(case["text"]):
            value = case["text"][start:end]
            x.append(classifier.features(case["text"], start, end))
            y.append(float(bool(secret) and (value == secret or (secret in value and 2 * len(secret) >= len(value))
                                             or (value in secret and 2 * len(value) >= len(secret)))))
    for line in ordinary + extra_ordinary:
        for start, end in classifier.candidates(line):
            x.append(classifier.features(line, start, end))
            y.append(0.0)
    x, y = np.c_[np.ones(len(x)), np.array(x)], np.array(y)
    w = np.zeros(x.shape[1])
    ridge = np.diag(np.r_[0.0, np.ones(x.shape[1] - 1)])
    for _ in range(100):  # Newton's method with a little L2
        p = 1 / (1 + np.exp(-x @ w))
        w -= np.linalg.solve((x * (p * (1 - p))[:, None]).T @ x + ridge, x.T @ (p - y) + ridge @ w)
    weights = {n: round(float(v), 4) for n, v in zip(classifier.FEATURES, w[1:])}
    model = classifier.Model(weights, round(float(w[0]), 4), 1.0)  # scored as it will be stored
    redactor = Redactor()

    def line_scores(lines: list[str]) -> list[float]:
        return sorted((max((model.score(classifier.features(line, s, e)) for s, e in redactor.unjudged(line)),
                           default=0.0) for line in lines), reverse=True)

    # None of the project's ordinary lines changes; of the other text, at most EXTRA_BUDGET of lines.
    extra = line_scores(extra_ordinary)
    threshold = max(line_scores(ordinary)[:1] + extra[int(EXTRA_BUDGET * len(extra)):][:1] + [0.5])
    caught = sum(any(model.score(classifier.features(c["text"], s, e)) > threshold
                     for s, e in classifier.candidates(c["text"]) if c["secret"] and c["text"][s:e] == c["secret"])
                 for c in paste)
    print(f"fitted on {len(paste)} pasted credentials and {len(ordinary)} + {len(extra_ordinary)} ordinary lines "
          f"({int(y.sum())} secret values of {len(y)}); threshold {threshold:.4f}; alone it would catch "
          f"{caught}/{len(paste)} of the tuning pastes")
    return {"weights": weights, "intercept": model.intercept, "threshold": math.ceil(threshold * 1e6) / 1e6}


def main() -> None:
    import redaction_outsider as outsider  # beside this script (the tests load this file by its path)

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--show-misses", action="store_true",
                    help="print what was missed or changed (the held-out half only as figures)")
    ap.add_argument("--ordinary", metavar="GLOB", action="append", default=[],
                    help="also count the lines changed in text files of your own that hold no credentials "
                         "(a detection-rule checkout, exported logs), e.g. 'sigma/rules/**/*.yml'")
    ap.add_argument("--fit", action="store_true", help="fit the last signal on the tuning material and write it")
    ap.add_argument("--outsider", metavar="NAME=PATH", action="append", default=[],
                    help="with --fit, also the tuning half of a checkout redaction_outsider.py reads, "
                         "e.g. credsweeper=CredSweeper or loghub=loghub")
    args = ap.parse_args()
    checkouts = {}
    for given in args.outsider:
        name, _, path = given.partition("=")
        names = [*outsider.PASTES, *outsider.ORDINARY]
        if name not in names or not path:
            ap.error(f"--outsider {given}: give NAME=PATH, NAME one of " + ", ".join(names))
        if problem := outsider.not_a_checkout(name, Path(path)):
            ap.error(problem.replace(f"--{name} ", f"--outsider {name}=", 1))
        checkouts[name] = Path(path)
    if checkouts and not args.fit:
        ap.error("--outsider is read by --fit only; for its figures run bench/redaction_outsider.py")
    if args.fit:
        pastes, texts = outsider.tuning_halves(checkouts)
        fitted = fit_classifier([line for pattern in args.ordinary for line in own_lines(pattern)] + texts, pastes)
        CLASSIFIER.write_text(json.dumps(fitted, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {CLASSIFIER}")
        return
    redactor = Redactor()
    corpus = json.loads((DATA / "secret_corpus.json").read_text(encoding="utf-8"))["samples"]
    cases = json.loads((DATA / "redaction_cases.json").read_text(encoding="utf-8"))
    redactor.warm()
    started = time.perf_counter()

    def non_hex(sample):
        return sample["secret"] is None or not re.fullmatch(r"[0-9a-fA-F]+", sample["secret"])

    published = [s for s in corpus if non_hex(s)]
    misses_a = [s for s in published if not caught(redactor, s["text"], s["secret"])]
    hex_only = [s for s in corpus if not non_hex(s)]
    hex_caught = sum(caught(redactor, s["text"], s["secret"]) for s in hex_only)
    seen: set[str] = set()
    bare = [s for s in published if s["secret"] and not (s["secret"] in seen or seen.add(s["secret"]))]
    misses_bare = [s for s in bare if not caught(redactor, s["secret"], s["secret"])]
    misses_b = [c for c in cases["paste"] if not caught(redactor, c["text"], c["secret"])]
    false_positives = [(line, redactor.redact(line).text) for line in cases["ordinary"]
                       if redactor.redact(line).text != line]
    split_results, lines = {}, len(corpus) + len(cases["paste"]) + 2 * len(cases["ordinary"])
    for label, name in SPLIT_SETS:
        split = json.loads((DATA / name).read_text(encoding="utf-8"))
        lines += len(split["paste"]) + len(split["ordinary"])
        for half in ("heldout", "tuning"):
            paste = [c for c in split["paste"] if c["split"] == half]
            ordinary = [c["text"] for c in split["ordinary"] if c["split"] == half]
            split_results[label, half] = (
                paste, [c for c in paste if not caught(redactor, c["text"], c["secret"])],
                ordinary, [line for line in ordinary if redactor.redact(line).text != line])
    elapsed = time.perf_counter() - started
    by_source = {}
    for s in published:
        by_source.setdefault(s["source"].split(":")[0], [0, 0])[0] += 1
    for s in misses_a:
        by_source[s["source"].split(":")[0]][1] += 1
    print(f"(a) published scanner test data: {100 * (1 - len(misses_a) / len(published)):.1f}% of "
          f"{len(published)} non-hex samples caught"
          + "".join(f"; {src} {100 * (1 - m / n):.1f}% of {n}" for src, (n, m) in sorted(by_source.items()))
          + f" (hex-only secrets, kept by design outside a credential context: {hex_caught}/{len(hex_only)} caught)")
    print(f"    the same gitleaks secrets pasted alone, no context: {100 * (1 - len(misses_bare) / len(bare)):.1f}% "
          f"of {len(bare)} caught")
    print(f"(b) paste-style cases: {100 * (1 - len(misses_b) / len(cases['paste'])):.1f}% of {len(cases['paste'])} caught")
    print(f"(c) ordinary security text: {100 * len(false_positives) / len(cases['ordinary']):.1f}% of "
          f"{len(cases['ordinary'])} lines changed (false positives)")
    for (label, half), (paste, missed, ordinary, changed) in split_results.items():
        print(f"{label} {'held-out' if half == 'heldout' else 'tuning'} half: {len(paste) - len(missed)}/{len(paste)} "
              f"pasted credentials caught ({100 * (1 - len(missed) / len(paste)):.1f}%), "
              f"{len(changed)}/{len(ordinary)} "
              f"ordinary lines changed ({100 * len(changed) / len(ordinary):.1f}%)")
    print(f"speed: {1000 * elapsed / lines:.2f} ms per line ({lines} lines)")
    for pattern in args.ordinary:
        own = own_lines(pattern)
        changed = [line for line in own if redactor.redact(line).text != line]
        print(f"{pattern}: {len(changed)}/{len(own)} distinct lines changed ({100 * len(changed) / max(1, len(own)):.2f}%)")
        if args.show_misses:
            for line in changed:
                print("FP (own)", repr(line[:200]), "->", repr(redactor.redact(line).text[:200]))
    worst = {"one 200k-character word": "x" * 200_000, "20k assignments": "DB_PASSWORD=" * 20_000,
             "100k mention openers": "<@" * 100_000}
    for what, text in worst.items():
        started = time.perf_counter()
        redactor.redact(text)
        print(f"adversarial input, {what}: {time.perf_counter() - started:.2f} s")
    if args.show_misses:
        for s in misses_a:
            print("MISS (a)", s["source"], repr(s["text"][:120]), "->", repr(redactor.redact(s["text"]).text[:120]))
        for s in misses_bare:
            print("MISS (a, alone)", s["source"], repr(s["secret"][:80]))
        for c in misses_b:
            print("MISS (b)", repr(c["text"]), "->", repr(redactor.redact(c["text"]).text))
        for line, out in false_positives:
            print("FP (c)", repr(line), "->", repr(out))
        for label, _ in SPLIT_SETS:
            halves = ["tuning"] if label in HELD_OUT else ["tuning", "heldout"]  # the honest halves: figures only
            missed = [c for half in halves for c in split_results[label, half][1]]
            changed = [line for half in halves for line in split_results[label, half][3]]
            for c in missed:
                print(f"MISS {label}", repr(c["text"]), "->", repr(redactor.redact(c["text"]).text))
            for line in changed:
                print(f"FP {label}", repr(line), "->", repr(redactor.redact(line).text))


if __name__ == "__main__":
    main()
