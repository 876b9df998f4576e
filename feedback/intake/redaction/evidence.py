"""What a value is: grammars of things that are not secrets, placeholders, decoding, entropy.

To a security team ARNs, resource ids, bucket URIs, hashes, fingerprints, UUIDs, image
references, finding types, host names, paths and IPs are evidence: they come through unchanged
wherever no credential position holds them. A value is judged on its own, never across `=`.
"""

from __future__ import annotations

import base64
import binascii
import email.header
import math
import re
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache

# Grammars of things that are not secrets. Matched on the text; a candidate found only by its
# look (entropy) inside one of these spans is kept.
ISSUE_KEY = r"\b[A-Z][A-Z0-9]{1,9}-\d{1,7}\b"
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
NOT_SECRET_GRAMMARS = [
    # a DNS resource record as zone files and `dig` print it (first: it is a whole line): what DNS publishes
    # is public (DKIM keys, SPF, site-verification tokens)
    r"^[ \t]*(?:@|(?:[\w*-]{1,63}\.){0,32}[\w*-]{1,63}\.?)[ \t]+(?:\d{1,10}[ \t]+)?IN[ \t]+[A-Z][A-Z0-9]{0,9}[ \t]+[^\n]*",
    r"\barn:aws[\w-]*:[\w-]+:[\w-]*:(?:\d{12}|aws)?:[^\s\"'<>,;)\]}]+",  # ARNs
    r"\b(?:i|vpc|sg|sgr|subnet|vol|ami|snap|eni|rtb|igw|nat|acl|eipalloc|eipassoc|lt|tgw|tgw-attach|vpce|pcx|dopt"
    r"|fs|fsap|r|rb|elb|db|mrk|key|ri|aki|ari|fleet|cvpn-endpoint|eigw|vgw|cgw|ipam|pl|prefix)-[0-9a-f]{8,32}\b",
    r"\b(?:s3|s3a|s3n|gs|az|abfss?|wasbs?|hdfs|r2)://[^\s\"'<>]+",  # bucket URIs
    r"\bprojects/[\w-]+/(?:secrets|locations|serviceAccounts|topics|subscriptions|keyRings)/[^\s\"'<>]+",
    r"/subscriptions/[0-9a-fA-F-]{36}/[^\s\"'<>]+",  # Azure resource ids
    r"\b\d{1,6}:[A-Za-z0-9/+]{3,}:[A-Za-z0-9/+]{3,}(?![\w/+])",  # ssdeep
    r"\bT1[0-9A-F]{70}\b",  # TLSH
    r"\b(?:SHA256|SHA1|SHA512|MD5):[A-Za-z0-9+/:=]{16,}",  # key and certificate fingerprints
    # an OpenPGP key's algorithm and id, as `gpg --list-keys --keyid-format` prints it: `ed25519/7A3C9E1F2B4D6E8A`
    r"\b(?:rsa|dsa|elg|ed|cv|nistp|brainpoolP|secp)\d{0,5}(?:r1|k1)?/[0-9A-F]{8,40}\b",
    # PEM blocks of public material (RFC 7468 labels, OpenPGP's armor): their headers, then their base64
    r"-----BEGIN (?:(?:TRUSTED |X509 )?CERTIFICATE|X509 CRL|(?:NEW )?CERTIFICATE REQUEST|(?:RSA |SSH2 )?PUBLIC KEY"
    r"|PGP (?:PUBLIC KEY BLOCK|SIGNATURE|SIGNED MESSAGE)|PKCS7|CMS|ATTRIBUTE CERTIFICATE|(?:DH|EC) PARAMETERS)-----"
    r"(?:[ \t]*\r?\n[ \t]*[\w-]+:[^\n]*)*(?:(?:[ \t]*\r?\n)+[ \t]*[A-Za-z0-9+/=]+|[ \t]+[A-Za-z0-9+/=]{40,})*"
    r"(?:\s*-----END [A-Z0-9 ]+-----)?",  # line by line: a truncated block does not reach the words after it
    r"\b(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-nistp\d+|sk-ssh-ed25519@openssh\.com)\s+AAAA[A-Za-z0-9+/]+={0,3}",
    rf"\{{?\b{UUID.pattern}\b\}}?",  # UUIDs, `{…}` GUIDs
    # image references (a name of at most 255 characters, as the OCI spec has it: linear to match)
    r"(?<![\w.-])[\w.-]{1,255}(?::\d+)?(?:/[\w./-]{1,255})?(?::\w[\w.-]{0,127})?@sha256:[0-9a-f]{64}",
    r"\b[A-Z][A-Za-z]+:[A-Za-z0-9]+/[A-Za-z0-9]+(?:[.!][A-Za-z0-9]+)*",  # GuardDuty/Defender finding types
    # host names (lower case), and the names and paths under them (`authorization.k8s.io/decision`)
    r"\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.){1,32}[a-z][a-z0-9-]{1,62}(?![\w-])(?:/[\w.-]+)*",
    r"\b(?:AIDA|AROA|AGPA|ANPA|ANVA|AIPA|APKA|ASCA)[A-Z0-9]{12,20}\b",  # AWS unique ids (public)
    # product/version and its comment: user agents (`Mozilla/5.0 (X11; Linux x86_64)`)
    r"\b[A-Za-z][\w.-]{0,63}/v?\d+(?:\.\d+)+[\w.+-]*(?:[ \t]+\([^()\n]{1,200}\))?",
    r"\b(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?\b",  # IPv4
    r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){2,7}:?[0-9a-fA-F]{0,4}(?:/\d{1,3})?",  # IPv6
    # MITRE (`T1552.004`, and tags' `T1552_004`), CVE, CWE
    r"\b(?:T\d{4}(?:[._]\d{3})?|TA\d{4}|CVE-\d{4}-\d{4,}|CWE-\d+)\b",
    r"\bS-1-\d{1,2}(?:-\d{1,10}){1,14}\b",  # Windows security identifiers
    ISSUE_KEY,  # issue keys (Jira's `SEC-4471`), `CVE-`-like ids
    r"\bENC\[\w{1,40},data:[^\]\s]{0,10000}\]",  # a value sops encrypted: ciphertext, its key is elsewhere
    # a disassembler's memory operand: `[rsp+98h+pExecInfo.lpVerb]`, `[ebp+var_1C]`
    r"\[(?:[re]?[a-z]{2}|r\d{1,2}[dwb]?)(?:[+-][0-9A-Fa-f]+h?)*(?:[+-][A-Za-z_][\w.@]*)+(?:[+-][0-9A-Fa-f]+h?)*\]",
    r"\bSSH-[12]\.\d{1,2}-[\w.+-]{1,100}",  # an SSH protocol banner: `SSH-2.0-OpenSSH_9.6p1`
    r"\b(?:sha256|sha384|sha512)-[A-Za-z0-9+/]{43,86}={0,2}",  # Subresource Integrity and CSP hash sources
    r"(?:(?<=[\s\"'=(])|^)(?:[A-Za-z]:\\|\\\\|~/|\./|\.\./|/)[^\s\"'<>|]*",  # paths
    r"\bhttps?://[^\s\"'<>]+",  # URLs: their credentials are found by position (userinfo, query keys)
    # registry and Windows paths, also escaped (`\\`) and with wildcards, as detections write them
    r"(?:\b(?:HKLM|HKCU|HKCR|HKU|HKEY_[A-Z_]+)|(?<![\w\\*])\*?)\\{1,2}[\w .{}()$*-]+(?:\\{1,2}[\w .{}()$*-]+)+\\{0,2}",
    r"\bhxxps?(?:\[:\]|:)//[^\s\"'<>]+|\b[\w-]{1,63}(?:\[\.\][\w-]{1,63})+(?:/[^\s\"'<>]*)?",  # defanged indicators
    r"(?<![\w.:])(?:(?:\d{1,3}\.){3}\d{1,3}:)?\d{1,5}:\d{1,5}(?:/(?:tcp|udp|sctp))?(?![\w:])",  # port mappings
    # names Kubernetes generates: deployment-<pod template hash>-<suffix>, statefulset-<n>, job-<suffix>
    r"\b[a-z0-9]{1,63}(?:-[a-z0-9]{1,63}){0,8}-[a-z0-9]{8,10}-[a-z0-9]{5}\b",
    r"\b[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+\b",  # e-mail addresses (RFC 5321's lengths: linear)
    r"\$\{\w+(?::?\?[^{}\n]{0,200})?\}",  # shell expansions: a name, and the message if it is unset
    # names of encodings, digests, ciphers, key types and protocols: `Secret 只是 base64 编码`, `password md5`
    r"(?<![\w-])(?i:base(?:16|32|36|58|62|64|85|91)(?:url)?|utf-?(?:8|16|32)(?:le|be)?|sha-?(?:1|224|256|384|512)"
    r"|sha3-(?:224|256|384|512)|md[245]|crc-?(?:16|32|64)|rot-?13|aes-?(?:128|192|256)(?:-(?:gcm|cbc|ctr|ecb|xts))?"
    r"|3des|rc[245]|x\.?509(?:v3)?|pkcs#?(?:1|7|8|10|11|12)|ed(?:25519|448)|[cx]25519|p-?(?:256|384|521)"
    r"|secp(?:256|384|521)[rk]1|rsa-?(?:1024|2048|3072|4096)|hmac-?(?:md5|sha(?:1|256|384|512))|argon2(?:id|i|d)?"
    r"|pbkdf2|ipv[46]|tls-?v?1\.[0-3]|ssl-?v?[23]|oauth2|saml2|fido2|ntlmv[12]|krb5|smbv?[123]|snmpv[123]|wpa[23]"
    r"|chacha20(?:-poly1305)?|blake(?:2[bs]|3))(?![\w-])",
    # digests of the empty string and of an empty password: public constants, quoted to spot blanks
    r"\b(?i:31d6cfe0d16ae931b73c59d7e0c089c0|aad3b435b51404eeaad3b435b51404ee|d41d8cd98f00b204e9800998ecf8427e"
    r"|da39a3ee5e6b4b0d3255bfef95601890afd80709|e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855)\b",
]
NOT_SECRET = re.compile("|".join(f"(?:{rx})" for rx in NOT_SECRET_GRAMMARS), re.MULTILINE)
_GRAMMARS = [re.compile(rx) for rx in NOT_SECRET_GRAMMARS]
# A UUID, an AWS id or an issue-key-shaped value in a credential's own slot is that credential
# (`HEROKU_API_KEY=<uuid>`, `PASSWORD=PROD-2026`).
_SLOT_GRAMMARS = [g for g in _GRAMMARS if "[0-9a-fA-F]{8}-" not in g.pattern and "AIDA" not in g.pattern
                  and g.pattern != ISSUE_KEY]
