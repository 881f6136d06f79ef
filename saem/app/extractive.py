"""Answers that need no generation: the best supporting sentences of the retrieved chunks.

``extractive_answer`` splits each retrieved chunk into sentences (Korean-aware), scores every
sentence against the question — cosine similarity from the embedder blended with lexical
overlap of content tokens — drops near-duplicates, keeps the best within a length budget, and
returns them in document order, each followed by its citation ``[n]`` (``n`` = the chunk's
1-based position in ``documents``). The words are the documents' own.

``check_generated`` is the gate of the hybrid answer mode: it says why a generated answer
should not be shown (wrong language; too few of its content words found in the cited chunks),
so the caller can fall back to the extractive answer and record the reason.

    >>> from langchain_core.documents import Document
    >>> docs = [Document("Greedy decoding picks the top token. Top-p is also called nucleus sampling.")]
    >>> extractive_answer("What is top-p also called?", docs, max_sentences=1).text
    'Top-p is also called nucleus sampling. [1]'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from saem.ingest.sentences import split_sentences
from saem.retrieval.analyzer import analyze

__all__ = ["Extract", "ExtractiveAnswer", "extractive_answer", "content_tokens", "check_generated"]

# Function words that carry no content (English; Korean particles are already dropped by
# the morphological analyzer, which keeps only content tags).
_STOP = frozenset(
    "a an the of to in on at by for with from as is are was were be been being do does did what which who "
    "whom whose when where why how that this these those it its and or but not no if then than so such can "
    "could should would will shall may might must i you he she we they me my your our their there here about "
    "into over under up down out also just only very more most much many some any each every".split()
)
_CITATION = re.compile(r"\s*\[\d+\]")


def content_tokens(text: str) -> list[str]:
    """Analyzer tokens of ``text`` without function words (Korean morphemes, English words)."""
    return [t for t in analyze(text) if t not in _STOP]


@dataclass(frozen=True)
class Extract:
    """One selected sentence: ``documents[source - 1].page_content[start:end]``."""

    text: str
    source: int  # 1-based citation number
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class ExtractiveAnswer:
    """The answer text (sentences with [n] markers) and the sentences it is made of."""

    text: str
    extracts: list[Extract] = field(default_factory=list)

    @property
    def cited(self) -> list[int]:
        """Citation numbers used, in order of first use."""
        return list(dict.fromkeys(e.source for e in self.extracts))


def _overlap(question: set[str], sentence: list[str]) -> float:
    if not question or not sentence:
        return 0.0
    return len(question & set(sentence)) / len(question)


def _near_duplicate(a: list[str], b: list[str]) -> bool:
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return False
    return len(sa & sb) / len(sa | sb) >= 0.8


def extractive_answer(
    question: str,
    documents: Sequence[Document],
    *,
    embeddings: Embeddings | None = None,
    max_sentences: int = 3,
    max_chars: int = 600,
    lexical_weight: float = 0.5,
    min_score: float = 0.05,
) -> ExtractiveAnswer:
    """Build an answer from the retrieved ``documents``' own sentences (see module docstring).

    Deterministic for a deterministic embedder. Returns an empty answer (``text == ""``) when
    no sentence scores at least ``min_score``. ``embeddings=None`` scores lexically only.
    One embedding call for the question and one batched call for all sentences.
    """
    candidates: list[tuple[int, int, int, str]] = []  # (doc index, start, end, text)
    for d, doc in enumerate(documents):
        text = doc.page_content
        for start, end in split_sentences(text):
            sentence = text[start:end]
            if len(sentence) >= 8 and not sentence.lstrip().startswith("#"):  # skip stubs and headings
                candidates.append((d, start, end, sentence))
    if not candidates:
        return ExtractiveAnswer("")

    q_tokens = set(content_tokens(question))
    s_tokens = [content_tokens(c[3]) for c in candidates]
    lexical = np.array([_overlap(q_tokens, toks) for toks in s_tokens])
    if embeddings is not None:
        q = np.asarray(embeddings.embed_query(question), dtype=np.float32)
        s = np.asarray(embeddings.embed_documents([c[3] for c in candidates]), dtype=np.float32)
        norms = np.linalg.norm(s, axis=1) * (np.linalg.norm(q) or 1.0)
        dense = (s @ q) / np.where(norms == 0, 1.0, norms)
        scores = lexical_weight * lexical + (1.0 - lexical_weight) * dense
    else:
        scores = lexical
    # earlier-ranked chunks win ties: a tiny prior by retrieval rank
    scores = scores - 1e-3 * np.array([c[0] for c in candidates])

    chosen: list[int] = []
    used_chars = 0
    for i in np.argsort(-scores, kind="stable"):
        if len(chosen) >= max_sentences or scores[i] < min_score:
            break
        if any(_near_duplicate(s_tokens[i], s_tokens[j]) for j in chosen):
            continue
        length = len(candidates[i][3])
        if chosen and used_chars + length > max_chars:
            continue
        chosen.append(int(i))
        used_chars += length
    if not chosen:
        return ExtractiveAnswer("")

    chosen.sort(key=lambda i: (candidates[i][0], candidates[i][1]))  # document order
    extracts = [
        Extract(text=candidates[i][3], source=candidates[i][0] + 1, start=candidates[i][1], end=candidates[i][2],
                score=float(scores[i]))
        for i in chosen
    ]
    text = " ".join(f"{e.text} [{e.source}]" for e in extracts)
    return ExtractiveAnswer(text, extracts)


def check_generated(
    answer: str,
    *,
    question_language: str,
    answer_language: str,
    cited_texts: Sequence[str],
    min_support: float = 0.6,
) -> list[str]:
    """Reasons a generated answer fails the hybrid gate; an empty list means it passes.

    Checks: the answer is in the question's language; at least ``min_support`` of its content
    tokens occur in the cited chunks (or, with no citations, it fails: nothing supports it).
    """
    reasons: list[str] = []
    if not answer.strip():
        return ["the model returned an empty answer"]
    if answer_language != question_language:
        reasons.append(f"answer is in {answer_language!r}, the question in {question_language!r}")
    tokens = content_tokens(_CITATION.sub("", answer))
    if not cited_texts:
        reasons.append("the answer cites no retrieved chunk")
    elif tokens:
        support = set(t for text in cited_texts for t in content_tokens(text))
        share = sum(t in support for t in tokens) / len(tokens)
        if share < min_support:
            reasons.append(f"only {share:.0%} of its content words appear in the cited chunks (< {min_support:.0%})")
    return reasons
