"""Credentials given in sentences, English, Chinese and other languages: a credential's word, a short window,
a marker, then the value (`the vpn password is now X`, `密码跟上次一样是 X`, `Das Passwort lautet X`), and the
sentence shapes around it (a value before its noun, a login with a value, an account/password pair as people
and tools write it, a changed credential named by a pronoun, recovery codes, cues such as "don't share it").
"""

from __future__ import annotations

import bisect
import re
from typing import Iterator

from nltk.stem.snowball import SnowballStemmer

from secbot.feedback.intake.redaction import evidence
from secbot.feedback.intake.redaction.names import IDENTIFIER_KEYS, META, RESOURCE_VERBS, ZH_SECRET_NOUNS, Field
from secbot.feedback.intake.redaction.slot import VALUE_END, Slot

# --- prose, English: a password word, a short window, a marker, then the value
PROSE_KEY = re.compile(r"(?i)(?<![\w-])(?:p[a@4](?:ss|55|\$\$)(?:w[o0]rd|wd|phrase|code)?s?|pwd|pw|psk|pin|creds"
                       r"|credentials|login|logon|(?:safe|lock|padlock|door|gate|alarm|keypad|entry|building)\s+"
                       r"(?:code|combo|combination)s?"
                       r"|(?:api|license|licence|wifi|wi-fi|access|secret|private|app)\s+key"
                       r"|(?:otp|totp|hotp|mfa|2fa|authenticator)\s+(?:seed|secret)|otp|secret|token|key"
                       r"|(?:snmp\s+)?community\s+string|snmp\s+community)(?![\w-])")
MARKERS = {"is", "was", "are", "=", ":", "->", "=>", "→", "now", "still", "to", "as", "be", "became"}
CHANGE_VERBS = {"reset", "set", "changed", "change", "rotated", "updated", "switched", "moved", "got", "back"}
FILLER_AFTER_MARKER = {"now", "still", "just", "currently", "also", "again", "simply", "always", "set", "reset",
                       "changed", "the", "same", "as", "be", "it's", "its", "literally", "probably"}
WORD = re.compile(r"[^\s]+")
# A sentence that names something about the credential (`the secret id is …`, `the API key header is …`),
# in any of its forms (`password hashing is …`, `password managers are …`): compared by stem.
ABOUT = (META | {"named", "called"}) - CHANGE_VERBS - FILLER_AFTER_MARKER - MARKERS
_STEM = SnowballStemmer("english").stem
ABOUT_STEMS = {_STEM(w) for w in ABOUT} - {_STEM(w) for w in CHANGE_VERBS | FILLER_AFTER_MARKER | MARKERS}
# Before `pass`/`login`, a word that makes it a verb: `the token to pass to …`, `enter it to logon`.
VERB_BEFORE = {"to", "will", "would", "can", "could", "must", "should", "may", "might", "cannot", "can't", "won't",
               "please", "not", "don't", "doesn't", "didn't", "then"}
VERB_KEYS = {"pass", "login", "logon"}
# `the key is …`, `your API2CART key is …`: a determiner, perhaps with the vendor's or the system's name.
DETERMINER = re.compile(r"(?i)\b(?:the|its|our|their|this|that|my|your|his|her)\s+(?:[\w.-]{1,30}\s+)?$")
PIN_KEYS = {"pin", "pins", "passcode", "passcodes", "otp"}
# A physical lock's code (`door code`, `safe combination`): digits, or a dial's numbers joined by hyphens.
PHYSICAL_CODE = re.compile(r"\w+\s+(?:code|combo|combination)s?")
PIN_VALUE = re.compile(r"\d{4,10}#?|\d{1,3}(?:-\d{1,3}){2,5}")
# A field's dotted name (`event.name`, `objectRef.namespace`): a marker after it assigns to that field (an
# account's name, `svc_deploy`, is not one: `login svc_deploy = …` gives its password).
FIELD_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
# Where the string a sentence lives in ends (`"displayMessage":"… password is reset","target"…`), or a
# bracketed name (`['Time of Password Reset']`).
STRING_END = re.compile(r"(?<!\\)[\"”][,:}\]]|'\]")


