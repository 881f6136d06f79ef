"""Lazy public names for a package's ``__init__`` (PEP 562): the rule every face uses.

    _LAZY = {"LlamaCppChatModel": "saem.models.llamacpp"}

    def __getattr__(name: str) -> Any:
        return lazy_attribute(__name__, _LAZY, name)

So ``import saem.models`` stays cheap: torch, faiss and llama.cpp load only when a name that
needs them is first used. The value is then cached in the package, so the lookup runs once.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["lazy_attribute"]


def lazy_attribute(package: str, names: Mapping[str, str], name: str) -> Any:
    """``name`` from the module ``names[name]``, cached in ``package``; ``AttributeError`` for a
    name ``names`` does not list (as for any missing module attribute)."""
    module = names.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    setattr(sys.modules[package], name, value)
    return value
