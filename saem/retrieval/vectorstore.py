"""``FaissVectorStore``: a LangChain ``VectorStore`` with SQLite as the truth and FAISS as a cache.

Layout of a store folder (names differ from an ingest data dir's, so the two never clobber):

* ``vectorstore.db`` — SQLite (WAL, ``BEGIN IMMEDIATE`` writers, via ``saem.ingest.Catalogue``):
  ``documents`` (string ``id``, int64 ``row_id`` = FAISS id, never reused; ``text``; ``metadata``
  JSON; ``embedding`` float32 blob, L2-normalised; ``embed_model``) and ``meta`` (``embed_model``,
  ``dim``, ``generation`` bumped by every write, ``schema``);
* ``vectorstore.faiss`` + ``vectorstore.json`` — ``IndexIDMap2(IndexFlatIP)`` and its sidecar
  ``{count, model, dim, generation}``, written by ``faiss.write_index`` to a temp file and
  ``os.replace``-d, while the SQLite write lock is held (so two processes never interleave them).

The in-memory index is (re)loaded whenever SQLite's ``generation`` differs from the one it was
built at: from the file when the sidecar, ``ntotal`` and dimension agree with SQLite, else rebuilt
from the stored embeddings. So a deleted, truncated or stale FAISS file heals itself, and writes
made by another handle or process are seen by the next search. No pickle anywhere.

Filters (keyword ``filter=``, ANDed across keys): ``{"k": v}``, ``{"k": {"$eq": v}}``,
``{"k": {"$in": [v, ...]}}``, ``{"k": {"$glob": "docs/*.md"}}`` (SQLite GLOB: case-sensitive, and
``*`` also matches ``/``). Keys are identifiers, dotted for nesting (``a.b``); anything else is a
``ValueError``. They run in SQL as ``json_extract(metadata, ?)`` with bound parameters, and FAISS
then searches only the selected ids (``IDSelectorBatch``), so ``k`` hits come back whenever ``k``
documents match.
"""

from __future__ import annotations

import json
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Self

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance
from sqlalchemy import ColumnElement, LargeBinary, String, delete, func, insert, select
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from saem.errors import IndexCorrupt, ModelError
from saem.models.embedders import embedder_id
from saem.store import filters
from saem.store.catalogue import Base as CatalogueBase
from saem.store.catalogue import Catalogue, bump_generation, get_meta, set_meta
from saem.store.index import IndexMeta, VectorIndex, atomic_write, normalise

__all__ = ["FaissVectorStore", "compile_filter"]

DB_FILE = "vectorstore.db"
INDEX_FILE = "vectorstore.faiss"
META_FILE = "vectorstore.json"
SCHEMA_VERSION = "1"
_BATCH = 500  # ids per IN (...) list


class _Base(DeclarativeBase):
    pass


class StoredDocument(_Base):
    __tablename__ = "documents"
    __table_args__ = ({"sqlite_autoincrement": True},)

    row_id: Mapped[int] = mapped_column(primary_key=True)  # the FAISS id
    id: Mapped[str] = mapped_column(String, unique=True)
    text: Mapped[str]
    meta_json: Mapped[str] = mapped_column("metadata", default="{}")
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian, L2-normalised
    embed_model: Mapped[str]


_FIELDS = filters.JsonFields(StoredDocument.meta_json)


def compile_filter(flt: dict[str, Any]) -> ColumnElement[bool]:
    """The SQL condition for a metadata filter; every key and value checked, values bound.

    :func:`saem.store.filters.compile_filter` over the documents' JSON metadata. Raises
    ``ValueError`` for a key that is not a (dotted) identifier, an unknown operator, or a value
    that is not a JSON scalar (``$in`` takes a list of them, ``$glob`` a string).
    """
    return filters.compile_filter(flt, _FIELDS)


