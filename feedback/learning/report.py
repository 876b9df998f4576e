"""What a nightly run tells the admins: the decision, why, and candidate vs active."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# (title, metric group, key within the group or None for a plain number)
TABLE = [("held-out ROUGE-1", "heldout", "rouge-1"), ("held-out ROUGE-2", "heldout", "rouge-2"),
         ("held-out ROUGE-L", "heldout", "rouge-l"), ("held-out BLEU-4", "heldout", "bleu-4"),
         ("identity held-out %", "identity_heldout", None), ("identity trained %", "identity_train", None),
         ("corrections exact %", "corrections", "exact_match"), ("MCQ accuracy %", "mcq", "accuracy"),
         ("👍/👎 margin (nats)", "preference", "margin")]


@dataclass
class RunReport:
    decision: str  # promoted, rejected, failed, skipped, busy
    summary: str
    run_id: int | None = None
    version_id: int | None = None
    metrics: dict = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # the training mix, exclusions, memory coverage
    loss_curve: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "RunReport":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def metrics_table(metrics: dict) -> str:
    """Candidate vs active, as a fixed-width table."""
    cand, act = metrics.get("candidate", {}), metrics.get("active", {})
    lines = [f"{'metric':<22}{'candidate':>10}{'active':>10}"]
    for title, group, key in TABLE:
        if group not in cand and group not in act:
            continue

        def value(m):
            v = m.get(group)
            v = v.get(key) if isinstance(v, dict) else v
            digits = 3 if group == "preference" else 2
            return f"{v:>10.{digits}f}" if isinstance(v, (int, float)) else f"{'-':>10}"
        lines.append(f"{title:<22}{value(cand)}{value(act)}")
    return "\n".join(lines)


def data_lines(data: dict) -> list[str]:
    """The training data of a run in words: mix, exclusions, memory coverage."""
    lines = []
    mix = data.get("mix")
    if mix:
        lines.append(f"trained on {mix['total']} examples: {mix['new']} new record(s) ({mix.get('repeat', 1)}x), "
                     f"{mix['replayed']} earlier (replay), {mix['general']} general security, "
                     f"{mix['identity']} identity (2x)")
    excluded = {k: v for k, v in (data.get("excluded") or {}).items() if v}
    if excluded:
        lines.append("left out of the snapshot: " + ", ".join(f"{n} {reason.replace('_', ' ')}"
                                                              for reason, n in sorted(excluded.items())))
    if data.get("author_cap"):
        lines.append(author_cap_note(data["author_cap"]["share"], data["author_cap"]["authors"]))
    if data.get("preference"):
        lines.append(preference_line(data["preference"]))
    if "memory_coverage" in data:
        lines.append(f"team memory answers {data['memory_coverage']:.0f}% of the new records confidently")
    return lines


def preference_line(pref: dict) -> str:
    """The preference stage in words: labels used, held out and left out, and whether it ran."""
    train, held = pref.get("train", {}), pref.get("heldout_split", {})
    text = (f"👍/👎 labels: {pref['used']} used ({train.get('desirable', 0)} 👍, {train.get('undesirable', 0)} 👎), "
            f"{pref['held_out']} held out to judge it ({held.get('desirable', 0)} 👍, {held.get('undesirable', 0)} 👎)")
    excluded = pref.get("excluded") or {}
    if excluded:
        text += "; left out: " + ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(excluded.items()))
    if pref.get("stage"):
        text += f"; {pref['stage']}"
    return text


def author_cap_note(share: float, authors: dict[str, int]) -> str:
    """What the author cap did, and how to lift it."""
    who = ", ".join(f"{n} by {author}" for author, n in sorted(authors.items()))
    return (f"The author cap left out {sum(authors.values())} record(s) ({who}): one person's unreviewed "
            f"records may make up at most {share:.0%} of the training data. To include them, have a second "
            "admin approve them in the review queue (App Home or `/secbot review`), or raise "
            "SECBOT_MAX_AUTHOR_SHARE.")


def render(report: RunReport) -> str:
    """The report as Markdown (Slack renders it; a terminal reads it)."""
    text = f"**{report.summary}**"
    if report.metrics.get("candidate"):
        text += f"\n```\n{metrics_table(report.metrics)}\n```"
    text += "".join(f"\n- {line}" for line in report.reasons + data_lines(report.data))
    return text
