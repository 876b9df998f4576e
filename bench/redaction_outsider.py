"""Redaction on checkouts of text written outside the project, each split in two by a hash of its
detector, log or file name before anything in it was read (`split`): the tuning half may be read,
the held-out half is reported as figures only.

    python bench/redaction_outsider.py --trufflehog PATH --credsweeper PATH --secretlint PATH \
        --loghub PATH --splunk PATH \
        --yara PATH --iocs PATH --falco PATH --kql PATH --terraform PATH --helm PATH --ansible PATH \
        --mail PATH --prose PATH --prose_zh PATH [--show-misses]

- `--trufflehog`: a checkout of trufflesecurity/trufflehog. Its detectors' tests
  (`pkg/detectors/*/*_test.go`) give inputs written as configs, code, logs and chat, each with the
  secrets the detector must report; a case counts where the input is a literal and holds them. It
  is caught when its longest secret is gone (a detector also reports the user or host beside it).
  One half per detector.
- `--credsweeper`: a checkout of Samsung/CredSweeper. Its test samples (`tests/samples/`) with the
  credentials its own run reports in `tests/data/output.json` (the lines of one finding together, so
  a key block is one paste). A case is caught when its longest value is gone. Findings that secbot
  does not count as secrets are left out by rule name before anything was read: UUIDs, bucket and
  domain names, app ids, nonces and salts are identifiers (issue 21). One half per sample file.
- `--secretlint`: a checkout of secretlint/secretlint. Its rules' snapshot tests
  (`packages/@secretlint/secretlint-rule-*/test/snapshots/<case>/`): each input with the spans its own
  run reported (`output.json`). A case is caught when its longest span is no longer whole. Rules that
  report something other than a credential in the text (a file's name, a home directory, a manifest's
  kind, a user's pattern) and findings that are identifiers to secbot (AWS account and key ids, Azure
  tenant and client ids) were left out by name before anything was read. One half per snapshot.
- The others are ordinary text (`ORDINARY`: which repository and files each flag reads), one half
  per file, and per system for loghub (2,000 lines of each of 16 systems' logs):
  logs (loghub), detections (Splunk's SPL and prose, signature-base's YARA rules and indicator
  lists, Falco's syscall and Kubernetes audit rules, Sentinel KQL), infrastructure code (Terraform
  modules, Helm charts, Ansible playbooks), mail headers (a mail parser's test messages, each
  message's header section redacted whole, as it is pasted) and prose (OWASP's cheat sheets; in
  Chinese, a book on building distributed Java systems; both outside their code blocks). Each counts
  its distinct lines once.
Target on the held-out halves, as for the project's own sets: >= 98% caught, <= 0.5% changed.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import re
import time
from pathlib import Path

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


# CredSweeper's rules whose findings are identifiers, not secrets, to secbot.
NOT_SECRETS = {"UUID", "AWS S3 Bucket", "Firebase Domain", "Tencent WeChat API App ID", "Nonce", "Salt"}


def credsweeper_cases(root: Path) -> list[dict]:
    cases = {}
    for finding in json.loads((root / "tests" / "data" / "output.json").read_text(encoding="utf-8")):
        if finding["rule"] in NOT_SECRETS:
            continue
        lines = sorted(finding["line_data_list"], key=lambda line: line["line_num"])
        name = Path(lines[0]["path"]).name
        text = "\n".join(dict.fromkeys(line["line"] for line in lines))
        secret = max((line["value"] for line in lines), key=len)
        cases[text, secret] = {"source": f"credsweeper:{name}", "text": text, "secret": secret,
                               "split": split(f"credsweeper:{name}")}
    return list(cases.values())


# secretlint's rules that report something other than a credential in the text (a file's name, a home
# directory, a manifest's kind, a user's own pattern, the project's examples), and the findings that are
# identifiers to secbot (an AWS account or key id, an Azure tenant or client id; issue 21).
SECRETLINT_OTHER = {"example", "filter-comments", "pattern", "no-dotenv", "no-homedir", "no-k8s-kind-secret"}
SECRETLINT_IDS = {"AWSAccessKeyID", "AWSAccountID", "AzureClientId", "AzureTenantId"}


def secretlint_cases(root: Path) -> list[dict]:
    """secretlint's rule snapshots (`test/snapshots/<case>/`): each input with the findings its own run
    recorded (`output.json`). A case is caught when its longest reported span is no longer whole."""
    cases = []
    for out in sorted(root.glob("packages/@secretlint/secretlint-rule-*/test/snapshots/*/output.json")):
        rule = out.parts[-5].removeprefix("secretlint-rule-")
        if rule in SECRETLINT_OTHER or rule.startswith(("internal-test", "preset-")):
            continue
        report = json.loads(out.read_text(encoding="utf-8"))
        inputs = list(out.parent.glob("input*"))
        spans = [m["range"] for m in report.get("messages", []) if m.get("messageId") not in SECRETLINT_IDS]
        if len(inputs) != 1 or not spans:
            continue
        try:
            text = inputs[0].read_bytes().decode("utf-8")
        except UnicodeDecodeError:  # a binary key store: nothing an analyst pastes
            continue
        key = f"secretlint:{rule}/{out.parent.name}"
        secret = max((text[s:e] for s, e in spans), key=len)
        if secret:
            cases.append({"source": key, "text": text, "secret": secret, "split": split(key)})
    return cases


def _mail_headers(text: str) -> list[str]:
    """A message's header section, whole: what is pasted from a mail (a folded header's lines say nothing
    alone), before the body and its attachments."""
    return [text.replace("\r\n", "\n").split("\n\n", 1)[0]]


def _prose(text: str) -> list[str]:
    """A Markdown page's lines outside code blocks, whose examples may hold sample credentials."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


