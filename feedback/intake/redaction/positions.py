"""Where credentials sit: the value slots of assignments, headers, URLs, calls, placeholders' defaults, tables,
command lines (`commands` reads them) and prose (`prose` reads sentences, English, Chinese and other languages).

Each finder reads one grammar and yields a `Slot` for the value in a credential position; the
field's name decides (`names.classify`), and the value is then judged on its own
(`evidence`): a placeholder, a reference or a path in a password's slot is not a password.
Identifier fields are reported too, so that nothing inside them is redacted for its look.
"""

from __future__ import annotations

import bisect
import csv
import re
from typing import Iterator

from secbot.feedback.intake.redaction import evidence
from secbot.feedback.intake.redaction.commands import command_lines
from secbot.feedback.intake.redaction.names import Field, classify, words
from secbot.feedback.intake.redaction.prose import other_languages, prose
from secbot.feedback.intake.redaction.slot import Slot, judge


_STOP = set(" \t\r\n\"'`,;)]}>")


def read_value(text: str, pos: int, stop_at: str = "", limit: int = 400) -> tuple[int, int, bool] | None:
    """The value starting at `pos` (after spaces): a quoted string or a run up to a delimiter."""
    n = len(text)
    while pos < n and text[pos] in " \t":
        pos += 1
    if text.startswith("!!", pos) or text.startswith("!str ", pos):  # YAML tags
        pos = text.find(" ", pos) + 1 or n
    if pos >= n:
        return None
    while pos + 1 < n and text[pos] in "\"'" and text[pos + 1] == text[pos]:
        pos += 1  # `""value""`
    if text[pos] == "<":  # `<redacted>`, `<your token here>`: a placeholder, read whole
        close = text.find(">", pos + 1, pos + 80)
        if close > 0 and "\n" not in text[pos:close]:
            return pos, close + 1, False
    if text.startswith("${", pos):  # `${NAME}`, `${NAME:?message}`; a default (`${NAME:-value}`) is a value
        close = text.find("}", pos + 2, pos + limit)
        if close > 0 and "\n" not in text[pos:close]:
            default = re.match(r"[\w.]+:?[-=]", text[pos + 2:close])
            if default and close > pos + 2 + default.end():
                return pos + 2 + default.end(), close, False
            return pos, close + 1, False
    quote = text[pos]
    if quote in "\"'`":
        end = text.find(quote, pos + 1, pos + limit)
        newline = text.find("\n", pos + 1, end if end > 0 else pos + limit)
        if end < 0 or newline >= 0:
            return None
        return (pos + 1, end, True) if end > pos + 1 else None
    end = pos
    stops = _STOP | set(stop_at)
    while end < n and end - pos < limit and text[end] not in stops:
        end += 1
    return (pos, end, False) if end > pos else None


# --- assignments: NAME = value, "name": "value", NAME: value, $env:NAME = "value", name => value
NAME = r"""(?P<q>["']?)(?P<name>[$@]?(?:env:)?[A-Za-z_\u4e00-\u9fff][\w.$\-\u4e00-\u9fff]{0,80})(?P=q)"""
TYPED = r"(?:[ \t]*:[ \t]*(?:string|str|String|SecureString)\b|[ \t]+(?:string|str|String)\b)?"
ASSIGNMENT = re.compile(r"(?<![\w$.])" + NAME + TYPED + r"[ \t]*(?P<sep>:=|=>|\?=|(?<![=!<>])=(?!=)|:(?![:/\\]))")
XML_ELEMENT = re.compile(r"""<(?P<name>[\w:.-]{1,60})(?:\s+[\w:.-]{1,60}\s*=\s*(?:"[^"<>\n]{0,200}"|'[^'<>\n]{0,200}'))*\s*>"""
                         r"(?P<value>[^<\n]{1,300})</(?P=name)>")  # with attributes: FileZilla's `<Pass encoding="base64">`
XML_PAIR = re.compile(r"""(?:key|name)\s*=\s*["'](?P<name>[^"'\n]{1,80})["']\s*"""
                      r"""(?:value\s*=\s*["'](?P<value>[^"'\n]*)["']|>(?P<text>[^<\n]{1,300})<)""")
