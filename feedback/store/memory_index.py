"""The team memory's index, inside the store's own database (`memory_docs`, `memory_postings`,
`memory_terms`, `memory_stats`, and `memory_vectors` for matching by meaning): candidates ranked
by BM25 (k1 1.2, b 0.75) and by cosine, then scored with `feedback.memory.matching.confidence`
and, with an embedding model, `feedback.memory.semantic.combined`.

Why in the database rather than an in-process index (bm25s, tantivy): an approval, rejection or
superseding changes the index in the same transaction as the record, so every bot process sees
the same memory the moment the transaction commits, a restart loses nothing, and SQLite and
PostgreSQL give identical scores (one set of thresholds). The index is a plain B-tree on
(term, record): `bench/memory.py` measures lookups at 1k-100k records.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

import numpy as np
from sqlalchemy import case, delete, func, select, update
from sqlalchemy.orm import Session

from secbot.feedback.memory.matching import (
    CONFIDENT,
    INTENT_MISMATCH,
    REFERENCE,
    Document,
    Match,
    confidence,
    idf,
    intent,
    weighted_terms,
)
from secbot.feedback.memory.semantic import (
    Calibration,
    VectorMatrix,
    combined,
    features,
    question_vector,
    question_vectors,
)
from secbot.feedback.store.db import Database
from secbot.feedback.store.schema import (
    MemoryDocRow,
    MemoryPostingRow,
    MemoryStatsRow,
    MemoryTermRow,
    MemoryVectorRow,
    RecordRow,
)

log = logging.getLogger(__name__)
K1, B = 1.2, 0.75
SEMANTIC_CANDIDATES = 8  # records found by meaning, besides the lexical candidates
POSTINGS_BUDGET = 5000  # postings a lookup reads before it narrows to confident matches
DF_CACHE_TERMS = 200_000  # document frequencies a process remembers between changes of the memory


def _upsert(session: Session, table, rows: list[dict], index: list[str], changes: dict) -> None:
    """INSERT ... ON CONFLICT DO UPDATE, on SQLite and PostgreSQL alike."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    session.execute(stmt.on_conflict_do_update(
        index_elements=index, set_={k: v(table, stmt.excluded) for k, v in changes.items()}), rows)


