"""Query hygiene: control characters and ANSI escapes out, and cut to what the embedder reads.

    text, warnings = clean_query(raw, max_chars=2000)
    text, more = fit_embedder(text, embedder)   # a no-op unless it is a TokenLimitedEmbedder

Pure functions, thread-safe. Each cut is logged on ``saem.retrieval`` and returned as a warning.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from saem.models.protocols import TokenLimitedEmbedder

__all__ = ["clean_query", "fit_embedder", "fit_tokens"]

logger = logging.getLogger("saem.retrieval")

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_query(
    query: str,
    max_chars: int,
    *,
    max_tokens: int | None = None,
    count_tokens: Callable[[str], int] | None = None,
) -> tuple[str, list[str]]:
    """``query`` without ANSI escapes / control characters, cut to ``max_chars``; plus warnings.

    With ``max_tokens`` and ``count_tokens`` (the embedder's limit and counter), a query still
    longer than ``max_tokens`` is cut further to the longest prefix that fits (see
    :func:`fit_tokens`). Raises ``ValueError`` for a non-string or a query that is blank after
    cleaning.
    """
    if not isinstance(query, str):
        raise ValueError(f"query must be a string, got {type(query).__name__}")
    warnings: list[str] = []
    text = _CONTROL.sub(" ", _ANSI.sub("", query)).strip()
    if not text:
        raise ValueError("the query is empty: ask a question with at least one word")
    if len(text) > max_chars:
        warnings.append(f"the query was {len(text)} characters; only the first {max_chars} were searched")
        logger.warning(warnings[-1])
        text = text[:max_chars]
    if max_tokens is not None and count_tokens is not None:
        text, more = fit_tokens(text, max_tokens, count_tokens)
        warnings.extend(more)
    return text, warnings


def fit_tokens(text: str, max_tokens: int, count_tokens: Callable[[str], int]) -> tuple[str, list[str]]:
    """``text``, or its longest prefix of at most ``max_tokens`` tokens by ``count_tokens``; plus a warning.

    A binary search on the number of characters (about log2(len) counts; one when it fits). At
    least one character is kept, so the query never becomes blank.
    """
    n = count_tokens(text)
    if n <= max_tokens:
        return text, []
    lo, hi = 1, len(text)  # text[:hi] does not fit; text[:lo] is kept even when it does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_tokens(text[:mid]) <= max_tokens:
            lo = mid
        else:
            hi = mid
    cut = text[:lo].rstrip() or text[:lo]
    warning = (
        f"the query was {n} tokens and the embedder reads {max_tokens}; "
        f"only the first {len(cut)} of its {len(text)} characters were searched"
    )
    logger.warning(warning)
    return cut, [warning]


def fit_embedder(text: str, embedder: object) -> tuple[str, list[str]]:
    """:func:`fit_tokens` with the limit and counter of a
    :class:`~saem.models.protocols.TokenLimitedEmbedder`; ``text`` unchanged for any other
    embedder, one without a limit (``max_seq_length`` None), or when they fail (a model that
    cannot load fails in ``embed_query`` next, with its own error; a counter that cannot count
    costs only the cut)."""
    if not isinstance(embedder, TokenLimitedEmbedder):
        return text, []
    try:
        limit = embedder.max_seq_length  # may load the model
        if limit is None or limit < 1:
            return text, []
        return fit_tokens(text, limit, embedder.tokenizer_count)
    except Exception as err:
        logger.debug("cannot fit the query to the embedder's token limit: %s", err)
        return text, []