# Template expressions (Jinja, Helm, Go templates): what is inside names a value, it holds none.
TEMPLATE = re.compile(r"\{\{.{0,400}?\}\}|\{%.{0,400}?%\}")
DATE = re.compile(r"\d{4}-\d\d-\d\d(?:[T ][\d:.]+Z?)?")

PLACEHOLDER = re.compile(
    r"(?ix)^(?:\$\{?[\w.:-]+\}?(?:\[[^\]]*\]?)*|\$[a-z_][a-z_.]*\$|\$\(.*\)"
    r"|%\(?\w+\)?s?%?(?:\\(?:[nrt0]|x[0-9a-f]{2}))*"  # printf's `%s\n`
    r"|%[a-z_]+(?:\.[\w\[\]]+)+(?:=.*)?"  # Falco's output fields: `%proc.name`
    r"|<[^>]*>|<[a-z][\w:-]*|\[[^\]]*\]|\*+|x{4,}|\.{3,}|…|your[_-]?\w*"
    r"|none|null|nil|true|false|yes|no|on|off|undefined|redacted|deleted|example|\{\{.*\}\}|\{%.*%\}|!vault\b.*|enc\[.*\]"
    r"|(?:id|src|source|env|type|target|dst|required)=[^,\s]*(?:,\w+=[^,\s]*)+"  # a mount spec: `id=npmrc,src=.npmrc`
    r"|vault:.*|ref\+.*|secretref:.*|os\.environ.*|process\.env.*|getenv.*|env\(.*|getpass.*|read-host.*"
    # other tools' references: Octopus `#{…}`, CloudFormation's and Home Assistant's tags (`!Ref X`, `!secret x`),
    # Grafana's `$__env{…}`, `{env:…}`, 1Password's `op://…`, sops' `ENC[…]` cut at its comma, a command that
    # reads a file (`cat /run/secrets/x`), a prefix and an ellipsis (`sk-...`)
    r"|\#\{[^}]*\}|!(?:ref|sub|getatt|importvalue|findinmap|join|select|if|secret|env_var|include)\b.*"
    r"|\$__\w+\{[^}]*\}?|\{(?:env|file|secret|vault):[^}]*\}|op://.*|enc\[\w+"
    r"|(?:cat|type|get-content|head|pass\s+show|op\s+read|gpg\s+(?:-\w+\s+)*-d\w*)\s+\S.*|[\w-]{1,12}(?:\.{3,}|…)"
    r"|input\(.*|prompt|stdin|-|required|optional|string|str|secret|password|passwd|token|\?+"
    r"|from|to|not|n/?a|unknown|unset|empty|blank|hidden|masked"  # words of a sentence: `Passcode: from Off to On`
    r"|(?-i:[A-Z]+(?:_[A-Z]+)+))$")  # CONSTANT_CASE words: HIDDEN_DUE_TO_SECURITY_REASONS, SIGNATURE_HERE
