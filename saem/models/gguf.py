"""Read what a GGUF file says about itself, without loading its weights.

    >>> from saem.models.registry import resolve
    >>> from saem.models.gguf import inspect_gguf
    >>> info = inspect_gguf(resolve("packaged:smollm2", "chat"))
    >>> info.architecture, info.has_chat_template
    ('llama', True)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from saem.errors import ModelError
from saem.models.registry import ResolvedModel

__all__ = ["GGUFInfo", "inspect_gguf"]


@dataclass(frozen=True)
class GGUFInfo:
    """Metadata of a GGUF model: enough to decide how to render prompts and budget tokens."""

    path: str
    name: str
    architecture: str
    context_length: int | None
    chat_template: str | None
    n_vocab: int

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template)

    def summary(self) -> str:
        template = "chat template" if self.has_chat_template else "NO chat template"
        ctx = f"trained n_ctx {self.context_length}" if self.context_length else "n_ctx unknown"
        return f"{self.architecture}, {ctx}, vocab {self.n_vocab}, {template}"


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:  # llama.cpp writes its load log straight to fd 2
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def inspect_gguf(resolved: ResolvedModel) -> GGUFInfo:
    """Open the GGUF's vocabulary and metadata only (fast); raise ModelError if unreadable."""
    if resolved.path is None:
        raise ModelError(
            f"chat model {resolved.setting!r} has no local file",
            model=resolved.setting,
            hint="download the .gguf and set chat_model to its path",
        )
    try:
        import llama_cpp
    except ImportError as err:  # pragma: no cover - install problem
        raise ModelError("llama-cpp-python is not installed", hint="pip install llama-cpp-python") from err
    try:
        with _quiet_stderr():
            llm = llama_cpp.Llama(model_path=str(resolved.path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError, OSError) as err:
        raise ModelError(
            f"llama.cpp could not open {resolved.path}: {err}",
            model=resolved.setting,
            path=resolved.path,
            hint="the file may be truncated or from a newer llama.cpp; re-download it or pick another GGUF",
        ) from err
    try:
        meta = dict(llm.metadata)
        arch = meta.get("general.architecture", "?")
        ctx = meta.get(f"{arch}.context_length")
        return GGUFInfo(
            path=str(resolved.path),
            name=meta.get("general.name", resolved.path.name),
            architecture=arch,
            context_length=int(ctx) if ctx else None,
            chat_template=meta.get("tokenizer.chat_template"),
            n_vocab=llm.n_vocab(),
        )
    finally:
        llm.close()
