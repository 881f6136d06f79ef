"""Long-term memory: short facts about each user, with embeddings, in the memory database.

    ltm = LongTermMemory("./.saem/saem.db", embeddings)
    ltm.add("alice", "I live in Seoul").action              # 'ADD'
    ltm.add("alice", "I live in Seoul.").action             # 'NOOP' (the same fact, said again)
    ltm.recall("alice", "where do I live?", k=3)[0].text    # 'I live in Seoul'
    ltm.extract_facts(chat_model, "alice", turn_text)       # an LLM proposes ADD/UPDATE/DELETE/NOOP
    ltm.apply_command("alice", "기억해 줘: 내 생일은 5월 3일")  # explicit "remember"/"forget"

Isolation: every read and write is filtered by ``user_id``; one user's memories are never
returned, updated or deleted through another user's calls (an id of another user's row acts as
if it did not exist).

Decisions. ``add`` embeds the fact, takes the user's ``k_candidates`` most similar memories and asks
``decide(text, candidates) -> Proposal`` what to do. The default, ``ThresholdDecider``, is
deterministic (see its docstring); pass ``decide=LLMDecider(model)`` to let a chat model judge.
Whatever proposes, the same guards apply when the change is written: an UPDATE or DELETE may
only touch one of the candidates shown to it (anything else becomes ADD or NOOP), and an ADD whose
exact text the user already has becomes NOOP. Model calls and embedding happen before the write
transaction, which is one short ``BEGIN IMMEDIATE``.

Embedding. Facts are embedded as passages (``embed_documents``); what they are looked up by —
``recall``'s and ``forget``'s query — as a query (``embed_query``), as asymmetric embedders such as
e5 expect ("query: " against "passage: "). saem's embedders keep their recent query vectors, so a
chat turn that recalls memories and searches the documents embeds its question once.

Similarity is cosine over L2-normalised float32 vectors, computed with numpy over all of the
user's rows per call: fine for the thousands of facts a person accumulates (a 10k × 512 matrix is
20 MB and a millisecond), not meant for millions. Rows embedded by another model are re-embedded
on first use. The LLM step lives in ``saem.memory.extraction``, command parsing in
``saem.memory.commands`` (both re-exported here).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from sqlalchemy import delete, select, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from saem.memory.commands import Command, parse_command
from saem.memory.erase import redact_traces
from saem.memory.extraction import MemoryOp, MemoryOps, ask_memory_ops, extraction_prompt
from saem.models.embedders import embedder_id
from saem.store.chat import MemoryDB, MemoryRow
from saem.store.index import normalise

__all__ = [
    "Memory",
    "MemoryDecision",
    "Proposal",
    "Decide",
    "ThresholdDecider",
    "LLMDecider",
    "LongTermMemory",
    "MemoryOp",
    "MemoryOps",
    "Command",
    "parse_command",
    "extraction_prompt",
]

Action = Literal["ADD", "UPDATE", "DELETE", "NOOP"]


@dataclass(frozen=True)
class Memory:
    """One remembered fact. ``score`` is the cosine similarity when it came from a search."""

    id: int
    text: str
    created: float
    updated: float
    source_session: str | None
    source_turn: int | None
    score: float | None = None


@dataclass(frozen=True)
class Proposal:
    """What a ``decide`` step proposes for one fact: ``target`` is a candidate's id
    (UPDATE/DELETE; optional for NOOP); ``text`` replaces the fact's wording (ADD/UPDATE)."""

    action: Action
    target: int | None = None
    text: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class MemoryDecision:
    """What was done: ``memory`` is the row as written (ADD/UPDATE) or the one that made a fact
    redundant (NOOP, when known); ``previous`` is the row before an UPDATE or the deleted row."""

    action: Action
    text: str
    memory: Memory | None = None
    previous: Memory | None = None
    reason: str = ""


Decide = Callable[[str, Sequence[Memory]], Proposal]


_TOKEN = re.compile(r"[0-9a-z]+|[\uac00-\ud7a3]+")