# An unquoted HCL/Python expression (`var.db_password`, `random_password.db.result`, `get_secret(x)`), or a
# keyword that opens one (`token = await getSecret(…)`, `key = new Key(…)`): a computed value, not a literal.
EXPRESSION = re.compile(r"^(?:[a-z_][\w-]*(?:\.[\w-]+|\[[^\]]*\])+|\w[\w.]*(?:::\w+)*\(.*"
                        r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\.[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"  # `BuildConfig.API_KEY`
                        r"|await|new|yield|typeof|lambda|function|async|require|this|self)$")
# PowerShell's approved verbs (`Get-Verb`): `$pw = ConvertTo-SecureString …` assigns what a cmdlet returns.
CMDLET = re.compile(r"^(?:Add|Clear|Close|Copy|Enter|Exit|Find|Format|Get|Hide|Join|Lock|Move|New|Open|Optimize"
                    r"|Pop|Push|Redo|Remove|Rename|Reset|Resize|Search|Select|Set|Show|Skip|Split|Step|Switch|Undo|Unlock"
                    r"|Watch|Connect|Disconnect|Read|Receive|Send|Write|Backup|Checkpoint|Compare|Compress|ConvertFrom"
                    r"|ConvertTo|Dismount|Edit|Expand|Export|Group|Import|Initialize|Limit|Merge|Mount|Out|Publish"
                    r"|Restore|Save|Sync|Unpublish|Update|Approve|Assert|Build|Complete|Confirm|Deny|Deploy|Disable"
                    r"|Enable|Install|Invoke|Register|Request|Restart|Resume|Start|Stop|Submit|Suspend|Uninstall"
                    r"|Unregister|Wait|Debug|Measure|Ping|Repair|Resolve|Test|Trace|Block|Grant|Protect|Revoke"
                    r"|Unblock|Unprotect|Use)-[A-Z][A-Za-z]+$")
YARA_MODIFIERS = re.compile(r"^\s*(?:ascii|wide|nocase|fullword|private|xor|base64|base64wide)\b")
# All the modifiers after a string, with their arguments (`xor(0x01-0xff)`, `base64("…")`): part of the evidence.
YARA_MODIFIER_LIST = re.compile(r"(?:[ \t]+(?:ascii|wide|nocase|fullword|private|xor|base64|base64wide)\b"
                                r"(?:\([^)\n]{0,200}\))?)*")
# A shell's command substitution, quoted or not (muttrc's `"`pass show mail`"`): a command that reads the secret.
COMMAND_SUBSTITUTION = re.compile(r"`[^`\n]*\w\s+[^`\n]*`|\$\([^()\n]*\w\s+[^()\n]*\)")
PROMPT = re.compile(r"[^\W\d][^:\n]{0,200}\s[^:\n]{0,200}:")  # `Enter your passphrase:` asks for one, holds none
FILE_NAME = re.compile(r"^[\w.-]+\.(?:ya?ml|json|txt|conf|cfg|ini|env|key|pem|crt|p12|pfx|jks|kdbx|csv|log|xml|sh"
                       r"|ps1|py|tf|tfvars|zip|gz|tgz|7z|enc|gpg|asc)$", re.IGNORECASE)
IOC_SHAPES = [
    re.compile(r"^[0-9a-fA-F]+$"),  # hashes and other hex indicators
    re.compile(r"^[0-9a-fA-F]+(?:[-:][0-9a-fA-F]+)+$"),  # GUIDs and their fragments, MAC addresses
    re.compile(rf"^{UUID.pattern}$"),  # UUIDs
    re.compile(r"^(?:bc1|tb1)[02-9ac-hj-np-z]{25,87}$"),  # bech32 bitcoin wallets
    re.compile(r"^[13][1-9A-HJ-NP-Za-km-z]{25,34}$"),  # base58 bitcoin wallets
    re.compile(r"^4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}$"),  # monero wallets
    re.compile(r"^[a-z2-7]{16}(?:[a-z2-7]{40})?$"),  # onion service names
    re.compile(r"^(?:sha(?:1|256|384|512)|md5):[0-9a-fA-F]+$"),
]


def protected_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in NOT_SECRET.finditer(text)] + [
        (start, end) for start, end, private in jwk_members(text) if not private]


