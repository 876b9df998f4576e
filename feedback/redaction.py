"""Credentials out of text before anything is stored: each secret becomes `[REDACTED:<kind>]`.

Typed patterns catch the common kinds whole (a private key block, the password in a URL, a
bearer header); detect-secrets' named detectors then catch the many vendor formats; last, long
mixed-character tokens with high Shannon entropy are treated as secrets. Hex-only strings are
kept: in a security team's questions they are file hashes and other indicators, not keys.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

# Each pattern's `s` group is the secret; text around it (a key name, a scheme) is kept.
PATTERNS: list[tuple[str, re.Pattern]] = [(kind, re.compile(rx)) for kind, rx in [
    ("private_key", r"(?P<s>-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
                    r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|$))"),
    ("url_password", r"://[^\s:/@]+:(?P<s>[^\s@/]+)@"),
    ("bearer_token", r"(?i)\bbearer\s+(?P<s>[A-Za-z0-9\-._~+/]{8,}=*)"),
    ("basic_auth", r"(?i)\bbasic\s+(?P<s>[A-Za-z0-9+/]{12,}=*)"),
    ("jwt", r"(?P<s>\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*)"),
    ("aws_access_key", r"(?P<s>\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b)"),
    ("aws_secret_key", r"(?i)aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?(?P<s>[A-Za-z0-9/+]{40})\b"),
    ("slack_token", r"(?P<s>\bxox[abposre]-[A-Za-z0-9-]{10,})"),
    ("slack_webhook", r"(?P<s>https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]+)"),
    ("github_token", r"(?P<s>\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}))"),
    ("google_api_key", r"(?P<s>\bAIza[0-9A-Za-z_-]{35})(?![0-9A-Za-z_-])"),
    ("stripe_key", r"(?P<s>\b[sr]k_(?:live|test)_[0-9A-Za-z]{16,})"),
    ("openai_key", r"(?P<s>\bsk-(?:proj-)?[A-Za-z0-9_-]{20,})"),
    ("npm_token", r"(?P<s>\bnpm_[A-Za-z0-9]{36})"),
    ("password", r"(?i)\b(?:password|passwd|pwd|passphrase|secret|api[_-]?key|access[_-]?token)"
                 r"[\"']?\s*[:=]\s*[\"']?(?P<s>[^\s\"',;]{4,})"),
]]
# Secret-shaped tokens: long, and mixing character classes.
CANDIDATE = re.compile(r"[A-Za-z0-9+/=_\-]{20,}")
ENTROPY_LIMIT = 4.0  # bits per character; English words and identifiers stay well below
DETECT_SECRETS_KINDS = {
    # detect-secrets types whose hits we trust in free text (its entropy and keyword plugins
    # flag every word in ad-hoc scans, so those come from our own checks instead).
    "Artifactory Credentials", "AWS Access Key", "Azure Storage Account access key",
    "Basic Auth Credentials", "Cloudant Credentials", "Discord Bot Token", "GitHub Token",
    "GitLab Token", "IBM Cloud IAM Key", "IBM COS HMAC Credentials", "JSON Web Token",
    "Mailchimp Access Key", "NPM tokens", "OpenAI Token", "PyPI Token", "SendGrid API Key",
    "Slack Token", "SoftLayer Credentials", "Square OAuth Secret", "Stripe Access Key",
    "Telegram Bot Token", "Twilio API Key", "Private Key",
}


def shannon_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def _placeholder(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def _looks_secret(token: str) -> bool:
    if re.fullmatch(r"[0-9a-fA-F]+", token.strip("=-_")):
        return False  # hashes and other indicators of compromise
    classes = sum(bool(re.search(rx, token)) for rx in ("[a-z]", "[A-Z]", "[0-9]"))
    return classes >= 3 and shannon_entropy(token) >= ENTROPY_LIMIT


@dataclass(frozen=True)
class Redacted:
    text: str
    count: int


class Redactor:
    """Replaces credentials in text; `redact` returns the clean text and how many were found."""

    def __init__(self, use_detect_secrets: bool = True):
        self.use_detect_secrets = use_detect_secrets

    def redact(self, text: str) -> Redacted:
        if not text:
            return Redacted(text, 0)
        count = 0

        def sub(kind):
            def replace(match):
                nonlocal count
                if match.group("s").startswith("[REDACTED:"):
                    return match.group()
                count += 1
                start, end = match.span("s")
                whole = match.group()
                offset = match.start()
                return whole[:start - offset] + _placeholder(kind) + whole[end - offset:]
            return replace

        for kind, pattern in PATTERNS:
            text = pattern.sub(sub(kind), text)
        if self.use_detect_secrets and CANDIDATE.search(text):
            text, found = self._detect_secrets(text)
            count += found

        def entropy(match):
            nonlocal count
            if _looks_secret(match.group()):
                count += 1
                return _placeholder("high_entropy_secret")
            return match.group()

        text = CANDIDATE.sub(entropy, text)
        return Redacted(text, count)

    @staticmethod
    def _detect_secrets(text: str) -> tuple[str, int]:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import default_settings

        found = 0
        lines = text.split("\n")
        with default_settings():
            for i, line in enumerate(lines):
                if not CANDIDATE.search(line):
                    continue
                hits = {(s.type, s.secret_value) for s in scan_line(line)
                        if s.type in DETECT_SECRETS_KINDS and s.secret_value
                        and len(s.secret_value) >= 8 and "[REDACTED:" not in s.secret_value}
                for kind, value in sorted(hits, key=lambda h: -len(h[1])):
                    if value in line:
                        slug = re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_")
                        line = line.replace(value, _placeholder(slug))
                        found += 1
                lines[i] = line
        return "\n".join(lines), found