def _tokens(text: str) -> set[str]:
    """Lower-cased words; Hangul runs as syllable bigrams, so particles and endings matter less."""
    out: set[str] = set()
    for tok in _TOKEN.findall(text.lower()):
        if "\uac00" <= tok[0] <= "\ud7a3" and len(tok) > 1:
            out.update(tok[i : i + 2] for i in range(len(tok) - 1))
        else:
            out.add(tok)
    return out


@dataclass(frozen=True)
class ThresholdDecider:
    """The deterministic default. With ``best`` the most similar candidate (cosine ``s``):

    1. ADD if ``s < update``;
    2. NOOP if the new text adds no word the old one lacks (``"User lives in Seoul"`` after
       ``"The user lives in Seoul"``, or the same sentence with other punctuation);
    3. UPDATE ``best`` if it beats the runner-up by ``margin`` (never guess between two rows): a
       changed detail (a new date, colour, place), or the same fact in new words, which then
       keeps the newer wording;
    4. otherwise ADD.

    Defaults come from the packaged USE-m embedder: rewordings of one fact score 0.85-0.98; a
    changed detail anywhere from 0.98 ("제일 좋아하는 색은 파란색" → "진한 파란색") down to 0.55
    ("I live in Seoul" → "Busan"), which overlaps different facts on one topic ("I like coffee" /
    "tea": 0.64). So no cosine alone means "the same fact": a near-identical sentence that adds
    a word updates the row rather than being dropped, and below ``update`` the rule ADDs rather
    than guess: a duplicate is recoverable, an overwritten or dropped fact is not.
    ``LLMDecider`` (or ``extract_facts``) is what catches the far changes.
    """

    update: float = 0.80
    margin: float = 0.05

    def __call__(self, text: str, candidates: Sequence[Memory]) -> Proposal:
        ranked = sorted((c for c in candidates if c.score is not None), key=lambda c: -(c.score or 0.0))
        if not ranked:
            return Proposal("ADD", reason="no similar memory")
        best, score = ranked[0], ranked[0].score or 0.0
        if score < self.update:
            return Proposal("ADD", reason=f"nearest memory {best.id} at cosine {score:.2f} < {self.update}")
        if not (_tokens(text) - _tokens(best.text)):
            return Proposal("NOOP", target=best.id, reason=f"adds nothing to memory {best.id} (cosine {score:.2f})")
        runner_up = (ranked[1].score or 0.0) if len(ranked) > 1 else -1.0
        if score - runner_up < self.margin:
            return Proposal("ADD", reason=f"memories {best.id} and {ranked[1].id} are equally close")
        return Proposal("UPDATE", target=best.id, reason=f"changes memory {best.id} (cosine {score:.2f})")


# --- the LLM step ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LLMDecider:
    """A ``decide`` step that asks a chat model about one fact (one call per ``add``)."""

    model: BaseChatModel

    def __call__(self, text: str, candidates: Sequence[Memory]) -> Proposal:
        ops = ask_memory_ops(self.model, extraction_prompt(f"Remember this fact: {text}", candidates)).operations
        if not ops:
            return Proposal("NOOP", reason="the model proposed nothing")
        op = ops[0]
        target = candidates[op.target].id if op.target is not None and 0 <= op.target < len(candidates) else -1
        return Proposal(op.action, target=None if op.target is None else target, text=op.text or None, reason="llm")


# --- the store ---------------------------------------------------------------------------------


class _Plan(NamedTuple):
    action: Action
    text: str
    vector: np.ndarray | None
    target: int | None
    reason: str


