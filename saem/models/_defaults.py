"""Defaults the models share with :class:`saem.settings.Settings`, read from it so each is written once.

A model built without settings (``LlamaCppChatModel(temperature=0)``) gets the same values a
default ``Settings`` would give it; change a default in ``saem/settings.py`` and both follow.
"""

from __future__ import annotations

from typing import Any

from saem.settings import Settings

__all__ = ["setting_default"]


def setting_default(name: str) -> Any:
    """The default of setting ``name``. ``KeyError`` for a name ``Settings`` does not have."""
    return Settings.model_fields[name].default