# A setting given as a name and a value side by side: Kubernetes' and ECS's `env` (`- name: DB_PASSWORD` then
# `value: …`), JSON's `{"name": "API_TOKEN", "value": "…"}`: the value is in the named field's slot.
NAME_VALUE = re.compile(r"""(?<![\w-])(?P<q>["']?)name(?P=q)[ \t]*[:=][ \t]*["']?(?P<name>[A-Za-z_][\w.-]{0,80})["']?"""
                        r"""[ \t]*,?[ \t]*(?:\r?\n[ \t]*(?:-[ \t]+)?)?(?P<v>["']?)value(?P=v)[ \t]*[:=]""")
HCL_VARIABLE = re.compile(r"""\bvariable\s+"(?P<name>[^"]+)"\s*\{[^}]*?\bdefault\s*=\s*""")
JSON_LIST = re.compile(r"[ \t]*\[(?P<items>[^\[\]{}\n]{0,2000})\]")  # strings, not objects
JSON_ITEM = re.compile(r"\"(?P<s>[^\"\n]*)\"")
# A stage of a query pipeline (KQL, SPL): an unquoted value there is a column or an expression over columns
# (`| extend TokenLevel = AF.OriginalTokenIntegrityLevel`); a literal is quoted.
QUERY_STAGE = re.compile(r"(?i)^[ \t]*\|[ \t]*(?:extend|project(?:-\w+)?|where|summarize|eval|rename|fields"
                         r"|table|stats|eventstats|streamstats|join|parse|mv-expand|mv-apply|lookup|sort|order|top"
                         r"|distinct|evaluate|make-series|search|rex|spath|fillnull|dedup|invoke|union|tstats"
                         r"|inputlookup|outputlookup)\b")
# Up to six words after a colon's first word: the colon introduced a sentence when one is a function word
# (`is`, `should`, `the`); a passphrase (`purple monkey dishwasher`) is made of content words.
SENTENCE_GOES_ON = re.compile(r"(?:[ \t]+[^\W\d_]+){1,6}")
ANOTHER_FIELD = re.compile(r"[a-z_]{2,20}=(?![=\s])")
# An account and its password in an `auth` field: `user/X`, `user:X`.
AUTH_PAIR = re.compile(r"[\w.@-]{1,64}[/:](?P<s>[^\s/:]{4,128})")
CLAUSE_PUNCTUATION = re.compile(r"[^\n\"]{0,80}?[,.;!?](?:\s|\"|$)")
WORDS_BEFORE = re.compile(r"[^\W\d_]{2,}[ \t]+$")  # and words before its key: the colon is inside a sentence
# The words that end a line after an unquoted value: with no function word among them, one passphrase.
PASSPHRASE_REST = re.compile(r"(?:[ \t]+[^\s=:#\"'`]+){1,6}[ \t]*(?=$|\n|[ \t]#)", re.MULTILINE)
# The colon that ends a block header (`if not token:`) separates no key from a value.
BLOCK_HEADER = re.compile(r"^[ \t]*(?:if|elif|else|while|for|with|except|try|def|class|lambda|match|case)\b")
# In a URL's query, a signature grants what the URL grants (SAS `sig`, presigned `X-Amz-Signature`).
QUERY_SIGNATURES = {"sig", "signature"}


def _message(value: str, following: str, text: str, at: int) -> bool:
    """A message after the colon (`incorrect password: Permission denied, please try again.`): two words, then
    a clause's punctuation before the line or string ends; a passphrase of words has none."""
    return evidence.english_word(value.lower()) and evidence.english_word(following.lower()) \
        and bool(CLAUSE_PUNCTUATION.match(text, at))


def _tight_pair(text: str, start: int, value_start: int, value_end: int, field: Field) -> bool:
    """`PW:dipPr10Gg!`, `ID:admin,pwd:Hx9!r2`: a credential's name, a colon with no space and a value shaped
    like a password. Inside an ARN (`:secret:prod/db`) or a shell expansion (`${PASSWORD:?}`) the colon
    joins parts of one name."""
    if field is not Field.CREDENTIAL or start > 0 and text[start - 1] in ":{":
        return False
    return evidence.secret_shaped(text[value_start:value_end])