class LongTermMemory:
    """Per-user facts with embeddings. Thread- and process-safe; cheap to construct."""

    def __init__(
        self,
        db: MemoryDB | str | Path | URL,
        embeddings: Embeddings,
        *,
        decide: Decide | None = None,
        k_candidates: int = 5,
        forget_threshold: float = 0.8,
    ) -> None:
        self.db = MemoryDB.open(db)
        self.embeddings = embeddings
        self.default_decider = ThresholdDecider()
        self.decide: Decide = decide or self.default_decider
        self.k_candidates = k_candidates
        self.forget_threshold = forget_threshold

    @property
    def model_id(self) -> str:
        """The embedder's id, stored with each vector. Read when a vector is written, not before:
        ``memories`` and ``forget(id=...)`` never touch the embedder."""
        return embedder_id(self.embeddings)

    # --- reads ---------------------------------------------------------------------------------

    def memories(self, user_id: str) -> list[Memory]:
        """All of the user's memories, oldest first."""
        with self.db.read() as s:
            rows = s.scalars(select(MemoryRow).where(MemoryRow.user_id == user_id).order_by(MemoryRow.id))
            return [_memory(r) for r in rows]

    def recall(self, user_id: str, query: str, k: int = 5, *, min_score: float | None = None) -> list[Memory]:
        """The user's ``k`` memories most similar to ``query`` (embedded as a query), best first,
        with ``score`` set."""
        return self._similar(user_id, self._embed_query(query), k, min_score=min_score)

    # --- writes --------------------------------------------------------------------------------

    def add(
        self, user_id: str, text: str, source_session: str | None = None, source_turn: int | None = None
    ) -> MemoryDecision:
        """Remember ``text`` for the user: ADD, UPDATE a similar memory, or NOOP (see module doc)."""
        text = text.strip()
        if not text:
            return MemoryDecision("NOOP", text, reason="empty fact")
        vector = self._embed([text])[0]
        candidates = self._similar(user_id, vector, self.k_candidates)
        proposal = self.decide(text, candidates)
        plan = self._plan(proposal, text, vector, candidates)
        return self._apply(user_id, [plan], source_session, source_turn)[0]

    def extract_facts(
        self,
        model: BaseChatModel,
        user_id: str,
        turn_text: str,
        *,
        source_session: str | None = None,
        source_turn: int | None = None,
        k: int = 8,
    ) -> list[MemoryDecision]:
        """Ask ``model`` (structured output) which durable facts the turn holds and how they
        change the user's memories; apply them. One model call. Raises ``StructuredOutputError``
        when the answer does not parse (nothing is written then)."""
        candidates = self.recall(user_id, turn_text, k)
        ops = ask_memory_ops(model, extraction_prompt(turn_text, candidates)).operations
        texts = [op.text.strip() for op in ops]
        need = sorted({t for t, op in zip(texts, ops, strict=True) if t and op.action in ("ADD", "UPDATE")})
        vectors = dict(zip(need, self._embed(need), strict=True)) if need else {}
        plans: list[_Plan] = []
        for op, text in zip(ops, texts, strict=True):
            shown = op.target is not None and 0 <= op.target < len(candidates)
            target = candidates[op.target].id if shown and op.target is not None else None
            if op.target is not None and not shown:
                target = -1  # a number the model was not shown: never a real row
            vector = vectors.get(text)
            if op.action == "ADD" and vector is not None:
                # the same fact said twice is stored once, whoever proposed it
                dup = self.default_decider(text, self._similar(user_id, vector, self.k_candidates))
                if dup.action == "NOOP":
                    plans.append(_Plan("NOOP", text, None, dup.target, dup.reason))
                    continue
            plans.append(self._plan(Proposal(op.action, target, text or None, "llm"), text, vector, candidates))
        return self._apply(user_id, plans, source_session, source_turn)

    def forget(
        self, user_id: str, *, id: int | None = None, query: str | None = None, threshold: float | None = None
    ) -> list[Memory]:
        """Delete the user's memory ``id``, or every memory whose cosine to ``query`` is at least
        ``threshold`` (default ``forget_threshold``). Returns the removed memories (scored when by
        query); another user's id removes nothing. In the same transaction the removed texts are
        redacted from the user's turn traces (``saem.memory.erase.redact_traces``), then the WAL
        is checkpointed: no copy saem made of the memory remains. Only ``query`` embeds (as a
        query, like ``recall``'s)."""
        if (id is None) == (query is None):
            raise ValueError("forget needs exactly one of id= or query=")
        if id is not None:
            with self.db.read() as s:
                row = s.scalar(select(MemoryRow).where(MemoryRow.id == id, MemoryRow.user_id == user_id))
                victims = [_memory(row)] if row is not None else []
        else:
            assert query is not None
            limit = self.forget_threshold if threshold is None else threshold
            victims = self._similar(user_id, self._embed_query(query), None, min_score=limit)
        if not victims:
            return []
        with self.db.write() as s:
            doomed = delete(MemoryRow).where(MemoryRow.user_id == user_id, MemoryRow.id.in_([m.id for m in victims]))
            gone = set(s.scalars(doomed.returning(MemoryRow.id)))
            removed = [m for m in victims if m.id in gone]
            redact_traces(s, user_id, [m.text for m in removed])
        if removed:
            self.db.checkpoint()
        return removed

    def apply_command(
        self, user_id: str, text: str, *, source_session: str | None = None, source_turn: int | None = None
    ) -> list[MemoryDecision] | None:
        """Carry out an explicit "remember …"/"forget …" message; ``None`` if ``text`` is not one."""
        command = parse_command(text)
        if command is None:
            return None
        if command.action == "remember":
            return [self.add(user_id, command.fact, source_session, source_turn)]
        removed = self.forget(user_id, query=command.fact)
        if not removed:
            return [MemoryDecision("NOOP", command.fact, reason="no memory close enough to forget")]
        return [MemoryDecision("DELETE", command.fact, previous=m, reason="asked to forget") for m in removed]

    def set_source(
        self,
        user_id: str,
        ids: Sequence[int],
        *,
        source_session: str | None,
        source_turn: int | None,
        session: Session | None = None,
    ) -> int:
        """Record where the user's memories ``ids`` came from (a chat turn stores its question
        after a "remember …" command has written the fact), in ``session``'s transaction when
        given. Returns the rows changed."""
        if not ids:
            return 0
        with self.db.write(session) as s:
            changed = s.execute(
                update(MemoryRow)
                .where(MemoryRow.user_id == user_id, MemoryRow.id.in_(list(ids)))
                .values(source_session=source_session, source_turn=source_turn)
            )
        return int(getattr(changed, "rowcount", 0) or 0)

    # --- internals -----------------------------------------------------------------------------

    def _embed(self, texts: list[str]) -> list[np.ndarray]:
        """Facts, embedded as passages: unit rows, as stored."""
        return list(normalise(np.asarray(self.embeddings.embed_documents(texts))).astype("<f4", copy=False))

    def _embed_query(self, text: str) -> np.ndarray:
        """What facts are looked up by, embedded as a query: one unit vector."""
        vector: np.ndarray = normalise(np.asarray(self.embeddings.embed_query(text))).astype("<f4", copy=False)[0]
        return vector

    def _similar(
        self, user_id: str, vector: np.ndarray, k: int | None, *, min_score: float | None = None
    ) -> list[Memory]:
        with self.db.read() as s:
            rows = list(s.scalars(select(MemoryRow).where(MemoryRow.user_id == user_id).order_by(MemoryRow.id)))
        if not rows:
            return []
        rows = self._refresh(rows, vector.shape[0])
        matrix = np.stack([np.frombuffer(r.embedding, dtype="<f4") for r in rows])
        scores = matrix @ vector
        order = np.argsort(-scores, kind="stable")  # ties: older memory first
        out = [replace(_memory(rows[i]), score=float(scores[i])) for i in order]
        if min_score is not None:
            out = [m for m in out if (m.score or 0.0) >= min_score]
        return out if k is None else out[:k]

    def _refresh(self, rows: list[MemoryRow], dim: int) -> list[MemoryRow]:
        """Re-embed rows written by another embedder (or of another dimension), and store them."""
        stale = [r for r in rows if r.embed_model != self.model_id or len(r.embedding) != 4 * dim]
        if not stale:
            return rows
        vectors = self._embed([r.text for r in stale])
        with self.db.write() as s:
            for row, vec in zip(stale, vectors, strict=True):
                row.embedding, row.embed_model = vec.tobytes(), self.model_id
                s.execute(
                    update(MemoryRow)
                    .where(MemoryRow.id == row.id, MemoryRow.text == row.text)
                    .values(embedding=row.embedding, embed_model=self.model_id)
                )
        return rows

    def _plan(self, proposal: Proposal, text: str, vector: np.ndarray | None, candidates: Sequence[Memory]) -> _Plan:
        """Check a proposal against the candidates it was made from."""
        shown = {c.id for c in candidates}
        new_text = (proposal.text or text).strip()
        if new_text != text and proposal.action in ("ADD", "UPDATE"):
            vector = self._embed([new_text])[0]
        if proposal.action in ("UPDATE", "DELETE") and proposal.target not in shown:
            fallback: Action = "ADD" if proposal.action == "UPDATE" else "NOOP"
            return _Plan(fallback, new_text, vector, None, f"{proposal.action} of a memory not among the candidates")
        if proposal.action in ("ADD", "UPDATE") and not new_text:
            return _Plan("NOOP", text, None, None, "empty fact")
        target = proposal.target if proposal.target in shown else None
        return _Plan(proposal.action, new_text, vector, target, proposal.reason)

    def _apply(
        self, user_id: str, plans: list[_Plan], source_session: str | None, source_turn: int | None
    ) -> list[MemoryDecision]:
        decisions: list[MemoryDecision] = []
        now = time.time()
        with self.db.write() as s:
            for plan in plans:
                decisions.append(self._apply_one(s, user_id, plan, now, source_session, source_turn))
            deleted = [d.previous.text for d in decisions if d.action == "DELETE" and d.previous is not None]
            redact_traces(s, user_id, deleted)  # a DELETE forgets, as ``forget`` does
        if deleted:
            self.db.checkpoint()
        return decisions

    def _apply_one(
        self, s: Session, user_id: str, p: _Plan, now: float, source_session: str | None, source_turn: int | None
    ) -> MemoryDecision:
        old = None
        if p.target is not None:
            old = s.scalar(select(MemoryRow).where(MemoryRow.id == p.target, MemoryRow.user_id == user_id))
        previous = _memory(old) if old is not None else None
        action, reason = p.action, p.reason
        if action in ("UPDATE", "DELETE") and old is None:  # removed since it was shown
            action, reason = ("ADD" if action == "UPDATE" else "NOOP"), f"memory {p.target} is gone; {reason}"
        if action == "ADD":
            same = s.scalar(select(MemoryRow).where(MemoryRow.user_id == user_id, MemoryRow.text == p.text).limit(1))
            if same is not None:
                return MemoryDecision("NOOP", p.text, memory=_memory(same), reason="exact duplicate")
            assert p.vector is not None
            row = MemoryRow(
                user_id=user_id, text=p.text, embedding=p.vector.tobytes(), embed_model=self.model_id,
                created_at=now, updated_at=now, source_session=source_session, source_turn=source_turn,
            )  # fmt: skip
            s.add(row)
            s.flush()
            return MemoryDecision("ADD", p.text, memory=_memory(row), reason=reason)
        if action == "UPDATE" and old is not None:
            assert p.vector is not None
            old.text, old.embedding, old.embed_model, old.updated_at = p.text, p.vector.tobytes(), self.model_id, now
            old.source_session, old.source_turn = source_session, source_turn
            s.flush()
            return MemoryDecision("UPDATE", p.text, memory=_memory(old), previous=previous, reason=reason)
        if action == "DELETE" and old is not None:
            s.delete(old)
            s.flush()
            return MemoryDecision("DELETE", p.text, previous=previous, reason=reason)
        return MemoryDecision("NOOP", p.text, memory=previous, reason=reason)

    def __repr__(self) -> str:
        return f"LongTermMemory({self.db!r}, embedder={self.model_id!r})"


def _memory(row: MemoryRow) -> Memory:
    return Memory(row.id, row.text, row.created_at, row.updated_at, row.source_session, row.source_turn)