# An account and its secret in a sentence: `logging in as svc_scanner with X`, `log in as qa_admin / X`, `still has
# root/X`. The secret must be shaped like a chosen password (letters, digits and a symbol), so `and/or` or
# `origin/main` never are.
LOGIN_AS = re.compile(r"(?i)\b(?:log(?:ging|ged|s)?\s*(?:in|on)|sign(?:ing|ed|s)?\s*in|authenticat\w*|connect\w*)"
                      r"\s+(?:to\s+\S+\s+)?as\s+[\w.@\\$-]+(?:\s+(?:with|using)\s+(?:(?:the\s+)?password\s+)?"
                      r"|[ \t]*[:/][ \t]*)(?P<s>\S+)")
# … or with the account and its secret as one pair: `logging into grafana w/ admin : X`, `login to the VPN using bob/X`.
LOGIN_WITH_PAIR = re.compile(r"(?i)\b(?:log(?:ging|ged|s)?\s*(?:in|on)(?:to)?|sign(?:ing|ed|s)?\s*in(?:to)?)"
                             r"(?:\s+(?:to\s+)?\S+){0,3}?\s+(?:with|w/|using)\s+[\w.@\\$-]+[ \t]*[:/][ \t]*(?P<s>\S+)")
# The account side is a built-in or vendor-default account (`root/calvin` on an iDRAC, `admin/…` on a camera): a
# path, an image or an API route has a slash in the same place and no such word before it.
DEFAULT_ACCOUNTS = ("root|admin|administrator|sa|sys|system|guest|ubnt|pi|oracle|postgres|cisco|manager|operator"
                    "|service|support|superuser|sysadmin|user|test|demo|default|netadmin|enable")
# A value typed at a prompt: `when it prompts type X`, `it asks for the passphrase, enter X`.
PROMPT_ANSWER = re.compile(r"(?i)\b(?:prompt(?:s|ed|ing)?|asks?|asked|asking)\b[^.\n]{0,40}?\b"
                           r"(?:type|enter|paste|input|answer\s+with)\s+(?P<s>\S+)")
# A credential named by a pronoun once the sentence has changed it: `I set it to X`, `reset it, new one is X`,
# `changed that to X`, `it's now X`. The value is a credential when it is shaped like a chosen one (a symbol
# besides `_-./`), or shaped like a password with a credential's word near it (`password`, `logon`, `creds`).
ANAPHORA = re.compile(r"(?i)\b(?:(?:re)?set|changed?|rotated?|updated?|regenerated|reissued|switched)\s+"
                      r"(?:it|that|this|them|his|hers|theirs|yours|mine)\b[^.?!\n]{0,30}?"
                      r"(?:\bto|\bnew\s+one\s*(?:is|=|:)|\bit'?s\s+now|\bnow\s+it'?s|\bnow\s+(?:is|=|:))\s+(?P<s>\S+)")
# A generic noun that stands for a credential named near it: `password reset output: New value: X`.
STANDS_FOR = re.compile(r"(?i)\b(?:new|generated|current|temporary|temp|initial)\s+(?:value|one)\s*(?:is\s|=|:)"
                        r"\s*(?P<s>\S+)")
# An instruction to enter a value: `use 'X' without the quotes`, `try X`; the value must be shaped like a chosen
# password (letters, digits and a symbol), so `use v2.1` or `try again` never are.
QUOTED_PHRASE = re.compile(r"[\"'“‘](?P<s>[^\"'”’\n]{8,100})[\"'”’]")
ENTER_VALUE = re.compile(r"(?i)(?:(?<=\s)|^)(?:use|try|type|enter|paste)\s+"
                         r"(?P<s>[\"'`]?[^\s\"'`]{6,64}[\"'`]?)(?=[\s,.;!)]|$)")
# Before a `key`, words that make it a credential's: `Wi-Fi: SSID X / key Y`, `license key`, `recovery key`.
KEY_CONTEXT = re.compile(r"(?i)(?<![\w-])(?:wi-?fi|ssid|wpa[23]?|psk|licen[cs]e|activation|product|recovery|encryption"
                         r"|decryption)(?![\w-])")
# After a marker, a place: the sentence says where the credential is kept and may go on to give it
# (`the pw is in 1password under prod-db but for now it's X`).
PLACE_WORDS = {"in", "inside", "under", "on", "at", "from"}
# The value first, then what it is: `X is the new password for the lab`, `X (that's the vpn password)`, `X 是新密码`.
# The credential's noun ends the clause, so `X is the key node` or `X is the token policy` never are.
_QUALIFIERS = (r"(?:(?:new|current|temp|temporary|default|initial|old|admin|root|shared|same|real)\s+)?"
               r"(?:[\w-]{2,20}\s+)?")
