"""The promotion gate: a candidate replaces the active model only when it is not worse.

It must keep what the model knew (held-out ROUGE-L and BLEU-4, and the multiple-choice exam when
configured, may fall at most a margin), know who it is (held-out identity phrasings, never
trained, name the configured assistant), have learned the new corrections, and, where labelled
completions were held out, tell them apart no worse than the active model: the mean per-token
log-likelihood margin between desirable and undesirable completions must not fall.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GateConfig:
    """Margins in metric points (0-100)."""

    max_heldout_drop: float = 2.0  # ROUGE-L and BLEU-4 on the held-out set may fall this much
    min_correction_match: float = 80.0  # % of the new corrections reproduced exactly
    min_identity: float = 100.0  # % of held-out identity prompts answered with the configured name
    max_mcq_drop: float = 2.0  # multiple-choice accuracy may fall this much
    max_margin_drop: float = 0.0  # nats per token the held-out preference margin may fall


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str]


def decide(candidate: dict, active: dict, gate: GateConfig) -> GateDecision:
    """Compare metrics as `feedback.learning.train_job` writes them for each version."""
    reasons, passed = [], True

    def check(ok: bool, text: str, failure: str) -> None:
        nonlocal passed
        passed &= ok
        reasons.append(f"{text} ({'ok' if ok else failure})")

    for key in ("rouge-l", "bleu-4"):
        cand, act = candidate["heldout"][key], active["heldout"][key]
        check(cand >= act - gate.max_heldout_drop, f"held-out {key}: {cand:.2f} vs active {act:.2f}",
              f"fell more than {gate.max_heldout_drop:g}")
    identity = candidate["identity_heldout"]
    check(identity >= gate.min_identity, f"held-out identity: {identity:.0f}% of prompts name the assistant",
          f"needs {gate.min_identity:.0f}%")
    corrections = candidate["corrections"]
    if corrections["samples"]:
        check(corrections["exact_match"] >= gate.min_correction_match,
              f"new corrections reproduced: {corrections['exact_match']:.0f}% of {corrections['samples']}",
              f"needs {gate.min_correction_match:.0f}%")
    if "mcq" in candidate and "mcq" in active:
        cand, act = candidate["mcq"]["accuracy"], active["mcq"]["accuracy"]
        check(cand >= act - gate.max_mcq_drop, f"multiple-choice accuracy: {cand:.1f}% vs active {act:.1f}%",
              f"fell more than {gate.max_mcq_drop:g}")
    cand, act = (m.get("preference", {}).get("margin") for m in (candidate, active))
    if cand is not None and act is not None:
        check(cand >= act - gate.max_margin_drop,
              f"held-out 👍/👎 margin: {cand:+.3f} vs active {act:+.3f} nats per token",
              "fell" if not gate.max_margin_drop else f"fell more than {gate.max_margin_drop:g}")
    return GateDecision(passed, reasons)
