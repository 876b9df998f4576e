"""Builds `bench/data/secret_corpus.json` from published secret-scanner test data.

    python bench/build_secret_corpus.py --gitleaks PATH --detect-secrets PATH

- gitleaks (github.com/gitleaks/gitleaks, MIT), `config/gitleaks.toml`: gitleaks tests each rule
  with secrets generated from the rule's own pattern, written into its sample templates
  (`cmd/generate/config/utils/generate.go`, GenerateSampleSecrets). This does the same, seeded:
  for every rule, a secret from the rule's secret group, in three of those templates.
- detect-secrets (github.com/Yelp/detect-secrets, Apache-2.0), `tests/plugins/*_test.py`: every
  literal test payload a plugin test says must be flagged, except format templates ("{secret}")
  and public IP addresses (`ip_public_test.py`), which a security team keeps as indicators.

Run once; the output is committed (`bench/redaction.py` and the tests read it, offline).
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re._constants as C  # noqa: N812
import re._parser as parser
import string
import tomllib
from pathlib import Path

# Three of gitleaks' sample templates ({i}: the rule's keyword, {s}: the secret).
TEMPLATES = ['{i}Token = "{s}"', "{i}_token: '{s}'", 'var {i}Token string = "{s}"']
WORD = string.ascii_letters + string.digits + "_"
CAP = 12  # extra repetitions allowed beyond a repeat's minimum


def _charset(items, rng) -> str:
    negate = items and items[0][0] is C.NEGATE
    chars: set[str] = set()
    for op, av in items:
        if op is C.LITERAL:
            chars.add(chr(av))
        elif op is C.RANGE:
            chars.update(chr(c) for c in range(av[0], av[1] + 1) if c < 0x3000)
        elif op is C.CATEGORY:
            chars.update({C.CATEGORY_DIGIT: string.digits, C.CATEGORY_WORD: WORD,
                          C.CATEGORY_SPACE: " "}.get(av, ""))
    if negate:
        chars = set(WORD) - chars
    return rng.choice(sorted(chars)) if chars else "x"


def generate(tree, rng) -> str:
    out = []
    for op, av in tree:
        if op is C.LITERAL:
            out.append(chr(av))
        elif op is C.NOT_LITERAL:
            out.append(rng.choice([c for c in WORD if ord(c) != av]))
        elif op is C.ANY:
            out.append(rng.choice(WORD))
        elif op is C.IN:
            out.append(_charset(av, rng))
        elif op is C.BRANCH:
            out.append(generate(rng.choice(av[1]), rng))
        elif op is C.SUBPATTERN:
            out.append(generate(av[3], rng))
        elif op is C.ATOMIC_GROUP:
            out.append(generate(av, rng))
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            low, high, sub = av
            high = low + CAP if high is C.MAXREPEAT else min(high, low + CAP)
            out.extend(generate(sub, rng) for _ in range(rng.randint(low, high)))
    return "".join(out)


def secret_tree(pattern: str, group: int):
    """The parsed subpattern of capture group `group` (the whole pattern when it has none)."""
    tree = parser.parse(pattern)
    if tree.state.groups <= 1:
        return tree

    def find(items):
        for op, av in items:
            if op is C.SUBPATTERN and av[0] == group:
                return av[3]
            for child in (av if isinstance(av, (list, tuple)) else ()):
                if isinstance(child, parser.SubPattern):
                    found = find(child)
                    if found is not None:
                        return found
                elif isinstance(child, (list, tuple)):
                    for sub in child:
                        if isinstance(sub, parser.SubPattern):
                            found = find(sub)
                            if found is not None:
                                return found
        return None

    return find(tree)


def gitleaks_samples(root: Path, rng) -> list[dict]:
    rules = tomllib.loads((root / "config" / "gitleaks.toml").read_text())["rules"]
    out = []
    for rule in rules:
        pattern = rule.get("regex")
        if not pattern:
            continue
        try:
            tree = secret_tree(pattern.replace("\\z", "$"), rule.get("secretGroup", 1))
            if tree is None:
                continue
            secret = generate(tree, rng).strip()
        except Exception:  # noqa: BLE001 - Go regex syntax Python's parser does not know: skip the rule
            continue
        if len(secret) < 8:
            continue
        ident = (rule.get("keywords") or [rule["id"].split("-")[0]])[0].replace(" ", "_")
        for template in TEMPLATES:
            out.append({"source": f"gitleaks:{rule['id']}", "text": template.format(i=ident, s=secret),
                        "secret": secret})
    return out


def detect_secrets_samples(root: Path) -> list[dict]:
    out = []
    for path in sorted((root / "tests" / "plugins").glob("*_test.py")):
        if path.name == "ip_public_test.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple) and len(node.elts) >= 2 and isinstance(node.elts[0], ast.Constant) \
                    and isinstance(node.elts[0].value, str) and isinstance(node.elts[1], ast.Constant) \
                    and node.elts[1].value is True and len(node.elts[0].value.strip()) >= 8 \
                    and "{" not in node.elts[0].value:
                out.append({"source": f"detect-secrets:{path.relative_to(root)}", "text": node.elts[0].value,
                            "secret": None})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gitleaks", type=Path, required=True)
    ap.add_argument("--detect-secrets", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "secret_corpus.json")
    args = ap.parse_args()
    rng = random.Random(20261126)
    samples = gitleaks_samples(args.gitleaks, rng) + detect_secrets_samples(args.detect_secrets)
    args.out.write_text(json.dumps({"about": __doc__.split("\n\n")[1:3], "samples": samples}, indent=1,
                                   ensure_ascii=False))
    print(f"{len(samples)} samples written to {args.out}")


if __name__ == "__main__":
    main()