VALUE_FIRST = re.compile(r"(?i)(?:^|(?<=[\s(`\"']))(?P<s>[`\"']?[^\s`\"']{6,64}[`\"']?)\s+"
                         r"(?:is|was|=|\(\s*(?:that'?s|that\s+is|it'?s|is|=))\s+"
                         r"(?:(?:the|our|my|your|his|her|their|a)\s+)?" + _QUALIFIERS
                         + r"(?:password|passphrase|passcode|pw|pwd|pass|psk|secret|token)"
                         r"(?=\s*(?:[.,;:!?)]|$|\s(?:for|to|on|of|in|at|now|today|btw|fyi|until|from)\b))")
VALUE_FIRST_ZH = re.compile(r"(?:^|(?<=[\s，。：:（(]))(?P<s>[\x21-\x7e]{6,64})\s*(?:是|为|就是)(?:新|初始|默认|临时|统一)?的?"
                            r"(?:密码|口令|密钥|秘钥|令牌)")
# After a login, `with` gives what it was done with: `login works with X now`.
LOGIN_WITH = re.compile(r"(?i)\b(?:log(?:in|on)|sign[- ]?in|auth(?:entication)?)\b[^.\n]{0,20}?\bwith\s+(?P<s>\S+)")
# An account and its password as a pair, bracketed or after a colon, a few words after a word for credentials:
# `got in with the creds you sent (svc_etl / X)`, `login for the demo: admin/X`.
CREDENTIALS_PAIR = re.compile(r"(?i)\b(?:creds|credentials|login|logon|account|wi-?fi|wlan|ssid)\b[^.\n]{0,40}?"
                              r"(?:[(\[]\s*[\w.@\\-]{2,64}\s*/\s*(?P<s>[^\s)\]]{6,64})\s*[)\]]"  # `(user / X)`
                              r"|:\s*[\w.@\\-]{2,64}\s*/\s*(?P<t>\S{6,64})(?!\S))")  # `: user/X`
CREDENTIAL_NEAR = re.compile(r"(?i)(?<![\w-])(?:pass(?:word|wd|phrase|code)?s?|pwd|pw|creds|credentials?|log(?:in|on)s?"
                             r"|sign[- ]?in|mfa|2fa|account)(?![\w-])|密码|口令")
# One-time recovery codes listed after their name (`backup codes: 4821-9937 7710-2284`, `恢复码：…`): each code-shaped
# item (4 to 12 letters and digits, a digit among them, hyphen-joined groups) of the list that follows, when the list
# opens with a colon or has two items or more (`recovery codes for RFC 6238 apps` gives none).
RECOVERY_CODES = re.compile(r"(?i)\b(?:backup|recovery|scratch|emergency|rescue|one[- ]time)[ \t]+codes?\b"
                            r"|备用码|恢复码|救援码|备份码|应急码")
CODE_LIST = re.compile(r"(?P<open>[:：=]|\bare\b)?[\s,;*•-]*(?P<codes>(?:(?<![\w-])(?=[\w-]*\d)[A-Za-z0-9]{4,12}"
                       r"(?:-[A-Za-z0-9]{4,12})*(?![\w-])[\s,;*•]*)+)")
CODE = re.compile(r"[A-Za-z0-9]{4,12}(?:-[A-Za-z0-9]{4,12})*")
# An account named with its domain, then its password after a colon, as tools print a working pair and leaked
# combination lists hold them: `CORP\\svc_backup:X` (NetExec, Metasploit), `alerts@corp.example:X` (Postfix's
# sasl_passwd, combo lists). Not a port (`:587`), a path (`git@host:org/repo`) or a placeholder (`:<blank>`).
DOMAIN_ACCOUNT_PAIR = re.compile(r"(?<![\w.\\/@+-])(?:[\w.-]{1,64}\\[\w.$-]{1,64}|[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+"
                                 r"|\((?:Unknown User|null)\))"  # secretsdump's LSA secrets: `(Unknown User):X`
                                 r":(?P<s>[^\s:/\\'\"<>()\[\]{},;]{4,64})(?=[\s'\"<>()\[\],;]|$)")
