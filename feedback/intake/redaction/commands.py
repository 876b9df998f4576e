"""Credentials on command lines: the options that take a password, per program and by name (`mysql -pX`,
`--db-password X`, `/p:X`, keytool's `-storepass`), pairs after identity options (`-u user:X`), positional
passwords (`htpasswd -b FILE USER X`), values read from standard input (`echo X | … --password-stdin`,
here-strings, expect scripts), PowerShell's plain-text SecureString, SQL's `IDENTIFIED BY`, and network
devices' configuration; also in a command nested inside another (`$(…)`, backticks, a quoted command).
"""

from __future__ import annotations

import re
from typing import Iterator

from secbot.feedback.intake.redaction import evidence
from secbot.feedback.intake.redaction.names import META, RESOURCE_VERBS, STRONG, Field, classify, classify_option, words
from secbot.feedback.intake.redaction.slot import VALUE_END, Slot, judge

# Single-letter options that take a password, by program (attached `-pX` where the program allows it).
SHORT_PASSWORD_OPTIONS = {
    "mysql": "p", "mysqldump": "p", "mysqladmin": "p", "mariadb": "p", "mysqlimport": "p", "mysqlshow": "p",
    "sshpass": "p", "redis-cli": "a", "ldapsearch": "w", "ldapmodify": "w", "ldapadd": "w", "ldapdelete": "w",
    "ldapwhoami": "w", "ldappasswd": "ws", "docker": "p", "podman": "p", "nerdctl": "p", "buildah": "p",
    "az": "p", "psexec": "p", "psexec64": "p", "paexec": "p", "sqlcmd": "P", "osql": "P", "bcp": "P",
    "zip": "P", "unzip": "P", "7z": "p", "7za": "p", "7zr": "p", "openssl": "k", "snmpwalk": "cAX",
    "snmpget": "cAX", "snmpbulkwalk": "cAX", "snmpset": "cAX", "snmpgetnext": "cAX", "snmptable": "cAX",
    "snmpbulkget": "cAX", "snmptrap": "cAX", "onesixtyone": "c",
    "crackmapexec": "pH", "netexec": "pH", "nxc": "pH", "cme": "pH", "evil-winrm": "pH", "hydra": "p",
    "medusa": "p", "ncrack": "p", "rdesktop": "p", "mongo": "p", "mongosh": "p", "mongodump": "p",
    "mongorestore": "p", "mongoexport": "p", "rabbitmqadmin": "p", "kerbrute": "p", "ftp": "p", "lftp": "p",
    "smbmap": "p", "rpcclient": "", "wmiexec": "p", "net": "", "schtasks": "p", "at": "", "runas": "",
    "xfreerdp": "p", "wfreerdp": "p", "sftp": "", "vpnc": "", "openconnect": "", "ipmitool": "P", "racadm": "p",
    "winrs": "p", "wmic": "", "cmdkey": "", "gpg": "", "curl": "", "wget": "", "pg_dump": "", "psql": "",
}
# Windows programs whose options take a password after a space (`schtasks /rp X`, `cmdkey /pass X`).
SLASH_PASSWORD_OPTIONS = {"schtasks": {"p", "rp"}, "cmdkey": {"pass"}, "wmic": {"password"}, "tscon": {"password"}}
FROM_SOURCE = {"env", "file"}
# Options that name the field a command prints, not a value: `lpass show --password ENTRY`.
OUTPUT_SELECTORS = {"lpass": {"password"}}
# The options that name what `--value` sets, and the types that make it secret (SSM's SecureString).
NAMING_OPTIONS = ("name", "key", "parameter-name", "secret-name", "setting")
SECURE_TYPES = {"securestring", "secret", "secure"}
# Programs whose password option belongs to one subcommand (`docker login -p` is a password, `docker run -p` a port).
SUBCOMMAND = {"docker": "login", "podman": "login", "nerdctl": "login", "buildah": "login"}
# Passwords that are a positional argument: program → (the words that must lead its arguments (a subcommand) or an
# option it needs, the n-th argument that is not an option). `rabbitmqctl add_user NAME PASSWORD`,
# `mc alias set ALIAS URL ACCESS_KEY SECRET_KEY`, `htpasswd -b FILE USER PASSWORD`.
POSITIONAL = {"wpa_passphrase": [((), 2)], "htpasswd": [(("-b",), 3)],
              "rabbitmqctl": [(("add_user",), 3), (("change_password",), 3), (("authenticate_user",), 3)],
              "mc": [(("alias", "set"), 6), (("config", "host", "add"), 7)],
              "ipmitool": [(("user", "set", "password"), 5)], "openssl": [(("passwd",), 2)],
              "mkstore": [(("-createCredential",), 4), (("-modifyCredential",), 4)]}