# Ordinary text, by flag: (the repository to point it at, its files, what a half is keyed by, the lines read).
ORDINARY = {
    "loghub": ("logpai/loghub", "*/*_2k.log", "system", str.splitlines),
    "splunk": ("splunk/security_content", "detections/**/*.yml", "file", str.splitlines),
    "yara": ("Neo23x0/signature-base", "yara/**/*.yar", "file", str.splitlines),
    "iocs": ("Neo23x0/signature-base", "iocs/**/*.txt", "file", str.splitlines),
    "falco": ("falcosecurity/rules", "rules/**/*.yaml", "file", str.splitlines),
    "kql": ("reprise99/Sentinel-Queries", "**/*.kql", "file", str.splitlines),
    "terraform": ("terraform-aws-modules/terraform-aws-rds", "**/*.tf", "file", str.splitlines),
    "helm": ("prometheus-community/helm-charts", "charts/**/*.yaml", "file", str.splitlines),
    "ansible": ("geerlingguy/ansible-for-devops", "**/*.yml", "file", str.splitlines),
    "mail": ("SpamScope/mail-parser", "tests/mails/*", "file", _mail_headers),
    "prose": ("OWASP/CheatSheetSeries", "cheatsheets/*.md", "file", _prose),
    "prose_zh": ("doocs/advanced-java", "docs/**/*.md", "file", _prose),
}


def ordinary_texts(name: str, root: Path) -> list[dict]:
    """The distinct texts one checkout is read as (lines, or a mail's header section), each file's (or
    system's) in one half."""
    _, pattern, unit, read = ORDINARY[name]
    texts: dict[str, dict] = {}
    for path in sorted(glob.glob(str(root / pattern), recursive=True)):
        rel = Path(path).relative_to(root)
        key = f"{name}:{rel.parent.as_posix() if unit == 'system' else rel.as_posix()}"
        for text in read(Path(path).read_text(encoding="utf-8", errors="replace")):
            if text.strip() and text not in texts:
                texts[text] = {"source": name, "text": text, "split": split(key)}
    return list(texts.values())


def judged_lines(redactor: Redactor, texts: list[dict]) -> list[dict]:
    """Each distinct non-empty line once, with what redacting the text it came in made of it (`None`: kept)."""
    lines: dict[tuple[str, str], dict] = {}
    for c in texts:
        found, at = redactor.find(c["text"]), 0
        for line in c["text"].split("\n"):
            end = at + len(line)
            inside = [(max(s, at), min(e, end), kind) for s, e, kind in found if s < end and e > at]
            key = c["source"], line
            if line.strip() and (key not in lines or inside and lines[key]["redacted"] is None):
                out, last = [], at
                for s, e, kind in inside:
                    out += [c["text"][last:s], f"[REDACTED:{kind}]"]
                    last = e
                redacted = "".join(out) + c["text"][last:end] if inside else None
                lines[key] = {**c, "text": line, "redacted": redacted}
            at = end + 1
    return list(lines.values())