# What a password was used for, cracked into or checked against: `used 'X' to log in`, `hashcat cracked it: X`,
# `is X in the breach list?`. The value must be shaped like a chosen password.
USED_TO_LOG_IN = re.compile(r"(?i)\b(?:used|using|with|typed|entered|tried)\s+(?P<s>[\"'`“‘]?[^\s\"'`”’]{6,64}[\"'`”’]?)"
                            r"\s+to\s+(?:log\s*(?:in|on)|login|sign\s*in|authenticate|unlock|get\s+in|access)\b")
CRACKED = re.compile(r"(?i)\b(?:cracked|recovered|plaintext|cleartext)\b[^.\n]{0,30}?[:=]\s*(?P<s>\S{6,64})")
IN_BREACH_LIST = re.compile(r"(?i)(?:(?:^|(?<=\s))|\b(?:is|was)\s+)(?P<s>[\"'`]?[^\s\"'`]{6,64}[\"'`]?)\s+"
                            r"(?:(?:is|was|are)\s+)?(?:in|on)\s+(?:the\s+|a\s+|any\s+)?(?:\w+\s+)?"
                            r"(?:breach|leak|pwned|rockyou|wordlist|dictionary|hibp)")
# A label, then an account and its password (`Jamf API: jamf-api-ro / X`, `integration user: svc / X`): the
# password must be plainly chosen (mixed case and digits, or a symbol), never a version (`v1.2 / V2.0-Beta`).
LABELED_PAIR = re.compile(r"(?m)^[^\n:]{1,40}:[ \t]*[\w.@\\-]{2,64}[ \t]+/[ \t]+(?P<s>[^\s,;()]{8,64})(?=[ \t]*(?:[(,;]|$))")
# Words that tell the reader to keep what the sentence gives to themselves: `it's 'X', don't share it`, `别外传`.
SECRECY = re.compile(r"(?i)\b(?:don'?t|do\s+not|never|pls\s+don'?t)\s+(?:share|forward|post|paste|give|send|tell|reuse)\b"
                     r"|\bkeep\s+(?:it|this|that)\s+(?:secret|private|to\s+yourself)\b"
                     r"|\b(?:change|reset|rotate)\s+(?:it|this|that)\s+(?:after|at|on|when|once|before)\b"  # a temporary one
                     r"|别外传|不要外传|勿外传|不要告诉别人|用完(?:就)?改掉|登录后(?:请)?修改")
QUOTED_TOKEN = re.compile(r"(?<![\w])[\"'“‘`](?P<s>[^\s\"'”’`]{6,64})[\"'”’`](?![\w])")
UNWORDED_GROUPS = re.compile(r"[a-z]{3,8}(?:-[a-z]{3,8}){2,7}")  # `qwzx-mnbv-plok-ijuh`, when not words
MIXED_CASE_DIGITS = re.compile(r"^(?=.*[a-z])(?=.*[A-Z])(?=.*\d)")
ACCOUNT_PAIR = re.compile(r"(?i)(?:^|(?<=[\s(`]))(?:" + DEFAULT_ACCOUNTS + r")(?P<sep>[/:]| / )(?P<s>[^\s/\"',:]{6,64})")


def _chosen_password(value: str) -> bool:
    return bool(re.search(r"[A-Za-z]", value) and re.search(r"\d", value) and re.search(r"[^\w\-./]", value)
                and not evidence.is_not_secret(value) and not evidence.is_reference(value, False))


def _plainly_chosen(value: str) -> bool:
    """Shaped like a password a person chose, where nothing else in the sentence says so: a symbol among
    letters and digits, or mixed case with digits (`Oncall-Lap-99`)."""
    return (_chosen_password(value) or bool(MIXED_CASE_DIGITS.search(value)) and evidence.has_password_shape(value, 8)) \
        and not evidence.is_not_secret(value) and not evidence.is_reference(value, False)


def _given(m: re.Match, group: str = "s") -> tuple[str, int]:
    """The value a sentence's pattern captured, without its quotes and closing marks, and where it starts."""
    value = m.group(group).strip("\"'`").rstrip(VALUE_END)
    return value, m.start(group) + m.group(group).find(value)


