"""``Saem``: the one object an application holds.

    from saem import Saem
    app = Saem(data_dir="./.saem", n_threads=2)   # cheap: nothing is loaded yet
    app.check_models()                            # resolve and load each model, report status

Construction is cheap; models load lazily, once, when first needed. Every component receives
``app.settings`` explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from saem.models.check import ModelStatus, check_models
from saem.settings import Settings

__all__ = ["Saem"]


class Saem:
    """Facade over ingestion, retrieval, memory and the chat chain for one data dir.

    Thread-safety: one ``Saem`` may be shared by threads; model access is serialised inside
    the model wrappers.
    """

    def __init__(self, settings: Settings | None = None, *, config_file: str | Path | None = None, **overrides: Any):
        if settings is not None and (overrides or config_file):
            settings = settings.with_overrides(**overrides)
        self.settings = settings if settings is not None else Settings.load(overrides, config_file=config_file)

    def __repr__(self) -> str:
        return f"Saem(data_dir={str(self.settings.data_dir)!r})"

    def check_models(self, *, load: bool = True) -> list[ModelStatus]:
        """Resolve (and load) the configured models; see ``saem models``."""
        return check_models(self.settings, load=load)