def assignments(text: str) -> Iterator[Slot]:
    newlines = [m.start() for m in re.finditer("\n", text)]
    for m in ASSIGNMENT.finditer(text):
        field = classify(m.group("name"))
        if field is Field.OTHER:
            continue
        line = newlines[i - 1] + 1 if (i := bisect.bisect_left(newlines, m.start())) else 0
        in_query = m.start() > 0 and text[m.start() - 1] in "?&"
        if in_query and words(m.group("name"))[-1:][0] in QUERY_SIGNATURES:
            field = Field.CREDENTIAL
        opened = text[m.start() - 1] if m.start() and not m.group("q") else ""
        if opened in ("\"", "'") and re.match(r"[ \t]*" + opened, text[m.end():m.end() + 8]):
            continue  # `expect "Password:"`: a quoted label or prompt, the colon inside it
        items = JSON_LIST.match(text, m.end())
        if items:  # a JSON list: each item in the field's slot (`"accessKeyId": ["ASIA…"]`, `"passwords": ["…"]`)
            at = items.start("items")
            for item in JSON_ITEM.finditer(items.group("items")):
                slot = judge(text, at + item.start("s"), at + item.end("s"), True, field, "assignment")
                if slot:
                    yield slot
            continue
        value = read_value(text, m.end(), stop_at="&#" if in_query else "")
        if value is None:
            continue
        if m.group("sep") == ":" and not m.group("q") and not in_query:
            if text[m.end():value[0]] == "" and not _tight_pair(text, m.start(), *value[:2], field):
                continue  # `Recon:IAMUser`, `tcp:host`: a colon with no space joins a name to a name
            if BLOCK_HEADER.match(text, line):
                continue
        if not value[2] and QUERY_STAGE.match(text, line):
            continue
        if not value[2] and ANOTHER_FIELD.match(text, value[0]):
            continue  # `credentials: id=deploy-ssh, kind=…`: the label of fields, each judged by its own name
        pair = AUTH_PAIR.fullmatch(text, value[0], value[1]) if "auth" in words(m.group("name")) else None
        if pair and evidence.has_password_shape(pair.group("s"), 8) and not evidence.is_reference(pair.group("s"), False):
            yield Slot(pair.start("s"), pair.end("s"), "assignment", Field.CREDENTIAL)  # `NEO4J_AUTH=neo4j/X`
            continue
        goes_on = m.group("sep") == ":" and not value[2] and SENTENCE_GOES_ON.match(text, value[1])
        if goes_on and re.fullmatch(r"[^\W\d_]+", text[value[0]:value[1]]) \
                and WORDS_BEFORE.search(text, max(line, m.start() - 40), m.start()) and (
                    any(evidence.function_word(w) for w in goes_on.group().split())
                    or _message(text[value[0]:value[1]], goes_on.group().split()[0], text, goes_on.end())):
            continue  # a colon in a sentence: `scope access to your secrets: one should not …`
        if in_query and not value[2] and evidence.english_word(text[value[0]:value[1]].lower()) \
                and text[value[0]:value[1]].isalpha():
            continue  # `?token=expired`: a query's tokens are machine-made, never a word
        label = words(text[max(line, m.start() - 8):m.start()] + " " + m.group("name"))[-2:]  # `Secret ID  = …`
        if field is Field.IDENTIFIER and label == ["secret", "id"] and evidence.UUID.fullmatch(text[value[0]:value[1]]):
            field = Field.CREDENTIAL  # a generated secret id (Vault's AppRole, Consul's and Nomad's tokens), not a name
        slot = judge(text, *value, field, "assignment")
        if slot and not value[2] and not in_query:
            rest = PASSPHRASE_REST.match(text, slot.end)
            if rest and not any(evidence.function_word(w) for w in rest.group().split()):
                slot = Slot(slot.start, rest.end(), slot.kind, slot.field)  # `passphrase: purple monkey dishwasher`
        if slot:
            yield slot
    for m in XML_ELEMENT.finditer(text):
        slot = judge(text, m.start("value"), m.end("value"), True, classify(m.group("name")), "assignment")
        if slot:
            yield slot
    for m in XML_PAIR.finditer(text):
        group = "value" if m.group("value") is not None else "text"
        if m.group(group):
            slot = judge(text, m.start(group), m.end(group), True, classify(m.group("name")), "assignment")
            if slot:
                yield slot
    for m in [*NAME_VALUE.finditer(text), *HCL_VARIABLE.finditer(text)]:  # the value is read after the match
        value = read_value(text, m.end())
        if value:
            slot = judge(text, *value, classify(m.group("name")), "assignment")
            if slot:
                yield slot