def prose(text: str) -> Iterator[Slot]:
    for rx in (LOGIN_AS, LOGIN_WITH_PAIR, ACCOUNT_PAIR, PROMPT_ANSWER, LOGIN_WITH):
        for m in rx.finditer(text):
            value, s = _given(m)
            # `admin:X` as well as `admin/X`, where a colon also joins a role to a scope (`admin:read-all`)
            colon = rx is ACCOUNT_PAIR and m.group("sep") == ":"
            spaced = rx is ACCOUNT_PAIR and m.group("sep") == " / "  # `root / toor123`: letters and digits
            if _chosen_password(value) and not colon or colon and _plainly_chosen(value) \
                    or spaced and evidence.has_password_shape(value, 6) and re.search(r"\d", value) \
                    and not evidence.is_not_secret(value):
                yield Slot(s, s + len(value), "prose_password", Field.CREDENTIAL)
    for m in [*USED_TO_LOG_IN.finditer(text), *CRACKED.finditer(text), *IN_BREACH_LIST.finditer(text)]:
        value, s = _given(m)
        if _plainly_chosen(value):
            yield Slot(s, s + len(value), "prose_password", Field.CREDENTIAL)
    for m in LABELED_PAIR.finditer(text):
        value, s = _given(m)
        if _plainly_chosen(value) and not re.search(r"\d\.\d", value):
            yield Slot(s, s + len(value), "prose_password", Field.CREDENTIAL)
    for m in DOMAIN_ACCOUNT_PAIR.finditer(text):
        value, s = _given(m)
        if evidence.has_password_shape(value, 4) and not re.fullmatch(r"[\d.]+", value) \
                and not evidence.is_reference(value, False):
            yield Slot(s, s + len(value), "prose_password", Field.CREDENTIAL)
    for cue in SECRECY.finditer(text):
        line_start = max(text.rfind("\n", 0, cue.start()) + 1, cue.start() - 160)
        for m in [*QUOTED_TOKEN.finditer(text, line_start, cue.start()), *WORD.finditer(text, line_start, cue.start())]:
            quoted = m.re is QUOTED_TOKEN
            value = m.group("s") if quoted else m.group().strip("\"'`“”‘’").rstrip(VALUE_END)
            s = m.start() + m.group().find(value)
            if _plainly_chosen(value):
                yield Slot(s, s + len(value), "prose_password", Field.CREDENTIAL)
    for m in RECOVERY_CODES.finditer(text):
        window = text[m.end():m.end() + 400]
        clause = re.match(r"[^.?!\n。？！]{0,80}?(?=[:：=]|\bare\b|(?<![\w-])[\w-]*\d)", window)
        listed = clause and CODE_LIST.match(window, clause.end())
        codes = list(CODE.finditer(listed.group("codes"))) if listed else []
        if codes and (listed.group("open") or len(codes) >= 2):
            base = m.end() + listed.start("codes")
            yield from (Slot(base + c.start(), base + c.end(), "recovery_code", Field.CREDENTIAL) for c in codes)
    for m in CREDENTIALS_PAIR.finditer(text):
        value, s = _given(m, "s" if m.group("s") else "t")
        if evidence.has_password_shape(value, 8) and re.search(r"\d", value) \
                and not evidence.is_reference(value, False):
            yield Slot(s, s + len(value), "prose_password", Field.CREDENTIAL)
    for m in [*VALUE_FIRST.finditer(text), *VALUE_FIRST_ZH.finditer(text)]:
        value, s = _given(m)
        if (_chosen_password(value) or evidence.has_password_shape(value, 8) and re.search(r"\d", value)) \
                and not evidence.is_reference(value, False):
            yield Slot(s, s + len(value), "prose_password", Field.CREDENTIAL)
    for m in ENTER_VALUE.finditer(text):  # quoted, or with a credential's word near; never a version (`TLS1.3+`)
        value, s = _given(m)
        if re.search(r"[@\\]", value) and m.group("s")[:1] not in "\"'`":  # `use demo@corp.example / X`
            yield from _paired(text, s, value)
            continue
        if _chosen_password(value) and not re.search(r"\d\.\d", value) \
                and (m.group("s")[:1] in "\"'`" or CREDENTIAL_NEAR.search(text, max(0, m.start() - 80), m.end() + 80)):
            yield Slot(s, s + len(value), "prose_password", Field.CREDENTIAL)
    for m in [*ANAPHORA.finditer(text), *STANDS_FOR.finditer(text)]:
        value, s = _given(m)
        near = CREDENTIAL_NEAR.search(text, max(0, m.start() - 120), m.end() + 80)
        shaped = evidence.has_password_shape(value, 8) if m.re is ANAPHORA else evidence.looks_random(value)
        if (_chosen_password(value) or near and shaped) and not evidence.is_reference(value, False):
            yield Slot(s, s + len(value), "prose_password", Field.CREDENTIAL)
    for key in PROSE_KEY.finditer(text):
        before = text[max(0, key.start() - 12):key.start()].split()
        if before and before[-1].lower() in RESOURCE_VERBS:
            continue  # `get secret NAME`: a secret's name
        if before and key.group().lower() == "key" and before[-1].lower() in IDENTIFIER_KEYS:
            continue  # `registry key '…'`, `primary key …`: the same names as in an assignment's field
        if before and key.group().lower() in VERB_KEYS and before[-1].lower() in VERB_BEFORE:
            continue  # a verb: `the token to pass to the service`
        if key.start() and text[key.start() - 1] in "=:!":
            continue  # a value itself (`dkim=pass`, `result:pass`) or a YAML tag (`!secret name`)
        window = text[key.end():key.end() + 120]
        closed = STRING_END.search(window)
        window = window[:closed.start()] if closed else window
        if not re.match(r"\s|[:=]\s", window):
            continue  # `pass-the-hash`, `login.microsoftonline.com`, `secret:prod/…`: not a sentence
        words = list(WORD.finditer(window))[:17]
        marker, previous, limit = False, key.group().lower(), 6
        needs_marker = previous in ("login", "logon", "creds", "credentials")
        pin = previous in PIN_KEYS or bool(PHYSICAL_CODE.fullmatch(previous))
        # `the key is …` is a credential only as that sentence, with a value plainly one (letters and digits);
        # `key: network_connect_4` is a setting's name
        strict = previous == "key"
        if strict and not (DETERMINER.search(text, max(0, key.start() - 44), key.start())
                           and re.match(r"\s+(?:is|was)\s", window)):
            first_word = re.match(r"\s+(\S+)", window)
            value = first_word and first_word.group(1).rstrip(VALUE_END)
            line_start = text.rfind("\n", 0, key.start()) + 1
            context = KEY_CONTEXT.search(text, max(line_start, key.start() - 40), key.start())
            if value and (_chosen_password(value) or context and evidence.has_password_shape(value, 8)):
                # `WPA2 key Tiger@3344gg`: a value no identifier looks like; `SSID X / key Y`: a Wi-Fi's key
                s = key.end() + first_word.start(1)
                yield Slot(s, s + len(value), "prose_password", Field.CREDENTIAL)
            continue
        owner = owned = False  # `… for <its owner>`: a label naming the owner opens the value
        for n, word in enumerate(words):
            raw = word.group()
            bare = raw.lower().strip(",;")
            about = bare.rstrip(":") in ABOUT or _STEM(bare.rstrip(":")) in ABOUT_STEMS
            if not marker and about and owner and raw.endswith(":") and n < 7:
                marker, previous, owned = True, bare, True  # `password for the CI's Apple ID: X`: the owner's id
                continue
            if not marker and about and (limit <= 6 or raw.endswith(":")) \
                    or re.search(r"[\"”'][,:}\]]+$", raw) and not marker:
                break  # about the credential (not the place it is kept in: `in the vault`), or the quoted string
                # this sentence lives in has ended
            owner = owner or n == 0 and bare == "for"
            if raw.endswith(":") and len(raw) > 1 and (n < 7 or limit > 6):
                marker, previous = True, bare
                continue
            if bare in MARKERS and (bare != "to" or previous in CHANGE_VERBS or n == 0):
                if n and bare in "=:" and FIELD_NAME.fullmatch(words[n - 1].group()):
                    break  # `login event.name = login_failure`: the value is another field's
                marker, previous = True, bare
                continue
            if marker and bare in FILLER_AFTER_MARKER:
                previous = bare
                continue
            if marker and bare in PLACE_WORDS and previous in ("is", "was", "are"):
                marker, previous, limit = False, bare, 16  # where it is kept; the sentence may go on to give it
                continue
            if limit > 6 and bare in ("it's", "it’s", "its"):
                marker, previous = True, bare
                continue
            phrase = marker and raw[:1] in "\"'“‘" and QUOTED_PHRASE.match(window, word.start())
            if phrase and evidence.passphrase_shaped(phrase.group("s")):  # `comment: "orange bicycle midnight"`
                s = key.end() + phrase.start("s")
                yield Slot(s, s + len(phrase.group("s")), "prose_password", Field.CREDENTIAL)
                break
            direct = n == 0 or (n == 1 and re.fullmatch(r"\d", words[0].group()))
            paired = direct and re.match(r"\s+/\s+\S", window[word.end():])  # `login admin / S3cret!`
            if marker or (direct and (not needs_marker or paired)):
                if marker and evidence.is_reference(raw.strip("\"'`“”‘’,;"), False):
                    break  # a mask or a reference whose brackets the value's end would cut (`[REDACTED]`, `ENC[…]`)
                value = raw.strip("\"'`“”‘’").rstrip(VALUE_END)
                if re.fullmatch(r"[^\W\d_]+[!:]+", value):
                    value = value.rstrip("!:")  # a word that ends the sentence: `credentials are strong!`
                if value.startswith("--") or re.match(r"[a-z_][a-z0-9_.-]*=(?!=)", value):
                    break  # an option (`rotate-secret --secret-id …`) or another field (`Login: user=<jsmith>, …`)
                s = key.end() + word.start() + raw.find(value)
                if pin and (marker and PIN_VALUE.fullmatch(value) or re.fullmatch(r"\d{6,10}", value)
                            or previous == "pin" and n == 0 and re.fullmatch(r"\d{4,10}", value)):  # `pin 48213`
                    yield Slot(s, s + len(value), "prose_password", Field.CREDENTIAL)
                    break
                if strict and not (re.search(r"\d", value) and re.search(r"[A-Za-z]", value)):
                    break
                if owned and not (_plainly_chosen(value) or UNWORDED_GROUPS.fullmatch(value)
                                  and evidence.has_password_shape(value)):
                    break  # after an owner's label the value must be plainly a password, not an id (`svc-123`)
                if n > 11 and not (_chosen_password(value) or MIXED_CASE_DIGITS.search(value)):
                    break  # far from the place it is kept (`…in the vault, if you're in a hurry: X`): plainly chosen
                found = list(_person_value(text, s, value, marker))
                yield from found
                if found or marker:
                    break
            if n >= limit or raw.endswith((".", "?", "!")) and not marker:
                break
            previous = bare


