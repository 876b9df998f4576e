"""Credentials recognised by their own format: key blocks, vendor token formats, maintained detectors.

Vendor formats cover cloud, source hosting, chat, payment, AI and package registries (also the
lowercase-and-digit ones, `hf_…`, `glpat-…`). The maintained detectors are detect-secrets' named
plugins, Microsoft's patterns for Azure keys and app secrets (`…Q~…`), and Kingfisher's catalog of
several hundred vendor rules (its visible findings only: the rules it keeps hidden find the ids that
its other rules pair with a secret, such as an Azure tenant id).
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files

KEY_BLOCKS = [
    # a block with a body (after any `Proc-Type:`-style headers, also in a JSON string's `\n`); a header alone is
    # what a detection looks for (`$a = "-----BEGIN RSA PRIVATE KEY-----"`) and holds nothing
    ("private_key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
                               r"(?=(?:\s|\\[rn])*(?:[\w-]+:[^\n\\]*(?:\s|\\[rn])+)*[A-Za-z0-9+/]{16})[\s\S]*?"
                               r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|$)")),
    # PuTTY's .ppk: the private lines follow their count.
    ("private_key", re.compile(r"(?<=Private-Lines: )\d+\s+[A-Za-z0-9+/=\s]+?(?=Private-MAC|$)")),
]

VENDOR_FORMATS: list[tuple[str, re.Pattern]] = [(kind, re.compile(rx)) for kind, rx in [
    # Only these prefixes are access keys; AIDA, AROA, AGPA … are the public ids of users, roles, groups.
    ("aws_access_key", r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b"),
    ("slack_token", r"\bxox[abposre]-[A-Za-z0-9-]{10,}"),
    ("slack_webhook", r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+"),
    ("teams_webhook", r"https://(?:[\w-]+\.webhook|outlook)\.office(?:365)?\.com/webhook(?:b2)?/[\w@/-]{40,}"),
    ("discord_webhook", r"(?<=discord\.com/api/webhooks/)\d+/[A-Za-z0-9_-]{40,}"),
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
    # crypt(3) password hashes (shadow, htpasswd, device configs): crackable, so as secret as the password
    ("password_hash", r"\$(?:1|2[abxy]|5|6|y|gy|7|apr1|md5|sha1|argon2(?:id|i|d)?|scrypt|pbkdf2(?:-sha\d+)?)\$"
                      r"[./A-Za-z0-9$=,+-]{8,}"),
    # MySQL's native password hash (`authentication_string`, `SELECT PASSWORD(…)`): a star and 40 upper-case hex
    ("password_hash", r"(?<![\w*])\*[0-9A-F]{40}(?![\w])"),
    # Windows' cached domain logon (mscash2) as dumping tools print it: `$DCC2$10240#account#hash`
    ("password_hash", r"\$DCC2\$\d{1,6}#[^#\s]{1,64}#[0-9a-fA-F]{32}"),
    # NetNTLMv2 and v1 responses as capture tools print them (`user::DOMAIN:challenge:NTProofStr:blob`,
    # `user::DOMAIN:LM:NT:challenge`): cracked offline; the account, domain and challenge stay
    ("netntlm_hash", r"(?<=:[0-9a-fA-F]{16}:)[0-9a-fA-F]{32}:[0-9a-fA-F]{32,}"
                     r"|(?<=:)[0-9a-fA-F]{48}:[0-9a-fA-F]{48}(?=:[0-9a-fA-F]{16}\b)"),
    ("bitlocker_recovery_key", r"\b\d{6}(?:-\d{6}){7}\b"),  # eight groups of six digits
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    ("shopify_token", r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}"),
    ("digitalocean_token", r"\bdo[opr]_v1_[a-f0-9]{64}"),
    ("sendgrid_key", r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),
    ("twilio_key", r"\bSK[0-9a-fA-F]{32}\b"),
    ("telegram_bot_token", r"\b\d{8,10}:AA[0-9A-Za-z_-]{30,}"),
    ("azure_client_secret", r"(?<![A-Za-z0-9~_.-])[A-Za-z0-9_~.-]{3}\d[A-Za-z0-9]Q~[A-Za-z0-9_~.-]{31,34}"),
    ("azure_storage_key", r"(?<=(?i:accountkey)=)[A-Za-z0-9+/]{86}=="),
    # a Wi-Fi network's QR code and NFC tag (`WIFI:T:WPA;S:name;P:password;;`, fields in any order, `\;` escaped):
    # only its `P` field, the group named `s`
    ("wifi_password", r"\bWIFI:(?:(?:[A-OQ-Z]|PH2):(?:\\.|[^;\\\n]){0,256};)*?P:(?P<s>(?:\\.|[^;\\\n]){1,256})"),
]]
DETECT_SECRETS_KINDS = {
    # detect-secrets types whose hits we trust in free text (its entropy and keyword plugins
    # flag ordinary words in ad-hoc scans; ours do that job with the grammars of evidence).
    "Artifactory Credentials", "AWS Access Key", "Azure Storage Account access key",
    "Basic Auth Credentials", "Cloudant Credentials", "Discord Bot Token", "GitHub Token",
    "GitLab Token", "IBM Cloud IAM Key", "IBM COS HMAC Credentials", "JSON Web Token",
    "Mailchimp Access Key", "NPM tokens", "OpenAI Token", "PyPI Token", "SendGrid API Key",
    "Slack Token", "SoftLayer Credentials", "Square OAuth Secret", "Stripe Access Key",
    "Telegram Bot Token", "Twilio API Key",
}  # not its "Private Key": that flags a block's header alone; KEY_BLOCKS read blocks with their bodies
DETECTOR_TRIGGER = re.compile(r"[A-Za-z0-9+/=_~.\-]{10,}")  # detectors know shorter vendor formats


def known_format(text: str) -> bool:
    return any(rx.search(text) for _, rx in VENDOR_FORMATS) or "PRIVATE KEY-----" in text


@lru_cache(maxsize=1)
def _azure_patterns():
    from microsoft_security_utilities_secret_masker import SecretMasker, load_regex_patterns_from_json_file

    path = files("microsoft_security_utilities_secret_masker").joinpath(
        "GeneratedRegexPatterns", "PreciselyClassifiedSecurityKeys.json")
    return SecretMasker(set(load_regex_patterns_from_json_file(str(path))))


@lru_cache(maxsize=1)
def _configure_detect_secrets() -> None:
    """detect-secrets keeps its settings in the process: set once, only the plugins whose hits we trust
    (entering its settings context per text cost more than the scan itself)."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.settings import cache_bust, configure_settings_from_baseline

    cache_bust()
    configure_settings_from_baseline({"plugins_used": [
        {"name": plugin.__name__} for kind, plugin in get_mapping_from_secret_type_to_class().items()
        if kind in DETECT_SECRETS_KINDS]})


