"""The promotion gate: a candidate replaces the active model only when it is not worse."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GateConfig:
    """Margins in metric points (0-100)."""

    max_heldout_drop: float = 2.0  # ROUGE-L and BLEU-4 on the held-out set may fall this much
    min_correction_match: float = 80.0  # % of the new corrections reproduced exactly
    min_identity: float = 100.0  # % of identity prompts answered with the configured name


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str]


def decide(candidate: dict, active: dict, gate: GateConfig) -> GateDecision:
    """Compare metrics of the form {"heldout": {...}, "identity": %, "corrections": {...}}."""
    reasons, passed = [], True
    for key in ("rouge-l", "bleu-4"):
        cand, act = candidate["heldout"][key], active["heldout"][key]
        ok = cand >= act - gate.max_heldout_drop
        passed &= ok
        reasons.append(f"held-out {key}: {cand:.2f} vs active {act:.2f} "
                       f"({'ok' if ok else f'fell more than {gate.max_heldout_drop}'})")
    identity = candidate["identity"]
    ok = identity >= gate.min_identity
    passed &= ok
    reasons.append(f"identity: {identity:.0f}% of prompts name the assistant "
                   f"({'ok' if ok else f'needs {gate.min_identity:.0f}%'})")
    corrections = candidate["corrections"]
    if corrections["samples"]:
        ok = corrections["exact_match"] >= gate.min_correction_match
        passed &= ok
        reasons.append(f"new corrections reproduced: {corrections['exact_match']:.0f}% of "
                       f"{corrections['samples']} ({'ok' if ok else f'needs {gate.min_correction_match:.0f}%'})")
    return GateDecision(passed, reasons)