def _person_value(text: str, start: int, value: str, after_marker: bool) -> Iterator[Slot]:
    paired = list(_paired(text, start, value))
    if paired:
        yield from paired
        return
    if evidence.has_password_shape(value, 6 if after_marker else 8) and not evidence.is_reference(value, False):
        yield Slot(start, start + len(value), "prose_password", Field.CREDENTIAL)


def _paired(text: str, start: int, value: str) -> Iterator[Slot]:
    """The password of an account given as a pair: `admin:X`, `admin / X`, `soc@corp.io with X`."""
    pair = re.fullmatch(r"(?P<u>[\w.@\\-]+)[:/](?P<s>\S{4,})", value)
    if pair and not evidence.is_not_secret(value) and evidence.has_password_shape(pair.group("s"), 4):
        yield Slot(start + pair.start("s"), start + pair.end("s"), "prose_password", Field.CREDENTIAL)
        return
    rest = text[start + len(value):start + len(value) + 80]
    # "admin / J3nk1ns-Stg!"; "soc@corp.io with S3cret!" (an account, then `with`)
    spaced = re.match(r"\s+/\s+(?P<s>\S{4,})" + (r"|\s+with\s+(?P<w>\S{4,})" if re.search(r"[@\\]", value) else ""),
                      rest)
    group = spaced and ("s" if spaced.group("s") else "w")
    if spaced and evidence.has_password_shape(spaced.group(group).rstrip(".,;"), 4):
        s = start + len(value) + spaced.start(group)
        yield Slot(s, s + len(spaced.group(group).rstrip(".,;")), "prose_password", Field.CREDENTIAL)


