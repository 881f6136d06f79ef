"""Prompt templates: Jinja files under ``saem/prompts``, overridable from a folder, sandboxed.

    prompts = PromptTemplates(override_dir=None)           # or settings' ``prompts_dir``
    prompts.render("system", "ko", memories=["…"], summary=[], tools=[])
    prompts.render("answer", "en", documents=[...], question="What is top-p?", retry=False)
    prompts.message("abstain", "ko", reason="…")            # a macro of messages.<lang>.jinja

Files are named ``<name>.<lang>.jinja`` (``system``, ``answer``, ``condense``, ``messages``; ``lang``
is ``ko`` or ``en``). A file of the same name in ``override_dir`` wins over the packaged one; a
missing language falls back to ``en``.

Contract:

* Templates render in ``jinja2.sandbox.ImmutableSandboxedEnvironment`` with ``StrictUndefined``
  (a misspelt variable is an error, not an empty string). Errors are ``ConfigError`` naming the
  file.
* Data is passed as *variables*, never spliced into template source, so ``{{ 7*7 }}`` or
  ``{% ... %}`` inside a document or question comes out literally: Jinja does not evaluate the
  values it prints.
* :func:`neutralise` defuses our data delimiters (``<documents>``, ``<document …>``,
  ``<memories>``, ``<summary>``, ``<tools>``) inside data, so a document cannot close its block
  and pose as instructions; the context builder applies it to every piece of data.
* Rendering is deterministic (same inputs, same bytes), which keeps the model's KV-cache
  prefix reusable across turns. Thread-safe: compiled templates are cached and immutable.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, TemplateNotFound
from jinja2.sandbox import ImmutableSandboxedEnvironment

from saem.errors import ConfigError
from saem.settings import Settings

__all__ = ["PromptTemplates", "PACKAGE_PROMPTS", "neutralise"]

PACKAGE_PROMPTS = Path(__file__).resolve().parent.parent / "prompts"
_DELIMITER = re.compile(r"<(\s*/?\s*)(documents?|memories|summary|tools)\b", re.IGNORECASE)


def neutralise(text: str) -> str:
    """``text`` with our block delimiters defused (``<documents>`` → ``‹documents>``)."""
    return _DELIMITER.sub(lambda m: "‹" + m.group(1) + m.group(2), text)


class PromptTemplates:
    """Loads and renders the prompt templates (see the module docstring)."""

    def __init__(self, override_dir: str | Path | None = None) -> None:
        self.override_dir = Path(override_dir).expanduser() if override_dir else None
        if self.override_dir is not None and not self.override_dir.is_dir():
            raise ConfigError(
                f"prompts_dir {self.override_dir} is not a folder", key="prompts_dir", hint="point it at a folder"
            )
        search = [str(self.override_dir)] if self.override_dir is not None else []
        self.env = ImmutableSandboxedEnvironment(
            loader=FileSystemLoader([*search, str(PACKAGE_PROMPTS)], encoding="utf-8"),
            undefined=StrictUndefined,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self.env.filters["data"] = neutralise
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> PromptTemplates:
        return cls(settings.prompts_dir)

    def file_name(self, name: str, language: str) -> str:
        """The template file used for ``name`` in ``language`` (falls back to English)."""
        wanted = f"{name}.{language}.jinja"
        for root in ([self.override_dir] if self.override_dir else []) + [PACKAGE_PROMPTS]:
            if (root / wanted).is_file():
                return wanted
        return f"{name}.en.jinja"

    def _template(self, name: str, language: str) -> Any:
        file = self.file_name(name, language)
        try:
            with self._lock:  # the loader's cache is shared
                return self.env.get_template(file)
        except TemplateNotFound as err:
            raise ConfigError(f"prompt template {file} not found", key="prompts_dir") from err
        except TemplateError as err:
            raise ConfigError(f"prompt template {file} does not compile: {err}", key="prompts_dir") from err

    def render(self, name: str, language: str, **variables: Any) -> str:
        """Render ``<name>.<language>.jinja`` with ``variables``; surrounding whitespace stripped."""
        template = self._template(name, language)
        try:
            return str(template.render(**variables)).strip()
        except TemplateError as err:
            raise ConfigError(
                f"prompt template {self.file_name(name, language)} failed: {err}", key="prompts_dir"
            ) from err

    def message(self, macro: str, language: str, *args: Any, **kwargs: Any) -> str:
        """Call macro ``macro`` of ``messages.<language>.jinja`` (user-facing fixed texts)."""
        template = self._template("messages", language)
        try:
            fn = getattr(template.module, macro)
            return str(fn(*args, **kwargs)).strip()
        except (AttributeError, TemplateError) as err:
            raise ConfigError(
                f"message {macro!r} failed in {self.file_name('messages', language)}: {err}", key="prompts_dir"
            ) from err

    def source(self, name: str, language: str) -> str:
        """The template's source text (for ``/prompt``-style display)."""
        file = self.file_name(name, language)
        for root in ([self.override_dir] if self.override_dir else []) + [PACKAGE_PROMPTS]:
            if (root / file).is_file():
                return (root / file).read_text(encoding="utf-8")
        raise ConfigError(f"prompt template {file} not found", key="prompts_dir")
