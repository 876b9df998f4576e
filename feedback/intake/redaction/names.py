"""What a field's name says about its value: a credential, an identifier, or nothing.

The field decides, not the value's look: a hex string in `routing_key` is a credential, a
random-looking string in `requestId` is an identifier. A name is split into words (camelCase,
snake_case, kebab-case, dotted paths, `$vars`); its last credential word is the head, and a
word after the head that names something *about* the credential (`password_last_set`,
`token_endpoint`, `secret_id`, `passwordKey`) makes the field metadata, not the secret.
"""

from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache


class Field(Enum):
    CREDENTIAL = "credential"  # any literal value is a secret
    WEAK = "weak"  # a secret when the value itself looks random (`key`, `auth`)
    IDENTIFIER = "identifier"  # a name, id or reference: never redacted for its look
    OTHER = "other"


# Words that are a credential by themselves.
STRONG = {"password", "passwords", "passwd", "passwort", "pwd", "pw", "pass", "passphrase", "passcode", "secret",
          "secrets", "token", "tokens", "apikey", "credential", "credentials", "creds", "psk", "privatekey",
          "accesskey", "secretkey", "authtoken", "authtok", "licensekey", "sas", "ntlm", "nthash", "lmhash", "密码",
          "口令", "密钥", "令牌"}
# The Chinese nouns for a secret (password, passphrase, key, secret key, token, private key, auth code), and
# a one-time password's seed named by what it seeds (`二次验证的种子`, `MFA 种子`; a random seed is not one).
ZH_SECRET_NOUNS = ("密码|口令|密钥|秘钥|令牌|私钥|授权码"
                   r"|(?:二次验证|两步验证|双因素|双因子|动态口令|身份验证器|验证器|(?i:mfa|otp|totp|2fa))\s*的?种子")
WEAK_WORDS = {"key", "auth", "pin", "community"}
# Lower-case words that end in a credential word (`storepass`, `adminpassword`, `authtoken`).
SUFFIXES = ("password", "passwd", "pass", "secret", "token", "apikey", "accesskey", "secretkey", "pwd", "pw")
NOT_SUFFIXED = {"bypass", "compass", "overpass", "underpass", "surpass", "trespass", "impass", "byte", "retoken"}
# A `key` qualified by one of these is a credential; by one of IDENTIFIER_KEYS, a name.
CREDENTIAL_KEY_QUALIFIERS = {"api", "app", "application", "secret", "private", "encryption", "signing", "sign",
                             "routing", "license", "licence", "access", "master", "client", "auth", "integration",
                             "webhook", "shared", "account", "storage", "subscription", "hmac", "service", "admin",
                             "ingest", "ingestion", "write", "consumer", "developer", "dev", "prod", "production",
                             "live", "test", "server", "session", "crypt", "cipher", "aes", "jwt", "root", "user",
                             "bot", "mgmt", "management", "rest", "vt", "shodan", "pagerduty", "datadog", "sendgrid"}
IDENTIFIER_KEYS = {"object", "partition", "sort", "primary", "foreign", "cache", "idempotency", "dedup", "group",
                   "incident", "type", "label", "public", "pub", "host", "hash", "range", "s3", "kms", "ssh", "pgp",
                   "gpg", "ca", "lookup", "map", "index", "row", "column", "registry", "metadata", "tag", "message",
                   "request", "password", "passwd", "pwd", "token", "value", "item", "attribute", "dict", "json",
                   "yaml", "env"}
# After the head: the field is about the credential, not the credential.
META = {"id", "ids", "name", "names", "arn", "path", "paths", "file", "filename", "files", "dir", "directory", "prefix",
        "suffix",
        "endpoint", "endpoints", "url", "uri", "host", "type", "types", "kind", "age", "length", "len", "min",
        "max", "expiry", "expires", "expiration", "expired", "expire", "ttl", "lifetime", "timeout", "set", "last",
        "changed", "change", "required", "require", "policy", "policies", "reset", "rotation", "rotated", "rotate",
        "version", "versions", "enabled", "enable", "disabled", "prompt", "field", "fields", "header", "format",
        "source", "location", "ref", "reference", "count", "hint", "strength", "mode", "algorithm", "alg",
        "issuer", "usage", "scope", "scopes", "provider", "manager", "store", "vault", "label", "description",
        "created", "updated", "status", "stdin", "fd", "env", "var", "variable", "command", "cmd", "helper",
        "script", "rule", "rules", "regex", "pattern", "complexity", "history", "minutes", "seconds", "days",
        "hours", "secs", "ms", "size", "bits", "encoding", "method", "methods", "scheme", "flow",
        "grant", "request", "response", "error", "errors", "validity", "valid", "exchange", "introspection",
        "revocation", "refresh", "audience", "aud", "claims", "lifespan", "rotator", "spray", "spraying",
        "string", "hash", "hashes", "salt", "mfa", "reuse", "ok", "success", "failed", "failure", "attempts",
        "sync", "inventory", "kv", "engine", "mount", "arns", "identifier", "identifiers", "access", "accessor"}
# After the head in a field's name (not in a sentence): what the field describes (`secretStage`, `tokenBinding`).
FIELD_ABOUT = {"stage", "binding", "state", "level", "score", "quality", "lockout", "locked"}
# Before the head: the field is a setting about the credential (`update_password: always`, `min_password_length`).
SETTING = {"update", "min", "max", "minimum", "maximum", "require", "requires", "enforce", "allow", "allowed",
           "show", "hide", "mask", "reuse", "expire", "check", "validate", "total", "num",
           # a token that names a request, not a bearer: `clientRequestToken`, `idempotencyToken`, `nextToken`
           "request", "idempotency", "continuation", "pagination", "page", "next"}