# `set SMBPass X`, `secret_access_key X`, `password 0 X`, `snmp-server community X`: a credential's name, then
# its value (after a one-digit type, as network device configs write it).
PAIR_NAMES = re.compile(r"[A-Za-z_][\w.-]{1,60}")
VALUE_TYPE = re.compile(r"(?i)\d|ascii(?:-text)?|hex|plain(?:-?text)?|clear(?:-?text)?|unencrypted|raw")
# Network devices' configuration (IOS, NX-OS, ASA, Junos, FortiOS): in the commands that configure AAA servers,
# routing protocols, SNMP, NTP, IPsec and accounts, `key` and `key-string` hold a shared key and an SNMPv3 user's
# `auth ALG X priv ALG [BITS] Y` its passphrases; an algorithm and a key id or length may come before the value.
# Commands no other grammar has: quoted in a sentence (`on the switch: tacacs-server host … key 7 X`) they start one.
DEVICE_ONLY_COMMANDS = {"tacacs-server", "radius-server", "snmp-server", "key-string", "isakmp", "tunnel-group",
                        "pre-shared-key", "message-digest-key", "authentication-key"}
DEVICE_COMMANDS = DEVICE_ONLY_COMMANDS | {"tacacs", "radius", "crypto", "ntp", "username", "enable", "neighbor", "ip",
                                          "ipv6", "standby", "vrrp", "aaa", "ikev1", "ikev2", "authentication", "set",
                                          "server", "snmp", "snmp-user"}
DEVICE_SECRET_WORDS = {"key-string", "priv"}
DEVICE_VALUE_TYPE = re.compile(r"(?i)\d{1,3}|md5|sha(?:1|224|256|384|512)?|aes(?:128|192|256)?|3?des|ascii(?:-text)?"
                               r"|hex|plain(?:-?text)?|clear(?:-?text)?|unencrypted")
ATTACHED = {"mysql", "mysqldump", "mysqladmin", "mariadb", "mysqlimport", "mysqlshow", "7z", "7za", "7zr"}
IMPACKET = {"secretsdump", "psexec", "wmiexec", "smbexec", "atexec", "dcomexec", "getuserspns", "getnpusers",
            "gettgt", "getst", "mssqlclient", "lookupsid"}
SEGMENT = re.compile(r"[^|;&\n]+")
TOKEN = re.compile(r"\"[^\"\n]*\"|'[^'\n]*'|[^\s\"']+")
# What comes before a program on its line: a shell's history number (and HISTTIMEFORMAT's time), a cron
# schedule (and a system crontab's user before a path), a prompt (`user@host:~$`, `[root@db01 ~]#`, `PS C:\>`).
LINE_PREFIX = re.compile(r"""[ \t]*(?:
      \d{1,6}[ \t]+(?:\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d)?[ \t]+)?(?=[^\d\s])
    | (?:@(?:reboot|yearly|annually|monthly|weekly|daily|midnight|hourly)|(?:[\d*/,-]+[ \t]+){4}[\d*/,-]+)[ \t]+
      (?:[a-z_][a-z0-9_-]{0,31}[ \t]+(?=/))?
    | (?:\([\w.-]+\)[ \t]+)?(?:\[[^\]\n]{1,60}\][$#]|[\w.-]+@[\w.-]+(?::[^\s$#]*)?[$#%>]
      |(?:PS[ \t]+)?[A-Za-z]:\\[^>\n]*>)[ \t]+
)?""", re.X)
WRAPPERS = {"sudo", "env", "time", "nohup", "exec", "command", "xargs", "nice", "doas", "watch", "timeout", "$", "#",
            ">", "powershell", "pwsh", "cmd", "/c", "-c", "bash", "sh", "start"}
