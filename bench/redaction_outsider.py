"""Redaction on checkouts of text written outside the project, each split in two by a hash of its
detector, log or file name before anything in it was read (`split`): the tuning half may be read,
the held-out half is reported as figures only.

    python bench/redaction_outsider.py --trufflehog PATH --loghub PATH --splunk PATH [--show-misses]

- `--trufflehog`: a checkout of trufflesecurity/trufflehog. Its detectors' tests
  (`pkg/detectors/*/*_test.go`) give inputs written as configs, code, logs and chat, each with the
  secrets the detector must report; a case counts where the input is a literal and holds them. It
  is caught when its longest secret is gone (a detector also reports the user or host beside it).
  One half per detector.
- `--loghub`: a checkout of logpai/loghub, 2,000 lines of each of 16 systems' logs (Windows, Linux,
  OpenSSH, OpenStack, Hadoop, Spark, Android …): ordinary lines, one half per system.
- `--splunk`: a checkout of splunk/security_content, its `detections/**/*.yml` (SPL searches and
  their prose): ordinary lines, one half per file.
Target on the held-out halves, as for the project's own sets: >= 98% caught, <= 0.5% changed.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import re
import time
from pathlib import Path

from redaction import own_lines  # the distinct non-empty lines of the files a pattern matches

from secbot.feedback.intake.redaction import Redactor

GO_STRING = r'(?:`(?P<raw>[^`]*)`|"(?P<s>(?:[^"\\\n]|\\.)*)")'
GO_CASE = re.compile(r"input:\s*" + GO_STRING + r"\s*,\s*\n\s*want:\s*\[\]string\{(?P<want>[^}]*)\}")
GO_WANT = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


def split(key: str) -> str:
    """The half a detector, log or file belongs to, fixed by its name alone."""
    return "heldout" if hashlib.sha256(key.encode()).digest()[0] % 2 else "tuning"


def _go(literal: str) -> str:
    return literal.encode("utf-8").decode("unicode_escape")


def trufflehog_cases(root: Path) -> list[dict]:
    cases = []
    for path in sorted(root.glob("pkg/detectors/**/*_test.go")):
        if "integration" in path.name:
            continue
        detector = path.relative_to(root / "pkg" / "detectors").parts[0]
        for m in GO_CASE.finditer(path.read_text(encoding="utf-8", errors="replace")):
            text = m.group("raw") if m.group("raw") is not None else _go(m.group("s"))
            secrets = [s for s in map(_go, GO_WANT.findall(m.group("want"))) if s and s in text]
            if secrets:
                cases.append({"source": f"trufflehog:{detector}", "text": text, "secret": max(secrets, key=len),
                              "split": split(f"trufflehog:{detector}")})
    return cases


def ordinary_lines(loghub: Path | None, splunk: Path | None) -> list[dict]:
    lines = []
    if loghub:
        for path in sorted(glob.glob(str(loghub / "*" / "*_2k.log"))):
            system = Path(path).parent.name
            lines += [{"source": f"loghub:{system}", "text": line, "split": split(f"loghub:{system}")}
                      for line in own_lines(glob.escape(path))]
    if splunk:
        for path in sorted(glob.glob(str(splunk / "detections" / "**" / "*.yml"), recursive=True)):
            name = Path(path).relative_to(splunk).as_posix()
            lines += [{"source": "splunk", "text": line, "split": split(f"splunk:{name}")}
                      for line in own_lines(glob.escape(path))]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trufflehog", type=Path, help="a trufflesecurity/trufflehog checkout")
    ap.add_argument("--loghub", type=Path, help="a logpai/loghub checkout")
    ap.add_argument("--splunk", type=Path, help="a splunk/security_content checkout")
    ap.add_argument("--show-misses", action="store_true", help="print the tuning halves' misses and changed lines")
    args = ap.parse_args()
    if not (args.trufflehog or args.loghub or args.splunk):
        ap.error("name at least one checkout: --trufflehog, --loghub or --splunk")
    for flag, root, inside in (("--trufflehog", args.trufflehog, "pkg/detectors"), ("--loghub", args.loghub, "Linux"),
                               ("--splunk", args.splunk, "detections")):
        if root and not (root / inside).is_dir():
            ap.error(f"{flag} {root} has no {inside}/: point it at a checkout of that repository")
    redactor = Redactor()
    pastes = trufflehog_cases(args.trufflehog) if args.trufflehog else []
    lines = ordinary_lines(args.loghub, args.splunk)
    started = time.perf_counter()
    for half in ("heldout", "tuning"):
        label = "held-out" if half == "heldout" else "tuning"
        cases = [c for c in pastes if c["split"] == half]
        missed = [c for c in cases if c["secret"] in redactor.redact(c["text"]).text]
        if cases:
            print(f"trufflehog {label} half: {len(cases) - len(missed)}/{len(cases)} pasted credentials caught "
                  f"({100 * (1 - len(missed) / len(cases)):.1f}%, {len({c['source'] for c in cases})} detectors)")
        ordinary = [c for c in lines if c["split"] == half]
        changed = [c for c in ordinary if redactor.redact(c["text"]).text != c["text"]]
        by_source: dict[str, list[int]] = {}
        for c in ordinary:
            by_source.setdefault(c["source"].split(":")[0], [0, 0])[0] += 1
        for c in changed:
            by_source[c["source"].split(":")[0]][1] += 1
        for source, (n, m) in sorted(by_source.items()):
            print(f"{source} {label} half: {m}/{n} ordinary lines changed ({100 * m / n:.2f}%)")
        if args.show_misses and half == "tuning":
            for c in missed:
                print("MISS", c["source"], repr(c["text"][:300]))
            for c in changed:
                print("FP", c["source"], repr(c["text"][:300]), "->", repr(redactor.redact(c["text"]).text[:300]))
    total = len(pastes) + len(lines)
    print(f"speed: {1000 * (time.perf_counter() - started) / max(1, total):.2f} ms per text ({total})")


if __name__ == "__main__":
    main()
