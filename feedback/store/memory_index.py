"""The team memory's index, inside the store's own database (`memory_docs`, `memory_postings`,
`memory_terms`, `memory_stats`): candidates ranked by BM25 (k1 1.2, b 0.75), then scored with
`feedback.memory.matching.confidence`.

Why in the database rather than an in-process index (bm25s, tantivy): an approval, rejection or
superseding changes the index in the same transaction as the record, so every bot process sees
the same memory the moment the transaction commits, a restart loses nothing, and SQLite and
PostgreSQL give identical scores (one set of thresholds). The index is a plain B-tree on
(term, record): `bench/memory.py` measures lookups at 1k-100k records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from sqlalchemy import case, delete, func, select
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
from secbot.feedback.store.db import Database
from secbot.feedback.store.schema import MemoryDocRow, MemoryPostingRow, MemoryStatsRow, MemoryTermRow

K1, B = 1.2, 0.75
POSTINGS_BUDGET = 5000  # postings a lookup reads before it narrows to confident matches


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
    (`memory_stats`), so a lookup reads a handful of rows, not the whole index."""

    def __init__(self, db: Database):
        self.db = db

    # -- maintenance, called by the records repository in its own transaction -------------------
    @staticmethod
    def add(session: Session, docs: Sequence[Document]) -> None:
        if not docs:
            return
        session.execute(MemoryDocRow.__table__.insert(), [
            {"record_id": d.record_id, "question_key": d.question_key, "terms": d.weights, "intent": d.intent,
             "length": sum(d.counts.values())} for d in docs])
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
            session.execute(delete(MemoryDocRow).where(MemoryDocRow.record_id.in_(chunk)))
            TeamMemory._count(session, Counter({t: -n for t, n in gone.items()}), -docs, -length)

    @staticmethod
    def _count(session: Session, df: Counter, docs: int, length: int) -> None:
        _upsert(session, MemoryTermRow.__table__, [{"term": t, "df": n} for t, n in df.items()], ["term"],
                {"df": lambda table, new: table.c.df + new.df})
        session.execute(delete(MemoryTermRow).where(MemoryTermRow.df <= 0))
        _upsert(session, MemoryStatsRow.__table__, [{"id": 1, "docs": docs, "length": length}], ["id"],
                {"docs": lambda table, new: table.c.docs + new.docs,
                 "length": lambda table, new: table.c.length + new.length})

    @staticmethod
    def clear(session: Session) -> None:
        for table in (MemoryPostingRow, MemoryDocRow, MemoryTermRow, MemoryStatsRow):
            session.execute(delete(table))

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
        if not query:
            return []
        with self.db.reading() as s:
            stats = s.execute(select(MemoryStatsRow.docs, MemoryStatsRow.length).where(MemoryStatsRow.id == 1)).first()
            if not stats or not stats.docs:
                return []
            n, avg_length = stats.docs, stats.length / stats.docs
            df = self._df(s, query)
            idfs = {t: idf(df.get(t, 0), n) for t in query}
            weights = {t: w * idfs[t] for t, w in query.items()}
            needed = _needed(weights, floor)
            if sum(df.get(t, 0) for t in needed) > POSTINGS_BUDGET:
                needed = _needed(weights, exact)
            ranked = self._bm25(s, {t: query[t] for t in needed}, idfs, avg_length, max(k, 20))
            if not ranked:
                return []
            docs = {rid: (terms_, kind) for rid, terms_, kind in s.execute(
                select(MemoryDocRow.record_id, MemoryDocRow.terms, MemoryDocRow.intent)
                .where(MemoryDocRow.record_id.in_([r for r, _ in ranked])))}
            more = {t for d, _ in docs.values() for t in d} - idfs.keys()
            df = self._df(s, more)
            idfs |= {t: idf(df.get(t, 0), n) for t in more}
        asked = intent(question)
        matches = []
        for rid, score in ranked:
            terms_, kind = docs.get(rid, ({}, None))
            factor = INTENT_MISMATCH if asked and kind and asked != kind else 1.0
            matches.append(Match(rid, round(factor * confidence(query, terms_, idfs), 4), round(score, 4)))
        return sorted(matches, key=lambda m: (-m.confidence, -m.bm25, m.record_id))[:k]

    @staticmethod
    def _df(s: Session, wanted: Iterable[str]) -> dict[str, int]:
        """Document frequencies of the terms the memory holds (absent terms are left out)."""
        wanted = list(wanted)
        df: dict[str, int] = {}
        for start in range(0, len(wanted), 500):
            df |= dict(s.execute(select(MemoryTermRow.term, MemoryTermRow.df)
                                 .where(MemoryTermRow.term.in_(wanted[start:start + 500]))).all())
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