# A MIME encoded-word (RFC 2047) in a mail header: `=?charset?B|Q?payload?=`.
ENCODED_WORD = re.compile(r"=\?[\w.:-]{1,40}\?[BbQq]\?[^?\s]{1,1000}\?=")


def decoded_word(word: str) -> str | None:
    """The text an encoded-word holds, or None when it does not decode to text."""
    try:
        [(raw, charset)] = email.header.decode_header(word)
        out = raw.decode(charset or "ascii", errors="replace") if isinstance(raw, bytes) else raw
    except (ValueError, LookupError, binascii.Error):
        return None
    return out if out.count("\ufffd") <= len(out) // 10 and out.isprintable() else None


# A YARA rule's strings are what a detection looks for in someone else's files, quoted as evidence: a string
# with YARA's modifiers after it, or any string definition in a text that holds a rule's `strings:` section.
YARA_STRING = re.compile(r"""(?m)^[ \t]*\$\w*[ \t]*=[ \t]*(?:"(?:[^"\\\n]|\\.){0,2000}"|\{[^}\n]{0,4000}\}"""
                         r"""|/(?:[^/\\\n]|\\.){0,2000}/[is]*)""")
YARA_RULE = re.compile(r"(?m)^[ \t]*(?:(?:private|global)[ \t]+)*rule[ \t]+\w+[\s\S]{0,2000}?^[ \t]*strings[ \t]*:")