# --- prose, Chinese and other languages: a keyword, then the first ASCII value in the same clause
ZH_KEY = re.compile(rf"(?:{ZH_SECRET_NOUNS}|(?i:pin)码"
                    r"|(?i:access\s*key\s*secret|secret\s*key|secretkey|accesskeysecret|api\s*key|token|secret))")
# The word for a password in other languages a team writes in (German, French, Spanish, Portuguese, Russian and
# Ukrainian, Polish, Dutch, Swedish, Danish, Norwegian, Finnish, Czech, Hungarian, Turkish, Greek, Hebrew, Arabic,
# Hindi, Thai, Vietnamese, Indonesian, Japanese, Korean). In a script of letters the value must be longer to count:
# the clause's other words are ASCII too.
OTHER_KEY = re.compile(r"(?i:(?<!\w)(?:passwort|kennwort|mot\s+de\s+passe|mdp|contraseña|clave\s+de\s+acceso|senha"
                       r"|парол[ьяюе]\w*|hasł[oa]|wachtwoord|lösenord|adgangskode|passord|salasana|heslo|jelszó|şifre"
                       r"|κωδικός|סיסמה|كلمة\s+(?:المرور|السر)|पासवर्ड|รหัสผ่าน|mật\s+khẩu|kata\s+sandi)(?!\w))"
                       r"|パスワード|暗証番号|비밀번호")
