"""Credentials out of text before anything is stored: each secret becomes `[REDACTED:<kind>]`.

Four layers, in order:
1. How analysts paste credentials: private key blocks, passwords in URLs, `Authorization`
   headers, cookies, command lines (`curl -u`, `mysql -p…`, `sshpass -p`, `redis-cli -a`,
   `net user`, `ldapsearch -w`, `smbclient -U u%p`, `--password=`, `-passout pass:`, …),
   assignments whose name says secret (`DB_PASSWORD=`, `PGPASSWORD=`, `*_API_KEY =`,
   `"password": "…"`, `$env:X_TOKEN = "…"`), and prose in English and Chinese ("the admin password
   for the fw is …", "密码是 …", "口令：…").
2. Vendor token formats (cloud, source hosting, chat, payment, AI and package registries),
   including the lowercase-and-digit ones (`hf_…`, `glpat-…`).
3. Maintained detectors: detect-secrets' named plugins, and Microsoft's patterns for Azure keys
   and app secrets (`…Q~…`).
4. Long random-looking tokens (Shannon entropy, any mix of character classes).

Kept on purpose, because to a security team they are evidence, not secrets: hex strings (hashes,
IOCs), UUIDs, cryptocurrency wallets and onion addresses, and base64 that decodes to readable
text (encoded PowerShell, URLs). `bench/redaction.py` measures recall on published scanner test
data and on paste-style cases, and false positives on ordinary security text.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files

# A secret value: up to the next space, quote, comma or closing bracket.
VALUE = r"""(?P<s>[^\s"'`,;)\]}>]{4,})"""
QUOTED = r"""(?:"(?P<dq>[^"\n]{3,})"|'(?P<sq>[^'\n]{3,})'|`(?P<bq>[^`\n]{3,})`)"""
SECRET_NAME = (r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
               r"|client[_-]?secret|credentials?|auth[_-]?(?:key|token)|session[_-]?(?:id|key|token)|sessionid"
               r"|cookie|pin)")
# Ahead of a value: it holds a digit, an underscore or a symbol (not a plain word).
MIXED = r"(?=[^\s\"'”]*?(?:[\d_]|[^\w\s\"'”]))"
ZH_NAME = r"(?:密码|口令|密钥|秘钥|令牌|私钥|pin码|PIN码)"
ZH_ASCII_NAME = r"(?i:token|secret|access\s*key|api\s*key|key|pin)"
ZH_VALUE = r"(?P<s>[\x21-\x7e]{4,}?)(?=[\s，。；、,;）)」』”\"']|$|[^\x00-\x7f])"

# (kind, pattern): the `s` group (or dq/sq/bq) is the secret; text around it is kept.
PASTE_RULES: list[tuple[str, str]] = [
    ("private_key", r"(?P<s>-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?"
                    r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|$))"),
    ("url_password", r"://[^\s:/@]+:(?P<s>[^\s@/]+)@"),
    ("auth_header", r"(?i)\b(?:authorization|proxy-authorization|x-api-key|x-auth-token|api-key)\s*:\s*"
                    r"(?:(?:bearer|basic|token|digest|apikey|sso-key|key)\s+)?(?P<s>[^\s\"',]{6,})"),
    ("bearer_token", r"(?i)\bbearer\s+(?P<s>[A-Za-z0-9\-._~+/]{8,}=*)"),
    ("cookie", r"(?i)\b(?:set-)?cookie\s*:\s*(?:[\w.-]+=(?P<s>[^\s;]{6,});?\s*)"),
    ("cookie", r"(?i)(?:^|;\s*|\bcookie\s*:\s*)(?:[\w.-]*(?:sess|sid|token|auth|csrf|jwt)[\w.-]*)=(?P<s>[^\s;]{6,})"),
    # Command lines.
    ("command_password", r"(?:\bcurl\b[^\n]*?\s(?:-u|--user)\s+['\"]?[^\s:'\"]+:(?P<s>[^\s'\"]+))"),
    ("command_password", r"\b(?:mysql|mysqldump|mysqladmin|mariadb)\b[^\n]*?\s-p(?P<s>[^\s-][^\s]*)"),
    ("command_password", r"\bsshpass\s+-p\s*['\"]?(?P<s>[^\s'\"]+)"),
    ("command_password", r"\bredis-cli\b[^\n]*?\s(?:-a|--pass)\s+['\"]?(?P<s>[^\s'\"]+)"),
    ("command_password", r"(?i)\bnet\s+user\s+\S+\s+(?P<s>(?!/)[^\s*]+)(?=\s|$)"),
    ("command_password", r"(?i)\bnet\s+use\b[^\n]*?/user:\S+\s+(?P<s>(?!/)\S+)"),
    ("command_password", r"\bldap\w*\b[^\n]*?\s-w\s+['\"]?(?P<s>[^\s'\"]+)"),
    ("command_password", r"\b(?:smbclient|rpcclient|smbmap)\b[^\n]*?\s-U\s+['\"]?[^\s%'\"]+%(?P<s>[^\s'\"]+)"),
    ("command_password", r"\b(?:psexec\w*|paexec|wmiexec\w*|docker\s+login|sqlcmd|osql)\b[^\n]*?\s-[pP]\s+['\"]?"
                         r"(?P<s>[^\s'\"]+)"),
    ("command_password", r"\bsnmp\w+\b[^\n]*?\s-c\s+['\"]?(?P<s>[^\s'\"]+)"),
    ("command_password", r"-pass(?:in|out)\s+pass:(?P<s>\S+)"),
    ("command_password", r"(?i)(?:^|\s)--?(?:password|passwd|pass|token|api-?key|secret|client-secret|auth-token)"
                         r"(?:=|\s+)['\"]?(?P<s>(?!-)[^\s'\"]{3,})"),
    ("command_password", r"(?i)\bConvertTo-SecureString\s+(?:-String\s+)?" + QUOTED),
    ("command_password", r"(?i)\b(?:vault\s+login)\s+(?P<s>\S{8,})"),
    # Assignments whose name says secret (a name ending in it counts: DB_PASSWORD, PGPASSWORD).
    ("assignment", r"(?i)(?<![\w.$:-])[\w.$:-]{0,60}?" + SECRET_NAME + r"[\w.-]{0,60}[\"']?(?:\s*:\s*(?:string|str)\b|\s+(?:string|str)\b)?"
                   r"\s*(?:[:=]|:=|=>|\?=)\s*(?!\s*[\[{(])[\"']*(?:" + QUOTED + r"|" + VALUE + r")"),
    # Prose: "the admin password for the fw is …", "passwd for the oracle account: …".
    ("prose_password", r"(?i)\b(?:password|passwd|passphrase|pass\s?code|pin|secret|token|api\s?key|wifi\s+key|key)"
                       r"(?:\s+(?!is\b|was\b)[\w.@/-]+){0,5}?\s*(?:\bis\b|\bwas\b|:|=)\s*[\"'“]?"
                       r"(?P<s>" + MIXED + r"[^\s\"'”,]{6,}?)(?=[\s\"'”,.]*(?:\s|$))"),
    ("prose_password", r"(?i)(?:\busers?name\s+\S+\s+)(?:password|passwd|pwd)\s*(?P<s>" + MIXED + r"\S{4,})"),
    # Chinese: 密码是 …, 管理员密码：…, 口令为 …, 密码toor1234, API密钥: ….
    ("prose_password", ZH_NAME + r"\s*(?:是|为|是：|:|：|=)?\s*" + ZH_VALUE),
    ("prose_password", ZH_ASCII_NAME + r"\s*(?:是|为|：)\s*" + ZH_VALUE),
]

VENDOR_RULES: list[tuple[str, str]] = [(kind, rf"(?P<s>{rx})") for kind, rx in [
    ("aws_access_key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|A3T[A-Z0-9])[A-Z0-9]{16}\b"),
    ("slack_token", r"\bxox[abposre]-[A-Za-z0-9-]{10,}"),
    ("slack_webhook", r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+"),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("gitlab_token", r"\bgl(?:pat|dt|ft|soat|rt|ptt|cbt|imt|agent|oas|wt|ffct)-[A-Za-z0-9_-]{20,}"),
    ("pulumi_token", r"\bpul-[a-f0-9]{40}\b"),
    ("mailgun_key", r"\b(?:pub)?key-[a-f0-9]{32}\b"),
    ("huggingface_token", r"\bapi_org_[A-Za-z0-9]{30,}"),
    ("sentry_token", r"\bsntry[us]_[A-Za-z0-9+/=_-]{30,}"),
    ("flyio_token", r"\bfm[12]_[A-Za-z0-9+/=]{60,}"),
    ("scalingo_token", r"\btk-us-[A-Za-z0-9_-]{40,}"),
    ("cloudflare_ca_key", r"\bv1\.0-[a-f0-9]{24}-[a-f0-9]{146}\b"),
    ("huggingface_token", r"\bhf_[A-Za-z0-9]{30,}"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
    ("google_oauth_token", r"\bya29\.[0-9A-Za-z_-]{20,}"),
    ("stripe_key", r"\b[sr]k_(?:live|test)_[0-9A-Za-z]{16,}"),
    ("openai_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    ("anthropic_key", r"\bsk-ant-(?:api|admin)\d\d-[A-Za-z0-9_-]{20,}"),
    ("npm_token", r"\bnpm_[A-Za-z0-9]{36}"),
    ("pypi_token", r"\bpypi-AgE[A-Za-z0-9_-]{50,}"),
    ("docker_token", r"\bdckr_pat_[A-Za-z0-9_-]{20,}"),
    ("vault_token", r"\b(?:hvs|hvb|hvr|s)\.[A-Za-z0-9_-]{24,}"),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    ("shopify_token", r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("digitalocean_token", r"\bdo[opr]_v1_[a-f0-9]{64}"),
    ("sendgrid_key", r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),
    ("twilio_key", r"\bSK[0-9a-fA-F]{32}\b"),
    ("azure_client_secret", r"(?<![A-Za-z0-9~_.-])[A-Za-z0-9_~.-]{3}\d[A-Za-z0-9]Q~[A-Za-z0-9_~.-]{31,34}"),
    ("azure_storage_key", r"(?<=(?i:accountkey)=)[A-Za-z0-9+/]{86}=="),
]]
DETECT_SECRETS_KINDS = {
    # detect-secrets types whose hits we trust in free text (its entropy and keyword plugins
    # flag ordinary words in ad-hoc scans; ours do that job with IOC exceptions).
    "Artifactory Credentials", "AWS Access Key", "Azure Storage Account access key",
    "Basic Auth Credentials", "Cloudant Credentials", "Discord Bot Token", "GitHub Token",
    "GitLab Token", "IBM Cloud IAM Key", "IBM COS HMAC Credentials", "JSON Web Token",
    "Mailchimp Access Key", "NPM tokens", "OpenAI Token", "PyPI Token", "SendGrid API Key",
    "Slack Token", "SoftLayer Credentials", "Square OAuth Secret", "Stripe Access Key",
    "Telegram Bot Token", "Twilio API Key", "Private Key",
}
_SURROGATE = re.compile("[\ud800-\udfff]")
CANDIDATE = re.compile(r"[A-Za-z0-9+/=_~.\-]{20,}")
DETECTOR_TRIGGER = re.compile(r"[A-Za-z0-9+/=_~.\-]{10,}")  # detectors know shorter vendor formats
PLACEHOLDER = re.compile(r"(?ix)^(?:\$\{?\w+\}?|%\w+%|<[^>]*>|\*+|x{4,}|\.{3,}|your[_-]?\w*|none|null|nil|true|false"
                         r"|redacted|changeit\b(?=$)|os\.environ.*|process\.env.*|getenv.*|env\(.*|\{\{.*|getpass.*)$")
YARA_MODIFIERS = re.compile(r"^\s*(?:ascii|wide|nocase|fullword|private|xor|base64|base64wide)\b")
IOC_SHAPES = [
    re.compile(r"^[0-9a-fA-F]+$"),  # hashes and other hex indicators
    re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),  # UUIDs
    re.compile(r"^(?:bc1|tb1)[02-9ac-hj-np-z]{25,87}$"),  # bech32 bitcoin wallets
    re.compile(r"^[13][1-9A-HJ-NP-Za-km-z]{25,34}$"),  # base58 bitcoin wallets
    re.compile(r"^4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}$"),  # monero wallets
    re.compile(r"^[a-z2-7]{16}(?:[a-z2-7]{40})?$"),  # onion service names
    re.compile(r"^(?:sha(?:1|256|384|512)|md5):[0-9a-fA-F]+$"),
]


def shannon_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def _decodes_to_text(token: str) -> bool:
    """Base64 that decodes to readable text (an encoded command or URL) is evidence, not a key."""
    body = token.strip("=")
    if len(body) < 16 or not re.fullmatch(r"[A-Za-z0-9+/_-]+", body):
        return False
    try:
        raw = base64.b64decode(body.replace("-", "+").replace("_", "/") + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return False
    for encoding in ("utf-8", "utf-16-le"):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if text and sum(c.isprintable() or c in "\r\n\t" for c in text) / len(text) > 0.9:
            return True
    return False


def looks_secret(token: str) -> bool:
    """A long token that looks random, and not like an identifier or an indicator."""
    token = token.strip(".-_=")
    if len(token) < 20 or any(rx.match(token) for rx in IOC_SHAPES) or _decodes_to_text(token):
        return False
    if re.fullmatch(r"[A-Z0-9_]+", token) and token.count("_") >= 2:
        return False  # CONSTANT_NAMES, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    if "." in token and re.search(r"\.[a-z]{2,6}$", token):
        return False  # host names and file names
    digits = any(c.isdigit() for c in token)
    upper, lower = any(c.isupper() for c in token), any(c.islower() for c in token)
    if not digits and not (upper and lower):
        return False  # words and identifiers
    if not digits and all(re.fullmatch(r"(?:[A-Z]+[a-z]*|[a-z]+)+", part) for part in re.split(r"[_.\-]", token) if part):
        return False  # identifiers made of words: camelCase, Snake_Case, Dotted.Names, Get-VerbNoun
    return shannon_entropy(token) >= min(4.2, 3.0 + len(token) / 40)


@dataclass(frozen=True)
class Redacted:
    text: str
    count: int
    kinds: tuple[str, ...] = field(default=())


@lru_cache(maxsize=1)
def _azure_patterns():
    from microsoft_security_utilities_secret_masker import SecretMasker, load_regex_patterns_from_json_file

    path = files("microsoft_security_utilities_secret_masker").joinpath(
        "GeneratedRegexPatterns", "PreciselyClassifiedSecurityKeys.json")
    return SecretMasker(set(load_regex_patterns_from_json_file(str(path))))


COMPILED = [(kind, re.compile(rx, re.MULTILINE)) for kind, rx in PASTE_RULES + VENDOR_RULES]


class Redactor:
    """Replaces credentials in text; `redact` returns the clean text and what was found."""

    def __init__(self, use_detectors: bool = True):
        self.use_detectors = use_detectors

    def redact(self, text: str) -> Redacted:
        if not text:
            return Redacted(text or "", 0)
        # No store keeps NUL characters or unpaired surrogates (PostgreSQL refuses both).
        text = _SURROGATE.sub("\ufffd", text.replace("\x00", ""))
        kinds: list[str] = []
        for kind, pattern in COMPILED:
            text = pattern.sub(lambda m, kind=kind: self._replace(m, kind, kinds), text)
        if self.use_detectors and DETECTOR_TRIGGER.search(text):
            text = self._detectors(text, kinds)
        text = CANDIDATE.sub(lambda m: self._entropy(m, kinds), text)
        return Redacted(text, len(kinds), tuple(kinds))

    @staticmethod
    def _replace(match: re.Match, kind: str, kinds: list[str]) -> str:
        group = next((g for g in ("s", "dq", "sq", "bq") if g in match.re.groupindex and match.group(g)), None)
        if group is None:
            return match.group()
        secret = match.group(group)
        rest = match.string[match.end():match.end() + 24]
        if "[REDACTED:" in secret or PLACEHOLDER.match(secret.strip()) or YARA_MODIFIERS.match(rest):
            return match.group()
        kinds.append(kind)
        start, end = match.span(group)
        whole, offset = match.group(), match.start()
        return whole[:start - offset] + f"[REDACTED:{kind}]" + whole[end - offset:]

    @staticmethod
    def _entropy(match: re.Match, kinds: list[str]) -> str:
        token = match.group()
        if "REDACTED" in token:
            return token
        if token.startswith("//") or token.count("/") >= 3:  # a URL or a path: judge each part
            return re.sub(r"[^/]{20,}", lambda m: Redactor._entropy(m, kinds), token)
        if not looks_secret(token):
            return token
        kinds.append("high_entropy_secret")
        return "[REDACTED:high_entropy_secret]"

    @staticmethod
    def _detectors(text: str, kinds: list[str]) -> str:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import default_settings

        hits: set[tuple[str, str]] = set()
        for detection in _azure_patterns().detect_secrets(text):
            hits.add((re.sub(r"(?<!^)(?=[A-Z])", "_", detection.name).lower(), text[detection.start:detection.end]))
        with default_settings():
            for line in text.split("\n"):
                if DETECTOR_TRIGGER.search(line):
                    hits |= {(re.sub(r"[^a-z0-9]+", "_", s.type.lower()).strip("_"), s.secret_value)
                             for s in scan_line(line) if s.type in DETECT_SECRETS_KINDS and s.secret_value}
        for kind, value in sorted(hits, key=lambda h: -len(h[1])):
            if len(value) >= 8 and "[REDACTED:" not in value and value in text and not re.fullmatch(r"[0-9a-fA-F]+", value):
                kinds.append(kind)
                text = text.replace(value, f"[REDACTED:{kind}]")
        return text
