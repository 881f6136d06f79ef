"""Rerankers: a sentence-transformers CrossEncoder from a local folder or (opt-in) hub id."""

from __future__ import annotations

from typing import Any

from saem.errors import ModelError
from saem.models.registry import ResolvedModel

__all__ = ["load_cross_encoder"]


def load_cross_encoder(resolved: ResolvedModel) -> Any:
    """Load a ``sentence_transformers.CrossEncoder``; ModelError (with the path) if it fails."""
    if resolved.source == "none":
        raise ModelError("no reranker is configured", model=resolved.setting, hint="set rerank_model to a folder")
    from sentence_transformers import CrossEncoder

    target = str(resolved.path) if resolved.path is not None else resolved.hub_id
    try:
        return CrossEncoder(target, local_files_only=resolved.source != "hub")
    except Exception as err:  # sentence-transformers raises many kinds; all mean "cannot load"
        raise ModelError(
            f"cannot load cross-encoder {target}: {err}",
            model=resolved.setting,
            path=resolved.path,
            hint="give a sentence-transformers CrossEncoder folder, or rerank_model = 'none'",
        ) from err