def verbatim_spans(text: str) -> list[tuple[int, int]]:
    """Spans quoted as evidence from elsewhere, kept whole whatever their words say."""
    if "$" not in text:
        return []
    in_rule = bool(YARA_RULE.search(text))
    return [(m.start(), m.end() + len(YARA_MODIFIER_LIST.match(text, m.end()).group()))
            for m in YARA_STRING.finditer(text) if in_rule or yara_modifiers_at(text, m.end())]


def yara_modifiers_at(text: str, at: int) -> bool:
    """A YARA string's modifiers (`ascii wide`, `nocase`) begin at `at`: the string before them is a rule's."""
    return bool(YARA_MODIFIERS.match(text[at:at + 24]))


def is_reference(value: str, quoted: bool) -> bool:
    """A placeholder, a template or (unquoted) an expression: it names a secret, it is not one."""
    value = value.strip()
    # `pQ7w….vT4r…` is a token; `!local.is_replica` a negated expression
    expression = not quoted and (EXPRESSION.match(value.removeprefix("!")) and not looks_secret(value)
                                 or CMDLET.match(value))
    return bool(PLACEHOLDER.match(value) or expression or PROMPT.fullmatch(value) or "[REDACTED:" in value
                or COMMAND_SUBSTITUTION.fullmatch(value)
                or value.startswith(("(", "@(", "$(")) and not quoted
                or value.startswith("@") and (FILE_NAME.match(value[1:]) or value.startswith(("@/", "@./", "@~/")))
                or value.startswith(("${", "{{", "%", "<%")) and value.endswith(("}", ")", "%", "%>")))


def is_not_secret(value: str, in_slot: bool = False) -> bool:
    """The whole value is something other than a secret: a path, URL, host, ARN, IP, file name, date."""
    if FILE_NAME.match(value) or DATE.fullmatch(value) or public_key_material(value):
        return True
    if re.search(r"://[^/\s@]*:[^/\s@]*@", value):
        return False  # a URL with a password in it
    return any(grammar.fullmatch(value) for grammar in (_SLOT_GRAMMARS if in_slot else _GRAMMARS))