ZH_ACCOUNT = re.compile(r"(?:账号|帐号|账户|帐户|用户名|登录|登陆)")
ZH_CLAUSE_END = re.compile(r"[，。！？；、\n（]|[,;!?(](?=\s|$)")
ZH_MARKER = re.compile(r"^\s*(?:是|为|是：|：|:|=|就是|还是|改成了?|改为|设为|设置为|变成了?)\s*")
ASCII_TOKEN = re.compile(r"[\x21-\x7e]+")
INLINE_CODE = re.compile(r"`[^`\n]+`")
# Nouns that make the clause about the credential, not its value (`密钥管理服务的别名是 …`, `密码策略 …`).
ZH_ABOUT = re.compile(r"管理|策略|长度|复杂度|有效期|别名|名称|名字|编号|路径|文件|位置|类型|格式|规则|服务|(?i:\bid\b|\barn\b)")


def other_languages(text: str) -> Iterator[Slot]:
    chinese = bool(re.search(r"[\u4e00-\u9fff]", text))
    if not chinese and not OTHER_KEY.search(text):
        return
    code = [m.span() for m in INLINE_CODE.finditer(text)]  # in order, not overlapping
    keys = [*(ZH_KEY.finditer(text) if chinese else ()), *OTHER_KEY.finditer(text)]
    for key in keys:
        i = bisect.bisect_right(code, (key.start(), len(text))) - 1
        if i >= 0 and code[i][0] < key.start() < code[i][1]:
            continue  # a command quoted in the sentence (`vault kv put … token=@file`) is read as a command
        lettered = key.re is OTHER_KEY and bool(re.search(r"[A-Za-z]", key.group()))  # a Latin-script language
        clause = text[key.end():key.end() + (60 if key.re is OTHER_KEY else 40)]
        cut = ZH_CLAUSE_END.search(clause)
        start = key.end()
        if cut and not ASCII_TOKEN.search(clause[:cut.start()]) and ZH_MARKER.match(clause[cut.end():]) \
                and not ZH_ABOUT.search(clause[:cut.start()]):
            start = key.end() + cut.end()  # `密码我私聊你了，就是 X`: the value opens the next clause
            clause = text[start:start + 40]
            cut = ZH_CLAUSE_END.search(clause)
        clause = clause[:cut.start()] if cut else clause
        direct = ZH_MARKER.match(clause)
        for token in ASCII_TOKEN.finditer(clause):
            if ZH_ABOUT.search(clause[:token.start()]):
                break
            value = token.group().strip("\"'“”`")
            immediate = direct and token.start() == direct.end() or token.start() == 0 \
                or not clause[:token.start()].strip() and len(value) >= 8  # `授权码 qwmzxkplrtvbnhyc`
            if lettered:  # the clause's words are ASCII too: a label (`serwisowego:`) or a word is no value
                value = value.rstrip(VALUE_END).strip("\"'“”`")
                immediate = direct and token.start() == direct.end() and not re.fullmatch(r"[^\W\d_]+", value)
                if token.group().rstrip("\"'“”`").endswith(":"):
                    continue
            if evidence.is_not_secret(value) or re.fullmatch(r"[A-Za-z]+", value) and not immediate:
                continue
            if (immediate and len(value) >= 4) or evidence.has_password_shape(value, 8 if lettered else 6):
                s = start + token.start() + token.group().find(value)
                yield Slot(s, s + len(value), "prose_password", Field.CREDENTIAL)
                break
    for key in ZH_ACCOUNT.finditer(text):
        clause = text[key.end():key.end() + 60]
        pair = re.search(r"(?P<u>[\w.@-]+)\s*/\s*(?P<s>[\x21-\x7e]{4,})", clause)
        if pair and evidence.has_password_shape(pair.group("s"), 4):
            yield Slot(key.end() + pair.start("s"), key.end() + pair.end("s"), "prose_password", Field.CREDENTIAL)
