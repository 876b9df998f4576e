"""The semantic half of team memory: question vectors, a calibrated cosine, one confidence.

Raw cosine thresholds do not carry from one embedding model to another (a static model puts
unrelated questions near 0.1, bge-m3 near 0.4). So each model is calibrated when it is loaded:
its cosines between the built-in security questions, which ask different things, are the null
distribution, and a cosine becomes a z-score against it (`Calibration.z`). The answering
confidence then combines both signals with one small logistic model over (lexical confidence,
z), fitted once on the calibration half of `bench/data/memory_round2.json` (`bench/memory.py
--fit`): a near miss differs in a salient term (the lexical side drops), a synonym differs in
words that mean the same (the semantic side holds). The fitted intercept places the measured
operating point at `matching.CONFIDENT`, so SECBOT_MEMORY_CONFIDENT keeps its meaning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from secbot.feedback.memory.matching import CONTEXT_WEIGHT

# Fitted by `python bench/memory.py --fit` on the calibration half (see its output for the run).
COMBINE = {"intercept": -5.835, "lexical": 3.523, "z": 0.721, "soft_mismatch": -0.271, "hard_mismatch": -3.438}


# A record whose cosine is this many standard deviations above unrelated questions' goes to the
# model as reference even when neither confidence reaches SECBOT_MEMORY_REFERENCE (chosen on the
# calibration half: the paraphrased record among the references 14/54 → 23/54).
REFERENCE_Z = 2.5


def worth_referencing(match, reference: float) -> bool:
    """A match the model should see: either confidence reaches `reference`, or its meaning is far
    closer than chance."""
    z = (match.features or {}).get("z")
    return max(match.confidence, match.lexical or 0.0) >= reference or (z is not None and z >= REFERENCE_Z)


@dataclass(frozen=True)
class Calibration:
    """Where a model puts questions that ask different things: mean and spread of their cosines."""

    mean: float
    std: float

    def z(self, cosine: float) -> float:
        return (cosine - self.mean) / self.std

    @classmethod
    def measure(cls, embedder, questions: Sequence[str]) -> "Calibration":
        vectors = embedder.embed(list(questions))
        sims = vectors @ vectors.T
        off = sims[~np.eye(len(questions), dtype=bool)]
        return cls(float(off.mean()), max(float(off.std()), 1e-3))


def features(lexical: float, z: float, asked_kind: str | None, stored_kind: str | None) -> dict[str, float]:
    """What the combination reads: both signals, and whether the two questions ask for different
    kinds of answer (hard: "when" against "who"; soft: one of them is the open "what/how" kind)."""
    differ = bool(asked_kind and stored_kind and asked_kind != stored_kind)
    soft = differ and "open" in (asked_kind, stored_kind)
    return {"lexical": lexical, "z": z, "soft_mismatch": float(soft), "hard_mismatch": float(differ and not soft)}


def combined(values: dict[str, float], weights: dict[str, float] = COMBINE) -> float:
    """One confidence in [0, 1] from both signals."""
    x = weights["intercept"] + sum(weights[name] * value for name, value in values.items())
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def question_vector(embedder, question: str, context: Sequence[str] = ()) -> np.ndarray:
    """The question's vector, with a thread's earlier questions at CONTEXT_WEIGHT (as for terms)."""
    return question_vectors(embedder, [(question, tuple(context))])[0]


def question_vectors(embedder, questions: Sequence[tuple[str, Sequence[str]]]) -> np.ndarray:
    """`question_vector` for many (question, context) pairs, embedded in one call."""
    texts = [q for q, _ in questions] + [c for _, context in questions for c in context]
    rows = embedder.embed(texts)
    out, at = rows[:len(questions)].copy(), len(questions)
    for i, (_, context) in enumerate(questions):
        if context:
            out[i] += CONTEXT_WEIGHT * rows[at:at + len(context)].mean(axis=0)
            at += len(context)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class VectorMatrix:
    """Every record's vector in one matrix, for a brute-force cosine search (100k × 256 floats is
    100 MB and one matrix-vector product)."""

    def __init__(self, ids: Sequence[int] = (), vectors: np.ndarray | None = None, dim: int = 0):
        self.ids = np.asarray(ids, dtype=np.int64)
        # Column-major: the product then reads the matrix one dimension at a time, which BLAS does
        # in about 60% of the time it takes row by row (100k × 256 on this 2-core CPU: 3.1 ms
        # instead of 5.1 ms), with the same exact result.
        self.vectors = np.asfortranarray(vectors if vectors is not None else np.zeros((0, dim), dtype=np.float32))
        self.position = {int(rid): i for i, rid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def nearest(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        if not len(self.ids):
            return []
        sims = self.vectors @ vector
        k = min(k, len(sims))
        top = np.argpartition(sims, len(sims) - k)[-k:]
        top = top[np.argsort(-sims[top], kind="stable")]
        return [(int(self.ids[i]), float(sims[i])) for i in top]

    def cosine(self, vector: np.ndarray, record_ids: Sequence[int]) -> dict[int, float]:
        if not len(self.ids):
            return {}
        rows = [self.position[r] for r in record_ids if r in self.position]
        sims = self.vectors[rows] @ vector if rows else []
        return {int(self.ids[i]): float(s) for i, s in zip(rows, sims)}
