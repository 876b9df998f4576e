"""Text crossing the Slack boundary: in as plain text, out as inert, rendered Markdown."""

import random
import re

import pytest

from secbot.bot.slack.incoming import mentions, normalise
from secbot.bot.slack.rendering import ZWSP, InertStream, escape_mrkdwn, neutralise, notification_text, split_markdown

NAMES = {"U2": "bob", "U3": "carol"}.get


@pytest.mark.parametrize("raw, plain", [
    ("<@UBOT> what is &lt;script&gt; &amp; co?", "what is <script> & co?"),
    ("see <https://evil.example/a?b=1&amp;c=2|the page>", "see the page (https://evil.example/a?b=1&c=2)"),
    ("see <https://example.com/x>", "see https://example.com/x"),
    ("mail <mailto:soc@example.com|soc@example.com>", "mail soc@example.com"),
    ("ask <@U2> and <@U3|carol.w> in <#C42|general> or <#C43>", "ask @bob and @carol.w in #general or #C43"),
    ("<!here> <!channel> <!subteam^S1|@sec-team> at <!date^1392734382^{date}|Feb 18>",
     "@here @channel @sec-team at Feb 18"),
    ("ask <@U9>", "ask @U9"),  # a user Slack will not name stays as their id
    ("literal &lt;@U2&gt; stays text", "literal <@U2> stays text"),
])
def test_incoming_markup_becomes_plain_text(raw, plain):
    assert normalise(raw, "UBOT", lambda u: NAMES(u) or u) == plain


def test_mentions_finds_only_that_user():
    assert mentions("<@UBOT> hi", "UBOT") and mentions("hi <@UBOT|secbot>", "UBOT")
    assert not mentions("hi <@UBOTTY>", "UBOT") and not mentions("hi", "UBOT") and not mentions("<@U1>", None)


@pytest.mark.parametrize("token", ["<!here>", "<!channel>", "<!everyone>", "<@U123ABC>", "<#C123|general>",
                                   "<!subteam^S123|@team>", "@here", "@channel", "@everyone", "@Here"])
def test_no_mention_or_broadcast_survives(token):
    out = neutralise(f"please {token} now")
    assert token not in out and out.replace(ZWSP, "") == f"please {token} now"
    assert token not in escape_mrkdwn(f"please {token} now")


def test_ordinary_text_is_left_alone():
    text = "Use `grep -E 'a|b' x.log`, email me@example.com, 3 < 5 > 2, see <https://x.y>"
    assert neutralise(text) == text


def test_a_streamed_answer_is_neutralised_exactly_as_the_whole_would_be():
    rng = random.Random(7)
    parts = ["a", " ", "<", "!", "@", "here", "channel", "everyone", "<@U1>", "<!here>", "#", "x", "\n"]
    for _ in range(3000):
        text = "".join(rng.choice(parts) for _ in range(rng.randrange(1, 40)))
        stream, out, i = InertStream(), "", 0
        while i < len(text):
            n = rng.randrange(1, 6)
            out += stream.feed(text[i:i + n])
            i += n
        assert out + stream.flush() == neutralise(text), text


def test_the_notification_text_is_plain_and_escaped():
    text = "# Heading\n**Bold** [runbook](https://wiki/ir) `<tag>` & <!here>\n- item"
    assert notification_text(text) == "Heading Bold runbook (https://wiki/ir) &lt;tag&gt; &amp; &lt;!here&gt; item"


def fences_balanced(piece: str) -> bool:
    return len(re.findall(r"^\s{0,3}```", piece, flags=re.M)) % 2 == 0


def test_splitting_keeps_every_piece_within_the_limit_and_never_cuts_inside_a_code_fence():
    prose = ("Rotate the key now and review the logs for any use of it. " * 12 + "\n\n") * 4
    code = "```python\n" + "\n".join(f"print({i})  # step {i}" for i in range(120)) + "\n```"
    text = prose + code + "\n\nDone."
    pieces = split_markdown(text, 1200)
    assert all(len(p) <= 1200 for p in pieces) and len(pieces) > 3
    assert all(fences_balanced(p) for p in pieces)
    code_pieces = [p for p in pieces if "print(" in p]
    assert all("```python\n" in p for p in code_pieces)  # each part of the code keeps its language
    body = "\n".join(pieces)
    assert all(f"print({i})" in body for i in range(120)) and body.endswith("Done.")


def test_a_code_block_that_fits_moves_whole_to_the_next_message():
    text = "intro " * 160 + "\n\n```bash\ncurl -s https://x | jq .\nls -la\n```\n\nafter"
    pieces = split_markdown(text, 1000)
    assert any(p.startswith("```bash") and p.count("```") == 2 for p in pieces)
    assert split_markdown("short") == ["short"]