# --- HTTP headers: any scheme, `token="…"` parameters, cookies, and identifier headers whole
# The rest of the line is read ahead, so a header after prose on the same line is found too
# (`Rotate it now: Authorization: Bearer …`).
HEADER = re.compile(r"(?im)(?:^|(?<=[\s\"'(]))(?P<name>[A-Za-z][A-Za-z0-9-]{1,60}):[ \t]*"
                    r"(?=(?P<rest>[^\r\n\"']{0,500}))")
AUTH_VALUE = re.compile(r"^(?:(?P<scheme>[A-Za-z][\w-]{1,24})[ \t]+)?(?:\w+=\"?)?(?P<s>[^\s\",]{6,})")
FOLDED = re.compile(r"[^\r\n]*(?:\r?\n[ \t]+[^\r\n]{1,1000}){0,200}")
COOKIE_PAIR = re.compile(r"(?P<name>[\w.-]+)=(?P<s>[^\s;]{6,})")


# A message's header section (RFC 5322), known by the headers only mail carries: there every header but the
# free-text ones is written by the mail system (routes, ids, signatures, a gateway's scores and opaque data).
MAIL_ONLY = re.compile(r"(?im)^(received|message-id|return-path|dkim-signature|arc-seal|arc-message-signature"
                       r"|authentication-results|delivered-to|mime-version|x-mailer|in-reply-to|x-originating-ip):")
FREE_TEXT = {"subject", "comments", "keywords", "content-description", "thread-topic", "x-subject"}


def _mail_section(text: str) -> bool:
    return len({m.group(1).lower() for m in MAIL_ONLY.finditer(text)}) >= 2


def headers(text: str) -> Iterator[Slot]:
    mail = _mail_section(text)
    for m in HEADER.finditer(text):
        name, rest = m.group("name").lower(), m.group("rest")
        start = m.start("rest")
        at_line_start = m.start() == 0 or text[m.start() - 1] == "\n"
        if mail and at_line_start and name not in FREE_TEXT and classify(name) is not Field.CREDENTIAL \
                and name not in ("authorization", "proxy-authorization", "cookie", "set-cookie"):
            yield Slot(start, FOLDED.match(text, m.end("rest")).end(), "header", Field.IDENTIFIER)
            continue
        if name in ("authorization", "proxy-authorization"):
            value = AUTH_VALUE.match(rest)
            # a word is a sentence going on (`authorization: existing tickets first`), not a token
            word = value and re.fullmatch(r"[^\W\d_]+", value.group("s")) and not evidence.looks_random(value.group("s"))
            if value and not word and not evidence.is_reference(value.group("s"), False):
                yield Slot(start + value.start("s"), start + value.end("s"), "auth_header", Field.CREDENTIAL)
        elif name in ("cookie", "set-cookie"):
            for pair in COOKIE_PAIR.finditer(rest):
                if not evidence.is_reference(pair.group("s"), False):  # `session=deleted` clears a cookie
                    yield Slot(start + pair.start("s"), start + pair.end("s"), "cookie", Field.CREDENTIAL)
        elif "-" in name and classify(name) is Field.IDENTIFIER and rest:
            # X-Request-Id, DKIM-Signature; a mail header's value goes on over its folded lines (RFC 5322)
            end = FOLDED.match(text, m.end("rest")).end() if at_line_start else m.end("rest")
            yield Slot(start, end, "header", Field.IDENTIFIER)


