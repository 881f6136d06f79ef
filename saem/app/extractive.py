"""Answers that need no generation: the best supporting sentences of the retrieved chunks.

``extractive_answer`` splits each retrieved chunk into sentences (Korean-aware), scores every
sentence against the question — cosine similarity from the embedder blended with lexical
overlap of content tokens, plus a bonus when the sentence has the form the question asks for
(:func:`question_form`: a definition for ``X란 무엇인가요`` / ``what is X``, a number for ``몇`` /
``how many``, a menu path for ``어디`` / ``where``) — drops near-duplicates, keeps the best within
a length budget, and returns them in document order, each followed by its citation ``[n]``
(``n`` = the chunk's 1-based position in ``documents``). The words are the documents' own.

Only sentences are quoted: a heading of the chunk (its ``heading`` metadata, ``a › b``), or a
short line without a sentence's closing punctuation (a caption, a list label such as ``최근 대화
기록: 2,000 토큰``), is never an answer on its own.

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

from saem.text.analyzer import analyze
from saem.text.markers import strip_markers
from saem.text.sentences import split_sentences

__all__ = [
    "Extract",
    "ExtractiveAnswer",
    "extractive_answer",
    "content_tokens",
    "check_generated",
    "is_sentence",
    "question_form",
]

# Function words that carry no content (English; Korean particles are already dropped by
# the morphological analyzer, which keeps only content tags).
_STOP = frozenset(
    "a an the of to in on at by for with from as is are was were be been being do does did what which who "
    "whom whose when where why how that this these those it its and or but not no if then than so such can "
    "could should would will shall may might must i you he she we they me my your our their there here about "
    "into over under up down out also just only very more most much many some any each every".split()
)
_STOP_TOKENS = frozenset(analyze(" ".join(sorted(_STOP))))  # as the analyzer writes them (stemmed)
# how a sentence ends: . ! ? … and their full-width forms, possibly inside closing quotes/brackets
_SENTENCE_END = re.compile(r"[.!?…。！？](?:[\"'”’)\]]*)\s*$")
_MIN_FRAGMENT_WORDS = 6  # a line with fewer words and no closing punctuation is a label, not a sentence
_WS = re.compile(r"\s+")

# question forms and what an answering sentence then holds
_DEFINITION_Q = re.compile(
    r"(?:이란|란|은|는)\s*(?:무엇|뭔가|뭐)|무슨 뜻|의미는|^\s*what\s+(?:is|are)\b|\bwhat does .+ mean\b|\bdefin", re.I
)
_DEFINITION_S = re.compile(
    r"(?:이란|란|은|는)\s.*(?:입니다|이다|말합니다|뜻합니다|의미합니다)|\b(?:is|are|means|refers to)\b", re.I
)
_NUMBER_Q = re.compile(r"몇|얼마|how (?:many|much|long|big)|what (?:size|number|percentage)", re.I)
_NUMBER_S = re.compile(r"\d")
_PLACE_Q = re.compile(r"어디|어느 메뉴|어떤 메뉴|\bwhere\b|which menu", re.I)
_PLACE_S = re.compile(r"→|›|->|>|메뉴|\bmenu\b|대화\s*상자|\bdialog\b", re.I)
_FORMS = {"definition": (_DEFINITION_Q, _DEFINITION_S), "number": (_NUMBER_Q, _NUMBER_S), "place": (_PLACE_Q, _PLACE_S)}
FORM_BONUS = 0.1
"""Added to the score of a sentence that has the question's form (on the 0..1 relevance scale)."""


def content_tokens(text: str) -> list[str]:
    """Analyzer tokens of ``text`` without function words (Korean morphemes, English words)."""
    return [t for t in analyze(text) if t not in _STOP_TOKENS]


def question_form(question: str) -> str | None:
    """``"definition"``, ``"number"`` or ``"place"`` when the question asks for one, else None."""
    for form, (asks, _) in _FORMS.items():
        if asks.search(question):
            return form
    return None


def is_sentence(text: str, headings: Sequence[str] = ()) -> bool:
    """Whether ``text`` can be quoted as an answer: not one of ``headings``, not a Markdown
    heading, and either closed by sentence punctuation or at least ``_MIN_FRAGMENT_WORDS`` words."""
    flat = _WS.sub(" ", text).strip()
    if len(flat) < 8 or flat.startswith("#"):
        return False
    if any(flat.casefold() == _WS.sub(" ", h).strip().casefold() for h in headings):
        return False
    return bool(_SENTENCE_END.search(flat)) or len(flat.split()) >= _MIN_FRAGMENT_WORDS


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
        headings = [h for h in str(doc.metadata.get("heading") or "").split(" › ") if h]
        for start, end in split_sentences(text):
            sentence = text[start:end]
            if is_sentence(sentence, headings):
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
    form = question_form(question)
    if form is not None:
        has_form = _FORMS[form][1]
        scores = scores + FORM_BONUS * np.array([bool(has_form.search(c[3])) for c in candidates])
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
        Extract(
            text=candidates[i][3],
            source=candidates[i][0] + 1,
            start=candidates[i][1],
            end=candidates[i][2],
            score=float(scores[i]),
        )
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
    tokens = content_tokens(strip_markers(answer))
    if not cited_texts:
        reasons.append("the answer cites no retrieved chunk")
    elif tokens:
        support = set(t for text in cited_texts for t in content_tokens(text))
        share = sum(t in support for t in tokens) / len(tokens)
        if share < min_support:
            reasons.append(f"only {share:.0%} of its content words appear in the cited chunks (< {min_support:.0%})")
    return reasons