USER_PASS_OPTIONS = {"-u", "--user", "-U", "--username", "/user:", "-user"}  # `u:p`, `u%p` forms
COMMA_PAIR_PROGRAMS = {"lftp", "open"}  # lftp and its `open` command: `-u user,password`
# Options named for an identity or authentication take `account:password` too (`nikto -id u:p`, `-auth u:p`,
# `--creds u:p`): there the part after the colon counts when it is shaped like a password.
AUTH_PAIR_WORDS = {"auth", "cred", "creds", "credential", "credentials", "login", "userpass", "basic"}
# A program that is not in the table but takes a user (`-u NAME`, `--username NAME`) takes its password as -p or
# -P (mosquitto_pub, influx, sqlcmd-likes): such a value counts when it is shaped like one, not a port or a file.
USER_OPTIONS = {"-u", "-U", "--user", "--username", "-user", "-username"}
INFERRED_PASSWORD_LETTERS = "pP"
QUOTED_PASSWORD = re.compile(r"^(?=.*\d)(?=.*[A-Za-z])(?:(?=.*[A-Z])(?=.*[a-z])|(?=.*[^\w\-./:,]))")
# A command inside another: `sh 'deploy.sh --db-pass X'`, `$(openssl passwd -1 'X')`, backticks.
NESTED = re.compile(r"\$\((?P<sub>[^()\n]{3,400})\)|`(?P<tick>[^`\n]{3,400})`")
PASSWORD_STDIN = re.compile(r"--password-stdin|--passphrase-fd\s+0|\bsudo\s+(?:-\w+\s+)*-S\b|\bpasswd\s+--stdin"
                            r"|\bchpasswd\b|\bsshpass\s+-[fd]\b|--pass(?:word)?-from-stdin|\bkinit\b"
                            r"|(?<![\w-])-{0,2}(?:password|passwd|passphrase|secret|token)[=\s]-(?!\S)")


# Commands whose output is a secret: a password manager's or a secret store's read, a generator (program → what
# its arguments must hold). Their output line in a pasted transcript is the secret itself.
REVEALING = {
    "lpass": re.compile(r"\bshow\b.*\s--password\b"), "bw": re.compile(r"\bget\s+(?:password|totp)\b"),
    "op": re.compile(r"\bread\b|\s--reveal\b"), "pass": re.compile(r"^\s*(?:show\s+)?(?!-)[\w./@-]+\s*$"),
    "gopass": re.compile(r"\bshow\b(?!.*\s-c\b)"), "secret-tool": re.compile(r"\blookup\b"),
    "keepassxc-cli": re.compile(r"(?i)\bshow\b.*(?:-a|--attributes)\s+password\b|\bshow\b.*\s(?:-s|--show-protected)\b"),
    "security": re.compile(r"\bfind-(?:generic|internet)-password\b.*\s-w\b"),
    "vault": re.compile(r"(?i)\s-field[= ]\S*(?:password|secret|token|key)\b"),
    "gcloud": re.compile(r"\bsecrets\s+versions\s+access\b"),
    "aws": re.compile(r"(?i)secretsmanager\s+get-secret-value\b.*SecretString|ssm\s+get-parameter\b.*--with-decryption"),
    "az": re.compile(r"\bkeyvault\s+secret\s+show\b.*--query\s+[\"']?value\b"),
    "kubectl": re.compile(r"\bget\s+secrets?\b.*(?:jsonpath|go-template).*\bdata\b"),
    "openssl": re.compile(r"\brand\b"), "pwgen": re.compile(r""), "apg": re.compile(r""),
}
# Programs a revealed value may pass through and still be printed (`| base64 -d`, `| jq -r .password`).
PASSING = {"base64", "jq", "yq", "head", "tail", "tr", "cut", "awk", "sed", "grep", "xargs", "cat"}