# Before a `token`, words that make it a request's id: AWS's `ClientToken` is an idempotency token (`clientToken`
# in CloudTrail); a client's credential is its secret (`clientSecret`), not its token.
REQUEST_TOKENS = {"client"}
# Words that make any field a reference: `existingSecret`, `secretRef`, `valueFrom`, `passwordFile`.
REFERENCE = {"existing", "ref", "from", "use", "ask", "no", "without", "is", "has", "should", "external"}
# Servers' directives that hold a password though their words say otherwise (Redis's `requirepass` and
# `masterauth`, slapd's `rootpw`, keepalived's `auth_pass`).
CREDENTIAL_DIRECTIVES = {"requirepass", "masterauth", "rootpw", "auth_pass", "authpass", "masterpassword"}
# A `key` after one of these is where that credential is kept (`passwordKey`, `passwordSecretKey`).
HOLDERS = {"password", "passwd", "pwd", "pass", "token"}
# `kubectl get secret NAME`, `vault delete token X`: after a verb, a credential word is a kind of resource.
RESOURCE_VERBS = {"get", "describe", "delete", "create", "edit", "patch", "rotate", "show", "list", "read", "rm",
                  "remove", "inspect", "label", "annotate", "view", "revoke", "renew", "lookup", "rollout", "logs"}
# The verbs of an option that acts on a credential and takes its name (`-createCredential ALIAS`, `--delete-secret
# NAME`; not `--new-password`, `--update-password`, which take one).
ACTION_VERBS = {"create", "delete", "remove", "rm", "list", "describe", "rotate", "revoke", "inspect", "show", "get",
                "edit", "patch", "modify", "lookup"}
# Fields that name or identify things: their values are never judged by their look.
IDENTIFIER_HEADS = {"id", "ids", "uuid", "guid", "arn", "name", "uri", "url", "path", "hash", "digest", "sha",
                    "sha1", "sha256", "sha384", "sha512", "md5", "checksum", "integrity", "fingerprint", "thumbprint",
                    "serial", "etag", "tag", "image", "agent",
                    "trace", "span", "region", "account", "bucket", "type", "version", "signature", "seal", "bh", "sig",
                    "fqdn", "hostname", "host", "domain", "ip", "addr", "address", "email", "sid", "oid", "upn",
                    "principal", "principalid", "identity", "user", "username", "login", "owner", "subject", "sub",
                    "correlation", "request", "event", "finding", "detector", "alert", "incident", "case",
                    "ticket", "pod", "node", "namespace", "container", "cluster", "arn", "resource", "rule",
                    "policy", "role", "group", "vpc", "subnet", "instance", "volume", "snapshot", "query", "kid",
                    "jti", "nonce", "imphash", "tlsh", "ssdeep", "ja3", "ja3s", "jarm", "cursor", "page", "accessor"}

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[\u4e00-\u9fff]+")


def words(name: str) -> list[str]:
    """`X-Vault-Token` → [x, vault, token]; `passwordLastSet` → [password, last, set]."""
    out = []
    for word in _WORD.findall(name):
        word = word.lower()
        if word.isdigit():
            continue
        if word not in STRONG and word not in NOT_SUFFIXED and word not in WEAK_WORDS:
            for suffix in SUFFIXES:
                if word.endswith(suffix) and len(word) > len(suffix):
                    out.extend([word[:-len(suffix)], suffix])  # storepass → store, pass
                    break
            else:
                out.append(word)
            continue
        out.append(word)
    return out


def classify_option(name: str) -> Field:
    """What a command-line option's name says about the value after it."""
    field = classify(name)
    return Field.IDENTIFIER if field is Field.CREDENTIAL and words(name)[0] in ACTION_VERBS else field


@lru_cache(maxsize=4096)
def classify(name: str) -> Field:
    if name.lower() in CREDENTIAL_DIRECTIVES:
        return Field.CREDENTIAL
    parts = words(name)
    if not parts:
        return Field.OTHER
    heads = [i for i, w in enumerate(parts) if w in STRONG or w in WEAK_WORDS]
    if not heads:
        return Field.IDENTIFIER if parts[-1] in IDENTIFIER_HEADS else Field.OTHER
    if any(w in REFERENCE for w in parts):
        return Field.IDENTIFIER
    head = heads[-1]
    word, before = parts[head], parts[head - 1] if head else None
    # a word after the head that names or is about a thing (`keyFingerprint`, `apiKeyRole`, `secretStage`)
    if any(w in META or w in IDENTIFIER_HEADS or w in FIELD_ABOUT for w in parts[head + 1:]) or any(w in SETTING for w in parts[:head]):
        return Field.IDENTIFIER
    if word in ("token", "tokens") and before in REQUEST_TOKENS:
        return Field.IDENTIFIER
    if "public" in parts[:head] and "key" in parts[:head + 1]:
        return Field.IDENTIFIER  # a public key and what is derived from it (.NET's `PublicKeyToken`)
    if word == "key":
        if before in IDENTIFIER_KEYS or HOLDERS & set(parts[:head]):
            return Field.IDENTIFIER
        if before in CREDENTIAL_KEY_QUALIFIERS or any(w in STRONG for w in parts[:head]):
            return Field.CREDENTIAL
        return Field.WEAK
    if word in WEAK_WORDS:
        return Field.WEAK
    return Field.CREDENTIAL