# --- URLs: a password in the userinfo of any scheme, also with an empty user (`redis://:pw@`)
USERINFO = re.compile(r"://(?P<user>[^\s:/@\"']*):(?P<s>[^\s@/\"']+)@(?=[\w\[.-])")
ORACLE = re.compile(r"(?:\b(?:sqlplus|rman|expdp|impdp|exp|imp|sqlldr|dgmgrl)(?:\s+-\w+)*\s+"
                    r"|jdbc:oracle:\w+:|\bconnect\s+)"
                    r"['\"]?[\w.$#]+/(?P<s>[^\s@/\"']+)@")
# Go's MySQL driver DSN: `user:password@tcp(host:3306)/db`, `user:password@unix(/path)/db`.
DSN = re.compile(r"(?<![\w:/])[\w.$-]{1,64}:(?P<s>[^\s@\"'/:]{3,128})@(?:tcp6?|udp|unix)\(")
USERINFO_TOKEN = re.compile(r"(?<=://)(?P<s>[^\s:/@\"']{16,})@(?=[\w\[.-])")  # `https://TOKEN@host`, DSNs
PGPASS = re.compile(r"(?m)^[\w.*-]+:(?:\d{1,5}|\*):[\w.*-]+:[\w.@*-]+:(?P<s>(?!:+$)\S+)$")
# pwdump / secretsdump / hashdump: user:rid:LM:NT::: (an NT hash logs on as the user: pass-the-hash)
PWDUMP = re.compile(r"(?m)^[^:\s]+:\d+:(?P<lm>[0-9a-fA-F]{32}):(?P<s>[0-9a-fA-F]{32}):::")
# The value next to an access key id (AWS, Twilio, Alibaba) is its secret: `AKIA…,wJalr…` (credentials CSV),
# `Client("AC…", "…")`.
ACCESS_ID_PAIR = re.compile(r"\b(?:(?:AKIA|ASIA)[A-Z0-9]{16}|AC[0-9a-f]{32}|LTAI[A-Za-z0-9]{12,20})\b"
                            r"[\"']?[ \t]*[,:;|]?[ \t]*[\"']?"
                            r"(?!(?:AKIA|ASIA)[A-Z0-9]{16}\b)(?P<s>[A-Za-z0-9/+=_-]{20,})")  # not the next key id
# A URL path's segment after a singular credential noun (`…/api/token/<value>`) is what the noun names.
# After a plural (`…/keys/<key id>`) it is a member of a collection, named by its id.
PATH_TOKEN = re.compile(r"(?<=/)(?:token|access_token|apikey|api_key|api-key|secret|password|passwd|auth)/"
                        r"(?P<s>[^/?#&\s\"'<>]{16,})")
NETRC = re.compile(r"\bmachine\s+\S+\s+login\s+\S+\s+password\s+(?P<s>\S+)")
# John the Ripper's cracked line: the password, a run of spaces, the account in parentheses.
JOHN = re.compile(r"(?m)^(?P<s>\S{3,})[ \t]{2,}\((?P<u>[^()\s]{1,64})\)[ \t]*$")

# A passwd-format line (`/etc/passwd`, `john --show`): its second field is the password, or its hash, unless it
# says the password lives elsewhere or is locked (`x`, `*`, `!`).
PASSWD_LINE = re.compile(r"(?m)^[\w.$-]{1,64}:(?P<s>[^:\s]{1,200}):\d{1,10}:\d{1,10}:[^:\n]{0,200}"
                         r":(?:/[^:\s]{0,200})?:(?:/[^:\s]{0,200})?(?=\s|$)")
NO_PASSWORD = re.compile(r"[x*!]+|\*?LK\*|NP")
RELATIVE_PATH = re.compile(r"[\w.-]+(?:/[\w.-]+)+")
# A cracked hash, as hashcat's potfile and `--show` print it: the hash (hex, or crypt's `$id$…`), then the password.
POTFILE = re.compile(r"(?m)^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}|[0-9a-fA-F]{128}|\$[\w$./+=*-]{16,500})"
                     r":(?P<s>[^\s:]{4,128})[ \t]*$")