def revealed_output(text: str) -> Iterator[Slot]:
    """The line a revealing command printed (`$ lpass show --password Infra/iDRAC` then `X`): one word."""
    lines = list(re.finditer(r"(?m)^.*$", text))
    for line, output in zip(lines, lines[1:]):
        stages = line.group().split("|")
        tokens = list(TOKEN.finditer(stages[0]))
        program, first = _program(tokens, LINE_PREFIX.match(stages[0]).end())
        rest = stages[0][tokens[first].end():] if first < len(tokens) else ""
        if program not in REVEALING or not REVEALING[program].search(rest):
            continue
        if any(_program(list(TOKEN.finditer(stage)))[0] not in PASSING for stage in stages[1:]):
            continue
        word = re.fullmatch(r"\s*(\S{6,200})\s*", output.group())
        if word and not LINE_PREFIX.match(output.group()).group().strip():
            start = output.start() + word.start(1)
            slot = judge(text, start, start + len(word.group(1)), False, Field.CREDENTIAL, "command_output")
            if slot:
                yield slot


# PowerShell's plain-text SecureString, its switches in any order: `ConvertTo-SecureString -Force -String X`.
SECURE_STRING = re.compile(r"""(?i)\bConvertTo-SecureString(?:\s+-(?:String|AsPlainText|Force)\b)*\s+\\?"""
                           r"""(?P<q>["']?)(?P<s>(?![-$(])[^"'\s\\]{3,})\\?(?P=q)""")
# SQL's password in a user's definition: `CREATE USER u IDENTIFIED BY 'X'` (MySQL, Oracle, unquoted too),
# `IDENTIFIED WITH mysql_native_password BY 'X'`.
SQL_IDENTIFIED = re.compile(r"""(?i)\b(?:(?:create|alter)\s+(?:user|role|login)|grant\s[^;\n]{0,200}?\bto)\s"""
                            r"""[^;\n]{0,300}?\bidentified(?:\s+with\s+\w+)?\s+by\s+(?!password\b)"""
                            r"""(?P<q>["'`]?)(?P<s>(?![-$:@])[^"'`\s;)]{3,})(?P=q)""")


# An expect script (Tcl's expect, pexpect): what is sent after a password prompt is the password.
PROMPTED_SEND = re.compile(r"""(?i)\bexpect\w*\s*\(?\s*(?:-\w+\s+)*["'{][^"'}\n]{0,40}(?:assword|assphrase|passcode"""
                           r"""|\bpin\b)[^"'}\n]{0,40}["'}]\s*\)?[ \t]*[;\n{]?\s*(?:[\w.]+\.)?send(?:line)?\s*\(?\s*"""
                           r"""(?:--\s+)?["'{](?P<s>[^"'}\n\\]{3,200})(?:\\+[rn])*["'}]""")


def _program(tokens: list[re.Match], prefix: int = 0) -> tuple[str, int]:
    """The program a segment runs and its token's index, past `prefix` characters of prompt or schedule."""
    for i, token in enumerate(tokens):
        word = token.group().strip("\"'")
        if token.start() < prefix or word.lower() in WRAPPERS or re.fullmatch(r"[A-Za-z_]\w*=\S*", word) or word.startswith("-") and i == 0:
            continue
        name = re.split(r"[\\/]", word)[-1].lower()
        name = re.sub(r"\.(?:exe|py|sh|ps1)$", "", name)
        return (name[len("impacket-"):] if name.startswith("impacket-") else name), i
    return "", len(tokens)