class TeamMemory:
    """The memory index in the store's database: maintained inside the records' transactions
    (`add`, `remove`), searched in its own read transaction (`search`).

    Beside the postings it keeps each term's document frequency (`memory_terms`) and the totals
    (`memory_stats`), so a lookup reads a handful of rows, not the whole index.

    With an `embedder`, each record's question vector is written in the same transaction
    (`memory_vectors`, tagged with the model's name) and every process keeps all vectors in one
    in-process matrix, reloaded when the memory's change counter moves. Vectors of another model
    are never compared: `semantic_problem` says so and `reindex` re-embeds."""

    def __init__(self, db: Database, embedder=None, calibration_questions: Sequence[str] = ()):
        if embedder is not None and len(calibration_questions) < 20:
            raise ValueError("semantic matching needs calibration questions (at least 20 that ask different "
                             "things), e.g. feedback.learning.evalsets.calibration_questions()")
        self.db = db
        self.embedder = embedder
        self._calibration_questions = list(calibration_questions)
        self._calibration: Calibration | None = None
        self._matrix = VectorMatrix()
        self._matrix_version: int | None = None
        self._df_cache: tuple[int | None, dict[str, int]] = (None, {})
        self.semantic_problem: str | None = None

    @property
    def semantic(self) -> bool:
        """Semantic matching takes part (an embedder, and vectors of its model only)."""
        return self.embedder is not None and self.semantic_problem is None

    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            self._calibration = Calibration.measure(self.embedder, self._calibration_questions)
        return self._calibration

    # -- maintenance, called by the records repository in its own transaction -------------------
    def add(self, session: Session, docs: Sequence[Document]) -> None:
        if not docs:
            return
        session.execute(MemoryDocRow.__table__.insert(), [
            {"record_id": d.record_id, "question_key": d.question_key, "terms": d.weights, "intent": d.intent,
             "length": sum(d.counts.values())} for d in docs])
        if self.embedder is not None:
            self._write_vectors(session, [(d.record_id, d.question, d.context) for d in docs])
        postings = [{"term": t, "record_id": d.record_id, "tf": n, "length": sum(d.counts.values())}
                    for d in docs for t, n in d.counts.items()]
        if postings:
            session.execute(MemoryPostingRow.__table__.insert(), postings)
        TeamMemory._count(session, Counter(t for d in docs for t in d.counts), len(docs),
                          sum(sum(d.counts.values()) for d in docs))

    @staticmethod
    def remove(session: Session, record_ids: Iterable[int]) -> None:
        ids = list(record_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            gone = Counter(session.scalars(select(MemoryPostingRow.term).where(MemoryPostingRow.record_id.in_(chunk))))
            docs, length = session.execute(select(func.count(), func.coalesce(func.sum(MemoryDocRow.length), 0))
                                           .where(MemoryDocRow.record_id.in_(chunk))).one()
            if not docs:
                continue
            session.execute(delete(MemoryPostingRow).where(MemoryPostingRow.record_id.in_(chunk)))
            session.execute(delete(MemoryVectorRow).where(MemoryVectorRow.record_id.in_(chunk)))
            session.execute(delete(MemoryDocRow).where(MemoryDocRow.record_id.in_(chunk)))
            TeamMemory._count(session, Counter({t: -n for t, n in gone.items()}), -docs, -length)

    @staticmethod
    def _count(session: Session, df: Counter, docs: int, length: int) -> None:
        _upsert(session, MemoryTermRow.__table__, [{"term": t, "df": n} for t, n in df.items()], ["term"],
                {"df": lambda table, new: table.c.df + new.df})
        session.execute(delete(MemoryTermRow).where(MemoryTermRow.df <= 0))
        _upsert(session, MemoryStatsRow.__table__, [{"id": 1, "docs": docs, "length": length, "version": 1}], ["id"],
                {"docs": lambda table, new: table.c.docs + new.docs,
                 "length": lambda table, new: table.c.length + new.length,
                 "version": lambda table, new: table.c.version + 1})

    @staticmethod
    def clear(session: Session) -> None:
        version = session.scalar(select(MemoryStatsRow.version).where(MemoryStatsRow.id == 1)) or 0
        for table in (MemoryPostingRow, MemoryVectorRow, MemoryDocRow, MemoryTermRow, MemoryStatsRow):
            session.execute(delete(table))
        session.execute(MemoryStatsRow.__table__.insert(), [{"id": 1, "docs": 0, "length": 0, "version": version + 1}])

    def _write_vectors(self, session: Session, questions: Sequence[tuple[int, str, Sequence[str]]]) -> None:
        """Vectors for (record id, question, thread context) in this transaction, replacing old ones."""
        vectors = question_vectors(self.embedder, [(q, context) for _, q, context in questions])
        ids = [rid for rid, _, _ in questions]
        session.execute(delete(MemoryVectorRow).where(MemoryVectorRow.record_id.in_(ids)))
        session.execute(MemoryVectorRow.__table__.insert(), [
            {"record_id": rid, "model": self.embedder.name, "dim": len(v), "vector": v.astype("<f4").tobytes()}
            for rid, v in zip(ids, vectors)])

    # -- semantic state ------------------------------------------------------------------------
    def vector_models(self) -> dict[str | None, int]:
        """Records in memory by the model that embedded them (None: no vector)."""
        with self.db.reading() as s:
            found = dict(s.execute(select(MemoryVectorRow.model, func.count()).group_by(MemoryVectorRow.model)).all())
            docs = s.scalar(select(func.count()).select_from(MemoryDocRow)) or 0
        missing = docs - sum(found.values())
        return found | ({None: missing} if missing else {})

    def check_vectors(self) -> str | None:
        """Say (and remember) why semantic matching cannot take part: vectors of another model."""
        if self.embedder is None:
            return None
        foreign = {m: n for m, n in self.vector_models().items() if m not in (self.embedder.name, None)}
        self.semantic_problem = None if not foreign else (
            "team memory's vectors were made by " + ", ".join(f"{m} ({n} record(s))" for m, n in foreign.items())
            + f" but this process embeds with {self.embedder.name}: semantic matching is off until "
            "`secbot memory reindex` re-embeds them (lexical matching still answers)")
        return self.semantic_problem

    def reindex(self, progress: Callable[[int, int], None] | None = None, batch: int = 256) -> int:
        """Embed every record in memory again with this process's model; returns the count."""
        if self.embedder is None:
            raise ValueError("no embedding model is configured (SECBOT_EMBEDDING_MODEL is off)")
        with self.db.reading() as s:
            rows = s.execute(select(RecordRow.id, RecordRow.prompt, RecordRow.history).join(
                MemoryDocRow, MemoryDocRow.record_id == RecordRow.id).order_by(RecordRow.id)).all()
        for start in range(0, len(rows), batch):
            chunk = rows[start:start + batch]
            self._embed_rows(chunk)
            if progress:
                progress(start + len(chunk), len(rows))
        self.check_vectors()
        return len(rows)

    def embed_missing(self) -> int:
        """Embed the records in memory that have no vector (indexed before semantic matching); after
        `check_vectors` found no vectors of another model."""
        if not self.semantic:
            return 0
        with self.db.reading() as s:
            rows = s.execute(select(RecordRow.id, RecordRow.prompt, RecordRow.history)
                             .join(MemoryDocRow, MemoryDocRow.record_id == RecordRow.id)
                             .outerjoin(MemoryVectorRow, MemoryVectorRow.record_id == RecordRow.id)
                             .where(MemoryVectorRow.record_id.is_(None))).all()
        if rows:
            self._embed_rows(rows)
        return len(rows)

    def _embed_rows(self, rows) -> None:
        """Write vectors for (id, prompt, history) rows in one transaction that moves the counter."""
        with self.db.session() as s:
            self._write_vectors(s, [(r.id, r.prompt, [q for q, _ in (r.history or ())]) for r in rows])
            s.execute(update(MemoryStatsRow).where(MemoryStatsRow.id == 1).values(version=MemoryStatsRow.version + 1))

    def _current_matrix(self, s: Session, version: int) -> VectorMatrix:
        """The matrix as of `version`: when the counter moved, read which records have a vector of
        this model, keep the rows already held, fetch only the new ones (an approval at 100k
        records reads 100k ids, not 100 MB of vectors)."""
        if self._matrix_version == version:
            return self._matrix
        model, dim = self.embedder.name, self.embedder.dim
        ids = list(s.scalars(select(MemoryVectorRow.record_id).where(MemoryVectorRow.model == model)
                             .order_by(MemoryVectorRow.record_id)))
        held = self._matrix.position
        kept = [rid for rid in ids if rid in held]
        new = [rid for rid in ids if rid not in held]
        fetched_ids, fetched = [], []
        for start in range(0, len(new), 500):
            chunk = new[start:start + 500]
            for rid, blob in s.execute(select(MemoryVectorRow.record_id, MemoryVectorRow.vector).where(
                    MemoryVectorRow.record_id.in_(chunk), MemoryVectorRow.model == model)):
                fetched_ids.append(rid)
                fetched.append(blob)
        parts = [self._matrix.vectors[[held[rid] for rid in kept]]] if kept else []
        if fetched:
            parts.append(np.frombuffer(b"".join(fetched), dtype="<f4").reshape(len(fetched), dim).astype(np.float32))
        vectors = np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)
        self._matrix = VectorMatrix(kept + fetched_ids, vectors, dim)
        self._matrix_version = version
        return self._matrix

    @staticmethod
    def same_question(session: Session, keys: Iterable[str]) -> dict[str, list[int]]:
        """Records in memory by question key (records with one key answer the same question)."""
        found: dict[str, list[int]] = {}
        keys = list(keys)
        for start in range(0, len(keys), 500):
            for key, rid in session.execute(select(MemoryDocRow.question_key, MemoryDocRow.record_id)
                                            .where(MemoryDocRow.question_key.in_(keys[start:start + 500]))):
                found.setdefault(key, []).append(rid)
        return found

    # -- lookup --------------------------------------------------------------------------------
    @staticmethod
    def warm() -> None:
        """Load the Chinese and English word lists now rather than in the first lookup (~1 s)."""
        weighted_terms("What is ransomware? 什么是勒索软件？")

    def size(self) -> int:
        with self.db.reading() as s:
            return s.scalar(select(MemoryStatsRow.docs).where(MemoryStatsRow.id == 1)) or 0

    def search(self, question: str, context: Sequence[str] = (), k: int = 5, floor: float = REFERENCE,
               exact: float = CONFIDENT) -> list[Match]:
        """The best `k` records for `question` (with a thread's earlier questions as context).

        Only records that could reach confidence `floor` are considered: one that holds none of
        the query's heaviest terms cannot (see `_needed`), so only those terms' postings are read.
        When those terms are common (over POSTINGS_BUDGET postings), only the terms needed to
        reach `exact` are read: every match at or above `exact` is still found, weaker ones may
        not be (measured at 100k records: p99 lookup 38 ms without the budget)."""
        query = weighted_terms(question, context)
        semantic = self.semantic
        if not query and not semantic:
            return []
        with self.db.reading() as s:
            stats = s.execute(select(MemoryStatsRow.docs, MemoryStatsRow.length, MemoryStatsRow.version)
                              .where(MemoryStatsRow.id == 1)).first()
            if not stats or not stats.docs:
                return []
            n, avg_length = stats.docs, stats.length / stats.docs
            df = self._df(s, query, stats.version)
            idfs = {t: idf(df.get(t, 0), n) for t in query}
            weights = {t: w * idfs[t] for t, w in query.items()}
            needed = _needed(weights, floor)
            if sum(df.get(t, 0) for t in needed) > POSTINGS_BUDGET:
                needed = _needed(weights, exact)
            ranked = dict(self._bm25(s, {t: query[t] for t in needed}, idfs, avg_length, max(k, 20)))
            cosines: dict[int, float] = {}
            if semantic:
                matrix = self._current_matrix(s, stats.version)
                vector = question_vector(self.embedder, question, context)
                cosines = dict(matrix.nearest(vector, SEMANTIC_CANDIDATES))
                cosines |= matrix.cosine(vector, [r for r in ranked if r not in cosines])
            candidates = list(ranked.keys() | cosines.keys())
            if not candidates:
                return []
            docs = {rid: (terms_, kind) for rid, terms_, kind in s.execute(
                select(MemoryDocRow.record_id, MemoryDocRow.terms, MemoryDocRow.intent)
                .where(MemoryDocRow.record_id.in_(candidates)))}
            more = {t for d, _ in docs.values() for t in d} - idfs.keys()
            df = self._df(s, more, stats.version)
            idfs |= {t: idf(df.get(t, 0), n) for t in more}
        asked = intent(question)
        matches = []
        for rid in candidates:
            if rid not in docs:
                continue  # removed between the two reads
            terms_, kind = docs[rid]
            factor = INTENT_MISMATCH if asked and kind and asked != kind else 1.0
            lexical = confidence(query, terms_, idfs) if query else 0.0
            if semantic and rid in cosines:
                read = features(lexical, self.calibration.z(cosines[rid]), asked, kind)
                matches.append(Match(rid, round(combined(read), 4), round(ranked.get(rid, 0.0), 4),
                                     round(factor * lexical, 4), round(cosines[rid], 4), read))
            else:
                matches.append(Match(rid, round(factor * lexical, 4), round(ranked.get(rid, 0.0), 4)))
        if semantic:
            matches = _fuse(matches)
        return sorted(matches, key=lambda m: (-m.confidence, -m.bm25, m.record_id))[:k]

    def _df(self, s: Session, wanted: Iterable[str], version: int) -> dict[str, int]:
        """Document frequencies (0 for a term the memory does not hold), each read from the
        database once per version of the memory: they change only when its change counter moves,
        and every lookup needs those of the query's terms and of each candidate's terms."""
        cached, df = self._df_cache
        if cached != version or len(df) > DF_CACHE_TERMS:
            df = {}
            self._df_cache = (version, df)
        missing = [t for t in dict.fromkeys(wanted) if t not in df]
        for start in range(0, len(missing), 500):
            chunk = missing[start:start + 500]
            found = dict(s.execute(select(MemoryTermRow.term, MemoryTermRow.df).where(MemoryTermRow.term.in_(chunk))).all())
            df.update({t: found.get(t, 0) for t in chunk})
        return df

    @staticmethod
    def _bm25(s: Session, query: dict[str, float], idfs: dict[str, float], avg_length: float,
              k: int) -> list[tuple[int, float]]:
        present = [t for t in query if idfs[t] > 0]
        if not present:
            return []
        p = MemoryPostingRow
        weight = case({t: idfs[t] * query[t] for t in present}, value=p.term, else_=0.0)
        norm = K1 * (1 - B + B * p.length / max(avg_length, 1e-9))
        score = func.sum(weight * p.tf * (K1 + 1) / (p.tf + norm)).label("score")
        rows = s.execute(select(p.record_id, score).where(p.term.in_(present)).group_by(p.record_id)
                         .order_by(score.desc(), p.record_id).limit(k)).all()
        return [(rid, float(sc)) for rid, sc in rows]