def urls(text: str) -> Iterator[Slot]:
    for rx, kind in ((USERINFO, "url_password"), (ORACLE, "url_password"), (DSN, "url_password"),
                     (PGPASS, "pgpass_password"), (NETRC, "netrc_password"), (PWDUMP, "password_hash"),
                     (JOHN, "cracked_password"), (PASSWD_LINE, "cracked_password")):
        for m in rx.finditer(text):
            if rx is PGPASS and PASSWD_LINE.match(text, m.start()):
                continue  # `nobody:*:65534:65534:…`: a passwd line, not host:port:database:user:password
            if not evidence.is_reference(m.group("s"), False) and not (rx is PASSWD_LINE and NO_PASSWORD.fullmatch(
                    m.group("s"))):
                yield Slot(m.start("s"), m.end("s"), kind, Field.CREDENTIAL)
    for m in POTFILE.finditer(text):
        value = m.group("s")  # not `<commit>:src/app.py`, a file at a revision
        if not (evidence.is_reference(value, False) or evidence.is_not_secret(value) or RELATIVE_PATH.fullmatch(value)):
            yield Slot(m.start("s"), m.end("s"), "cracked_password", Field.CREDENTIAL)
    for m in ACCESS_ID_PAIR.finditer(text):
        if evidence.looks_random(m.group("s")):
            yield Slot(m.start("s"), m.end("s"), "paired_secret", Field.CREDENTIAL)
    for rx in (USERINFO_TOKEN, PATH_TOKEN):
        for m in rx.finditer(text):
            if evidence.looks_random(m.group("s")):
                yield Slot(m.start("s"), m.end("s"), "url_token", Field.CREDENTIAL)


# --- calls: auth=("user", "pw"), HTTPBasicAuth('u', 'pw'), PSCredential("u", …), simple_bind_s(dn, pw)
# A constructor too, as PowerShell and Rust write one: `[System.Net.NetworkCredential]::new('u', X)`,
# `New-Object PSCredential -ArgumentList 'u', X`, `Credentials::new("u".to_string(), X)`.
CALL = re.compile(r"(?i)(?:\bauth\s*=\s*[(\[]|\b(?P<fn>\w*(?:auth|credentials?|bind\w*|login|logon|authenticate))"
                  r"(?:\]?::new)?\s*(?:[(\[]|-ArgumentList\s*\(?))\s*(?P<q1>[\"'])[^\"'\n]{0,200}(?P=q1)(?:\.\w+\(\))?\s*,\s*(?P<q2>[\"'])(?P<s>[^\"'\n]{3,})(?P=q2)")


# A call or index that pairs a credential's name with a literal: define('DB_PASSWORD', '…'),
# props.put("mail.smtp.password", "…"), os.environ.setdefault("API_TOKEN", "…"), config.set("db", "password", "…").
NAMED_ARGUMENT = re.compile(r"""[(,\[]\s*(?P<q1>["'])(?P<name>[\w.\-]{2,80})(?P=q1)\s*(?P<sep>[,\]])\s*(?:=\s*)?"""
                            r"""(?P<q2>["'])(?P<s>[^"'\n]{3,})(?P=q2)""")

# A third string beside a name and its value: the strings are a list, not a pair.
STRING_ITEM_AFTER = re.compile(r"""\s*,\s*["']""")
STRING_ITEM_BEFORE = re.compile(r"""["']\s*$""")
# The strings of a membership test (KQL's `in`, `!in`, `in~`, `has_any`, SQL's and Python's `in`), up to the pair.
MEMBERSHIP = re.compile(r"""(?i)(?:!in~?|\bin~?|\bhas_any|\bhas_all)\s*\((?:\s*["'][^"'\n]*["']\s*,)*$""")


# Connection and credential APIs whose password is a positional argument: the call's name (with the qualifier
# that makes it unambiguous, `.`, `::` and `->` read as `.`) and the argument's place, counted from 0 (from the end when negative).
# `DriverManager.getConnection(url, user, X)`, `new PDO(dsn, user, X)`, `mysqli_connect(host, user, X, db)`.
POSITIONAL_CALLS = {"getconnection": -1, "pdo": 2, "mysqli": 2, "mysqli_connect": 2, "mysql_connect": 2,
                    "mysqli_real_connect": 3, "ldap_bind": 2, "smtp.start": 4, "plainauth": 2, "crammd5auth": 1,
                    "cx_oracle.connect": 1, "oracledb.connect": 1, "pymssql.connect": 2, "mysqldb.connect": 2,
                    "pymysql.connect": 2, "dbi.connect": 2, "smbconnection": 1, "ftp": 2, "ftp_tls": 2,
                    "passwordauthentication": 1, "usernamepasswordauthenticationtoken": 1, "createcredential": 2,
                    "createscramsha1credential": 2, "createscramsha256credential": 2, "createplaincredential": 2,
                    "unsafeplaintext": 0, "secretvalue.plaintext": 0}  # the CDK's plain-text secret