# Checkouts of labelled credentials, by flag: (the repository, the file that shows it is one, the reader).
PASTES = {
    "trufflehog": ("trufflesecurity/trufflehog", "pkg/detectors", trufflehog_cases),
    "credsweeper": ("Samsung/CredSweeper", "tests/data/output.json", credsweeper_cases),
    "secretlint": ("secretlint/secretlint", "packages/@secretlint/*/test/snapshots", secretlint_cases),
}


def not_a_checkout(name: str, root: Path) -> str | None:
    """One line saying what to point `--NAME` at, when `root` is not that checkout."""
    repo, marker = PASTES[name][:2] if name in PASTES else ORDINARY[name][:2]
    if not glob.glob(str(root / marker), recursive=True):
        return f"--{name} {root} has no {marker}: point it at a {repo} checkout"
    return None


def tuning_halves(checkouts: dict[str, Path]) -> tuple[list[dict], list[str]]:
    """The tuning halves of the named checkouts (flag -> path): their pasted credentials, and their
    distinct ordinary texts, as the bench reads them (what `bench/redaction.py --fit --outsider` fits on)."""
    pastes = [c for name, root in checkouts.items() if name in PASTES
              for c in PASTES[name][2](root) if c["split"] == "tuning"]
    texts = {text["text"] for name, root in checkouts.items() if name in ORDINARY
             for text in ordinary_texts(name, root) if text["split"] == "tuning"}
    return pastes, sorted(texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name, (repo, marker, _) in PASTES.items():
        ap.add_argument(f"--{name}", type=Path, metavar="PATH", help=f"a {repo} checkout ({marker})")
    for name, (repo, pattern, _, _) in ORDINARY.items():
        ap.add_argument(f"--{name}", type=Path, metavar="PATH", help=f"a {repo} checkout ({pattern})")
    ap.add_argument("--show-misses", action="store_true", help="print the tuning halves' misses and changed lines")
    args = ap.parse_args()
    checkouts = {name: getattr(args, name) for name in [*PASTES, *ORDINARY] if getattr(args, name)}
    if not checkouts:
        ap.error("name at least one checkout: --" + ", --".join([*PASTES, *ORDINARY]))
    for name, root in checkouts.items():
        if problem := not_a_checkout(name, root):
            ap.error(problem)
    named = {name: root for name, root in checkouts.items() if name in ORDINARY}
    redactor = Redactor()
    pastes = [c for name, root in checkouts.items() if name in PASTES for c in PASTES[name][2](root)]
    started = time.perf_counter()
    lines = judged_lines(redactor, [text for name, root in named.items() for text in ordinary_texts(name, root)])
    for half in ("heldout", "tuning"):
        label = "held-out" if half == "heldout" else "tuning"
        missed = []
        for scanner in PASTES:
            cases = [c for c in pastes if c["split"] == half and c["source"].startswith(scanner + ":")]
            missed += [c for c in cases if c["secret"] in redactor.redact(c["text"]).text]
            if cases:
                caught = len(cases) - sum(c["source"].startswith(scanner + ":") for c in missed)
                print(f"{scanner} {label} half: {caught}/{len(cases)} pasted credentials caught "
                      f"({100 * caught / len(cases):.1f}%, {len({c['source'] for c in cases})} detectors or files)")
        ordinary = [c for c in lines if c["split"] == half]
        changed = [c for c in ordinary if c["redacted"] is not None]
        by_source: dict[str, list[int]] = {}
        for c in ordinary:
            by_source.setdefault(c["source"], [0, 0])[0] += 1
        for c in changed:
            by_source[c["source"]][1] += 1
        for source, (n, m) in sorted(by_source.items()):
            print(f"{source} {label} half: {m}/{n} ordinary lines changed ({100 * m / n:.2f}%)")
        if args.show_misses and half == "tuning":
            for c in missed:
                print("MISS", c["source"], repr(c["text"][:300]))
            for c in changed:
                print("FP", c["source"], repr(c["text"][:300]), "->", repr(c["redacted"][:300]))
    total = len(pastes) + len(lines)
    print(f"speed: {1000 * (time.perf_counter() - started) / max(1, total):.2f} ms per text ({total})")


if __name__ == "__main__":
    main()
