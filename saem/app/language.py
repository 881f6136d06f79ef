"""Is a text Korean or English? A Hangul-ratio heuristic, good enough for routing and checks.

    detect_language("top-p는 무엇을 조절하나요?")          # 'ko'
    detect_language("What does top-p control?")           # 'en'
    detect_language("42?")                                # None: too few letters to say
    language_matches("LoRA는 low-rank 행렬을 학습합니다", "ko")   # True (English terms are fine)

The share is ``2·H / (2·H + L)`` with ``H`` Hangul syllables/jamo and ``L`` Latin letters: one
Hangul syllable carries about as much as two or three Latin letters, so a Korean sentence full
of English technical terms still counts as Korean. Citation markers, URLs and code spans are
ignored. Pure function, no model.
"""

from __future__ import annotations

import re
from typing import Literal

from saem.text.markers import MARKER

__all__ = ["Language", "hangul_share", "detect_language", "language_matches", "MIN_LETTERS"]

Language = Literal["ko", "en"]

MIN_LETTERS = 8
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LATIN = re.compile(r"[A-Za-z]")
_NOISE = re.compile(rf"{MARKER.pattern}|https?://\S+|`[^`]*`")  # not language: markers, links, code


def _counts(text: str) -> tuple[int, int]:
    clean = _NOISE.sub(" ", text)
    return len(_HANGUL.findall(clean)), len(_LATIN.findall(clean))


def hangul_share(text: str) -> float | None:
    """``2H / (2H + L)`` (see the module docstring), or None when the text has no letters."""
    h, latin = _counts(text)
    if h + latin == 0:
        return None
    return 2 * h / (2 * h + latin)


def detect_language(text: str, *, default: Language | None = None) -> Language | None:
    """``"ko"`` when the Hangul share is at least 0.5, ``"en"`` below; ``default`` when the
    text has fewer than 2 Hangul syllables and fewer than ``MIN_LETTERS`` Latin letters."""
    h, latin = _counts(text)
    if h < 2 and latin < MIN_LETTERS:
        return default if h == 0 else "ko"
    return "ko" if 2 * h >= latin else "en"


def language_matches(answer: str, expected: Language) -> bool:
    """Whether ``answer`` is plausibly in ``expected``. Lenient on purpose (the retry costs a
    model call): a Korean answer needs a Hangul share ≥ 0.3, an English one ≤ 0.6; answers
    with too few letters to judge pass."""
    h, latin = _counts(answer)
    if 2 * h + latin < MIN_LETTERS * 2:
        return True
    share = 2 * h / (2 * h + latin)
    return share >= 0.3 if expected == "ko" else share <= 0.6