@lru_cache(maxsize=1)
def _kingfisher():
    """Kingfisher's bundled rules, compiled once a process (its rule cache makes later processes quick)."""
    from kingfisher_sdk import Rules, Scanner

    return Scanner(Rules(confidence="medium"), base64=False)  # base64 is decoded here, with our own tests


# Formats of ids that name a credential without granting anything alone (the secret beside them does).
IDENTIFIER_FORMATS = {"aws_access_key"}


def _rule_name(rule_id: str) -> str:
    """A catalog rule's own name (`betterleaks.tailscale-api-key.1` -> `tailscale_api_key`): its last
    part that is not a variant's number."""
    return next(part for part in reversed(rule_id.split(".")) if not part.isdigit()).replace("-", "_")


def format_spans(text: str) -> list[tuple[int, int, str]]:
    spans = [(*m.span("s" if "s" in rx.groupindex else 0), kind)
             for kind, rx in KEY_BLOCKS + VENDOR_FORMATS for m in rx.finditer(text)]
    return [(s, e, kind) for s, e, kind in spans if e - s >= 8]


def detector_values(text: str) -> set[tuple[str, str]]:
    """(kind, secret) pairs that the maintained detectors find."""
    if not DETECTOR_TRIGGER.search(text):
        return set()
    from detect_secrets.core.scan import scan_line

    _configure_detect_secrets()
    hits: set[tuple[str, str]] = set()
    for detection in _azure_patterns().detect_secrets(text):
        hits.add((re.sub(r"(?<!^)(?=[A-Z])", "_", detection.name).lower(), text[detection.start:detection.end]))
    for line in text.split("\n"):
        if DETECTOR_TRIGGER.search(line):
            hits |= {(re.sub(r"[^a-z0-9]+", "_", s.type.lower()).strip("_"), s.secret_value)
                     for s in scan_line(line) if s.type in DETECT_SECRETS_KINDS and s.secret_value}
    hits = {(kind, value) for kind, value in hits if not re.fullmatch(r"[0-9a-fA-F]+", value)}
    # Kingfisher's rules ask for the vendor's own context around a hex key (`sonar.login=`, `NRAA-`).
    hits |= {(_rule_name(finding.rule_id), finding.secret) for finding in _kingfisher().scan(text) if finding.visible}
    return {(kind, value) for kind, value in hits if len(value) >= 8}
