"""Training material for the LoRA arm, made from chunks, and a guard against eval leakage.

``build_training_material(chunks)`` returns, in a fixed order:

* ``chunk`` — each chunk text itself;
* ``statement`` — every sentence of a chunk (a "fact", split by saem's Korean-aware sentence
  splitter) restated in ``variations`` templates ("According to the documents, …",
  "문서에 따르면, …");
* ``question`` — a template question about the sentence's topic (the words before
  ``is/are/was``, or the first eojeol with a topic particle ``은/는``), answered by the sentence;
* ``cloze`` — the sentence with a key term blanked (numbers first, then Latin terms or capitalised
  words, then the longest word with its particle stripped), answered by the term; one item per
  term, up to ``variations`` terms.

Everything is rule-based and deterministic: the same chunks give the same items, in the same
order (template rotation is keyed by a blake2b hash of the sentence, not Python's salted
``hash``). Korean particles agree with the topic (``LoRA란``, ``모델이란``).

``check_leakage(train_texts, eval_questions)`` refuses (``LeakageError``) any eval question that
occurs in the training material — exactly, or nearly (≥ 90 % of its 12-character shingles) —
after normalising both sides (NFKC, case-folded, only letters and digits kept); it returns a
``LeakageReport`` saying how it checked.

    >>> items = build_training_material(["LoRA는 저랭크 행렬로 모델을 미세 조정하는 기법이다."])
    >>> sorted({item.kind for item in items})
    ['chunk', 'cloze', 'question', 'statement']
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from saem.errors import SaemError
from saem.evaluation.lora import TrainExample
from saem.text.sentences import split_sentences

__all__ = [
    "Leak",
    "LeakageError",
    "LeakageReport",
    "TrainingItem",
    "as_examples",
    "build_training_material",
    "check_leakage",
    "cloze_terms",
    "language",
]

Kind = Literal["chunk", "statement", "question", "cloze"]
Lang = Literal["ko", "en"]


@dataclass(frozen=True)
class TrainingItem:
    """``text`` is the raw text (chunk, statement) or the question; ``answer`` is "" for raw text."""

    kind: Kind
    text: str
    answer: str
    lang: Lang
    chunk: int


_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LATIN = re.compile(r"[A-Za-z]")

_STATEMENTS: dict[Lang, tuple[str, ...]] = {
    "en": (
        "According to the documents, {s}",
        "Fact: {s}",
        "The documents state the following. {s}",
        "Remember this: {s}",
        "Here is what the source says: {s}",
    ),
    "ko": (
        "문서에 따르면, {s}",
        "사실: {s}",
        "문서에는 다음과 같이 적혀 있다. {s}",
        "기억할 내용: {s}",
        "자료의 설명은 이렇다: {s}",
    ),
}
_QUESTIONS: dict[Lang, tuple[str, ...]] = {
    "en": ("What do the documents say about {t}?", "Tell me about {t}.", "What is known about {t}?"),
    "ko": ("{t}{eun} 무엇인가요?", "{t}에 대해 문서에는 어떻게 설명되어 있나요?", "{t}에 대해 알려 주세요."),
}
_CLOZES: dict[Lang, tuple[str, ...]] = {
    "en": (
        "Fill in the blank: {c}",
        "What goes in the blank? {c}",
        "{c}\nWhich word or number completes the sentence?",
    ),
    "ko": ("빈칸에 들어갈 말은 무엇인가요? {c}", "다음 문장의 빈칸을 채우세요: {c}", "{c}\n빈칸에 알맞은 말은?"),
}
_BLANK = "____"

_EN_TOPIC = re.compile(r"^((?:[\w()'’-]+\s){0,7}?[\w()'’-]+)\s+(?:is|are|was|were|has|have|uses|use)\s", re.I)
_KO_TOPIC = re.compile(r"^(.{1,40}?)(?:은|는)\s")
_NUMBER = re.compile(r"\d[\d,.]*\d%?|\d%?")
_LATIN_TERM = re.compile(r"[A-Za-z][A-Za-z0-9+#.-]*[A-Za-z0-9+#]|[A-Z]")
_CAPITALISED = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][A-Za-z0-9-]+(?:\s[A-Z][A-Za-z0-9-]+)*")
_PARTICLES = sorted(
    "은 는 이 가 을 를 의 에 에서 으로 로 와 과 도 만 에게 까지 부터 "
    "이다 입니다 이며 이고 에는 에서는 으로는 라는 이라는".split(),
    key=len,
    reverse=True,
)
_VERBISH = ("하", "되", "있", "없", "한", "된", "했", "됐", "다", "요")  # predicates, not terms
_LOWER_FIRST = frozenset("the a an this that these those it in on at for each every most many some".split())
_EN_STOP = frozenset(
    "about after also because before being between could during other their there these those which while would".split()
)


def language(text: str) -> Lang:
    """Return "ko" when Hangul letters outnumber a third of the Latin ones, else "en"."""
    return "ko" if len(_HANGUL.findall(text)) * 3 >= len(_LATIN.findall(text)) and _HANGUL.search(text) else "en"


def _key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest(), "big")


def _rotate(templates: Sequence[str], text: str, n: int) -> list[str]:
    start = _key(text) % len(templates)
    return [templates[(start + i) % len(templates)] for i in range(min(n, len(templates)))]


def _has_final(syllable: str) -> bool:
    """Whether a Hangul syllable ends in a consonant (받침); digits and Latin read as no."""
    return "\uac00" <= syllable <= "\ud7a3" and (ord(syllable) - 0xAC00) % 28 != 0


def _strip_particle(word: str) -> str:
    word = word.strip(".,!?;:\"'()[]「」『』")
    for particle in _PARTICLES:
        if word.endswith(particle) and len(word) - len(particle) >= 2:
            return word[: -len(particle)]
    return word


def cloze_terms(sentence: str, lang: Lang, limit: int = 3) -> list[str]:
    """Up to ``limit`` distinct key terms of a sentence, best first (see the module docstring)."""
    found: list[str] = []
    found += _NUMBER.findall(sentence)
    found += _LATIN_TERM.findall(sentence) if lang == "ko" else _CAPITALISED.findall(sentence)
    if lang == "ko":
        words = [_strip_particle(w) for w in sentence.split() if _HANGUL.search(w)]
        nouns = (w for w in words if len(w) >= 2 and not _LATIN.search(w) and not w.endswith(_VERBISH))
        found += sorted(nouns, key=len, reverse=True)
    else:
        words = [w.strip(".,!?;:\"'()") for w in sentence.split()]
        found += sorted(
            (w for w in words if len(w) >= 6 and w.isalpha() and w.lower() not in _EN_STOP), key=len, reverse=True
        )
    out: list[str] = []
    for term in found:
        if term and term not in out and sentence.count(term) == 1:
            out.append(term)
        if len(out) == limit:
            break
    return out


def _topic(sentence: str, lang: Lang) -> str | None:
    match = (_KO_TOPIC if lang == "ko" else _EN_TOPIC).match(sentence)
    if match is None:
        return None
    topic = match.group(1).strip()
    if lang == "en" and topic.split()[0].lower() in {"it", "this", "that", "they", "there", "these"}:
        return None
    return topic


def _facts(chunk: str, min_chars: int, max_chars: int) -> Iterable[str]:
    for start, end in split_sentences(chunk):
        sentence = re.sub(r"\s+", " ", chunk[start:end]).strip()
        if min_chars <= len(sentence) <= max_chars:
            yield sentence


def build_training_material(
    chunks: Sequence[str],
    *,
    variations: int = 3,
    include_chunks: bool = True,
    min_chars: int = 20,
    max_chars: int = 300,
) -> list[TrainingItem]:
    """Deterministic training items for ``chunks`` (see the module docstring).

    Per chunk: the chunk, then per sentence ``variations`` statements, up to ``variations``
    template questions (when a topic is found) and up to ``variations`` cloze items.
    Sentences shorter than ``min_chars`` or longer than ``max_chars`` are skipped.
    """
    if variations < 1:
        raise ValueError("variations must be at least 1")
    items: list[TrainingItem] = []
    for index, chunk in enumerate(chunks):
        if include_chunks and chunk.strip():
            items.append(TrainingItem("chunk", chunk.strip(), "", language(chunk), index))
        for sentence in _facts(chunk, min_chars, max_chars):
            lang = language(sentence)
            for template in _rotate(_STATEMENTS[lang], sentence, variations):
                lower = template.startswith("According") and sentence.split()[0].lower() in _LOWER_FIRST
                body = sentence[0].lower() + sentence[1:] if lower else sentence
                items.append(TrainingItem("statement", template.format(s=body), "", lang, index))
            topic = _topic(sentence, lang)
            if topic is not None:
                eun = "은" if _has_final(topic[-1]) else "는"
                for template in _rotate(_QUESTIONS[lang], sentence, variations):
                    items.append(TrainingItem("question", template.format(t=topic, eun=eun), sentence, lang, index))
            terms = cloze_terms(sentence, lang, variations)
            for term, template in zip(terms, _rotate(_CLOZES[lang], sentence + "#cloze", len(terms)), strict=False):
                cloze = sentence.replace(term, _BLANK, 1)
                items.append(TrainingItem("cloze", template.format(c=cloze), term, lang, index))
    return items


def as_examples(items: Iterable[TrainingItem], chat: Callable[[str, str], TrainExample]) -> list[TrainExample]:
    """Raw items → ``TrainExample("", text)``; QA items → ``chat(question, answer)``
    (e.g. ``BaseModel.chat_example``, so questions use the model's chat template)."""
    return [TrainExample("", item.text) if not item.answer else chat(item.text, item.answer) for item in items]


# --- leakage ---------------------------------------------------------------------------------

NORMALISATION = "NFKC, case-folded, only Unicode letters and digits kept (spaces and punctuation removed)"


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


@dataclass(frozen=True)
class Leak:
    question_index: int
    question: str
    kind: Literal["exact", "near"]
    overlap: float
    train_index: int | None


@dataclass
class LeakageReport:
    """How the guard checked, and what it found (``ok`` = nothing)."""

    train_texts: int
    questions: int
    normalisation: str
    exact_rule: str
    near_rule: str
    leaks: list[Leak] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.leaks


class LeakageError(SaemError):
    """Eval questions occur in the training material; ``report`` lists them."""

    def __init__(self, report: LeakageReport) -> None:
        shown = "; ".join(repr(leak.question[:60]) for leak in report.leaks[:3])
        super().__init__(
            f"{len(report.leaks)} eval question(s) occur in the training material: {shown}",
            hint="build training material from the documents only, never from the QA set",
        )
        self.report = report


def check_leakage(
    train_texts: Iterable[str],
    eval_questions: Sequence[str],
    *,
    shingle: int = 12,
    near: float = 0.9,
    raise_on_leak: bool = True,
) -> LeakageReport:
    """Check every eval question against all training texts; raise ``LeakageError`` on a leak.

    Exact: the normalised question is a substring of a normalised training text. Near: at least
    ``near`` of the question's ``shingle``-character pieces occur anywhere in the training texts
    (questions shorter than ``shingle`` get the exact check only). ``raise_on_leak=False``
    returns the report with the leaks instead. Linear in the training material's size.
    """
    texts = [_norm(t) for t in train_texts]
    joined = "\x00".join(texts)
    shingles = {text[i : i + shingle] for text in texts for i in range(len(text) - shingle + 1)}
    report = LeakageReport(
        train_texts=len(texts),
        questions=len(eval_questions),
        normalisation=NORMALISATION,
        exact_rule="normalised question is a substring of a normalised training text",
        near_rule=f">= {near:.0%} of the question's {shingle}-character shingles occur in the training texts",
    )
    for index, question in enumerate(eval_questions):
        q = _norm(question)
        if not q:
            continue
        if q in joined:
            where = next(i for i, text in enumerate(texts) if q in text)
            report.leaks.append(Leak(index, question, "exact", 1.0, where))
            continue
        pieces = [q[i : i + shingle] for i in range(len(q) - shingle + 1)]
        if pieces:
            overlap = sum(piece in shingles for piece in pieces) / len(pieces)
            if overlap >= near:
                report.leaks.append(Leak(index, question, "near", overlap, None))
    if report.leaks and raise_on_leak:
        raise LeakageError(report)
    return report
