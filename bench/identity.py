"""How well impostor answers are told from innocent mentions of vendors and models.

    python bench/identity.py [--show-misses]

`data/identity_cases.json`, `identity_round2.json` and `identity_round3.json` (each later round
written after the previous round's changes): answers that speak as another assistant or vendor and
answers that only mention one, English and Chinese, each split into a tuning and a held-out half
when written. The detector is tuned on the tuning halves; the held-out halves are the honest figures,
and together they hold 67 impostor and 66 innocent answers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from secbot.feedback.intake.identity import claims_other_identity

DATA = Path(__file__).parent / "data"
SETS = [("first set", "identity_cases.json"), ("second set", "identity_round2.json"),
        ("third set", "identity_round3.json")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--show-misses", action="store_true", help="print the tuning half's mistakes")
    args = ap.parse_args()
    started, answers, heldout = time.perf_counter(), 0, []
    for label, name in SETS:
        cases = json.loads((DATA / name).read_text(encoding="utf-8"))["cases"]
        answers += len(cases)
        heldout += [c for c in cases if c["split"] == "heldout"]
        for half in ("heldout", "tuning"):
            _report(label, half, [c for c in cases if c["split"] == half], args.show_misses)
    elapsed = time.perf_counter() - started
    _report("all sets", "heldout", heldout, False)
    print(f"speed: {1000 * elapsed / answers:.2f} ms per answer")


def _report(label: str, half: str, chosen: list[dict], show_misses: bool) -> None:
    said = [(c, claims_other_identity(c["text"])) for c in chosen]
    tp = sum(1 for c, hit in said if hit and c["impostor"])
    fp = [c["text"] for c, hit in said if hit and not c["impostor"]]
    fn = [c["text"] for c, hit in said if not hit and c["impostor"]]
    positives = sum(c["impostor"] for c in chosen)
    precision = tp / (tp + len(fp)) if tp + len(fp) else 1.0
    print(f"{label}, {'held-out' if half == 'heldout' else 'tuning'} half: precision {100 * precision:.1f}%, "
          f"recall {100 * tp / positives:.1f}% ({tp}/{positives} impostor answers caught, {len(fp)}/"
          f"{len(chosen) - positives} innocent answers flagged)")
    if show_misses and half == "tuning":
        for text in fn:
            print("  missed:", text)
        for text in fp:
            print("  flagged:", text)


if __name__ == "__main__":
    main()