CALL_NAME = re.compile(r"(?<!\w)(?:(?P<qual>[A-Za-z_]\w*)(?:\.|::|->))?(?P<name>[A-Za-z_]\w*)\s*\(")
STRING_ARGUMENT = re.compile(r"""\s*(?P<q>["'])(?P<s>[^"'\n]{3,200})(?P=q)(?:\.(?:toCharArray|getBytes)\(\))?\s*$""")
# A constant that names a credential, then a literal: `env.put(Context.SECURITY_CREDENTIALS, "…")`.
CONSTANT_ARGUMENT = re.compile(r"""\(\s*(?:[A-Za-z_]\w*\.)*(?P<name>[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\s*,\s*"""
                               r"""(?P<q>["'])(?P<s>[^"'\n]{3,})(?P=q)""")


def _arguments(text: str, start: int) -> list[tuple[int, int]]:
    """The spans of a call's arguments from just after its `(`, split at its own commas (quotes and brackets
    kept whole), up to its `)`; empty when the call does not close on its line within 400 characters."""
    spans, depth, quote, begin = [], 0, "", start
    for i in range(start, min(len(text), start + 400)):
        c = text[i]
        if quote:
            quote = "" if c == quote and text[i - 1] != "\\" else quote
        elif c in "\"'":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}" and depth:
            depth -= 1
        elif c == ")" or c == "," and not depth:
            spans.append((begin, i))
            begin = i + 1
            if c == ")":
                return spans
        elif c == "\n":
            break
    return []


def _overlapping(rx: re.Pattern, text: str) -> Iterator[re.Match]:
    m = rx.search(text)
    while m:
        yield m
        m = rx.search(text, m.start() + 1)


def calls(text: str) -> Iterator[Slot]:
    for m in CALL.finditer(text):
        if (m.group("fn") or "").lower() in POSITIONAL_CALLS:
            continue  # its password's place is known (`smtp.PlainAuth("", user, X, host)`)
        if not evidence.is_reference(m.group("s"), True):
            yield Slot(m.start("s"), m.end("s"), "call_argument", Field.CREDENTIAL)
    for m in CALL_NAME.finditer(text):
        name = m.group("name").lower()
        place = POSITIONAL_CALLS.get(f"{(m.group('qual') or '').lower()}.{name}", POSITIONAL_CALLS.get(name))
        if place is None:
            continue
        arguments = _arguments(text, m.end())
        if (len(arguments) >= 2 or place == 0) and -len(arguments) <= place < len(arguments):
            literal = STRING_ARGUMENT.match(text[slice(*arguments[place])])
            if literal and not evidence.is_reference(literal.group("s"), True):
                s = arguments[place][0] + literal.start("s")
                yield Slot(s, s + len(literal.group("s")), "call_argument", Field.CREDENTIAL)
    for m in CONSTANT_ARGUMENT.finditer(text):
        if classify(m.group("name")) is Field.CREDENTIAL and not evidence.is_reference(m.group("s"), True):
            yield Slot(m.start("s"), m.end("s"), "call_argument", Field.CREDENTIAL)
    for m in _overlapping(NAMED_ARGUMENT, text):  # `config.set("db", "password", "…")`: the pair after `"db"`
        if text[m.start()] == "[" and m.group("sep") == ",":
            continue  # a list of names (`resources: ["secrets", "configmaps"]`), not an index (`env["TOKEN"] = …`)
        if MEMBERSHIP.search(text[max(0, m.start() - 300):m.start() + 1]):
            continue  # a set a value is tested against: `!in ("Password", "FIDO2")`, `IN ('password', 'token')`
        listed = STRING_ITEM_AFTER.match(text, m.end()) \
            or text[m.start()] == "," and STRING_ITEM_BEFORE.search(text[max(0, m.start() - 20):m.start()])
        if listed and re.fullmatch(r"[^\W\d_]+", m.group("s")):
            continue  # a word among others: `dynamic("SecretGet", "KeyGet", "VaultGet")`
        field = classify(m.group("name"))
        if field in (Field.CREDENTIAL, Field.WEAK):
            slot = judge(text, m.start("s"), m.end("s"), True, field, "call_argument")
            if slot:
                yield slot