def shannon_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def _b64(token: str) -> bytes | None:
    body = token.strip("=")
    if len(body) < 16 or not re.fullmatch(r"[A-Za-z0-9+/_-]+", body):
        return None
    try:
        return base64.b64decode(body.replace("-", "+").replace("_", "/") + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return None


def _printable(raw: bytes) -> str | None:
    """Readable text: UTF-8, or UTF-16-LE (PowerShell's -EncodedCommand) of ASCII; random bytes read as
    UTF-16 are mostly printable CJK, so that reading must be ASCII."""
    for encoding in ("utf-8", "utf-16-le"):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        readable = (lambda c: c.isprintable() or c in "\r\n\t") if encoding == "utf-8" else \
            (lambda c: " " <= c <= "~" or c in "\r\n\t")
        if text and sum(map(readable, text)) / len(text) > 0.9:
            return text
    return None


def decodes_to_text(token: str) -> bool:
    """Base64 that decodes to readable text (an encoded command or URL) is evidence, not a key; also a
    fragment cut at any offset, as detections list them (`Yml0c2FkbWluIC90cmFuc2Zlc`: 'bitsadmin /transfe…')."""
    body = token.strip("=")
    for cut in range(4):
        piece = body[cut:len(body) - (len(body) - cut) % 4]
        raw = _b64(piece)
        if raw is not None and _printable(raw) is not None:
            return True
    return False


# The algorithms of public keys (rsaEncryption, RSASSA-PSS, id-ecPublicKey, DSA, Ed25519, X25519, Ed448, X448),
# DER-encoded: a SubjectPublicKeyInfo names one of these first; an encrypted private key names PBES2.
PUBLIC_KEY_ALGORITHMS = tuple(bytes.fromhex(oid) for oid in (
    "2a864886f70d010101", "2a864886f70d01010a", "2a8648ce3d0201", "2a8648ce380401", "2b6570", "2b656e", "2b6571",
    "2b656f"))
SSH_PUBLIC_BLOB = re.compile(rb"\x00\x00\x00[\x07-\x28](?:ssh-|ecdsa-|sk-)")


def _der_header(raw: bytes, at: int, tag: int) -> int | None:
    """Where the content of the DER element with `tag` at `at` starts, or None."""
    if len(raw) < at + 2 or raw[at] != tag:
        return None
    size = raw[at + 1]
    return at + 2 if size < 0x80 else at + 2 + (size & 0x7F) if 0x81 <= size <= 0x84 else None


def public_key_material(token: str) -> bool:
    """Base64 whose decoding is a public key or a certificate (DER), or an SSH public key's blob: a DKIM
    record's `p=`, a JWKS's `x5c`, an `authorized_keys` body. A prefix is enough, as records are cut."""
    body = token.strip("=")
    raw = _b64(body[:len(body) - len(body) % 4]) if len(body) >= 24 else None
    if not raw:
        return False
    if SSH_PUBLIC_BLOB.match(raw):
        return True
    inner = _der_header(raw, 0, 0x30)
    algorithm = inner is not None and _der_header(raw, inner, 0x30)
    if not algorithm:
        return False
    if raw[algorithm:algorithm + 1] in (b"\xa0", b"\x02"):
        return True  # a certificate: SEQUENCE { tbsCertificate SEQUENCE { [0] version | serialNumber …
    oid = _der_header(raw, algorithm, 0x06)
    return oid is not None and raw[oid:oid + raw[oid - 1]] in PUBLIC_KEY_ALGORITHMS


USER_PASS = re.compile(r"[\x21-\x39\x3b-\x7e]{1,64}:[\x21-\x7e]{3,128}")


# A JSON Web Key (RFC 7517/7518): in an object that has a `kty`, the private members (RSA's `d`, `p`, `q`, `dp`,
# `dq`, `qi`; EC's and OKP's `d`; a symmetric key's `k`) are the key; the public ones (`n`, `e`, `x`, `y`, the
# certificate chain `x5c`, thumbprints) are what a JWKS endpoint publishes.
JWK_OBJECT = re.compile(r"\{[^{}]{0,8000}?[\"']kty[\"']\s*:[^{}]{0,8000}\}")
JWK_MEMBER = re.compile(r"[\"'](?P<name>d|p|q|dp|dq|qi|k|n|e|x|y|x5c|x5t|x5t#S256)[\"']\s*:\s*\[?\s*"
                        r"[\"'](?P<s>[A-Za-z0-9_+/=-]{2,})[\"']")
JWK_PRIVATE = {"d", "p", "q", "dp", "dq", "qi", "k"}


def jwk_members(text: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, private) of the key members of each JSON Web Key in `text`."""
    if "kty" not in text:
        return
    for obj in JWK_OBJECT.finditer(text):
        for m in JWK_MEMBER.finditer(obj.group()):
            yield obj.start() + m.start("s"), obj.start() + m.end("s"), m.group("name") in JWK_PRIVATE


def private_jwk(text: str) -> bool:
    """A JSON Web Key with its private members (`d`, or a symmetric key's `k`)."""
    return any(private for _, _, private in jwk_members(text))


def decoded_secret(token: str, known_format) -> str | None:
    """Base64 whose decoding is itself a credential: a private key, `user:pass`, a JWT, a vendor token."""
    raw = _b64(token)
    if raw is None:
        return None
    if b"PRIVATE KEY" in raw[:64] and raw.lstrip().startswith(b"-----BEGIN"):
        return "encoded_private_key"
    if raw.startswith(b"NTLMSSP\x00\x03\x00\x00\x00"):
        return "ntlm_response"  # an NTLM AUTHENTICATE message: the challenge's response, cracked offline
    text = _printable(raw)
    if text is None:
        return None
    text = text.strip()
    if private_jwk(text):
        return "encoded_private_key"
    # not a scope (`Fiddle::Pointer`) or a URL in code (`file_get_contents('http://…`)
    if USER_PASS.fullmatch(text) and not re.fullmatch(r"[\d:.]+|https?:.*|[a-z]+:[a-z]+", text) \
            and "::" not in text and not re.search(r"[\w+.-]://", text):
        return "encoded_credentials"
    if text.startswith('{"alg"') or text.startswith('{"typ"'):
        return None  # a JWT header alone is not a secret; the whole JWT is caught by its format
    return "encoded_token" if known_format(text) else None


SEGMENT = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
VOWELS = set("aeiouyAEIOUY")


CONSONANTS_RUN = re.compile(r"[b-df-hj-np-tv-xz]{5,}", re.IGNORECASE)


def _pronounceable(segment: str) -> bool:
    """Reads like a word: a quarter of it vowels and no five consonants in a row, or an English word
    of four letters or more by wordfreq's word list (`Block`, `Strings`, `Rights`)."""
    vowels = sum(c in VOWELS for c in segment)
    return (vowels >= 0.25 * len(segment) and not CONSONANTS_RUN.search(segment)) or (
        len(segment) >= 4 and english_word(segment.lower()))


@lru_cache(maxsize=65536)
def _zipf(word: str) -> float:
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en")


def english_word(word: str) -> bool:
    return _zipf(word) >= 3.0


def function_word(word: str) -> bool:
    """One of the words every English sentence is built with (`is`, `the`, `should`, `never`)."""
    return _zipf(word) >= 5.9


# Masked already: `1ba46982062b43redacted`, `ASIAXXXXXXXXXXXXXXXX`, `sk-****`.
MASKED = re.compile(r"(?i)redacted|x{5,}|\*{3,}")


def sample_value(token: str) -> bool:
    """Masked already, or typed along the alphabet or the digits (`1234abcdefghijklmnop`): sample
    data, however random its characters' spread looks. Only for a value judged by its look: in a
    credential's own slot whatever stands there is redacted."""
    steps = [abs(ord(b.lower()) - ord(a.lower())) == 1 for a, b in zip(token, token[1:])]
    return bool(MASKED.search(token)) or sum(steps) >= 0.5 * len(steps)


def _wordy(part: str) -> bool:
    """A name made of words, camel-cased or not: `Operational`, `NTEventlogFile`, `UnsafeNativeMethods`."""
    segments = SEGMENT.findall(part)
    letters = [s for s in segments if not s.isdigit()]
    if not letters or sum(len(s) for s in letters) < len(part) * 0.7:
        return False
    total = sum(len(s) for s in letters)
    words = [s for s in letters if len(s) >= 3 and _pronounceable(s)]
    # camelCase names carry short words too (`OraDb`, `ConvertTo`, `WScript`) beside long ones
    short = [s for s in letters if len(s) <= 2 and (s[0].isupper() or len(words) >= 2)]
    acronyms = [s for s in letters if s.isupper() and 3 <= len(s) <= 4 and s not in words]
    worded = sum(map(len, words + short + acronyms))
    return worded >= 0.85 * total and sum(map(len, words)) >= 0.6 * total and len(words) >= len(short)


def _identifier_like(token: str) -> bool:
    """Made of words: `acme-prod-logs-7f3a2c`, `Linux_Trojan_Mirai_1a2b3c4d`, `Log4j.Error.Log`,
    `Microsoft-Windows-Sysmon/Operational`, `Erbium-UA-4ce7c27cb4be9d32e333bf032c88235a`."""
    parts = [p for p in re.split(r"[_.:\-/\\]", token) if p]
    if len(parts) < 2:
        return False
    parts = [p for p in parts if not p.isdigit()] or parts  # version numbers: `Linux-6.6.6-x86_64-glibc2.38`
    wordy = [p for p in parts if re.fullmatch(r"[A-Za-z][a-z]+|[A-Z]{2,}|[a-z]{2,}", p) or _wordy(p)]
    return len(wordy) * 2 >= len(parts) and all(len(p) <= 12 or re.fullmatch(r"[0-9a-f]+|[0-9A-F]+|\d+", p)
                                                for p in parts if p not in wordy)


def looks_secret(token: str) -> bool:
    """A long token that looks random, and not like an identifier or an indicator."""
    token = token.strip(".-_=")
    if len(token) < 20 or any(rx.match(token) for rx in IOC_SHAPES) or decodes_to_text(token) \
            or public_key_material(token):
        return False
    if re.fullmatch(r"[A-Z0-9_]+", token) and token.count("_") >= 2:
        return False  # CONSTANT_NAMES, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    if "." in token and re.search(r"\.[a-z][a-z0-9]{1,5}$", token):
        return False  # host names and file names
    digits = any(c.isdigit() for c in token)
    upper, lower = any(c.isupper() for c in token), any(c.islower() for c in token)
    if not digits and not (upper and lower):
        return False  # words and identifiers
    if _identifier_like(token) or _wordy(token):
        return False
    parts = [part for part in re.split(r"[_.\-]", token) if part]
    if not digits and all(re.fullmatch(r"(?:[A-Z]+[a-z]*|[a-z]+)+", part) for part in parts):
        return False  # identifiers made of words: camelCase, Snake_Case, Dotted.Names, Get-VerbNoun
    return shannon_entropy(token) >= min(4.2, 3.0 + len(token) / 40)


def looks_random(value: str) -> bool:
    """Evidence for a value in a field that is only sometimes a credential (`key`, `auth`)."""
    value = value.strip()
    if len(value) < 12 or is_not_secret(value):
        return False
    if _identifier_like(value):
        # words with a hash (`Erbium-UA-4ce7…`, a cache's `Linux-npm-4f3b…`) are a name; in a key's slot, a body of
        # 128 random bits or more after a vendor's lower-case, underscored prefix (`sk_pr_…_fa02…`) is the key
        return bool(re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*_(?=[a-f]*\d)(?=\d*[a-f])[0-9a-f]{32,}", value))
    if re.fullmatch(r"[\w.%-]+(?:/[\w.%-]+)+", value) and not any(looks_secret(p) for p in value.split("/")):
        return False  # an object key or a relative path
    if re.fullmatch(r"[0-9a-fA-F]{16,}", value):
        return True  # a hex key in a key's slot
    return looks_secret(value) or (bool(re.search(r"\d", value)) and bool(re.search(r"[A-Za-z]", value))
                                   and shannon_entropy(value) >= 3.3)


def has_password_shape(value: str, minimum: int = 6) -> bool:
    """A word in prose that a person chose as a password: letters with digits or symbols."""
    if len(value) < minimum or is_not_secret(value) or re.fullmatch(r"[\d.,:/-]+", value):
        return False
    if re.search(r"[\u4e00-\u9fff]{2}", value):
        return False  # Chinese words: the sentence goes on (`token 以固定速度往桶内填充，`)
    letters = re.search(r"[^\W\d_]", value)
    if re.fullmatch(r"[A-Za-z]+(?:[-/][A-Za-z]+)+", value):  # words joined (`read-only`), not `kzqw-hbtr-mfxa-pvne`
        groups = re.split(r"[-/]", value)
        named = [len(g) <= 2 or g.isupper() or g.istitle() and _pronounceable(g) or english_word(g.lower())
                 for g in groups]  # words, acronyms, names: `read-only`, `AES-GCM`, `Kerberos/NTLM`
        return sum(named) * 2 < len(groups)
    return bool(letters and re.search(r"[\d\W_]", value))


def passphrase_shaped(value: str) -> bool:
    """Three to eight lower-case content words, as a diceware passphrase is made (`orange bicycle midnight
    harbor`); a requirement or a sentence has digits or function words (`at least 12 characters`)."""
    words = value.split()
    return 3 <= len(words) <= 8 and all(re.fullmatch(r"[a-z]{3,12}", w) and not function_word(w) for w in words)


def secret_shaped(value: str) -> bool:
    """Shaped like a chosen password or random enough for a key: what a value needs where the position
    alone is weak evidence (`PW:x`, `-P x` after `-u`, `set SMBPass x`)."""
    return has_password_shape(value) or looks_random(value)
