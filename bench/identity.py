"""How well impostor answers are told from innocent mentions of vendors and models.

    python bench/identity.py [--show-misses]

`data/identity_cases.json`: answers that speak as another assistant or vendor and answers that
only mention one, English and Chinese, each split into a tuning and a held-out half when written.
The detector was tuned on the tuning half; the held-out half is the honest figure.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from secbot.feedback.intake.identity import claims_other_identity

DATA = Path(__file__).parent / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--show-misses", action="store_true", help="print the tuning half's mistakes")
    args = ap.parse_args()
    cases = json.loads((DATA / "identity_cases.json").read_text(encoding="utf-8"))["cases"]
    started = time.perf_counter()
    for half in ("heldout", "tuning"):
        chosen = [c for c in cases if c["split"] == half]
        said = [(c, claims_other_identity(c["text"])) for c in chosen]
        tp = sum(1 for c, hit in said if hit and c["impostor"])
        fp = [c["text"] for c, hit in said if hit and not c["impostor"]]
        fn = [c["text"] for c, hit in said if not hit and c["impostor"]]
        positives = sum(c["impostor"] for c in chosen)
        precision = tp / (tp + len(fp)) if tp + len(fp) else 1.0
        print(f"{'held-out' if half == 'heldout' else 'tuning'} half: precision {100 * precision:.1f}%, recall "
              f"{100 * tp / positives:.1f}% ({tp}/{positives} impostor answers caught, {len(fp)}/"
              f"{len(chosen) - positives} innocent answers flagged)")
        if args.show_misses and half == "tuning":
            for text in fn:
                print("  missed:", text)
            for text in fp:
                print("  flagged:", text)
    print(f"speed: {1000 * (time.perf_counter() - started) / len(cases):.2f} ms per answer")


if __name__ == "__main__":
    main()