# A placeholder's default (Spring's `${smtp.password:X}`, the shell's `${DB_PASSWORD:-X}`): when the name is a
# credential's, the default is one.
DEFAULTED = re.compile(r"\$\{(?P<name>[\w.\-]{2,80})(?::-|:=|:(?![?+]))(?P<s>[^}\s\"'$]{3,200})\}")  # not `:?message`


def defaults(text: str) -> Iterator[Slot]:
    for m in DEFAULTED.finditer(text):
        if classify(m.group("name")) is Field.CREDENTIAL and not evidence.is_reference(m.group("s"), True):
            yield Slot(m.start("s"), m.end("s"), "placeholder_default", Field.CREDENTIAL)


# A table (CSV, TSV, Markdown, psql's and other clients' output): a header row of names, then rows with as many
# cells; the cells under a column named for a credential (`password`, `api_token`) are credentials.
TABLE_CELL_NAME = re.compile(r"[A-Za-z_][\w .-]{0,40}")
TABLE_RULE = re.compile(r"^[\s|+:-]*-{3,}[\s|+:-]*$")  # `|---|---|`, `------+------`


def _cells(line: str, delimiter: str) -> list[tuple[int, int]]:
    """The spans of a row's cells without their spaces and quotes (CSV's quoting kept whole; a Markdown
    row's outer pipes left out)."""
    if delimiter == "|":
        stripped = line.strip()
        start = line.index("|") + 1 if stripped.startswith("|") else 0
        end = line.rstrip().rfind("|") if stripped.endswith("|") and len(stripped) > 1 else len(line)
        bounds = [start - 1, *(m.start() for m in re.finditer(r"\|", line[:end]) if m.start() >= start), end]
        raw = [(a + 1, b) for a, b in zip(bounds, bounds[1:])]
    else:
        raw, at = [], 0
        for value in next(csv.reader([line], delimiter=delimiter)):
            found = line.find(value, at)
            raw.append((found, found + len(value)) if found >= 0 else (at, at))
            at = raw[-1][1]
    spans = []
    for a, b in raw:
        cell = line[a:b]
        a += len(cell) - len(cell.lstrip())
        spans.append((a, a + len(cell.strip())))
    return spans


def tables(text: str) -> Iterator[Slot]:
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    for i, header in enumerate(lines[:-1]):
        ruled = bool(TABLE_RULE.match(lines[i + 1]))
        delimiter = next((d for d in ",|\t;" if header.count(d) >= (2 if d == "|" and not ruled else 1)), None)
        if delimiter is None:
            continue
        names = [header[a:b] for a, b in _cells(header, delimiter)]
        if len(names) < 2 or not all(TABLE_CELL_NAME.fullmatch(n) for n in names):
            continue
        columns = [k for k, n in enumerate(names) if classify(n.strip()) is Field.CREDENTIAL]
        if not columns:
            continue
        for j in range(i + 1, len(lines)):
            row = lines[j]
            if TABLE_RULE.match(row):
                continue
            cells = _cells(row, delimiter)
            if delimiter not in row or len(cells) != len(names):
                break
            for k in columns:
                slot = judge(row, *cells[k], False, Field.CREDENTIAL, "table_cell")
                if slot:
                    yield Slot(offsets[j] + slot.start, offsets[j] + slot.end, slot.kind, slot.field)


FINDERS = (assignments, headers, urls, command_lines, calls, defaults, tables, prose, other_languages)


def slots(text: str) -> Iterator[Slot]:
    for finder in FINDERS:
        yield from finder(text)