def _unquote(token: re.Match) -> tuple[int, int]:
    start, end = token.span()
    if token.group()[:1] in "\"'" and end - start >= 2:
        return start + 1, end - 1
    return start, end


def _positional(segment: str, offset: int, tokens: list[re.Match], program: str, first: int) -> Iterator[Slot]:
    words = [t.group() for t in tokens[first + 1:]]
    for needs, n in POSITIONAL.get(program, ()):
        options = [w for w in needs if w.startswith("-")]
        leading = [w for w in needs if not w.startswith("-")]
        if any(o not in words for o in options) or words[:len(leading)] != leading:
            continue
        arguments = [t for t in tokens[first + 1:] if not t.group().startswith(("-", ">", "<", "|"))]
        if len(arguments) >= n:
            s, e = _unquote(arguments[n - 1])
            if not evidence.is_reference(segment[s:e], True):
                yield Slot(offset + s, offset + e, "command_password", Field.CREDENTIAL)
        return


def _named_value(segment: str, offset: int, tokens: list[re.Match]) -> Iterator[Slot]:
    """A value option whose name is another option's (`aws ssm put-parameter --name /prod/db/password --value X`,
    `--type SecureString`): the value is in the named field's slot."""
    options = {t.group().lower().lstrip("-"): i for i, t in enumerate(tokens[:-1]) if t.group().startswith("-")}
    if "value" not in options:
        return
    named = [tokens[options[o] + 1].group().strip("\"'") for o in NAMING_OPTIONS if o in options]
    field = classify(re.split(r"[/:.]", named[0].rstrip("/"))[-1]) if named else Field.OTHER
    if any(t.group().strip("\"'").lower() in SECURE_TYPES for t in tokens):
        field = Field.CREDENTIAL
    s, e = _unquote(tokens[options["value"] + 1])
    slot = judge(segment, s, e, tokens[options["value"] + 1].group()[:1] in "\"'", field, "command_password")
    if slot and slot.field is not Field.IDENTIFIER:
        yield Slot(offset + slot.start, offset + slot.end, slot.kind, slot.field)


def command_lines(text: str) -> Iterator[Slot]:
    """Credentials in command lines, also in a command nested inside one (`$(…)`, backticks, a quoted
    command string), read once more at one level of depth."""
    yield from _command_lines(text)
    yield from revealed_output(text)
    inner = [(m.start(g), m.group(g)) for m in NESTED.finditer(text) for g in ("sub", "tick") if m.group(g)]
    inner += [(m.start() + 1, m.group()[1:-1]) for m in re.finditer(r"\"[^\"\n]{5,400}\"|'[^'\n]{5,400}'", text)
              if re.search(r"\s-{1,2}[A-Za-z]", m.group())]
    for start, body in inner:
        for slot in _command_lines(body):
            yield Slot(start + slot.start, start + slot.end, slot.kind, slot.field)