class FaissVectorStore(VectorStore):
    """A ``VectorStore`` over FAISS (inner product on normalised vectors = cosine), backed by SQLite.

        store = FaissVectorStore(embedding=HashEmbeddings(), path="data/notes")  # None: a temp dir
        ids = store.add_texts(["LoRA adapters", "FAISS flat index"], [{"source": "docs/a.md"}, {}])
        store.add_documents([Document("LoRA on CPU", metadata={"source": "docs/a.md"})], ids=[ids[0]])
        hits = store.similarity_search_with_score("lora", k=2, filter={"source": {"$glob": "docs/*.md"}})
        store.close()

    ``path=None`` keeps the SQLite file in a private temp dir (deleted by ``close()`` or at exit)
    and never writes a FAISS file. ``add_documents`` upserts by id (a repeated id replaces the
    old document; in one batch the last one wins) and ``delete`` of unknown ids is a no-op.
    ``get_by_ids`` returns the found documents in the order asked, skipping missing ids. Scores
    are cosine similarities, higher is better; relevance scores are them clipped to [0, 1].

    Raises ``ModelError`` at open when the folder holds vectors of another embedding model (by
    ``model_id``: the embedder's ``model_id``/``model_name``/``model`` or its class name), and at
    add or search when the embedder's dimension differs from the stored one; an empty store
    adopts the new model. ``IndexCorrupt`` when SQLite cannot be read or holds bad vectors.

    Thread-safety: one ``RLock`` serialises writes, index reloads and FAISS searches in this
    process; embedding runs outside it. Other processes may read and write the same folder
    (SQLite ``BEGIN IMMEDIATE`` serialises writers; each search checks ``generation``).
    """

    def __init__(
        self,
        embedding: Embeddings,
        path: str | Path | None = None,
        *,
        model_id: str | None = None,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self._embedding = embedding
        self.model_id = model_id or embedder_id(embedding)
        self.path = Path(path) if path is not None else None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if self.path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="saem-vs-")
            self._folder = Path(self._tmp.name)
        else:
            self._folder = self.path
            self._folder.mkdir(parents=True, exist_ok=True)
        self._cat = Catalogue(self._folder / DB_FILE, busy_timeout_s=busy_timeout_s)
        self._lock = threading.RLock()
        self._index: VectorIndex | None = None
        self._generation: int | None = None  # the SQLite generation self._index reflects
        try:
            self._open()
        except DatabaseError as err:  # not wrapped by Catalogue: raised by its connect hook
            self.close()
            raise IndexCorrupt(
                f"{self._folder / DB_FILE} is not a readable store: {err.orig}", path=self._folder
            ) from err
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        with self._cat.write() as s:
            conn = s.connection()
            _Base.metadata.create_all(conn)
            CatalogueBase.metadata.tables["meta"].create(conn, checkfirst=True)
            if get_meta(s, "generation") is None:
                set_meta(s, "generation", "0")
                set_meta(s, "schema", SCHEMA_VERSION)
            stored = get_meta(s, "embed_model")
            if stored is not None and stored != self.model_id:
                if self._state(s).count:
                    raise ModelError(
                        f"{self._folder} holds vectors of {stored!r}, not of {self.model_id!r}",
                        model=self.model_id,
                        path=self._folder,
                        hint="open it with the embedder it was built with, or use a new folder",
                    )
                set_meta(s, "embed_model", self.model_id)

    # --- the VectorStore surface ------------------------------------------------------------

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Upsert ``documents`` (ids: ``ids=`` > ``Document.id`` > a new uuid4). Returns the ids."""
        ids: Sequence[str | None] | None = kwargs.pop("ids", None)
        _no_extra(kwargs)
        if ids is not None and len(ids) != len(documents):
            raise ValueError(f"got {len(ids)} ids for {len(documents)} documents")
        final = [str((ids[i] if ids else None) or d.id or uuid.uuid4()) for i, d in enumerate(documents)]
        if not documents:
            return []
        metas = [_metadata_json(doc_id, d.metadata) for doc_id, d in zip(final, documents, strict=True)]
        vectors = normalise(np.asarray(self._embedding.embed_documents([d.page_content for d in documents])))
        if vectors.shape[0] != len(documents):
            raise ModelError(f"the embedder returned {vectors.shape[0]} vectors for {len(documents)} texts")
        last = {doc_id: i for i, doc_id in enumerate(final)}  # a repeated id: the last one wins
        rows = [
            {
                "id": doc_id,
                "text": documents[i].page_content,
                "meta_json": metas[i],
                "embedding": vectors[i].astype("<f4").tobytes(),
                "embed_model": self.model_id,
            }
            for doc_id, i in last.items()
        ]
        self._write(rows, vectors[list(last.values())])
        return final

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete these ids; unknown ids are ignored. ``ids=None`` is refused (``ValueError``)."""
        _no_extra(kwargs)
        if ids is None:
            raise ValueError("delete() needs the ids to delete")
        self._write([], None, remove=[str(i) for i in ids])
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        with self._cat.read() as s:
            found: dict[str, Document] = {}
            for part in _batches(list(dict.fromkeys(ids))):
                rows = s.execute(select(StoredDocument).where(StoredDocument.id.in_(part))).scalars()
                found.update((r.id, _document(r)) for r in rows)
        return [found[i] for i in ids if i in found]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        return self.similarity_search_with_score_by_vector(self._embedding.embed_query(query), k, **kwargs)

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, **kwargs)]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, *, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The ``k`` nearest documents that pass ``filter``, with cosine similarity, best first."""
        _no_extra(kwargs)
        return [(doc, score) for doc, score, _ in self._search(embedding, k, filter)]

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, **kwargs: Any
    ) -> list[Document]:
        vector = self._embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, **kwargs)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        *,
        filter: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        _no_extra(kwargs)
        hits = self._search(embedding, max(fetch_k, k), filter)
        if not hits:
            return []
        query = normalise(np.asarray(embedding))[0]
        chosen = maximal_marginal_relevance(query, [v.tolist() for _, _, v in hits], lambda_mult=lambda_mult, k=k)
        return [hits[i][0] for i in chosen]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda score: min(1.0, max(0.0, score))

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> Self:
        """A store at ``path=`` (default: in memory) holding ``texts``; other kwargs go to ``__init__``."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def close(self) -> None:
        """Release the SQLite connections (and delete the temp dir of an in-memory store)."""
        self._cat.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ---------------------------------------------------------------------------

    def _state(self, s: Session) -> IndexMeta:
        count = s.scalar(select(func.count()).select_from(StoredDocument)) or 0
        dim = int(get_meta(s, "dim") or 0)
        return IndexMeta(int(count), self.model_id, dim, int(get_meta(s, "generation") or 0))

    def _write(self, rows: list[dict[str, Any]], vectors: np.ndarray | None, remove: Iterable[str] = ()) -> None:
        """Upsert ``rows`` and delete ``remove`` in one write transaction; update and save FAISS."""
        ids = [r["id"] for r in rows] + list(remove)
        with self._lock:
            try:
                with self._cat.write() as s:
                    index = self._refresh(s)
                    state = self._state(s)
                    if vectors is not None:
                        dim = int(vectors.shape[1])
                        if state.dim and dim != state.dim and state.count:
                            raise _dim_error(self.model_id, dim, state.dim)
                        set_meta(s, "dim", str(dim))
                        set_meta(s, "embed_model", self.model_id)
                        if index is None or index.dim != dim:
                            index = VectorIndex.empty(dim)
                    old: list[int] = []
                    for part in _batches(ids):
                        old += s.scalars(select(StoredDocument.row_id).where(StoredDocument.id.in_(part)))
                        s.execute(delete(StoredDocument).where(StoredDocument.id.in_(part)))
                    if not old and not rows:
                        return  # nothing changed: no new generation
                    new: list[int] = []
                    if rows:
                        stmt = insert(StoredDocument).returning(StoredDocument.row_id, sort_by_parameter_order=True)
                        new = list(s.scalars(stmt, rows))
                    bump_generation(s)
                    state = self._state(s)
                    if index is not None:
                        index.remove(old)
                        if vectors is not None:
                            index.add(np.asarray(new, dtype=np.int64), vectors)
                        self._save(index, state)  # before COMMIT: under SQLite's write lock
                    self._index, self._generation = index, state.generation
            except BaseException:
                self._index, self._generation = None, None  # the commit may not have happened
                raise

    def _current(self) -> VectorIndex | None:
        """The index for SQLite's current generation (caller holds ``self._lock``)."""
        with self._cat.read() as s:
            if self._generation is not None and int(get_meta(s, "generation") or 0) == self._generation:
                return self._index
        with self._cat.write() as s:  # a rebuild is saved under the write lock, like any write
            return self._refresh(s)

    def _refresh(self, s: Session) -> VectorIndex | None:
        """Bring ``self._index`` to the snapshot ``s`` sees: load the file if it vouches, else rebuild."""
        state = self._state(s)
        if self._generation == state.generation:
            return self._index
        index = None
        if state.count:
            index = self._load_file(state)
            if index is None:
                index = self._rebuild(s, state)
                self._save(index, state)
        self._index, self._generation = index, state.generation
        return index

    def _load_file(self, state: IndexMeta) -> VectorIndex | None:
        if self.path is None:
            return None
        try:
            raw = json.loads((self.path / META_FILE).read_text())
            if IndexMeta(**raw) != state:
                return None
            index = _faiss().read_index(str(self.path / INDEX_FILE))
        except (OSError, ValueError, TypeError, RuntimeError):
            return None  # missing, truncated or stale: rebuild
        if int(index.ntotal) != state.count or int(index.d) != state.dim:
            return None
        return VectorIndex(index, state.dim)

    def _rebuild(self, s: Session, state: IndexMeta) -> VectorIndex:
        index = VectorIndex.empty(state.dim)
        last = -1
        while True:
            q = select(StoredDocument.row_id, StoredDocument.embedding).where(StoredDocument.row_id > last)
            rows = s.execute(q.order_by(StoredDocument.row_id).limit(4096)).all()
            if not rows:
                return index
            vecs = [np.frombuffer(r[1], dtype="<f4") for r in rows]
            if any(v.size != state.dim for v in vecs):
                raise IndexCorrupt(
                    f"{self._folder / DB_FILE} holds an embedding that is not {state.dim}-dimensional",
                    path=self._folder,
                    hint="re-add the documents into a new folder",
                )
            index.add(np.array([r[0] for r in rows], dtype=np.int64), np.stack(vecs))
            last = int(rows[-1][0])

    def _save(self, index: VectorIndex, state: IndexMeta) -> None:
        if self.path is None:
            return
        atomic_write(self.path / INDEX_FILE, lambda tmp: _faiss().write_index(index.index, str(tmp)))
        payload = json.dumps(asdict(state)).encode()
        atomic_write(self.path / META_FILE, lambda tmp: tmp.write_bytes(payload))

    def _search(
        self, embedding: Sequence[float], k: int, flt: dict[str, Any] | None
    ) -> list[tuple[Document, float, np.ndarray]]:
        where = compile_filter(flt) if flt is not None else None  # validate before any I/O
        query = normalise(np.asarray(embedding))
        with self._lock:
            index = self._current()
            if index is None or index.ntotal == 0 or k <= 0:
                return []
            if query.shape[1] != index.dim:
                raise _dim_error(self.model_id, query.shape[1], index.dim)
            with self._cat.read() as s:
                params, n = None, index.ntotal
                if where is not None:
                    chosen = np.fromiter(s.scalars(select(StoredDocument.row_id).where(where)), dtype=np.int64)
                    if chosen.size == 0:
                        return []
                    selector = _faiss().IDSelectorBatch(chosen)  # keep a reference while searching
                    params, n = _faiss().SearchParameters(sel=selector), int(chosen.size)
                scores, row_ids = index.index.search(query, min(k, n), params=params)
                hits = [(int(i), float(sc)) for i, sc in zip(row_ids[0], scores[0], strict=True) if i != -1]
                found: dict[int, StoredDocument] = {}
                for part in _batches([i for i, _ in hits]):
                    rows = s.scalars(select(StoredDocument).where(StoredDocument.row_id.in_(part)))
                    found.update((r.row_id, r) for r in rows)
        return [
            (_document(found[i]), sc, np.frombuffer(found[i].embedding, dtype="<f4")) for i, sc in hits if i in found
        ]


def _faiss() -> Any:
    import faiss

    return faiss


def _document(row: StoredDocument) -> Document:
    return Document(id=row.id, page_content=row.text, metadata=json.loads(row.meta_json))


def _metadata_json(doc_id: str, metadata: dict[str, Any] | None) -> str:
    try:
        return json.dumps(metadata or {}, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"the metadata of document {doc_id!r} is not JSON-serialisable: {err}") from err


def _dim_error(model: str, got: int, want: int) -> ModelError:
    return ModelError(
        f"the embedder {model!r} gives {got}-dimensional vectors; the store holds {want}-dimensional ones",
        model=model,
        hint="use the embedder the store was built with, or a new folder",
    )


def _no_extra(kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")


def _batches(items: list[Any]) -> Iterable[list[Any]]:
    return (items[i : i + _BATCH] for i in range(0, len(items), _BATCH))