RRF_K = 60  # the usual constant of reciprocal rank fusion


def _fuse(matches: list[Match]) -> list[Match]:
    """Each match with its reciprocal-rank-fusion score over the lexical and the semantic ranking
    (records given to the model as reference are chosen by it: strong in either list is enough)."""
    lexical = sorted(matches, key=lambda m: (-(m.lexical or 0.0), m.record_id))
    semantic = sorted(matches, key=lambda m: (-(m.semantic if m.semantic is not None else -1.0), m.record_id))
    score = {m.record_id: 0.0 for m in matches}
    for ranking in (lexical, semantic):
        for rank, m in enumerate(ranking, 1):
            score[m.record_id] += 1.0 / (RRF_K + rank)
    return [replace(m, fused=round(score[m.record_id], 6)) for m in matches]


def _needed(weights: dict[str, float], floor: float) -> list[str]:
    """The heaviest terms a record must hold at least one of to reach confidence `floor`.

    A record sharing only terms of total weight `a` with the query has confidence at most
    2a / (W + a), W the query's weight (`confidence`); that stays below `floor` while
    a < floor * W / (2 - floor). Terms are taken heaviest first until the rest weigh less."""
    total = sum(weights.values())
    budget = floor * total / (2 - floor)
    rest, needed = total, []
    for term, weight in sorted(weights.items(), key=lambda tw: -tw[1]):
        if rest < budget:
            break
        needed.append(term)
        rest -= weight
    return needed