def _command_lines(text: str) -> Iterator[Slot]:
    stdin_password = bool(PASSWORD_STDIN.search(text))
    for segment in SEGMENT.finditer(text):
        offset = segment.start()
        tokens = list(TOKEN.finditer(segment.group()))
        program, first = _program(tokens, LINE_PREFIX.match(segment.group()).end())
        short = SHORT_PASSWORD_OPTIONS.get(program, "")
        if program in SUBCOMMAND and (len(tokens) <= first + 1 or tokens[first + 1].group() != SUBCOMMAND[program]):
            short = ""
        inferred = "" if program in SHORT_PASSWORD_OPTIONS or not any(
            t.group() in USER_OPTIONS and j + 1 < len(tokens) and not tokens[j + 1].group().startswith("-")
            for j, t in enumerate(tokens[first + 1:], first + 1)) else INFERRED_PASSWORD_LETTERS
        yield from _positional(segment.group(), offset, tokens, program, first)
        # a long option before any program (`--db-password X` quoted out of a command) is read too
        leading = [i for i in range(first) if tokens[i].group().startswith("--")]
        for i in [*leading, *range(first + 1, len(tokens))]:
            raw = tokens[i].group()
            start, end = tokens[i].span()
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            # --password=X, -storepass X, /p:X
            option = re.match(r"(--?|/)([A-Za-z][\w-]{0,40})(=|:)?", raw)
            if option and raw[option.end():option.end() + 1] in tuple(",);]}"):
                option = None  # `options (-L, -P, -pw) used for …`: an option named in a list, not given
            elif option and not option.group(3) and option.group(2).lower() in OUTPUT_SELECTORS.get(program, ()):
                option = None
            slash_password = bool(option) and option.group(2).lower() in SLASH_PASSWORD_OPTIONS.get(program, ())
            if option and (option.group(1) != "/" or option.group(3) == ":" or slash_password):
                name, attached = option.group(2), option.group(3)
                letter = option.group(1) in "-/" and len(name) == 1
                value_span = None
                if attached:
                    vstart = start + option.end()
                    if raw[option.end():].lower() in FROM_SOURCE and attached == ":":
                        pass  # keytool's `-storepass:env NAME`, `-keypass:file PATH`: where the value is read from
                    elif vstart < end:
                        quoted = raw[option.end():option.end() + 1] in "\"'"
                        value_span = (vstart + quoted, end - quoted, quoted)
                    elif nxt is not None and nxt.start() == end and nxt.group()[:1] in "\"'":
                        value_span = (*_unquote(nxt), True)  # /p:'quoted value'
                elif nxt is not None and not nxt.group().startswith("-"):
                    s, e = _unquote(nxt)
                    value_span = (s, e, nxt.group()[:1] in "\"'")
                if letter and program in ATTACHED and not attached and not (nxt is not None and nxt.start() == end):
                    value_span = None  # `mysql -p db`: -p alone prompts; its value is only ever attached
                if slash_password:
                    field = Field.CREDENTIAL
                elif letter:
                    field = Field.CREDENTIAL if name in short else Field.OTHER
                    if program == "smbclient" and name == "U":
                        field = Field.OTHER
                    # a quoted value of another program's -p/-P (`agent-auth -m HOST -P 'X'`): quoting keeps a
                    # password's symbols from the shell; a port, a path, a plugin's or a folder's name
                    # (`mkdir -p 'logs-2026'`, `nmap -p 'U:53,T:80'`) is not shaped like one: letters and digits
                    # with mixed case or a symbol
                    quoted = value_span and value_span[2] and program not in SHORT_PASSWORD_OPTIONS \
                        and name in INFERRED_PASSWORD_LETTERS
                    if field is Field.OTHER and (name in inferred or quoted) and value_span and not attached:
                        candidate = segment.group()[value_span[0]:value_span[1]]
                        if evidence.secret_shaped(candidate) and (name in inferred or QUOTED_PASSWORD.search(candidate)):
                            field = Field.CREDENTIAL
                else:
                    field = classify_option(name)
                    if field is Field.WEAK:
                        field = Field.OTHER  # `--key file.pem`, `--auth sso`: not a secret by name alone
                if field is Field.IDENTIFIER and value_span and not letter:
                    yield Slot(offset + value_span[0], offset + value_span[1], "option", Field.IDENTIFIER)
                if field is Field.CREDENTIAL and value_span:
                    slot = judge(segment.group(), *value_span, field, "command_password")
                    if slot:
                        yield Slot(offset + slot.start, offset + slot.end, slot.kind, slot.field)
                if option.group(1) == "-" and not attached and len(name) > 1 and name[0] in short \
                        and program in ATTACHED and raw[1] == name[0] and len(raw) > 2:
                    # mysql -pSecret, 7z -pSecret
                    slot = judge(segment.group(), start + 2, end, False, Field.CREDENTIAL, "command_password")
                    if slot:
                        yield Slot(offset + slot.start, offset + slot.end, slot.kind, slot.field)
            # -u user:pass (curl), -U user%pass (smbclient), /user:DOMAIN\u pass (net use)
            named = option is not None and not option.group(3) and (
                option.group(2).lower() == "id" or AUTH_PAIR_WORDS & set(words(option.group(2))))
            if (raw in USER_PASS_OPTIONS or named) and nxt is not None:
                s, e = _unquote(nxt)
                joiner = ":%," if program in COMMA_PAIR_PROGRAMS else ":%"  # lftp's `-u user,password`
                pair = re.match(rf"[^{joiner}\s]+[{joiner}](?P<s>(?!//).{{3,}})", segment.group()[s:e])
                if pair and program not in ("net",) and not evidence.is_reference(pair.group("s"), True) and (
                        raw in USER_PASS_OPTIONS or evidence.secret_shaped(pair.group("s"))
                        and not evidence.is_not_secret(segment.group()[s:e])):
                    yield Slot(offset + s + pair.start("s"), offset + s + pair.end("s"), "command_password",
                               Field.CREDENTIAL)
            # impacket targets: [domain/]user:password@host (after a program, not after a `key:`;
            # `user:NAME@domain`, `smtp:NAME@domain`, `abfss://NAME@account` are names)
            if (i == first + 1 and not program.endswith(":")) or program in IMPACKET:
                s, e = _unquote(tokens[i])
                target = re.fullmatch(r"(?:[\w.-]+/)?[\w.$-]+:(?P<s>(?!//)[^@\s]{3,})@[\w.\[\]:-]+",
                                      segment.group()[s:e])
                if target and program not in ("docker", "podman", "git", "ssh", "scp", "rsync") \
                        and not re.search(r"@sha\d+:", segment.group()[s:e]):
                    yield Slot(offset + s + target.start("s"), offset + s + target.end("s"), "command_password",
                               Field.CREDENTIAL)
        yield from _named_value(segment.group(), offset, tokens)
        device_from = first if program in DEVICE_COMMANDS else next(
            (i for i, t in enumerate(tokens) if t.group().lower() in DEVICE_ONLY_COMMANDS), len(tokens))
        for i in range(first, len(tokens) - 1):
            device = i >= device_from
            value_type, skip = (DEVICE_VALUE_TYPE, 4) if device else (VALUE_TYPE, 3)
            if i > first and tokens[i - 1].group().lower() in RESOURCE_VERBS:
                continue  # `kubectl get secret NAME`: the name of a secret
            name = tokens[i].group()
            field = classify(name) if PAIR_NAMES.fullmatch(name) else Field.OTHER
            if field is Field.IDENTIFIER and re.search(r"[a-z][A-Z]|[a-z]_[a-z]", name):
                s, e = _unquote(tokens[i + 1])  # `accessKeyId ASIA…`: a field's name, then its value, as consoles list them
                yield Slot(offset + s, offset + e, "pair", Field.IDENTIFIER)
                continue
            if field is Field.CREDENTIAL or name.lower() == "community" or device and (
                    field is Field.WEAK or name.lower() in DEVICE_SECRET_WORDS):
                at = i + 1  # past a one-digit type and an encoding word, as device configs write them
                while at + 1 < len(tokens) and at < i + skip and value_type.fullmatch(tokens[at].group().lstrip("-")):
                    at += 1  # also as an option: Kickstart's `rootpw --plaintext X`
                value = tokens[at]
                if at + 1 < len(tokens) and tokens[at + 1].group()[:1] == "=":
                    continue  # `password = var.db_password  manage_password = false`: the next assignment's name
                s, e = _unquote(value)
                candidate = segment.group()[s:e]
                if value.group()[:1] not in "\"'":  # a sentence's punctuation, `code` quotes
                    candidate = candidate.strip("`").rstrip(VALUE_END)
                    s = s + segment.group()[s:e].find(candidate)
                    e = s + len(candidate)
                about = re.match(r"([A-Za-z]+)(?::|$)", candidate)
                if about and about.group(1).lower() in META or candidate.endswith(":"):
                    continue  # `Password policy: …`, `Credential Access:Brute Force`: about the credential
                if evidence.secret_shaped(candidate) and not candidate.startswith("-"):
                    slot = judge(segment.group(), s, e, value.group()[:1] in "\"'", Field.CREDENTIAL, "command_password")
                    if slot:
                        yield Slot(offset + slot.start, offset + slot.end, slot.kind, slot.field)
        if program == "net" and len(tokens) > first + 3 and tokens[first + 1].group().lower() == "user":
            candidate = tokens[first + 3]
            if not candidate.group().startswith("/") and candidate.group() != "*":
                s, e = _unquote(candidate)
                yield Slot(offset + s, offset + e, "command_password", Field.CREDENTIAL)
        if program == "net" and any(t.group().lower().startswith("/user:") for t in tokens):
            idx = next(i for i, t in enumerate(tokens) if t.group().lower().startswith("/user:"))
            if idx + 1 < len(tokens) and not tokens[idx + 1].group().startswith("/"):
                s, e = _unquote(tokens[idx + 1])
                yield Slot(offset + s, offset + e, "command_password", Field.CREDENTIAL)
        if program == "vault" and len(tokens) > first + 2 and tokens[first + 1].group() == "login":
            candidate = tokens[first + 2]
            if "=" not in candidate.group() and not candidate.group().startswith("-"):
                s, e = _unquote(candidate)
                slot = judge(segment.group(), s, e, False, Field.WEAK, "command_password")
                if slot:
                    yield Slot(offset + s, offset + e, slot.kind, slot.field)
        # `sudo -S <<< 'X'`, `passwd --stdin user <<< X`: a here-string is the standard input
        here = next((i for i, t in enumerate(tokens) if t.group() == "<<<"), None)
        if stdin_password and here is not None and here + 1 < len(tokens):
            s, e = _unquote(tokens[here + 1])
            if e - s >= 4 and not evidence.is_reference(segment.group()[s:e], True):
                yield Slot(offset + s, offset + e, "command_password", Field.CREDENTIAL)
        # `… echo X | docker login --password-stdin`: the echo may follow prose in the same segment.
        echo = next((i for i, t in enumerate(tokens) if t.group() in ("echo", "printf", "<(echo")), None)
        # `--password-file <(echo X)`: the file a credential option reads is the echoed value
        substituted = echo is not None and tokens[echo].group() == "<(echo" and echo > 0 \
            and tokens[echo - 1].group().startswith("-") and any(
                w in STRONG for w in words(tokens[echo - 1].group().lstrip("-").split("=")[0]))
        if echo is not None and (stdin_password or substituted or program == "sshpass" and "<(echo" in segment.group()):
            for token in tokens[echo + 1:]:
                if token.group().startswith("-") or token.group() in ("<(echo", "echo"):
                    continue
                s, e = _unquote(token)
                value = segment.group()[s:e].rstrip(")")
                if len(value) >= 4 and not evidence.is_reference(value, True):
                    yield Slot(offset + s, offset + s + len(value), "command_password", Field.CREDENTIAL)
                break
    for m in re.finditer(r"-pass(?:in|out)?\s+pass:(?P<q>[\"']?)(?P<s>[^\s\"']+)(?P=q)", text):
        yield Slot(m.start("s"), m.end("s"), "command_password", Field.CREDENTIAL)
    for m in PROMPTED_SEND.finditer(text):
        if not evidence.is_reference(m.group("s"), True):
            yield Slot(m.start("s"), m.end("s"), "command_password", Field.CREDENTIAL)
    for rx in (SECURE_STRING, SQL_IDENTIFIED):
        for m in rx.finditer(text):
            value, quoted = m.group("s"), bool(m.group("q"))
            if quoted or evidence.secret_shaped(value):  # not a word
                if not evidence.is_reference(value, quoted):
                    yield Slot(m.start("s"), m.end("s"), "command_password", Field.CREDENTIAL)
